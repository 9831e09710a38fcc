"""Property tests of the doxastic strength math (method.md section 3)."""

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from steer.strength import (
    TrivialPropositionError,
    doxastic_strength,
    elementary_reason,
    group_strength,
    log_prior,
    strength_from_shards,
    update,
)

settings.register_profile("steer", max_examples=60, deadline=None)
settings.load_profile("steer")


@st.composite
def worlds_case(draw, max_n=24, max_units=5):
    """A random activation matrix, a non-trivial proposition and a positive prior."""
    n = draw(st.integers(2, max_n))
    u = draw(st.integers(1, max_units))
    seed = draw(st.integers(0, 2**31 - 1))
    g = np.random.default_rng(seed)
    scale = draw(st.sampled_from([0.1, 1.0, 10.0]))
    X = torch.tensor(g.normal(size=(n, u)) * scale)
    k = draw(st.integers(1, n - 1))
    A = torch.zeros(n, dtype=torch.bool)
    A[torch.tensor(g.permutation(n)[:k])] = True
    prior = torch.tensor(g.uniform(0.05, 1.0, size=n))
    return X, A, prior


def naive_D(x, A, prior=None):
    """The formula as written, in plain floats (small inputs only)."""
    n = len(x)
    b = [1.0 / n] * n if prior is None else [p / float(sum(prior)) for p in prior]
    num_a = sum(b[k] * math.exp(x[k]) for k in range(n) if A[k])
    num_c = sum(b[k] * math.exp(x[k]) for k in range(n) if not A[k])
    ba = sum(b[k] for k in range(n) if A[k])
    return 0.5 * math.log((num_a / num_c) / (ba / (1 - ba)))


@given(worlds_case())
def test_matches_the_formula(case):
    X, A, prior = case
    for p in (None, prior):
        D = doxastic_strength(X, A, p)
        for u in range(X.shape[1]):
            ref = naive_D(X[:, u].tolist(), A.tolist(), None if p is None else p.tolist())
            assert D[u].item() == pytest.approx(ref, rel=1e-9, abs=1e-9)


@given(worlds_case(), st.floats(-1e3, 1e3))
def test_shift_invariance(case, c):
    X, A, prior = case
    torch.testing.assert_close(doxastic_strength(X + c, A, prior), doxastic_strength(X, A, prior), atol=1e-8, rtol=1e-8)


@given(worlds_case())
def test_complement_flips_sign(case):
    X, A, prior = case
    torch.testing.assert_close(doxastic_strength(X, ~A, prior), -doxastic_strength(X, A, prior))


@given(worlds_case(), st.floats(-50, 50))
def test_elementary_reason_has_strength_c_under_any_prior(case, c):
    _, A, prior = case
    x = c * elementary_reason(A)
    assert doxastic_strength(x, A, prior).item() == pytest.approx(c, abs=1e-9)
    assert doxastic_strength(x, A).item() == pytest.approx(c, abs=1e-9)


@given(worlds_case())
def test_group_is_strength_of_the_summed_vector(case):
    X, A, prior = case
    units = list(range(X.shape[1]))
    assert group_strength(X, A, units, prior) == pytest.approx(doxastic_strength(X.sum(1), A, prior).item(), abs=1e-9)
    assert group_strength(X, A, [0]) == pytest.approx(doxastic_strength(X[:, 0], A).item(), abs=1e-12)


@given(worlds_case(), st.integers(1, 7), st.sampled_from(["none", "zscore", "rank"]))
def test_sharded_equals_whole(case, n_shards, normalize):
    X, A, prior = case
    whole, stats = strength_from_shards(lambda: [X], A, prior, normalize)
    cuts = np.linspace(0, X.shape[0], min(n_shards, X.shape[0]) + 1).astype(int)
    pieces = [X[a:b] for a, b in zip(cuts[:-1], cuts[1:])]
    sharded, sstats = strength_from_shards(lambda: iter(pieces), A, prior, normalize)
    torch.testing.assert_close(sharded, whole, atol=1e-9, rtol=1e-9)
    torch.testing.assert_close(sstats.std, stats.std, atol=1e-9, rtol=1e-9)
    torch.testing.assert_close(sstats.mean_a, X[A].double().mean(0), atol=1e-9, rtol=1e-9)
    torch.testing.assert_close(sstats.mean_c, X[~A].double().mean(0), atol=1e-9, rtol=1e-9)


@given(worlds_case(), st.floats(0.01, 100.0), st.floats(-100, 100))
def test_zscore_is_scale_and_shift_free(case, a, c):
    X, A, _ = case
    torch.testing.assert_close(
        doxastic_strength(a * X + c, A, normalize="zscore"), doxastic_strength(X, A, normalize="zscore"), atol=1e-7, rtol=1e-7
    )


