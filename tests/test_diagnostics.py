"""Diagnostics (docs/metrics.md), each against an independent computation: closed forms on
hand-made clusters, numpy/scipy loops, torch's clip_grad_norm_ and scikit-learn's kNN."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy.spatial.distance import pdist
from sklearn.neighbors import KNeighborsClassifier
from torch import nn

from mlsweep import catalog
from mlsweep.catalog import TrialConfig
from mlsweep.diagnostics import greediness
from mlsweep.diagnostics import variance_metrics as variance
from mlsweep.diagnostics.base import EvalContext, StepContext, build_reporters
from mlsweep.diagnostics.greediness import GreedinessReporter
from mlsweep.diagnostics.retrieval import retrieval_metrics
from mlsweep.diagnostics.summary import loss_decay
from mlsweep.trainer.losses import build_loss


def unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def random_embeddings(seed: int, n: int, dim: int, classes: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = np.concatenate([np.arange(classes), rng.integers(0, classes, n - classes)])
    centres = rng.normal(size=(classes, dim))
    return centres[labels] + rng.normal(scale=0.8, size=(n, dim)), labels


def t(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(a))


# -- variance ----------------------------------------------------------------------------------


def test_variance_on_hand_made_clusters() -> None:
    """Class 0: (cos 60°, ±sin 60°), centroid (1/2, 0), ‖z − μ‖² = 3/4 each.
    Class 1: (−1, 0) twice, no spread.  Class 2: (0, 1) twice, no spread."""
    s = math.sqrt(3) / 2
    z = np.array([[0.5, s], [0.5, -s], [-1, 0], [-1, 0], [0, 1], [0, 1]])
    labels = np.array([0, 0, 1, 1, 2, 2])
    # Rows scaled arbitrarily: the metrics normalise first.
    scaled = z * np.array([[2.0], [0.3], [5.0], [1.0], [7.0], [0.1]])
    got = variance(t(scaled), t(labels))
    dists = [1.5, math.sqrt(0.25 + 1), math.sqrt(2)]  # |μ0μ1|, |μ0μ2|, |μ1μ2|
    mu = np.array([-1 / 6, 1 / 3])  # (2·(1/2) + 2·(−1) + 0, 2·1) / 6
    centroids = np.array([[0.5, 0], [-1, 0], [0, 1]])
    between = sum(2 * ((c - mu) ** 2).sum() for c in centroids) / 6
    # ‖μ_c − μ‖² = 20/36, 29/36, 17/36, two samples each: 2 · 66/36 / 6 = 11/18.
    assert between == pytest.approx(11 / 18)
    expected = {
        "intra_var_mean": 0.25,  # (3/4 + 0 + 0) / 3
        "intra_var_std": math.sqrt(((0.75 - 0.25) ** 2 + 2 * 0.25**2) / 3),  # population
        "centroid_dist_mean": np.mean(dists),
        "centroid_dist_std": np.std(dists, ddof=1),
        "between_var": between,
        "var_ratio": (2 * 0.75 / 6) / between,  # mean squared deviation over all samples
    }
    assert got == pytest.approx(expected, rel=1e-9)


def variance_by_hand(z: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    z = unit(z.astype(np.float64))
    classes = sorted(set(labels.tolist()))
    centroids = np.array([z[labels == c].mean(0) for c in classes])
    intra = [np.mean([np.sum((zi - centroids[k]) ** 2) for zi in z[labels == c]])
             for k, c in enumerate(classes)]
    sq_dev = [np.sum((zi - centroids[classes.index(c)]) ** 2)
              for zi, c in zip(z, labels, strict=True)]
    mu = z.mean(0)
    between = sum((labels == c).sum() * np.sum((centroids[k] - mu) ** 2)
                  for k, c in enumerate(classes)) / len(z)
    dists = pdist(centroids)
    return {"intra_var_mean": np.mean(intra), "intra_var_std": np.std(intra),
            "centroid_dist_mean": dists.mean(), "centroid_dist_std": np.std(dists, ddof=1),
            "between_var": between, "var_ratio": np.mean(sq_dev) / between}


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_variance_matches_numpy_on_random_data(seed: int) -> None:
    z, labels = random_embeddings(seed, n=40, dim=5, classes=4)  # unequal class sizes
    got = variance(t(z).float(), t(labels))
    assert got == pytest.approx(variance_by_hand(z, labels), rel=1e-5)


def test_variance_of_one_class() -> None:
    got = variance(torch.randn(5, 3), torch.zeros(5, dtype=torch.long))
    assert got["intra_var_std"] == 0 and got["between_var"] == pytest.approx(0, abs=1e-12)
    assert math.isnan(got["centroid_dist_mean"]) and math.isnan(got["var_ratio"])


def test_variance_reporter_prefixes_train_columns() -> None:
    z, labels = random_embeddings(3, n=30, dim=4, classes=3)
    z2, labels2 = random_embeddings(4, n=20, dim=4, classes=3)
    out = build_reporters(["variance"])[0].on_eval(EvalContext(t(z), t(labels), t(z2), t(labels2)))
    assert set(out) == set(catalog.REPORTERS["variance"].columns)
    assert out["train_between_var"] == pytest.approx(variance_by_hand(z2, labels2)["between_var"])
    assert out["intra_var_mean"] == pytest.approx(variance_by_hand(z, labels)["intra_var_mean"])


# -- greediness --------------------------------------------------------------------------------


def one_step(ctx: StepContext) -> dict[str, float]:
    """A fresh greediness reporter's columns for one step (of its only member)."""
    reporter = GreedinessReporter()
    reporter.on_step(ctx)
    return {key: column[0][0] for key, column in reporter.end_epoch().items()}


