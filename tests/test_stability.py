"""Bootstrap over worlds: vectorised == naive loop, reproducible, recovers planted units, coverage."""

import numpy as np
import pytest
import torch

from steer.stability import bootstrap, bootstrap_counts, bootstrap_strengths, prediction_set
from steer.strength import doxastic_strength
from steer.strength import normalize_units as normalized
from tests.helpers import planted


def test_counts_are_stratified():
    A = torch.arange(20) < 6
    C = bootstrap_counts(A, resamples=50, seed=1)
    assert C.shape == (50, 20)
    assert torch.all(C[:, A].sum(1) == 6) and torch.all(C[:, ~A].sum(1) == 14)
    assert torch.equal(C, bootstrap_counts(A, resamples=50, seed=1))


def test_vectorised_equals_naive_loop():
    X, A, _, _ = planted(n_worlds=30, n_units=7, n_a=10, seed=2)
    X = X * 20  # activations in the tens: the max-shift must keep exp finite
    C = bootstrap_counts(A, resamples=25, seed=3)
    fast = bootstrap_strengths(X, A, C)
    for b in range(25):
        rows = torch.repeat_interleave(torch.arange(30), C[b].long())
        torch.testing.assert_close(fast[b], doxastic_strength(X[rows], A[rows]), rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("normalize", ["none", "zscore", "rank"])
def test_chunking_and_seed_do_not_change_results(normalize):
    X, A, _, _ = planted(n_worlds=60, n_units=50, n_a=20, seed=4)
    a = bootstrap(X, A, resamples=40, k=3, normalize=normalize, seed=5, chunk=7)
    b = bootstrap(X, A, resamples=40, k=3, normalize=normalize, seed=5, chunk=50)
    torch.testing.assert_close(a.D_lo, b.D_lo)
    assert torch.equal(a.top_for, b.top_for) and torch.equal(a.freq_against, b.freq_against)
    c = bootstrap(X, A, resamples=40, k=3, normalize=normalize, seed=6, chunk=50)
    assert not torch.equal(a.D_lo, c.D_lo)


def test_top_k_matches_per_resample_sort():
    X, A, _, _ = planted(n_worlds=50, n_units=30, n_a=15, seed=7)
    res = bootstrap(X, A, resamples=20, k=4, seed=8, chunk=9)
    Db = bootstrap_strengths(normalized(X, "none"), A, bootstrap_counts(A, 20, 8))
    for b in range(20):
        assert set(res.top_for[b].tolist()) == set(torch.topk(Db[b], 4).indices.tolist())
        assert set(res.top_against[b].tolist()) == set(torch.topk(-Db[b], 4).indices.tolist())
    assert res.freq_for.sum().item() == pytest.approx(4.0)


def test_planted_units_are_recovered_and_stable():
    X, A, pf, pa = planted(n_worlds=400, n_units=300, n_a=120, planted_for=3, planted_against=3, effect=1.5, seed=0)
    for normalize in ("none", "zscore", "rank"):
        res = bootstrap(X, A, resamples=200, k=3, seed=1, normalize=normalize)
        assert set(torch.topk(res.freq_for, 3).indices.tolist()) == set(pf)
        assert set(torch.topk(res.freq_against, 3).indices.tolist()) == set(pa)
        assert res.freq_for[pf].min() > 0.8
        assert res.jaccard(pf).mean() > 0.7
        D = doxastic_strength(normalized(X, normalize), A)
        inside = (res.D_lo <= D) & (D <= res.D_hi)
        assert inside.double().mean() > 0.8


def test_prediction_set():
    assert prediction_set([1, 1, 1, 2, 3], alpha=0.3) == [(1, 0.6), (2, 0.2)]
    assert prediction_set([5] * 10, alpha=0.1) == [(5, 1.0)]
    with pytest.raises(ValueError):
        prediction_set([1], alpha=1.5)


def test_prediction_set_coverage_in_simulation():
    """Over many synthetic draws of worlds, the prediction set at alpha = 0.2 holds the true best unit
    (the planted one with the largest effect) at least 80% of the time, within simulation error."""
    hits, draws = 0, 40
    for s in range(draws):
        g = torch.Generator().manual_seed(1000 + s)
        X = torch.randn(150, 40, generator=g, dtype=torch.float64)
        A = torch.zeros(150, dtype=torch.bool)
        A[:50] = True
        X[:50, 0] += 1.0  # the best unit
        X[:50, 1] += 0.8  # a close runner-up
        res = bootstrap(X, A, resamples=100, k=1, alpha=0.2, seed=s, normalize="rank")
        hits += 0 in [u for u, _ in res.prediction_set()]
    rate = hits / draws
    assert rate >= 0.8 - 2 * np.sqrt(0.8 * 0.2 / draws), rate


def test_bad_arguments():
    X, A, _, _ = planted(n_worlds=20, n_units=8, n_a=5)
    with pytest.raises(ValueError, match="k=9"):
        bootstrap(X, A, k=9)
    with pytest.raises(ValueError, match="planted"):
        planted(n_units=4, planted_for=3, planted_against=3)
    with pytest.raises(ValueError, match="alpha"):
        bootstrap(X, A, alpha=0.0)
