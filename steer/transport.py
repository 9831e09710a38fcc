"""Per-unit transport maps (pure tensor math): how one side's activations of a unit are carried onto the other's.

For every unit independently, with activations ``source`` [n_s, k] and ``target`` [n_t, k] (one value per world):

- **mean transport**: a' = a + (mu_t - mu_s), a constant shift (CAA in unit coordinates);
- **gaussian transport**: w = sigma_t / sigma_s, b = mu_t - w * mu_s, the optimal map between two normals;
- **linear transport** (Linear-AcT, Rodriguez et al. 2025): sort both sides, pair them by rank (the 1-D optimal
  transport plan; with unequal sizes, the quantiles at the same levels) and fit a' = w * a + b by least squares on
  the pairs.

A rule applies a map with strength lam: a' = (1 - lam) * a + lam * (w * a + b), an affine form with scale
1 - lam + lam * w and shift lam * b (lam = 1 is the map itself, lam = 0 the identity). Fits are computed once from
a recording and stored in the neuron set (:func:`steer.neurons.with_transport`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from jaxtyping import Float
from torch import Tensor

EPS = 1e-6  # a side whose values spread less than this is treated as a point (its map is a shift)


@dataclass(frozen=True)
class SideStats:
    """Per-unit statistics of one side of a proposition (all [k])."""

    mean: Float[Tensor, " k"]
    std: Float[Tensor, " k"]
    lo: Float[Tensor, " k"]  # smallest value on this side (the support of a map from it)
    hi: Float[Tensor, " k"]


def side_stats(x: Float[Tensor, "n k"]) -> SideStats:
    """Mean, (population) std, min and max of every column."""
    if x.ndim != 2 or x.shape[0] < 1:
        raise ValueError(f"side_stats needs [worlds, units] with at least one world, got shape {tuple(x.shape)}")
    x = x.double()
    return SideStats(x.mean(0), x.std(0, correction=0), x.min(0).values, x.max(0).values)


def quantile_pairs(
    source: Float[Tensor, "n_s k"], target: Float[Tensor, "n_t k"]
) -> tuple[Float[Tensor, "n k"], Float[Tensor, "n k"]]:
    """The 1-D optimal transport pairing of every column: both sides at the same ``n = max(n_s, n_t)`` quantile
    levels (i + 0.5) / n (with equal sizes, simply both sides sorted)."""
    if source.ndim != 2 or target.ndim != 2 or source.shape[1] != target.shape[1]:
        raise ValueError(f"source {tuple(source.shape)} and target {tuple(target.shape)} must be [n, k] with one k")
    if source.shape[0] < 2 or target.shape[0] < 2:
        raise ValueError("a transport fit needs at least two worlds on each side")
    s, t = source.double(), target.double()
    if s.shape[0] == t.shape[0]:
        return s.sort(0).values, t.sort(0).values
    n = max(s.shape[0], t.shape[0])
    q = (torch.arange(n, dtype=torch.float64) + 0.5) / n
    return torch.quantile(s, q, dim=0), torch.quantile(t, q, dim=0)


def linear_fit(
    source: Float[Tensor, "n_s k"], target: Float[Tensor, "n_t k"]
) -> tuple[Float[Tensor, " k"], Float[Tensor, " k"]]:
    """(w, b) of the least-squares line through each column's rank-paired values (Linear-AcT); a source column
    that does not vary gets w = 1 (the map is the shift between the two means)."""
    ps, pt = quantile_pairs(source, target)
    ms, mt = ps.mean(0), pt.mean(0)
    var = ((ps - ms) ** 2).mean(0)
    cov = ((ps - ms) * (pt - mt)).mean(0)
    flat = var < EPS**2
    w = torch.where(flat, torch.ones_like(var), cov / torch.where(flat, torch.ones_like(var), var))
    return w, mt - w * ms


def gaussian_fit(source: SideStats, target: SideStats) -> tuple[Float[Tensor, " k"], Float[Tensor, " k"]]:
    """(w, b) of the optimal map between normals with the two sides' means and stds (w = 1 where the source does
    not vary)."""
    flat = source.std < EPS
    w = torch.where(flat, torch.ones_like(source.std), target.std / torch.where(flat, 1.0, source.std))
    return w, target.mean - w * source.mean


def blend(w: Float[Tensor, " k"], b: Float[Tensor, " k"], lam: float) -> tuple[Float[Tensor, " k"], Tensor]:
    """The affine form (scale, shift) of a' = (1 - lam) * a + lam * (w * a + b)."""
    return 1 - lam + lam * w, lam * b