def terms_step(terms: torch.Tensor) -> StepContext:
    emb = torch.zeros(2, 2, requires_grad=True)
    return StepContext(terms.sum(), terms, emb, nn.Linear(1, 1), nn.Identity())


def test_active_ratio_threshold() -> None:
    terms = torch.tensor([0.0, 1e-7, 1e-6, 2e-6, 0.3, 5.0, 0.0, 0.0])
    assert one_step(terms_step(terms))["active_ratio"] == pytest.approx(3 / 8)  # > 1e-6, strictly
    assert math.isnan(one_step(terms_step(torch.zeros(0)))["active_ratio"])


def test_steps_reduced_together_equal_each_step_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    """Many steps (of different sizes, one with no terms) reduced at the epoch's end, or in
    several chunks when the held tensors pass the limit, give each step's own values."""
    model, loss_fn, x, labels, _ = small_step(3)
    contexts = []
    for size in (10, 7, 1, 9):
        emb = F.normalize(model(x[:size]), dim=1)
        emb.retain_grad()
        model.zero_grad(set_to_none=True)
        loss_fn.zero_grad(set_to_none=True)
        out = loss_fn(emb, labels[:size], torch.Generator())
        terms = out.terms if size != 1 else out.terms[:0]
        out.loss.backward()
        alone = one_step(StepContext(out.loss, terms, emb, model, loss_fn))
        contexts.append((StepContext(out.loss, terms, emb, model, loss_fn),
                         {p: p.grad.clone() for p in [*model.parameters(), *loss_fn.parameters()]
                          if p.grad is not None}, alone))
    for limit in (greediness.HELD_LIMIT, 15):
        monkeypatch.setattr(greediness, "HELD_LIMIT", limit)
        reporter = GreedinessReporter()
        for ctx, grads, _ in contexts:
            for p in [*model.parameters(), *loss_fn.parameters()]:
                p.grad = grads.get(p)
            reporter.on_step(ctx)
        columns = reporter.end_epoch()
        for i, (_, _, alone) in enumerate(contexts):
            for key, value in alone.items():
                assert columns[key][0][i] == pytest.approx(value, rel=1e-6, nan_ok=True), (limit, i, key)
        assert reporter.end_epoch() == {}  # an epoch's columns are given once


# Four 2-D unit vectors: 0 and 1 coincide (class 0), 2 = (−1, 0) and 3 = (0, 1) (class 1).
# Distances: d01 = 0, d02 = d12 = 2, d03 = d13 = d23 = √2.
HAND = torch.tensor([[1.0, 0.0], [1.0, 0.0], [-1.0, 0.0], [0.0, 1.0]])
HAND_LABELS = torch.tensor([0, 0, 1, 1])


