"""How the steering benchmark reads its test runs, as pure functions (no model code): stratified splits, the test curve
read at exactly the fluency budget, intervals that respect clustered samples, and a multiplicity correction.

- :func:`stratified` draws a split's openings in the same proportions from every group (register), with a fixed
  seed; a smaller size keeps the proportions. :func:`balanced` gives every group (label) an equal share.
- :func:`isotonic` (pool adjacent violators) makes a curve monotone in the knob; :func:`read_at_budget` reads the
  isotonic test curves of the perplexity ratio and of success at the knob where the ratio meets the budget (linear
  interpolation between grid points), or says the curve does not reach it.
- :func:`bootstrap_reads` resamples *openings* (all samples of an opening together: they share the prompt, so they
  are not independent trials) and re-reads every curve at the budget in each resample; two methods run on the same
  openings with the same seeds are resampled with the same indices, so their difference is paired
  (:func:`paired_difference`). :func:`holm` adjusts the p-values of a table's comparisons.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np


def stratified(groups: Sequence[str], n: int | None, seed: int = 0) -> list[int]:
    """Indices of ``n`` items drawn in the proportions of ``groups`` (largest remainder), a seeded random draw within
    each group, returned in their original order. ``n`` None (or the whole size) keeps every item.

    Args:
        groups: the group of every item (e.g. the register of each opening).
        n: how many to keep.
        seed: the draw's seed.

    Returns:
        The kept indices, ascending.
    """
    if n is None or n >= len(groups):
        return list(range(len(groups)))
    members = _members(groups, n)
    exact = {g: n * len(m) / len(groups) for g, m in members.items()}
    take = {g: math.floor(exact[g]) for g in members}
    _spread(take, exact, n, list(members))
    return _draw(members, take, seed)


def balanced(groups: Sequence[str], n: int | None, seed: int = 0) -> list[int]:
    """Like :func:`stratified`, but every group gets an equal share of ``n`` whatever its size: a group with fewer
    items than its share gives all it has and the others share the rest. On groups of equal size it is the same draw
    as :func:`stratified` (e.g. the two sentiments of the opposite openings, whose test split may hold more of one)."""
    if n is None or n >= len(groups):
        return list(range(len(groups)))
    members = _members(groups, n)
    take = dict.fromkeys(members, 0)
    left = n
    while left:  # water-filling: an equal share to every group that still has items
        open_ = [g for g in members if take[g] < len(members[g])]
        share = left // len(open_)
        if share == 0:
            for g in open_[:left]:
                take[g] += 1
            break
        for g in open_:
            add = min(share, len(members[g]) - take[g])
            take[g] += add
            left -= add
    return _draw(members, take, seed)


def _members(groups: Sequence[str], n: int) -> dict[str, list[int]]:
    """Each group's item indices (groups in order of first appearance), for a draw of ``n`` < all of them."""
    if n < 1:
        raise ValueError(f"a split needs at least 1 item, got n={n}")
    names = list(dict.fromkeys(groups))
    return {g: [i for i, x in enumerate(groups) if x == g] for g in names}


def _spread(take: dict[str, int], exact: dict[str, float], n: int, names: list[str]) -> None:
    """Give the items left by rounding down to the groups with the largest remainders (ties: first group first)."""
    left = n - sum(take.values())
    for g in sorted(names, key=lambda g: (-(exact[g] - take[g]), names.index(g)))[:left]:
        take[g] += 1


def _draw(members: dict[str, list[int]], take: dict[str, int], seed: int) -> list[int]:
    """``take[g]`` items of every group, a seeded random draw within each, as ascending indices."""
    rng = np.random.default_rng(seed)
    kept: list[int] = []
    for g, m in members.items():
        order = rng.permutation(len(m))[: take[g]]
        kept += [m[i] for i in order]
    return sorted(kept)


