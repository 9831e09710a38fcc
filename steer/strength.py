"""Doxastic reason strength: pure tensor math, no model code.

Notation (``docs/method.md`` section 3): worlds k = 1..N, a reasons vector x in R^N (one unit's
activation in every world), a proposition A (a boolean mask over the worlds) and a belief b (a probability
vector over the worlds, uniform by default).

    D(x, A, b) = 1/2 * [ LSE_{k in A}(log b_k + x_k) - LSE_{k not in A}(log b_k + x_k)
                         - log b(A) + log b(A^c) ]

With uniform b this is 1/2 * (logmeanexp_A x - logmeanexp_{A^c} x). Everything is computed with logsumexp
in float64, so activations in the thousands stay finite. Every function takes ``X`` with the worlds on the
first axis and any unit shape after it, and returns one value per unit.

D is shift invariant but NOT scale invariant: units with huge activations get huge |D|. Normalizations:

- ``"none"``: D on the raw activations (the paper).
- ``"zscore"``: each unit standardised over the worlds first (mean 0, std 1): scale-free. Because D is a
  difference of log-mean-exps, it is still dominated by each unit's most extreme worlds, so it favours units
  with rare outliers in A over units that shift consistently.
- ``"rank"``: each unit replaced by its normal scores over the worlds, Phi^-1((rank + 1/2) / N) with tied
  values sharing their average rank: scale-free, invariant to any increasing transform of a unit, and bounded
  (|score| <= Phi^-1(1 - 1/2N)), so D rewards units that shift consistently on A. Ranks need every world's
  value of a unit: from a recording on disk they are computed in blocks of units (one more pass over the
  shards per block), in bounded memory.

Because LSE is mergeable (``logaddexp``) and means/variances are mergeable (Chan et al.), strengths can be
computed shard by shard over the worlds without ever holding all of X: see :func:`strength_from_shards`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np
import torch
from jaxtyping import Bool, Float
from torch import Tensor

from steer.names import NORMALIZATIONS, Normalize


class TrivialPropositionError(ValueError):
    """The proposition holds in no world or in every world (0 = b(A) or b(A) = 1): strength is undefined."""


def _check_mask(A: Tensor, n: int) -> Tensor:
    A = torch.as_tensor(A)
    if A.dtype != torch.bool:
        raise TypeError(f"a proposition must be a boolean mask over the worlds, got dtype {A.dtype}")
    if A.shape != (n,):
        raise ValueError(f"proposition mask has shape {tuple(A.shape)}, expected ({n},) (one entry per world)")
    return A


def log_prior(n: int, prior: Tensor | None = None) -> Float[Tensor, " worlds"]:
    """log b as float64: uniform when ``prior`` is None, else the normalised non-negative weights."""
    if prior is None:
        return torch.full((n,), -torch.log(torch.tensor(float(n), dtype=torch.float64)).item(), dtype=torch.float64)
    b = torch.as_tensor(prior, dtype=torch.float64)
    if b.shape != (n,):
        raise ValueError(f"prior has shape {tuple(b.shape)}, expected ({n},)")
    if not torch.isfinite(b).all() or (b < 0).any() or b.sum() <= 0:
        raise ValueError("prior must be finite, non-negative and not all zero")
    return torch.log(b / b.sum())


def prior_log_odds(A: Bool[Tensor, " worlds"], logb: Float[Tensor, " worlds"]) -> float:
    """log b(A) - log b(A^c); raises TrivialPropositionError when b(A) is 0 or 1."""
    A = _check_mask(A, logb.shape[0])
    lb_a = torch.logsumexp(logb[A], 0) if A.any() else torch.tensor(-torch.inf, dtype=torch.float64)
    lb_c = torch.logsumexp(logb[~A], 0) if (~A).any() else torch.tensor(-torch.inf, dtype=torch.float64)
    if not torch.isfinite(lb_a) or not torch.isfinite(lb_c):
        raise TrivialPropositionError(
            f"proposition is trivial: it holds in {int(A.sum())} of {A.numel()} worlds (prior mass "
            f"{lb_a.exp().item():.3g}); strength needs 0 < b(A) < 1"
        )
    return float(lb_a - lb_c)


def _flat(X: Tensor) -> tuple[Tensor, tuple[int, ...]]:
    if X.ndim < 1:
        raise ValueError("X needs the worlds on its first axis")
    if X.ndim == 1:
        X = X[:, None]
        return X.to(torch.float64), ()
    return X.reshape(X.shape[0], -1).to(torch.float64), tuple(X.shape[1:])


def _check_finite(X: Tensor) -> None:
    if not torch.isfinite(X).all():
        bad = (~torch.isfinite(X)).nonzero()[0].tolist()
        raise ValueError(f"activations contain NaN or inf (first at index {bad}); refusing to compute strengths")


# ---------------------------------------------------------------------------------------------- accumulators


@dataclass
class Moments:
    """Mergeable per-unit moments over worlds: count, mean and M2 overall, and sums on A and off A."""

    n: int
    mean: Float[Tensor, " units"]
    m2: Float[Tensor, " units"]
    n_a: int
    sum_a: Float[Tensor, " units"]
    sum_c: Float[Tensor, " units"]

    @classmethod
    def of(cls, X: Float[Tensor, "worlds units"], A: Bool[Tensor, " worlds"]) -> Moments:
        n = X.shape[0]
        mean = X.mean(0)
        return cls(n, mean, ((X - mean) ** 2).sum(0), int(A.sum()), X[A].sum(0), X[~A].sum(0))

    def merge(self, o: Moments) -> Moments:
        n = self.n + o.n
        delta = o.mean - self.mean
        mean = self.mean + delta * (o.n / n)
        m2 = self.m2 + o.m2 + delta**2 * (self.n * o.n / n)
        return Moments(n, mean, m2, self.n_a + o.n_a, self.sum_a + o.sum_a, self.sum_c + o.sum_c)

    @property
    def std(self) -> Tensor:
        """Population standard deviation over the worlds."""
        return (self.m2 / self.n).clamp_min(0).sqrt()

    @property
    def mean_a(self) -> Tensor:
        return self.sum_a / self.n_a

    @property
    def mean_c(self) -> Tensor:
        return self.sum_c / (self.n - self.n_a)


@dataclass
class UnitStats:
    """What a neuron set reports per unit besides D: its mean m over the worlds, std, mean on A and on A^c."""

    mean: Float[Tensor, "*units"]
    std: Float[Tensor, "*units"]
    mean_a: Float[Tensor, "*units"]
    mean_c: Float[Tensor, "*units"]


def _zscore(X: Tensor, mean: Tensor, std: Tensor) -> Tensor:
    safe = torch.where(std > 0, std, torch.ones_like(std))
    return torch.where(std > 0, (X - mean) / safe, torch.zeros_like(X))


RANK_BYTES_PER_VALUE = 96  # peak bytes per (world, unit) value while ranking a block (measured, rounded up)


def normal_scores(X: Float[Tensor, "worlds units"]) -> Float[Tensor, "worlds units"]:
    """Per column: Phi^-1((average rank + 1/2) / N), ranks from 0; tied values share their average rank.

    Sorted per unit (NumPy's vectorised argsort on rows of X^T); the average rank of a tie group is
    (first + last) / 2 of its sorted positions, so every score is one of the 2N - 1 values Phi^-1((k/2 + 1/2) / N),
    looked up in a table."""
    n, u = X.shape
    a = np.ascontiguousarray(X.detach().cpu().numpy().T)  # [units, worlds]
    order = np.argsort(a, axis=1)  # ties get their average rank whatever their order
    s = np.take_along_axis(a, order, 1)
    starts = np.ones_like(s, dtype=bool)
    starts[:, 1:] = s[:, 1:] != s[:, :-1]
    del s
    pos = np.arange(n, dtype=np.int64)
    table = torch.special.ndtri((torch.arange(2 * n - 1, dtype=torch.float64) / 2 + 0.5) / n).numpy()
    out = np.empty((u, n), dtype=np.float64)
    if starts.all():  # no ties: the k-th smallest value gets the k-th score, in every unit
        np.put_along_axis(out, order, table[None, ::2], 1)
    else:
        ends = np.ones_like(starts)
        ends[:, :-1] = starts[:, 1:]
        first = np.maximum.accumulate(np.where(starts, pos, 0), axis=1)
        last = np.minimum.accumulate(np.where(ends, pos, n - 1)[:, ::-1], axis=1)[:, ::-1]
        np.put_along_axis(out, order, table[first + last], 1)
    return torch.from_numpy(out).T


def normalize_units(X: Float[Tensor, "worlds units"], normalize: Normalize) -> Float[Tensor, "worlds units"]:
    """The per-unit transform a normalization applies to X (float64), with every world in memory.

    Args:
        X: activations, worlds first.
        normalize: ``none`` (X as it is), ``zscore`` (population z-scores; 0 for constant units) or ``rank``
            (normal scores of the ranks).

    Returns:
        The transformed X in float64.
    """
    X = X.to(torch.float64)
    if normalize == "none":
        return X
    if normalize == "zscore":
        return _zscore(X, X.mean(0), X.std(0, unbiased=False))
    if normalize == "rank":
        return normal_scores(X)
    raise ValueError(f"normalize must be one of {NORMALIZATIONS}, got {normalize!r}")


def _masked_lse(Z: Tensor, mask: Tensor) -> Tensor:
    if not mask.any():
        return torch.full(Z.shape[1:], -torch.inf, dtype=Z.dtype)
    return torch.logsumexp(Z[mask], 0)


# ------------------------------------------------------------------------------------------------ public API


def strength_from_shards(
    shards: Callable[[], Iterable[Tensor]],
    A: Bool[Tensor, " worlds"],
    prior: Tensor | None = None,
    normalize: Normalize = "none",
    unit_blocks: Callable[[int], Iterable[Tensor]] | None = None,
    max_bytes: int = 1 << 30,
) -> tuple[Float[Tensor, "*units"], UnitStats]:
    """D for every unit, streaming X shard by shard over the worlds (rows in world order).

    ``shards`` is a zero-argument callable returning a fresh iterable of row blocks ``X[i:j]`` (each
    [rows, *units]); it is called once for ``normalize="none"`` and twice for ``"zscore"`` (moments first).
    ``"rank"`` needs every world's value of a unit: given ``unit_blocks`` (a callable that, for a block width w,
    returns the column blocks ``X[:, units i..i+w]`` of the flattened units, in order, each [worlds, <= w]) it
    ranks one block at a time, w chosen so that a block's work stays under ``max_bytes``; without it, it
    concatenates the shards (all of X in memory).
    Returns D and the per-unit stats, both with the unit shape, in float64.
    """
    if normalize not in NORMALIZATIONS:
        raise ValueError(f"normalize must be one of {NORMALIZATIONS}, got {normalize!r}")
    A = torch.as_tensor(A)
    n = A.shape[0]
    _check_mask(A, n)
    logb = log_prior(n, prior)
    odds = prior_log_odds(A, logb)

    moments: Moments | None = None
    lse_a = lse_c = None
    shape: tuple[int, ...] = ()
    start = 0
    for shard in shards():
        Xs, shape = _flat(torch.as_tensor(shard))
        _check_finite(Xs)
        stop = start + Xs.shape[0]
        if stop > n:
            raise ValueError(f"shards hold more rows than the proposition has worlds ({n})")
        m = Moments.of(Xs, A[start:stop])
        moments = m if moments is None else moments.merge(m)
        if normalize == "none":
            Z = Xs + logb[start:stop, None]
            la, lc = _masked_lse(Z, A[start:stop]), _masked_lse(Z, ~A[start:stop])
            lse_a = la if lse_a is None else torch.logaddexp(lse_a, la)
            lse_c = lc if lse_c is None else torch.logaddexp(lse_c, lc)
        start = stop
    if moments is None or start != n:
        raise ValueError(f"shards hold {start} rows but the proposition has {n} worlds")

    if normalize == "rank" and unit_blocks is not None:
        width = max(1, max_bytes // (n * RANK_BYTES_PER_VALUE))
        parts_a, parts_c = [], []
        for block in unit_blocks(width):
            Z = normal_scores(torch.as_tensor(block).reshape(n, -1)) + logb[:, None]
            parts_a.append(_masked_lse(Z, A))
            parts_c.append(_masked_lse(Z, ~A))
            del Z
        lse_a, lse_c = torch.cat(parts_a), torch.cat(parts_c)
        if lse_a.shape != moments.mean.shape:
            raise ValueError(f"unit blocks hold {lse_a.numel()} units, the shards {moments.mean.numel()}")
    elif normalize == "rank":
        Xall = torch.cat([_flat(torch.as_tensor(sh))[0] for sh in shards()], 0)
        Z = normal_scores(Xall) + logb[:, None]
        lse_a, lse_c = _masked_lse(Z, A), _masked_lse(Z, ~A)
        del Xall, Z
    if normalize == "zscore":
        mean, std = moments.mean, moments.std
        start = 0
        for shard in shards():
            Xs, _ = _flat(torch.as_tensor(shard))
            stop = start + Xs.shape[0]
            Z = _zscore(Xs, mean, std) + logb[start:stop, None]
            la, lc = _masked_lse(Z, A[start:stop]), _masked_lse(Z, ~A[start:stop])
            lse_a = la if lse_a is None else torch.logaddexp(lse_a, la)
            lse_c = lc if lse_c is None else torch.logaddexp(lse_c, lc)
            start = stop

    assert lse_a is not None and lse_c is not None
    D = 0.5 * (lse_a - lse_c - odds)
    stats = UnitStats(moments.mean, moments.std, moments.mean_a, moments.mean_c)
    unflat = (lambda t: t.reshape(shape)) if shape else (lambda t: t[0])
    return unflat(D), UnitStats(*(unflat(t) for t in (stats.mean, stats.std, stats.mean_a, stats.mean_c)))


def doxastic_strength(
    X: Float[Tensor, " worlds *units"],
    A: Bool[Tensor, " worlds"],
    prior: Tensor | None = None,
    normalize: Normalize = "none",
) -> Float[Tensor, "*units"]:
    """D(x_u, A, b) for every unit u at once.

    Args:
        X: activations, worlds first, any unit shape after; a 1-D ``X`` is one reasons vector.
        A: the proposition, a boolean mask over the worlds (neither empty nor all worlds).
        prior: belief weights b over the worlds (default uniform).
        normalize: ``none`` (the paper), ``zscore`` or ``rank`` (see the module doc).

    Returns:
        D in float64 with X's unit shape (a scalar tensor for a 1-D ``X``).
    """
    _check_mask(torch.as_tensor(A), X.shape[0])
    D, _ = strength_from_shards(lambda: [X], A, prior, normalize)
    return D


def group_strength(
    X: Float[Tensor, "worlds units"],
    A: Bool[Tensor, " worlds"],
    units: Tensor | list[int],
    prior: Tensor | None = None,
) -> float:
    """Strength of a group of units G, interpreted by its summed reasons vector r_G = sum_{u in G} r_u.

    Args:
        X: activations [worlds, units].
        A: the proposition mask.
        units: the unit indices of G (columns of X).
        prior: belief weights over the worlds (default uniform).

    Returns:
        D(r_G, A, b).
    """
    idx = torch.as_tensor(units, dtype=torch.long)
    if idx.numel() == 0:
        raise ValueError("a unit group needs at least one unit")
    r = X.reshape(X.shape[0], -1).to(torch.float64)[:, idx].sum(1)
    return float(doxastic_strength(r, A, prior))


def update(logb: Float[Tensor, " worlds"], x: Float[Tensor, " worlds"]) -> Float[Tensor, " worlds"]:
    """Belief update b*x in log space: softmax(log b + x), returned as log-probabilities."""
    z = logb.to(torch.float64) + x.to(torch.float64)
    return z - torch.logsumexp(z, 0)


def elementary_reason(A: Bool[Tensor, " worlds"]) -> Float[Tensor, " worlds"]:
    """el_A: +1 on A, -1 off A. D(c * el_A, A, b) = c for every b and c."""
    return torch.where(torch.as_tensor(A), 1.0, -1.0).to(torch.float64)
