"""Experiment trackers (MLflow, Weights & Biases): each trial as one tracker run, from the driver.

A sweep's `tracking:` section adds one driver-side Tune callback per tracker. Each trial (each
member of a pack: mlsweep.packs) becomes one run (MLflow: in the experiment named after the
sweep, tagged `mlsweep.sweep`; W&B: in the group named after the sweep), named by its trial id,
with its resolved config as parameters and every epoch record logged at step = epoch, while the
trial runs. A retry reports its epochs again (from scratch or from its checkpoint), so it opens
a new run (tag `mlsweep.attempt`) and the earlier one ends as failed.

Ray Tune's own MLflowLoggerCallback and WandbLoggerCallback do not serve here (measured by
running MLflowLoggerCallback next to these on a 2-trial sweep). They log one point per Tune
result at step = training_iteration, with the result's top-level metrics; a result here carries
a batch of epochs (EpochBatcher reports at most once a second): the quickstart's 8-epoch digits
trial, trained in-process, sends its epochs as 2 results (5 + 3), a 20-epoch small-MLP trial as 4
(1 + 9 + 8 + 2), so Tune's callbacks would log 4 points at steps 1-4 for 20 epochs, each the
batch's last epoch. (Only where each epoch takes over a second, as on a loaded 2-core machine,
do they coincide with epochs.) They also log `trial.config` as parameters, which for a grid is
only `{"pack_id": ...}`: the run read back had 1 parameter, these have the 29 of the resolved
config. And MLflowLoggerCallback's `setup` raises MlflowException on a server that is down,
which fails the whole sweep. W&B's run start costs about a second each (offline, measured), and an
MLflow call 0.1-0.3 s on the loaded machine, which is why the calls run on a sender thread.

Parquet stays the source of truth: a tracker that cannot be reached or refuses a call prints one
warning line on stderr and is switched off for the rest of the sweep, which goes on. MLflow's
client retries a refused connection for about 4 minutes by default (7 retries with backoff);
unless MLFLOW_HTTP_REQUEST_MAX_RETRIES / MLFLOW_HTTP_REQUEST_TIMEOUT are set, the driver gives
each call one try within 10 s, so a down server is given up on at once, not after minutes.
mlflow and wandb are imported only when a sweep asks for them (neither imports torch).
"""

from __future__ import annotations

import json
import math
import os
import queue
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable
from typing import Any

from ray.tune import Callback

from mlsweep.catalog import EPOCH_METRICS, trial_id
from mlsweep.spec import MlflowTracking, Sweep, WandbTracking

ConfigsOf = Callable[[Any], list[dict[str, Any]]]  # a Tune trial (a pack) -> its members' configs
Epochs = list[tuple[int, dict[str, float]]]  # (epoch, its measured metrics)
DRAIN_S = 60.0  # at the sweep's end, how long the driver waits for a tracker to take the rest
# One try per call within 10 s (MLflow's default retries a refused connection for 4 minutes), and
# no "View run at" line printed per trial.
MLFLOW_CLIENT_DEFAULTS = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0", "MLFLOW_HTTP_REQUEST_TIMEOUT": "10",
                          "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT": "true"}


def trackers(sweep: Sweep, configs_of: ConfigsOf) -> list[Callback]:
    """The tracker callbacks a sweep asks for (none without a `tracking:` section)."""
    found: list[Callback] = []
    if sweep.tracking.mlflow is not None:
        found.append(MlflowTracker(sweep.tracking.mlflow, sweep.name, configs_of))
    if sweep.tracking.wandb is not None:
        found.append(WandbTracker(sweep.tracking.wandb, sweep.name, configs_of))
    return found


def epoch_metrics(records: Iterable[dict[str, Any]]) -> Epochs:
    """Each record's metrics that were measured: evaluation metrics exist only on evaluated
    epochs (NaN in Parquet elsewhere), and a diverged epoch's NaN loss is no point to plot."""
    out = []
    for record in records:
        values = {name: float(record[name]) for name in EPOCH_METRICS if record.get(name) is not None}
        out.append((int(record["epoch"]), {k: v for k, v in values.items() if not math.isnan(v)}))
    return out