@given(worlds_case(), st.sampled_from(["exp", "cube", "affine"]))
def test_rank_is_invariant_to_increasing_transforms(case, f):
    X, A, _ = case
    g = {"exp": torch.exp, "cube": lambda x: x**3, "affine": lambda x: 7 * x - 3}[f]
    torch.testing.assert_close(doxastic_strength(g(X), A, normalize="rank"), doxastic_strength(X, A, normalize="rank"))


def test_normal_scores_share_ranks_on_ties():
    from steer.strength import normal_scores

    X = torch.tensor([[1.0, 5.0], [1.0, 3.0], [1.0, 3.0], [2.0, 0.0]], dtype=torch.float64)
    Z = normal_scores(X)
    assert torch.equal(Z[0, 0], Z[1, 0]) and torch.equal(Z[1, 0], Z[2, 0]) and Z[3, 0] > Z[0, 0]
    assert torch.equal(Z[1, 1], Z[2, 1])
    ranks = torch.tensor([3.0, 1.5, 1.5, 0.0])  # average ranks of column 1
    torch.testing.assert_close(Z[:, 1], torch.special.ndtri((ranks + 0.5) / 4).double())
    # a constant unit says nothing for or against any proposition
    A = torch.tensor([True, False, True, False])
    assert doxastic_strength(torch.ones(4, 3), A, normalize="rank").abs().max().item() == 0.0


def test_rank_prefers_a_consistent_shift_to_a_single_outlier():
    A = torch.arange(40) < 20
    g = torch.Generator().manual_seed(0)
    consistent = torch.randn(40, generator=g) + 1.5 * A
    outlier = torch.randn(40, generator=g) * 0.1
    outlier[0] = 50.0  # one extreme world in A
    X = torch.stack([consistent, outlier], 1)
    z, r = doxastic_strength(X, A, normalize="zscore"), doxastic_strength(X, A, normalize="rank")
    assert z[1] > z[0]  # z-scored D is won by the outlier
    assert r[0] > r[1]  # rank D by the consistent unit


def test_raw_strength_is_not_scale_invariant():
    A = torch.tensor([True, False, False, True])
    x = torch.tensor([1.0, 0.0, 0.5, 2.0])
    assert doxastic_strength(10 * x, A).item() != pytest.approx(doxastic_strength(x, A).item())


def test_huge_activations_stay_finite():
    g = torch.Generator().manual_seed(0)
    X = torch.randn(64, 8, generator=g) * 3000 + 5000
    A = torch.arange(64) < 20
    for normalize in ("none", "zscore", "rank"):
        D = doxastic_strength(X.float(), A, normalize=normalize)
        assert torch.isfinite(D).all()
    # a unit that is +2000 on A and -2000 off A speaks for A with strength 2000
    assert doxastic_strength(2000 * elementary_reason(A), A).item() == pytest.approx(2000)


@pytest.mark.parametrize("mask", [[False] * 5, [True] * 5])
def test_trivial_propositions_are_refused(mask):
    X = torch.randn(5, 3)
    with pytest.raises(TrivialPropositionError):
        doxastic_strength(X, torch.tensor(mask))


def test_zero_prior_mass_on_A_is_trivial():
    A = torch.tensor([True, True, False, False])
    with pytest.raises(TrivialPropositionError):
        doxastic_strength(torch.randn(4), A, prior=torch.tensor([0.0, 0.0, 1.0, 1.0]))


def test_nan_activations_are_refused():
    X = torch.randn(4, 3)
    X[2, 1] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        doxastic_strength(X, torch.tensor([True, False, True, False]))


def test_bad_masks_and_priors():
    X = torch.randn(4, 2)
    with pytest.raises(TypeError):
        doxastic_strength(X, torch.tensor([1, 0, 1, 0]))
    with pytest.raises(ValueError, match="shape"):
        doxastic_strength(X, torch.tensor([True, False]))
    with pytest.raises(ValueError, match="prior"):
        doxastic_strength(X, torch.tensor([True, False, True, False]), prior=torch.tensor([1.0, -1.0, 1.0, 1.0]))


@given(worlds_case(max_units=1))
def test_sequential_updates_commute(case):
    X, _, prior = case
    n = X.shape[0]
    x, y = X[:, 0], torch.linspace(-1, 1, n, dtype=torch.float64)
    lb = log_prior(n, prior)
    torch.testing.assert_close(update(update(lb, x), y), update(lb, x + y))
    torch.testing.assert_close(update(update(lb, x), y), update(update(lb, y), x))


def test_unit_shape_is_kept():
    X = torch.randn(10, 3, 7)
    A = torch.arange(10) < 4
    D = doxastic_strength(X, A)
    assert D.shape == (3, 7)
    torch.testing.assert_close(D[1, 2], doxastic_strength(X[:, 1, 2], A))
