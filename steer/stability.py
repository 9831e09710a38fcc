"""Stability of neuron explanations: bootstrap over worlds, reusing recorded activations (no forward passes).

Would we find the same units from another sample of worlds? (method.md section 5.) Each of K resamples
draws |A| worlds with replacement from A and |A^c| from A^c (stratified, so both keep their sizes) and
recomputes D for every unit. With multiplicities c_k of world k in a resample and a uniform prior,

    D_b = 1/2 * [ log sum_{k in A} c_k e^{x_k} - log|A| - log sum_{k not in A} c_k e^{x_k} + log|A^c| ]

so all K resamples of a block of units are two matrix products of the count matrix C[K, N] with
exp(x - max) -- vectorised over resamples, chunked over units, never holding [K, all units].

The normalization (``none`` / ``zscore`` / ``rank``) is applied once on all worlds, as for the reported D; the
bootstrap then measures how D's ranking depends on which worlds were sampled.

Reported per unit: percentile intervals of D; per neuron set: how often each unit lands in the top-k for
(and against) A, and the Jaccard similarity of each resample's top-k set with the reported one; and the
Bootstrap Explanation prediction set: the smallest set of units holding a 1 - alpha share of the resamples'
winners (top-1 units). Its coverage guarantee assumes the worlds are an i.i.d. sample of the population of
worlds and a margin between the best unit and the rest (method.md section 5).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor

from steer.strength import _zscore, normal_scores


def bootstrap_counts(A: Bool[Tensor, " worlds"], K: int, seed: int) -> Float[Tensor, "K worlds"]:
    """Multiplicities of each world in K stratified resamples (|A| draws from A, |A^c| from A^c)."""
    A = torch.as_tensor(A, dtype=torch.bool)
    n = A.numel()
    g = torch.Generator().manual_seed(seed)
    C = torch.zeros(K, n, dtype=torch.float64)
    for part in (A.nonzero()[:, 0], (~A).nonzero()[:, 0]):
        draws = part[torch.randint(len(part), (K, len(part)), generator=g)]
        C.scatter_add_(1, draws, torch.ones_like(draws, dtype=torch.float64))
    return C


def bootstrap_strengths(X: Float[Tensor, "worlds units"], A: Bool[Tensor, " worlds"],
                        C: Float[Tensor, "K worlds"]) -> Float[Tensor, "K units"]:
    """D of every unit in every resample given by the count matrix C (uniform prior), float64."""
    A = torch.as_tensor(A, dtype=torch.bool)
    X = X.to(torch.float64)
    out = []
    for part in (A, ~A):
        Xp = X[part]
        M = Xp.max(0).values
        S = C[:, part] @ torch.exp(Xp - M)  # [K, units]
        out.append(torch.log(S) + M - np.log(int(part.sum())))
    return 0.5 * (out[0] - out[1])


def normalized(X: Float[Tensor, "worlds units"], normalize: str) -> Float[Tensor, "worlds units"]:
    """The per-unit transform that the reported D used, applied once on all worlds."""
    X = X.to(torch.float64)
    if normalize == "none":
        return X
    if normalize == "zscore":
        return _zscore(X, X.mean(0), X.std(0, unbiased=False))
    if normalize == "rank":
        return normal_scores(X)
    raise ValueError(f"unknown normalize {normalize!r}")


@dataclass
class Bootstrap:
    """Bootstrap results for one proposition over all units of a recording (units flattened layer-major)."""

    K: int
    seed: int
    k: int
    alpha: float
    normalize: str
    D_lo: Float[Tensor, " units"]  # percentile interval (alpha/2, 1 - alpha/2) of D
    D_hi: Float[Tensor, " units"]
    freq_for: Float[Tensor, " units"]  # share of resamples with the unit in the top-k for A
    freq_against: Float[Tensor, " units"]
    top_for: Int[Tensor, "K k"]  # each resample's top-k for (flat unit indices)
    top_against: Int[Tensor, "K k"]
    winners: Int[Tensor, " K"]  # each resample's top-1 unit for A

    def jaccard(self, reported: list[int], against: bool = False) -> Float[Tensor, " K"]:
        """Jaccard similarity of each resample's top-k set with the reported one."""
        ref = set(reported)
        tops = self.top_against if against else self.top_for
        return torch.tensor([len(ref & set(row)) / len(ref | set(row)) for row in tops.tolist()])

    def prediction_set(self, alpha: float | None = None) -> list[tuple[int, float]]:
        """The smallest set of units holding at least a 1 - alpha share of the bootstrap winners, as
        (flat unit, share) pairs, most frequent first."""
        alpha = self.alpha if alpha is None else alpha
        return prediction_set(self.winners.tolist(), alpha)


def prediction_set(winners: list, alpha: float) -> list[tuple]:
    """Smallest set of candidates whose bootstrap win shares add up to at least 1 - alpha (ties: first seen)."""
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    counts: dict = {}
    for w in winners:
        counts[w] = counts.get(w, 0) + 1
    ranked = sorted(counts.items(), key=lambda kv: -kv[1])
    out, total = [], 0
    for cand, c in ranked:
        out.append((cand, c / len(winners)))
        total += c
        if total >= (1 - alpha) * len(winners) - 1e-9:
            break
    return out


def _chunks(n: int, size: int) -> Iterator[slice]:
    for s in range(0, n, size):
        yield slice(s, min(s + size, n))