def param_text(value: Any) -> str:
    """A config value as MLflow stores parameters (text): lists and mappings as JSON."""
    return json.dumps(value) if isinstance(value, list | dict) else str(value)


def _short(err: BaseException) -> str:
    """One line of an exception; long client messages keep their start and their root cause."""
    text = " ".join(str(err).split()) or type(err).__name__
    return text if len(text) <= 240 else f"{text[:120]} ... {text[-110:]}"


class TrackerCallback(Callback):
    """What every tracker shares: one run per trial attempt, epochs logged as they arrive, and
    any failure of the tracker turning it off with one warning line instead of failing the
    sweep. Subclasses connect, start, log and end runs.

    Tune calls its callbacks on the thread that schedules trials, so every tracker call goes
    through one sender thread per tracker: a slow or distant server never holds up the sweep.
    That thread alone touches the runs. It and the connection are made in `setup`, since Tune
    pickles its callbacks before the sweep starts."""

    label = "tracker"

    def __init__(self, sweep_name: str, configs_of: ConfigsOf) -> None:
        self.sweep_name, self.configs_of = sweep_name, configs_of
        self.attempts: Counter[str] = Counter()
        self.off = False

    def where(self) -> str:
        return self.label

    def connect(self) -> None:
        """Reach the tracker before any trial starts (a failure here is the common one)."""

    def start(self, tid: str, config: dict[str, Any], attempt: int) -> Any:
        raise NotImplementedError

    def log(self, run: Any, epochs: Epochs) -> None:
        raise NotImplementedError

    def end(self, run: Any, status: str) -> None:
        """`status`: FINISHED, FAILED or KILLED."""
        raise NotImplementedError

    # ----------------------------------------------------------------- on the sender thread

    def _send(self) -> None:
        while (item := self.queue.get()) is not None:
            action, args = item
            if self.off:
                continue
            try:
                action(*args)
            except Exception as err:  # any failure of a tracker: never the sweep's
                self.off = True
                sys.stderr.write(f"mlsweep: {self.where()} is off for this sweep ({_short(err)}); "
                                 "the sweep goes on, its results are in Parquet\n")
                sys.stderr.flush()

    def _open(self, key: str, config: dict[str, Any], attempt: int) -> None:
        self._close(key, "FAILED")  # a retry trains from scratch: the earlier attempt ends
        self.runs[key] = self.start(trial_id(config), config, attempt)

    def _log(self, key: str, records: list[dict[str, Any]]) -> None:
        if key in self.runs:
            self.log(self.runs[key], epoch_metrics(records))

    def _close(self, key: str, status: str) -> None:
        if key in self.runs:
            self.end(self.runs.pop(key), status)

    def _close_all(self) -> None:
        """Runs still open at the end were interrupted (Ctrl-C)."""
        for key in list(self.runs):
            self._close(key, "KILLED")

    # ----------------------------------------------------------------- Tune's hooks

    def _submit(self, action: Callable[..., None], *args: Any) -> None:
        if not self.off:
            self.queue.put((action, args))

    def setup(self, **info: Any) -> None:
        self.runs: dict[str, Any] = {}  # `<Tune trial id>/<member>` -> the open tracker run
        self.queue: queue.SimpleQueue[tuple[Callable[..., None], tuple[Any, ...]] | None] = (
            queue.SimpleQueue())
        self.sender = threading.Thread(target=self._send, name=f"mlsweep-{self.label}", daemon=True)
        self.sender.start()
        self._submit(self.connect)

    def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        """Also called for each retry."""
        self.attempts[trial.trial_id] += 1
        for member, config in enumerate(self.configs_of(trial)):
            self._submit(self._open, f"{trial.trial_id}/{member}", config, self.attempts[trial.trial_id])

    def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict,
                        **info: Any) -> None:
        for member, part in enumerate(result["_members"]):
            if part["records"]:
                self._submit(self._log, f"{trial.trial_id}/{member}", part["records"])

    def _close_pack(self, trial: Any, status: str) -> None:
        for member in range(len(self.configs_of(trial))):
            self._submit(self._close, f"{trial.trial_id}/{member}", status)

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._close_pack(trial, "FINISHED")

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._close_pack(trial, "FAILED")

    def on_experiment_end(self, trials: list, **info: Any) -> None:
        """Waits for what is queued, at most DRAIN_S: a sweep is done when its tracker runs are."""
        self._submit(self._close_all)
        self.queue.put(None)
        self.sender.join(DRAIN_S)
        if self.sender.is_alive():
            sys.stderr.write(f"mlsweep: {self.where()} was still sending {DRAIN_S:.0f} s after the "
                             "sweep ended; the rest is left out (the results are in Parquet)\n")


