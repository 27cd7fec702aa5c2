"""The sweep's progress lines, rendered into a stream that says it is (or is not) a terminal."""

from __future__ import annotations

import io
import re
import time

import pytest

from mlsweep import progress
from mlsweep.progress import SweepProgress

TRIPLET = {"loss": "triplet", "dataset": "digits", "margin": 0.5, "seed": 1, "epochs": 25}
SUPCON = {"loss": "supcon", "dataset": "digits", "margin": None, "seed": 0, "epochs": 25}


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def screen(text: str) -> list[str]:
    """What a terminal shows after `text`: carriage returns, cursor-up-n-lines, clear to end
    of line and of screen, applied as a terminal does."""
    rows, row, col = [""], 0, 0
    for token in re.findall(r"\x1b\[\d*[A-Za-z]|\r|\n|[^\x1b\r\n]+", text):
        if token == "\r":
            col = 0
        elif token == "\n":
            row, col = row + 1, 0
            rows += [""] * (row + 1 - len(rows))
        elif token.startswith("\x1b["):
            code, n = token[-1], int(token[2:-1] or 1)
            if code == "F":
                row, col = row - n, 0
            elif code == "K":
                rows[row] = rows[row][:col]
            elif code == "J":
                rows[row] = rows[row][:col]
                del rows[row + 1:]
        else:
            rows[row] = rows[row][:col] + token + rows[row][col + len(token):]
            col += len(token)
    return rows


def test_a_terminal_shows_every_running_trial_with_its_epoch() -> None:
    stream = Terminal()
    bar = SweepProgress(3, stream=stream)
    with bar:
        bar.started("a", TRIPLET)
        bar.started("b", SUPCON)
        bar.reported("a", 7)
        shown = screen(stream.getvalue())
        assert shown[0].startswith("[0/3] done 0  running 2  pending 1  failed 0")
        assert shown[1:] == ["  triplet on digits, margin 0.5, seed 1: epoch 7/25",
                             "  supcon on digits, seed 0: epoch 0/25"]
        bar.finished("a", "completed")
        shown = screen(stream.getvalue())
        assert shown[0].startswith("[1/3] done 1  running 1  pending 1") and len(shown) == 2
    assert screen(stream.getvalue())[-1] == ""  # the block ends with a newline, not under the cursor


def test_the_clock_ticks_on_a_terminal_between_events(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(progress, "TICK_S", 0.05)
    stream = Terminal()
    with SweepProgress(2, stream=stream) as bar:
        bar.started("a", TRIPLET)
        drawn = stream.getvalue().count("[0/2]")
        bar.t0 -= 3  # three seconds pass with no event
        time.sleep(0.3)
        assert stream.getvalue().count("[0/2]") >= drawn + 3
        assert "elapsed 0:00:03" in screen(stream.getvalue())[0]


def test_a_log_gets_one_line_per_finished_trial() -> None:
    stream = io.StringIO()
    with SweepProgress(2, stream=stream) as bar:
        bar.started("a", TRIPLET)
        bar.reported("a", 3)
        bar.started("b", SUPCON)
        time.sleep(1.2)  # no ticking outside a terminal
        bar.finished("a", "completed")
        bar.finished("b", "failed")
    lines = stream.getvalue().splitlines()
    assert [line[:40] for line in lines] == ["[1/2] done 1  running 1  pending 0  fail",
                                             "[2/2] done 1  running 0  pending 0  fail"]
    assert "\x1b" not in stream.getvalue() and "\r" not in stream.getvalue()


def test_a_pickled_copy_keeps_the_counts_and_renders() -> None:
    """Tune pickles its callbacks with the experiment state; the progress goes along."""
    import pickle

    bar = SweepProgress(2, stream=None)
    bar.started("a", TRIPLET)
    bar.finished("a", "completed")
    copy = pickle.loads(pickle.dumps(bar))
    assert copy.line().split("  elapsed")[0] == bar.line().split("  elapsed")[0]
    copy.started("b", SUPCON)
    assert "running 1" in copy.line()
