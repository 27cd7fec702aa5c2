"""Losses and miners, each checked against a direct computation on a small batch.

The contrastive and triplet references are explicit Python loops over numpy arrays; the
miners are checked against their definitions on a distance matrix computed here.
"""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from mlsweep import catalog
from mlsweep.catalog import TrialConfig
from mlsweep.trainer.losses import LossOutput, build_loss, random_triplets
from mlsweep.trainer.pml_losses import mine

LABELS = torch.tensor([0, 0, 0, 1, 1, 2, 2, 2, 3, 1])
NUM_CLASSES, DIM = 4, 6


def batch(seed: int = 0, labels: torch.Tensor = LABELS, dim: int = DIM) -> torch.Tensor:
    """Unit-norm embeddings (leaf, requires grad), as the model's head gives them."""
    g = torch.Generator().manual_seed(seed)
    return F.normalize(torch.randn(len(labels), dim, generator=g), dim=1).requires_grad_()


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def loss_for(name: str, **settings: Any) -> torch.nn.Module:
    return build_loss(TrialConfig.from_mapping({"loss": name, **settings}), NUM_CLASSES, DIM)


def distances(emb: torch.Tensor) -> np.ndarray:
    z = emb.detach().double().numpy()
    return np.sqrt(((z[:, None, :] - z[None, :, :]) ** 2).sum(-1))


# -- reference computations -------------------------------------------------------------------


def contrastive_terms(d: np.ndarray, pos: list[tuple[int, int]], neg: list[tuple[int, int]],
                      margin: float) -> list[float]:
    return ([d[i, j] ** 2 for i, j in pos]
            + [max(0.0, margin - d[i, j]) ** 2 for i, j in neg])


def all_pairs(labels: list[int]) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
    pos, neg = [], []
    for i, j in itertools.permutations(range(len(labels)), 2):
        (pos if labels[i] == labels[j] else neg).append((i, j))
    return pos, neg


def all_triplets(labels: list[int]) -> list[tuple[int, int, int]]:
    n = range(len(labels))
    return [(a, p, q) for a in n for p in n for q in n
            if a != p and labels[a] == labels[p] and labels[q] != labels[a]]


def triplet_terms(d: np.ndarray, triplets: list[tuple[int, int, int]], margin: float) -> list[float]:
    return [max(0.0, d[a, p] - d[a, q] + margin) for a, p, q in triplets]


def as_list(triplets: tuple[torch.Tensor, ...]) -> list[tuple[int, ...]]:
    return list(zip(*(t.tolist() for t in triplets), strict=True))


# -- contrastive and triplet against hand computations ----------------------------------------


@pytest.mark.parametrize("margin", [1.2, 1.6])
def test_contrastive_all_pairs_by_hand(margin: float) -> None:
    emb = batch()
    out = loss_for("contrastive", margin=margin, miner="all")(emb, LABELS, gen())
    pos, neg = all_pairs(LABELS.tolist())
    expected = contrastive_terms(distances(emb), pos, neg, margin)
    assert out.loss.item() == pytest.approx(np.mean(expected), rel=1e-5)
    assert sorted(out.terms.tolist()) == pytest.approx(sorted(expected), abs=1e-6)
    # Negative pairs both inside and beyond the margin occur: the hinge is exercised.
    assert 0 < sum(t == 0 for t in expected[len(pos):]) < len(neg)


def test_contrastive_random_miner_pairs_by_hand() -> None:
    """Pairs are the miner's (a, p) and (a, n), deduplicated; the same generator seed gives
    the same draw, so the reference mines with an identically seeded generator."""
    emb, margin = batch(1), 1.2
    out = loss_for("contrastive", margin=margin, miner="random")(emb, LABELS, gen(5))
    triplets = as_list(random_triplets(LABELS, gen(5)))
    pos = sorted({(a, p) for a, p, _ in triplets})
    neg = sorted({(a, q) for a, _, q in triplets})
    expected = contrastive_terms(distances(emb), pos, neg, margin)
    assert len(out.terms) == len(pos) + len(neg)
    assert out.loss.item() == pytest.approx(np.mean(expected), rel=1e-5)
    assert sorted(out.terms.tolist()) == pytest.approx(sorted(expected), abs=1e-6)


@pytest.mark.parametrize("margin", [0.2, 1.0])
def test_triplet_all_triplets_by_hand(margin: float) -> None:
    emb = batch(2)
    out = loss_for("triplet", margin=margin, miner="all")(emb, LABELS, gen())
    expected = triplet_terms(distances(emb), all_triplets(LABELS.tolist()), margin)
    assert 0 < expected.count(0.0) < len(expected)  # the mean must include the zeros
    assert out.loss.item() == pytest.approx(np.mean(expected), rel=1e-5)
    assert sorted(out.terms.tolist()) == pytest.approx(sorted(expected), abs=1e-6)


def test_triplet_random_miner_by_hand() -> None:
    emb, margin = batch(3), 0.3
    out = loss_for("triplet", margin=margin, miner="random")(emb, LABELS, gen(7))
    expected = triplet_terms(distances(emb), as_list(random_triplets(LABELS, gen(7))), margin)
    assert out.loss.item() == pytest.approx(np.mean(expected), rel=1e-5)
    assert sorted(out.terms.tolist()) == pytest.approx(sorted(expected), abs=1e-6)


@pytest.mark.parametrize("name", ["contrastive", "triplet"])
def test_batch_without_pairs_gives_zero_loss_with_a_graph(name: str) -> None:
    labels = torch.arange(5)  # no anchor has a positive
    emb = batch(labels=labels)
    out = loss_for(name, miner="random")(emb, labels, gen())
    assert out.terms.numel() == 0 and out.loss.item() == 0.0
    out.loss.backward()  # must not raise: the training step runs on
    assert emb.grad is not None and torch.count_nonzero(emb.grad) == 0