def bootstrap(X: Float[Tensor, "worlds units"], A: Bool[Tensor, " worlds"], K: int = 500, k: int = 5,
              alpha: float = 0.1, seed: int = 0, normalize: str = "none", chunk: int = 8192,
              progress: bool = False) -> Bootstrap:
    """K stratified bootstrap resamples of the worlds: D intervals, top-k inclusion, winners, for all units.

    ``X`` is [worlds, units] (flatten [worlds, layers, units] first); memory is O(N x chunk + K x chunk)."""
    from tqdm.auto import tqdm

    A = torch.as_tensor(np.asarray(A), dtype=torch.bool)
    X = X.reshape(X.shape[0], -1)
    n_units = X.shape[1]
    if not 0 < k <= n_units:
        raise ValueError(f"k={k} must be between 1 and the {n_units} units")
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    C = bootstrap_counts(A, K, seed)
    lo, hi = torch.empty(n_units, dtype=torch.float64), torch.empty(n_units, dtype=torch.float64)
    best_v = torch.full((K, k), -torch.inf, dtype=torch.float64)
    best_i = torch.zeros(K, k, dtype=torch.long)
    worst_v = torch.full((K, k), -torch.inf, dtype=torch.float64)  # of -D
    worst_i = torch.zeros(K, k, dtype=torch.long)
    q = torch.tensor([alpha / 2, 1 - alpha / 2], dtype=torch.float64)
    for sl in tqdm(list(_chunks(n_units, chunk)), desc=f"bootstrap K={K}", disable=not progress):
        Db = bootstrap_strengths(normalized(X[:, sl], normalize), A, C)  # [K, chunk]
        lo[sl], hi[sl] = torch.quantile(Db, q, dim=0)
        idx = torch.arange(sl.start, sl.stop).expand(K, -1)
        for vals, inds, sign in ((best_v, best_i, 1.0), (worst_v, worst_i, -1.0)):
            v = torch.cat([vals, sign * Db], 1)
            i = torch.cat([inds, idx], 1)
            top = torch.topk(v, k, dim=1)
            vals.copy_(top.values)
            inds.copy_(torch.gather(i, 1, top.indices))
    freq_for = torch.bincount(best_i.reshape(-1), minlength=n_units).double() / K
    freq_against = torch.bincount(worst_i.reshape(-1), minlength=n_units).double() / K
    return Bootstrap(K, seed, k, alpha, normalize, lo, hi, freq_for, freq_against, best_i, worst_i, best_i[:, 0])


# --------------------------------------------------------------------------------------- synthetic data


def planted(n_worlds: int = 400, n_units: int = 200, n_a: int = 100, planted_for: int = 3, planted_against: int = 3,
            effect: float = 1.5, noise: float = 1.0, seed: int = 0) -> tuple[Tensor, Tensor, list[int], list[int]]:
    """Activations with known ground truth: Gaussian noise, plus ``effect`` on A for the first ``planted_for``
    units and minus ``effect`` on A for the next ``planted_against``. Returns (X, A, for_units, against_units)."""
    if planted_for + planted_against > n_units or not 0 < n_a < n_worlds:
        raise ValueError("need planted_for + planted_against <= n_units and 0 < n_a < n_worlds")
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(n_worlds, n_units, generator=g, dtype=torch.float64) * noise
    A = torch.zeros(n_worlds, dtype=torch.bool)
    A[torch.randperm(n_worlds, generator=g)[:n_a]] = True
    units_for = list(range(planted_for))
    units_against = list(range(planted_for, planted_for + planted_against))
    rows = A.nonzero()[:, 0][:, None]
    X[rows, torch.tensor(units_for, dtype=torch.long)] += effect
    X[rows, torch.tensor(units_against, dtype=torch.long)] -= effect
    return X, A, units_for, units_against


# ------------------------------------------------------------------------------------ neuron-set summary


def summarize(res: Bootstrap, neurons, layers: list[int], width: int) -> dict:
    """What a neuron set stores about its stability: per reported unit the D interval and top-k inclusion
    frequency, the mean Jaccard of resampled top-k sets with the reported ones, and the prediction set."""
    def flat(u) -> int:
        return layers.index(u.layer) * width + u.index

    def unit_of(i: int) -> list[int]:
        return [layers[i // width], i % width]

    out = {"K": res.K, "seed": res.seed, "alpha": res.alpha, "k": res.k, "normalize": res.normalize,
           "interval": f"percentile {100 * res.alpha / 2:g}-{100 * (1 - res.alpha / 2):g}"}
    for side, units, freq, against in (("for", neurons.units_for, res.freq_for, False),
                                       ("against", neurons.units_against, res.freq_against, True)):
        idx = [flat(u) for u in units]
        out[f"units_{side}"] = [{"layer": u.layer, "index": u.index, "freq": float(freq[i]),
                                 "D_lo": float(res.D_lo[i]), "D_hi": float(res.D_hi[i])} for u, i in zip(units, idx)]
        out[f"jaccard_{side}"] = float(res.jaccard(idx, against=against).mean())
    out["prediction_set_for"] = [{"unit": unit_of(i), "share": s} for i, s in res.prediction_set()]
    return out


def bootstrap_neurons(acts, proposition, neurons, K: int = 200, alpha: float = 0.1, seed: int = 0,
                      progress: bool = False) -> dict:
    """Bootstrap a recording for a proposition at the neuron set's k and normalization; store the summary in
    ``neurons.extra["stability"]`` and return it."""
    if neurons.per_layer:
        raise ValueError("stability is computed for whole-model neuron sets (per_layer=False)")
    X = acts.X
    width = X.shape[2]
    res = bootstrap(X.reshape(X.shape[0], -1), np.asarray(proposition.mask), K=K, k=neurons.k, alpha=alpha,
                    seed=seed, normalize=neurons.normalize, progress=progress)
    summary = summarize(res, neurons, list(acts.layers), width)
    neurons.extra["stability"] = summary
    return summary