class MlflowTracker(TrackerCallback):
    label = "MLflow"

    def __init__(self, settings: MlflowTracking, sweep_name: str, configs_of: ConfigsOf) -> None:
        super().__init__(sweep_name, configs_of)
        self.uri, self.experiment = settings.uri, settings.experiment or sweep_name

    def where(self) -> str:
        return f"MLflow tracking at {self.uri or os.environ.get('MLFLOW_TRACKING_URI', './mlruns')}"

    def connect(self) -> None:
        for name, value in MLFLOW_CLIENT_DEFAULTS.items():
            os.environ.setdefault(name, value)
        from mlflow import MlflowClient

        self.client = MlflowClient(self.uri)
        found = self.client.get_experiment_by_name(self.experiment)
        if found is None:
            self.experiment_id = self.client.create_experiment(
                self.experiment, tags={"mlsweep.sweep": self.sweep_name})
        else:
            if found.lifecycle_stage == "deleted":  # a name stays taken in MLflow's trash
                self.client.restore_experiment(found.experiment_id)
            self.experiment_id = found.experiment_id

    def start(self, tid: str, config: dict[str, Any], attempt: int) -> str:
        from mlflow.entities import Param

        tags = {"mlsweep.sweep": self.sweep_name, "mlsweep.trial_id": tid, "mlsweep.attempt": str(attempt)}
        run_id = self.client.create_run(self.experiment_id, run_name=tid, tags=tags).info.run_id
        self.client.log_batch(run_id, params=[Param(k, param_text(v)) for k, v in config.items()])
        return run_id

    def log(self, run: str, epochs: Epochs) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        self.client.log_batch(run, metrics=[Metric(name, value, now, epoch)
                                            for epoch, values in epochs for name, value in values.items()])

    def end(self, run: str, status: str) -> None:
        self.client.set_terminated(run, status)


class WandbTracker(TrackerCallback):
    label = "W&B"

    def __init__(self, settings: WandbTracking, sweep_name: str, configs_of: ConfigsOf) -> None:
        super().__init__(sweep_name, configs_of)
        self.settings = settings

    def where(self) -> str:
        return f"W&B tracking (project {self.settings.project}, {self.settings.mode})"

    def start(self, tid: str, config: dict[str, Any], attempt: int) -> Any:
        import wandb

        # Several trials run at once, so several runs are open in this one process. The driver's
        # console, machine and folder are not the trial's: none is captured.
        quiet = wandb.Settings(console="off", silent=True, x_disable_stats=True, x_disable_meta=True,
                               save_code=False, disable_git=True)
        return wandb.init(project=self.settings.project, entity=self.settings.entity,
                          mode=self.settings.mode, group=self.sweep_name, name=tid, config=config,
                          tags=[f"attempt-{attempt}"], reinit="create_new", settings=quiet)

    def log(self, run: Any, epochs: Epochs) -> None:
        for epoch, values in epochs:
            run.log(values, step=epoch)

    def end(self, run: Any, status: str) -> None:
        run.finish(exit_code=0 if status == "FINISHED" else 1)
