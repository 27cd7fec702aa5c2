"""How launch groups pending trials into packs (mlsweep.packs): torch-free, no Ray."""

from __future__ import annotations

from typing import Any

import pytest

from mlsweep.catalog import pack_id, pack_key
from mlsweep.errors import UserError
from mlsweep.packs import AUTO_MAX_MEMBERS, make_packs, slots
from mlsweep.spec import expand, validate


def sweep_of(**keys: Any) -> Any:
    parameters = {"loss": {"values": ["contrastive", "triplet"]}, "dataset": {"value": "digits"},
                  "margin": {"values": [0.2, 0.5]}, "seed": {"values": list(range(6))}}
    parameters.update(keys.pop("parameters", {}))
    return validate({"name": "p", "parameters": parameters, **keys})


def sizes(packs: list[Any]) -> list[int]:
    return [len(p.trials) for p in packs]


def test_auto_makes_the_largest_packs_that_keep_every_slot_busy() -> None:
    sweep = sweep_of()  # two losses: two groups of 12 trials that may share a pack
    trials = expand(sweep)
    assert sizes(make_packs(sweep, trials, slots=2)) == [12, 12]
    assert sizes(make_packs(sweep, trials, slots=3)) == [6, 6, 6, 6]  # 12 a pack would leave one idle
    assert sizes(make_packs(sweep, trials, slots=5)) == [4, 4, 4, 4, 4, 4]
    assert sizes(make_packs(sweep, trials, slots=24)) == [1] * 24
    assert sizes(make_packs(sweep, trials, slots=64)) == [1] * 24  # fewer trials than slots
    many = sweep_of(parameters={"seed": {"values": list(range(40))}})
    # 80 trials a loss, at most AUTO_MAX_MEMBERS a pack: three packs of near-equal sizes each
    assert sizes(make_packs(many, expand(many), slots=1)) == [27, 27, 26] * 2 and AUTO_MAX_MEMBERS < 40


def test_packs_hold_each_pending_trial_once_in_order_and_share_their_pack_key() -> None:
    sweep = sweep_of()
    trials = expand(sweep)[3:]  # some recorded already
    packs = make_packs(sweep, trials, slots=3)
    assert [t for p in packs for t in p.trials] == sorted(trials, key=lambda t: t.config["loss"])
    for pack in packs:
        assert len({pack_key(t.config) for t in pack.trials}) == 1
        assert pack.pack_id == pack_id([t.trial_id for t in pack.trials]) and pack.pack_id.startswith("pack-")
    assert len({p.pack_id for p in packs}) == len(packs)


def test_a_whole_number_caps_members_with_near_equal_sizes() -> None:
    sweep = sweep_of(pack=5)
    assert sizes(make_packs(sweep, expand(sweep), slots=2)) == [4, 4, 4, 4, 4, 4]  # 12 -> 3 packs each
    alone = sweep_of(pack=1)
    packs = make_packs(alone, expand(alone), slots=2)
    assert sizes(packs) == [1] * 24 and all(p.pack_id == p.trials[0].trial_id for p in packs)


@pytest.mark.parametrize("keys", [{"method": "optuna", "parameters": {"lr": {"min": 1e-4, "max": 1e-2}}},
                                  {"scheduler": "asha"}, {"parameters": {"model": {"value": "resnet18"}}},
                                  {"parameters": {"batch_size": {"values": [32, 64]}}, "pack": 1}])
def test_searchers_schedulers_and_unpackable_models_run_alone(keys: dict[str, Any]) -> None:
    sweep = sweep_of(**keys)
    trials = expand(sweep) if sweep.method == "grid" else []
    assert set(sizes(make_packs(sweep, trials, slots=2))) <= {1}


def test_slots_count_the_scarcer_resource_and_the_cap() -> None:
    assert slots(sweep_of(resources={"cpu": 1}), cpus=16) == 16
    assert slots(sweep_of(resources={"cpu": 2}, max_concurrent_trials=3), cpus=16) == 3
    assert slots(sweep_of(resources={"cpu": 1, "gpu": 0.25}), cpus=16, gpus=1) == 4
    assert slots(sweep_of(resources={"cpu": 4}), cpus=2) == 1


@pytest.mark.parametrize("bad", [0, -2, "big", 2.5, True])
def test_a_bad_pack_value_is_one_line(bad: Any) -> None:
    with pytest.raises(UserError) as err:
        sweep_of(pack=bad)
    assert str(err.value).count("\n") == 0 and "pack: must be auto or a whole number" in str(err.value)


def test_kept_packs_are_formed_as_they_were_and_the_rest_around_them() -> None:
    sweep = sweep_of()
    trials = expand(sweep)
    ids = [t.trial_id for t in trials]
    kept = [ids[1:4], [ids[0], "recorded-already"]]  # the second cannot be kept: a member is missing
    packs = make_packs(sweep, trials, slots=2, keep=kept)
    assert [t.trial_id for t in packs[0].trials] == ids[1:4] and packs[0].pack_id == pack_id(ids[1:4])
    assert sorted(t.trial_id for p in packs for t in p.trials) == sorted(ids)  # each trial once
    assert len(packs) >= 2 and all(len({pack_key(t.config) for t in p.trials}) == 1 for p in packs)