def isotonic(y: Sequence[float] | np.ndarray, increasing: bool = True) -> np.ndarray:
    """The least-squares monotone fit of ``y`` (pool adjacent violators; equal weights)."""
    v = np.asarray(y, dtype=float)
    if not increasing:
        return -isotonic(-v)
    blocks: list[list[float]] = []  # [sum, count]
    for x in v:
        blocks.append([x, 1.0])
        while len(blocks) > 1 and blocks[-2][0] / blocks[-2][1] > blocks[-1][0] / blocks[-1][1]:
            s, c = blocks.pop()
            blocks[-1][0] += s
            blocks[-1][1] += c
    return np.concatenate([np.full(int(c), s / c) for s, c in blocks])


def value_at(knobs: Sequence[float] | np.ndarray, values: Sequence[float] | np.ndarray, knob: float) -> float:
    """The isotonic (increasing) fit of ``values`` over the knob grid, linearly interpolated at ``knob``."""
    f = isotonic(values)
    return float(np.interp(knob, np.asarray(knobs, dtype=float), f))


def read_at_budget(
    knobs: Sequence[float], ratios: Sequence[float], successes: Mapping[str, Sequence[float]], budget: float
) -> dict[str, Any]:
    """Read monotone test curves at the fluency budget.

    Args:
        knobs: the grid of settings, ascending.
        ratios: the test perplexity ratio at each setting.
        successes: {name: success rate at each setting} (each made isotonic in the knob).
        budget: the ratio to read at.

    Returns:
        ``{"reached": True, "knob", "ratio": budget, "success": {name: rate}}`` at the knob where the isotonic ratio
        curve meets the budget (the lowest such knob); else ``{"reached": False, "min_ratio", "max_ratio"}``.
    """
    x = np.asarray(knobs, dtype=float)
    if len(x) < 2 or np.any(np.diff(x) <= 0):
        raise ValueError(f"the knob grid must be at least 2 ascending settings, got {list(knobs)}")
    r = isotonic(ratios)
    lo, hi = float(r[0]), float(r[-1])
    if not (lo <= budget <= hi) or not math.isfinite(hi):
        return {"reached": False, "min_ratio": lo, "max_ratio": hi}
    j = int(np.searchsorted(r, budget, side="left"))
    if j == 0:
        knob = float(x[0])
    else:
        i = j - 1
        w = 0.0 if r[j] == r[i] else (budget - r[i]) / (r[j] - r[i])
        knob = float(x[i] + w * (x[j] - x[i]))
    return {
        "reached": True,
        "knob": knob,
        "ratio": budget,
        "success": {k: value_at(x, v, knob) for k, v in successes.items()},
    }


def perplexity_ratio(nll: np.ndarray, count: np.ndarray, base_nll: np.ndarray, base_count: np.ndarray) -> np.ndarray:
    """Token-weighted perplexity of each grid point's continuations over the unsteered one's.

    Args:
        nll: [grid, ...] summed negative log-likelihood of each continuation under the unsteered model.
        count: [grid, ...] its token count.
        base_nll: [...] the unsteered continuations' NLL.
        base_count: [...] their token counts.

    Returns:
        [grid] ratios.
    """
    g = nll.shape[0]
    base = math.exp(float(base_nll.sum()) / max(float(base_count.sum()), 1.0))
    return np.exp(nll.reshape(g, -1).sum(1) / np.maximum(count.reshape(g, -1).sum(1), 1)) / base