@pytest.mark.parametrize(("loss", "margin", "active", "total"), [
    # Ordered pairs. Positive: (0,1),(1,0) at d = 0 inactive; (2,3),(3,2) at √2 active.
    # Negative at m = 1.5: d = 2 inactive ×4; d = √2 < 1.5 active ×4. → 6 of 12.
    ("contrastive", 1.5, 6, 12),
    # At m = 1.0 every negative is beyond the margin. → 2 of 12.
    ("contrastive", 1.0, 2, 12),
    # Triplets (a, p, n) at m = 0.5: anchors 0, 1 (d_ap = 0) never active; anchor 2 (d_ap = √2)
    # vs n at 2: √2 − 2 + .5 < 0; anchor 3 (d_ap = √2) vs n at √2: 0.5 > 0, active ×2. → 2 of 8.
    ("triplet", 0.5, 2, 8),
])
def test_active_ratio_counted_by_hand(loss: str, margin: float, active: int, total: int) -> None:
    emb = HAND.clone().requires_grad_()
    loss_fn = build_loss(TrialConfig.from_mapping({"loss": loss, "margin": margin, "miner": "all"}), 2, 2)
    out = loss_fn(emb, HAND_LABELS, torch.Generator().manual_seed(0))
    out.loss.backward()
    step = one_step(StepContext(out.loss, out.terms, emb, nn.Linear(1, 1), loss_fn))
    assert step["n_terms"] == total
    assert float(step["active_ratio"]) == pytest.approx(active / total)


def small_step(seed: int) -> tuple[nn.Module, nn.Module, torch.Tensor, torch.Tensor, torch.Tensor]:
    """A model and a loss with parameters of its own (ccl's centres), one forward pass."""
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 4))
    model.unused = nn.Parameter(torch.ones(3))  # gets no gradient: left out of the norm
    loss_fn = build_loss(TrialConfig.from_mapping({"loss": "ccl"}), 3, 4)
    x = torch.randn(10, 6)
    labels = torch.tensor([0, 1, 2, 0, 1, 2, 0, 1, 2, 0])
    return model, loss_fn, x, labels, F.normalize(model(x), dim=1)


def test_grad_norm_is_clip_grad_norm_total() -> None:
    model, loss_fn, _, labels, emb = small_step(0)
    emb.retain_grad()
    out = loss_fn(emb, labels, torch.Generator())
    out.loss.backward()
    step = one_step(StepContext(out.loss, out.terms, emb, model, loss_fn))
    params = [*model.parameters(), *loss_fn.parameters()]
    grads = np.concatenate([p.grad.numpy().ravel() for p in params if p.grad is not None])
    total = torch.nn.utils.clip_grad_norm_(params, max_norm=math.inf)
    assert float(step["grad_norm"]) == pytest.approx(total.item(), rel=1e-6)
    assert float(step["grad_norm"]) == pytest.approx(np.sqrt((grads.astype(np.float64) ** 2).sum()),
                                                     rel=1e-5)
    assert loss_fn.centres.grad.abs().sum() > 0  # the loss's own parameters are included
    assert model.unused.grad is None


def test_emb_grad_norm_is_mean_row_norm_of_dloss_dz() -> None:
    model, loss_fn, x, labels, emb = small_step(1)
    emb.retain_grad()
    out = loss_fn(emb, labels, torch.Generator())
    out.loss.backward()
    step = one_step(StepContext(out.loss, out.terms, emb, model, loss_fn))
    # Independently: a fresh graph, and autograd.grad with respect to the embeddings.
    z = F.normalize(model(x), dim=1)
    (grad,) = torch.autograd.grad(loss_fn(z, labels, torch.Generator()).loss, z)
    expected = np.linalg.norm(grad.double().numpy(), axis=1).mean()
    assert float(step["emb_grad_norm"]) == pytest.approx(expected, rel=1e-5)


def test_loss_decay() -> None:
    losses = [4.0, 3.0, 2.0, 1.9, 0.3, 0.5]
    got = loss_decay(losses)
    assert got["loss_half_epoch"] == 3  # first ≤ 2.0
    assert got["loss_tenth_epoch"] == 5  # first ≤ 0.4
    slope = np.polyfit(np.arange(1, 7), np.log(losses), 1)[0]
    assert got["loss_decay_rate"] == pytest.approx(slope)