def test_ccl_matches_its_formula() -> None:
    loss_fn = loss_for("ccl", loss_params={"temperature": 0.2})
    emb = batch(4)
    out = loss_fn(emb, LABELS, gen())
    z = emb.detach().double().numpy()
    c = loss_fn.centres.detach().double().numpy()
    expected = []
    for zi, yi in zip(z, LABELS.tolist(), strict=True):
        cos = np.array([zi @ ck / np.linalg.norm(zi) / np.linalg.norm(ck) for ck in c])
        expected.append(-np.log(np.exp(cos[yi] / 0.2) / np.exp(cos / 0.2).sum()))
    assert out.terms.tolist() == pytest.approx(expected, rel=1e-5)
    assert out.loss.item() == pytest.approx(np.mean(expected), rel=1e-5)


# -- every registered loss ---------------------------------------------------------------------


@pytest.mark.parametrize("name", list(catalog.LOSSES))
def test_every_loss_gives_finite_scalar_terms_and_gradients(name: str) -> None:
    loss_fn = loss_for(name)
    emb = batch(5)
    out = loss_fn(emb, LABELS, gen())
    assert isinstance(out, LossOutput)
    assert out.loss.dim() == 0 and torch.isfinite(out.loss) and out.loss.item() > 0
    assert out.terms.dim() == 1 and out.terms.numel() > 0 and torch.isfinite(out.terms).all()
    assert not out.terms.requires_grad
    out.loss.backward()
    assert emb.grad is not None and torch.isfinite(emb.grad).all() and emb.grad.abs().sum() > 0
    params = list(loss_fn.parameters())
    assert bool(params) == catalog.LOSSES[name].has_parameters
    for p in params:
        assert p.grad is not None and p.grad.abs().sum() > 0


@pytest.mark.parametrize("name", [n for n, info in catalog.LOSSES.items() if "miner" in info.uses])
@pytest.mark.parametrize("miner", list(catalog.MINERS))
def test_mining_losses_run_with_every_miner(name: str, miner: str) -> None:
    emb = batch(6)
    out = loss_for(name, miner=miner, margin=0.5)(emb, LABELS, gen())
    assert torch.isfinite(out.loss) and out.terms.dim() == 1
    out.loss.backward()
    assert torch.isfinite(emb.grad).all()


# -- miners ------------------------------------------------------------------------------------


def test_random_miner_one_positive_and_negative_per_eligible_anchor() -> None:
    labels = torch.tensor([0, 0, 1, 1, 1, 2, 3, 0])  # 2 and 3 are singletons: no positive
    a, p, n = random_triplets(labels, gen(0))
    assert a.tolist() == [0, 1, 2, 3, 4, 7]  # each eligible anchor once, in order
    for ai, pi, ni in zip(a.tolist(), p.tolist(), n.tolist(), strict=True):
        assert pi != ai and labels[pi] == labels[ai]
        assert labels[ni] != labels[ai]


def test_random_miner_skips_anchors_without_negatives() -> None:
    a, p, n = random_triplets(torch.zeros(6, dtype=torch.long), gen(0))
    assert a.numel() == p.numel() == n.numel() == 0


def test_random_miner_is_seeded_and_uniform() -> None:
    labels = torch.tensor([0, 0, 0, 0, 1, 1, 2, 2, 2])
    first = random_triplets(labels, gen(11))
    assert all(torch.equal(x, y) for x, y in zip(first, random_triplets(labels, gen(11)),
                                                  strict=True))
    draws = [random_triplets(labels, gen(s)) for s in range(200)]
    assert any(not torch.equal(d[1], first[1]) for d in draws)
    # Anchor 0 (class 0, four members) has positives {1, 2, 3} and negatives {4, ..., 8}.
    positives = [d[1][0].item() for d in draws]
    negatives = [d[2][0].item() for d in draws]
    assert set(positives) == {1, 2, 3} and set(negatives) == {4, 5, 6, 7, 8}
    assert min(np.bincount(positives)[1:]) > 40  # ~67 each if uniform


@pytest.mark.parametrize("miner", ["semihard", "hard"])
def test_margin_miners_return_exactly_their_triplets(miner: str) -> None:
    """semihard: d_ap < d_an ≤ d_ap + m. hard (FaceNet, pytorch-metric-learning): the negative
    is no farther than the positive, d_an ≤ d_ap (a subset of the margin violators)."""
    labels = torch.tensor([0, 0, 0, 0, 1, 1, 1, 2, 2, 2, 2, 3])
    emb, margin = batch(8, labels, dim=3), 0.4
    d = distances(emb)
    got = set(as_list(mine(miner, emb, labels, margin, gen())))
    if miner == "semihard":
        def wanted(a: int, p: int, q: int) -> bool:
            return d[a, p] < d[a, q] <= d[a, p] + margin
    else:
        def wanted(a: int, p: int, q: int) -> bool:
            return d[a, q] <= d[a, p]
    expected = {t for t in all_triplets(labels.tolist()) if wanted(*t)}
    assert expected and got == expected
    assert all(d[a, q] < d[a, p] + margin for a, p, q in got)  # both violate the margin


def test_all_miner_forms_every_triplet() -> None:
    got = as_list(mine("all", batch(), LABELS, 0.1, gen()))
    assert sorted(got) == sorted(all_triplets(LABELS.tolist()))