def read_curve(
    curve: Mapping[str, Any],
    base: Mapping[str, Any],
    budget: float,
    index: np.ndarray | None = None,
    index_against: np.ndarray | None = None,
) -> dict[str, Any]:
    """A method's test curve toward one target read at ``budget`` (on the given resample of openings).

    Args:
        curve: ``knobs`` [grid]; ``neutral``: ``nll``, ``count`` [grid, openings, samples] and ``success``
            {scorer: [grid, openings, samples] 0/1}; optionally ``against``: ``success`` {scorer: [grid, openings',
            samples]} (openings of the other sentiment, read at the knob the neutral ratio curve chose).
        base: the unsteered run on the same neutral openings and seeds: ``nll``, ``count`` [openings, samples].
        budget: the ratio to read at.
        index: neutral opening indices of the resample (None: all, once).
        index_against: the same for the ``against`` openings.

    Returns:
        ``{"reached": True, "knob", "success": {"neutral:<scorer>" / "against:<scorer>": rate}}`` or
        ``{"reached": False, "min_ratio", "max_ratio"}``.
    """
    neu = curve["neutral"]
    nll, cnt = np.asarray(neu["nll"], dtype=float), np.asarray(neu["count"], dtype=float)
    bn, bc = np.asarray(base["nll"], dtype=float), np.asarray(base["count"], dtype=float)
    idx = np.arange(nll.shape[1]) if index is None else index
    ratios = perplexity_ratio(nll[:, idx], cnt[:, idx], bn[idx], bc[idx])
    rates = {
        f"neutral:{k}": np.asarray(v, dtype=float)[:, idx].reshape(len(ratios), -1).mean(1)
        for k, v in neu["success"].items()
    }
    read = read_at_budget(curve["knobs"], ratios.tolist(), {k: v.tolist() for k, v in rates.items()}, budget)
    if read["reached"] and curve.get("against"):
        for k, v in curve["against"]["success"].items():
            arr = np.asarray(v, dtype=float)
            ia = np.arange(arr.shape[1]) if index_against is None else index_against
            read["success"][f"against:{k}"] = value_at(
                curve["knobs"], arr[:, ia].reshape(len(ratios), -1).mean(1).tolist(), read["knob"]
            )
    return read


def resample_index(n_openings: int, resamples: int, seed: int) -> np.ndarray:
    """[resamples, n_openings] indices of openings drawn with replacement (the cluster bootstrap)."""
    return np.random.default_rng(seed).integers(0, n_openings, size=(resamples, n_openings))


def interval(values: Sequence[float] | np.ndarray, level: float = 0.95) -> tuple[float, float]:
    """The percentile interval of bootstrap values (NaNs, from resamples that did not reach the budget, dropped)."""
    v = np.asarray([x for x in values if x is not None and math.isfinite(x)], dtype=float)
    if not len(v):
        return math.nan, math.nan
    a = (1 - level) / 2
    return float(np.quantile(v, a)), float(np.quantile(v, 1 - a))


def paired_difference(ours: Sequence[float | None], theirs: Sequence[float | None]) -> dict[str, Any]:
    """The paired bootstrap of a difference of success rates: its mean, 95% interval and two-sided p-value
    (twice the smaller share of resamples on either side of 0; resamples where either side is missing dropped)."""
    d = np.asarray(
        [a - b for a, b in zip(ours, theirs) if a is not None and b is not None and math.isfinite(a - b)], dtype=float
    )
    if not len(d):
        return {"diff": None, "lo": None, "hi": None, "p": None, "n": 0}
    p = min(1.0, 2 * min(float((d <= 0).mean()), float((d >= 0).mean())))
    lo, hi = interval(d)
    return {"diff": float(d.mean()), "lo": lo, "hi": hi, "p": p, "n": len(d)}


def holm(pvalues: Sequence[float]) -> list[float]:
    """Holm's step-down adjusted p-values (same order as given)."""
    p = np.asarray(pvalues, dtype=float)
    m = len(p)
    order = np.argsort(p, kind="stable")
    adjusted = np.empty(m)
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p[i]))
        adjusted[i] = running
    return adjusted.tolist()


def verdict(diff: float | None, p_adjusted: float | None, alpha: float = 0.05) -> str:
    """``win`` / ``lose`` when the Holm-adjusted paired test rejects equality at ``alpha`` (by the difference's sign),
    ``tie`` otherwise, ``n/a`` when either side has no reading."""
    if diff is None or p_adjusted is None:
        return "n/a"
    if p_adjusted < alpha:
        return "win" if diff > 0 else "lose"
    return "tie"