def test_loss_decay_never_reached_and_degenerate() -> None:
    got = loss_decay([1.0, 0.9, 0.6, 0.51])
    assert got["loss_half_epoch"] is None and got["loss_tenth_epoch"] is None
    assert got["loss_decay_rate"] < 0
    empty = loss_decay([])
    assert empty["loss_half_epoch"] is None and math.isnan(empty["loss_decay_rate"])
    assert math.isnan(loss_decay([2.0])["loss_decay_rate"])


# -- retrieval ---------------------------------------------------------------------------------


def ranking(z: np.ndarray) -> np.ndarray:
    """Per query, the other items from nearest to farthest (brute force, stable)."""
    d = np.linalg.norm(z[:, None] - z[None], axis=-1)
    return np.array([[j for j in np.argsort(d[i], kind="stable") if j != i] for i in range(len(z))])


def angles(*degrees: float) -> torch.Tensor:
    r = np.radians(degrees)
    return t(np.stack([np.cos(r), np.sin(r)], 1)).float()


def test_recall_at_k_on_a_tiny_gallery() -> None:
    """Six points on the circle at 0, 10, 40, 100, 120, 200° with classes 0 1 0 1 1 2.
    Rank of the first same-class neighbour: item 0 → 2 (10° is class 1, then 40°);
    1 → 3 (0°, 40° are class 0, then 100°); 2 → 2 (10°, then 0°); 3 → 1; 4 → 1;
    5 → none (its class has no other member)."""
    z = angles(0, 10, 40, 100, 120, 200)
    labels = torch.tensor([0, 1, 0, 1, 1, 2])
    got = retrieval_metrics(z, labels)
    assert got["recall_at_1"] == pytest.approx(2 / 6)
    assert got["recall_at_5"] == pytest.approx(5 / 6)
    assert got["recall_at_10"] == pytest.approx(5 / 6)  # k ≥ n: the singleton must not find itself
    order = ranking(z.numpy())
    hits = (labels.numpy()[order] == labels.numpy()[:, None])
    for k in (1, 5, 10):
        assert got[f"recall_at_{k}"] == pytest.approx(hits[:, :k].any(1).mean())


def map_at_r_by_hand(z: np.ndarray, labels: np.ndarray) -> tuple[float, float, float]:
    """precision@1, R-precision and MAP@R (Musgrave et al. 2020) over queries with R ≥ 1."""
    order = ranking(z)
    p1, rp, ap = [], [], []
    for i in range(len(z)):
        r = int((labels == labels[i]).sum()) - 1
        if r == 0:
            continue
        rel = labels[order[i, :r]] == labels[i]
        p1.append(float(rel[0]))
        rp.append(rel.mean())
        ap.append(sum(rel[:k + 1].mean() for k in range(r) if rel[k]) / r)
    return float(np.mean(p1)), float(np.mean(rp)), float(np.mean(ap))


def test_map_at_r_on_a_hand_case() -> None:
    """Points at 0, 10, 25, 45, 85° with classes A A B A B; R = class size − 1.
    Query 0° (R = 2): 10 (A), 25 (B) → relevant [1, 0] → AP@R = (1/1) / 2 = 0.5, R-prec 1/2.
    Query 10° (R = 2): 0 (A), 25 (B) → 0.5, 1/2.
    Query 25° (R = 1): 10 (A) → 0, 0.
    Query 45° (R = 2): 25 (B), 10 (A) → [0, 1] → (1/2) / 2 = 0.25, 1/2.
    Query 85° (R = 1): 45 (A) → 0, 0.
    MAP@R = 1.25 / 5 = 0.25; R-precision = 1.5 / 5 = 0.3; precision@1 = 2 / 5."""
    z = angles(0, 10, 25, 45, 85)
    labels = torch.tensor([0, 0, 1, 0, 1])
    got = retrieval_metrics(z, labels)
    assert got["map_at_r"] == pytest.approx(0.25, abs=1e-6)
    assert got["r_precision"] == pytest.approx(0.3, abs=1e-6)
    assert got["precision_at_1"] == pytest.approx(0.4, abs=1e-6)
    assert map_at_r_by_hand(z.numpy().astype(np.float64), labels.numpy()) == pytest.approx(
        (0.4, 0.3, 0.25))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_retrieval_matches_brute_force_on_random_data(seed: int) -> None:
    z, labels = random_embeddings(seed, n=60, dim=4, classes=5)
    got = retrieval_metrics(t(z).float(), t(labels))
    p1, rp, ap = map_at_r_by_hand(unit(z), labels)
    assert got["precision_at_1"] == pytest.approx(p1, abs=1e-6)
    assert got["r_precision"] == pytest.approx(rp, abs=1e-6)
    assert got["map_at_r"] == pytest.approx(ap, abs=1e-6)
    # No singleton classes: precision@1 and recall@1 are the same quantity.
    assert np.bincount(labels).min() > 1
    assert got["precision_at_1"] == pytest.approx(got["recall_at_1"], abs=1e-9)


@pytest.mark.parametrize("seed", range(4))
def test_knn_acc_is_scikit_learns_5nn(seed: int) -> None:
    train, train_labels = random_embeddings(seed, n=50, dim=3, classes=4)
    test, test_labels = random_embeddings(seed + 100, n=30, dim=3, classes=4)
    got = retrieval_metrics(t(test).float(), t(test_labels), t(train).float(), t(train_labels))
    knn = KNeighborsClassifier(n_neighbors=5).fit(unit(train), train_labels)
    assert got["knn_acc"] == pytest.approx(knn.score(unit(test), test_labels), abs=1e-9)


def test_knn_acc_is_nan_for_class_disjoint_test_labels() -> None:
    z, labels = random_embeddings(0, n=20, dim=3, classes=2)
    got = retrieval_metrics(t(z).float(), t(labels) + 2, t(z).float(), t(labels))
    assert math.isnan(got["knn_acc"]) and got["map_at_r"] >= 0
    assert math.isnan(retrieval_metrics(t(z).float(), t(labels))["knn_acc"])  # no train set


def test_retrieval_on_non_finite_embeddings_is_nan_not_an_error() -> None:
    """An overflowing model can give NaN test embeddings while its train loss is finite."""
    z, labels = random_embeddings(0, n=20, dim=3, classes=2)
    z[3] = np.nan
    got = retrieval_metrics(t(z).float(), t(labels), t(z).float(), t(labels))
    assert set(got) == set(catalog.REPORTERS["retrieval"].columns)
    assert all(math.isnan(v) for v in got.values())


@pytest.mark.parametrize("name", list(catalog.REPORTERS))
def test_every_reporter_gives_exactly_its_catalog_columns(name: str) -> None:
    """The reporters' contract: an entry's implementation records the columns the metrics
    table gives it, no more, no fewer."""
    z, labels = random_embeddings(5, n=30, dim=4, classes=3)
    ctx = EvalContext(t(z).float(), t(labels), t(z).float(), t(labels))
    columns = set(build_reporters([name])[0].on_eval(ctx))
    emb = t(unit(z)).float().requires_grad_()
    loss_fn = build_loss(TrialConfig.from_mapping({"loss": "triplet"}), 3, 4)
    out = loss_fn(emb, t(labels), torch.Generator())
    out.loss.backward()
    stepper = build_reporters([name])[0]
    stepper.on_step(StepContext(out.loss, out.terms, emb, nn.Linear(1, 1), loss_fn))
    columns |= set(stepper.end_epoch())
    assert columns == set(catalog.REPORTERS[name].columns)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_map_at_r_equals_pytorch_metric_learnings_accuracy_calculator(seed: int) -> None:
    """The shared-kNN implementation against the reference implementation of Musgrave et al."""
    from pytorch_metric_learning.distances import LpDistance
    from pytorch_metric_learning.utils.accuracy_calculator import AccuracyCalculator
    from pytorch_metric_learning.utils.inference import CustomKNN

    gen = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, 7, (150,), generator=gen)
    labels[0] = 99  # a lone query: excluded by both
    z = torch.nn.functional.normalize(torch.randn(150, 6, generator=gen) + labels[:, None] % 3, dim=1)
    reference = AccuracyCalculator(
        include=("precision_at_1", "r_precision", "mean_average_precision_at_r"), k="max_bin_count",
        device=torch.device("cpu"), knn_func=CustomKNN(LpDistance())).get_accuracy(z, labels)
    got = retrieval_metrics(z, labels)
    assert got["precision_at_1"] == pytest.approx(reference["precision_at_1"], abs=1e-9)
    assert got["r_precision"] == pytest.approx(reference["r_precision"], abs=1e-9)
    assert got["map_at_r"] == pytest.approx(reference["mean_average_precision_at_r"], abs=1e-9)
