"""Stability of neuron explanations: bootstrap over worlds, reusing recorded activations (no forward passes).

Would we find the same units from another sample of worlds? (docs/method.md section 5.) Each of the K resamples
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
worlds and a margin between the best unit and the rest (docs/method.md section 5).
"""

from __future__ import annotations

from collections.abc import Hashable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np
import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor

from steer.neurons import D_SCORES
from steer.strength import Normalize, normalize_units

if TYPE_CHECKING:
    from steer.activations import Activations
    from steer.neuronset import NeuronSet, Unit
    from steer.propositions import Proposition

Candidate = TypeVar("Candidate", bound=Hashable)


def bootstrap_counts(A: Bool[Tensor, " worlds"] | int, resamples: int, seed: int) -> Float[Tensor, "resamples worlds"]:
    """Multiplicities of each world in bootstrap resamples of the worlds.

    Args:
        A: a proposition mask for stratified resamples (|A| draws from A, |A^c| from A^c), or the number of
            worlds N for plain resamples (N draws from all worlds).
        resamples: how many resamples (K).
        seed: the random seed.

    Returns:
        C[K, N]: how often each world is drawn in each resample.
    """
    if isinstance(A, int):
        n, parts = A, [torch.arange(A)]
    else:
        mask = torch.as_tensor(A, dtype=torch.bool)
        n, parts = mask.numel(), [mask.nonzero()[:, 0], (~mask).nonzero()[:, 0]]
    g = torch.Generator().manual_seed(seed)
    C = torch.zeros(resamples, n, dtype=torch.float64)
    for part in parts:
        draws = part[torch.randint(len(part), (resamples, len(part)), generator=g)]
        C.scatter_add_(1, draws, torch.ones_like(draws, dtype=torch.float64))
    return C


def bootstrap_strengths(
    X: Float[Tensor, "worlds units"], A: Bool[Tensor, " worlds"], C: Float[Tensor, "resamples worlds"]
) -> Float[Tensor, "resamples units"]:
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


@dataclass
class Bootstrap:
    """Bootstrap results for one proposition over all units of a recording (units flattened layer-major)."""

    resamples: int
    seed: int
    k: int
    alpha: float
    normalize: Normalize
    D_lo: Float[Tensor, " units"]  # percentile interval (alpha/2, 1 - alpha/2) of D
    D_hi: Float[Tensor, " units"]
    freq_for: Float[Tensor, " units"]  # share of resamples with the unit in the top-k for A
    freq_against: Float[Tensor, " units"]
    top_for: Int[Tensor, "resamples k"]  # each resample's top-k for (flat unit indices)
    top_against: Int[Tensor, "resamples k"]
    winners: Int[Tensor, " resamples"]  # each resample's top-1 unit for A

    def jaccard(self, reported: list[int], against: bool = False) -> Float[Tensor, " resamples"]:
        """Jaccard similarity of each resample's top-k set with the reported one."""
        ref = set(reported)
        tops = self.top_against if against else self.top_for
        return torch.tensor([len(ref & set(row)) / len(ref | set(row)) for row in tops.tolist()])

    def prediction_set(self, alpha: float | None = None) -> list[tuple[int, float]]:
        """The smallest set of units holding at least a 1 - alpha share of the bootstrap winners, as
        (flat unit, share) pairs, most frequent first."""
        alpha = self.alpha if alpha is None else alpha
        return prediction_set(self.winners.tolist(), alpha)


def prediction_set(winners: Sequence[Candidate], alpha: float) -> list[tuple[Candidate, float]]:
    """Smallest set of candidates whose bootstrap win shares add up to at least 1 - alpha (ties: first seen)."""
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    counts: dict[Candidate, int] = {}
    for w in winners:
        counts[w] = counts.get(w, 0) + 1
    ranked = sorted(counts.items(), key=lambda kv: -kv[1])
    out: list[tuple[Candidate, float]] = []
    total = 0
    for cand, c in ranked:
        out.append((cand, c / len(winners)))
        total += c
        if total >= (1 - alpha) * len(winners) - 1e-9:
            break
    return out


def _chunks(n: int, size: int) -> Iterator[slice]:
    for s in range(0, n, size):
        yield slice(s, min(s + size, n))


def bootstrap(
    X: Float[Tensor, "worlds units"],
    A: Bool[Tensor, " worlds"] | np.ndarray,
    resamples: int = 500,
    k: int = 5,
    alpha: float = 0.1,
    seed: int = 0,
    normalize: Normalize = "none",
    chunk: int = 8192,
    progress: bool = False,
) -> Bootstrap:
    """Stratified bootstrap resamples of the worlds: D intervals, top-k inclusion, winners, for all units.

    Args:
        X: activations [worlds, units] (flatten [worlds, layers, units] first).
        A: the proposition mask.
        resamples: how many resamples (K).
        k: the top-k size whose inclusion frequencies are counted.
        alpha: the interval and prediction-set level.
        seed: the random seed.
        normalize: the normalization of the reported D, applied once on all worlds.
        chunk: units per block (memory is O(N x chunk + K x chunk)).
        progress: show a progress bar.

    Returns:
        A :class:`Bootstrap`.
    """
    from tqdm.auto import tqdm

    K = resamples
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
        Db = bootstrap_strengths(normalize_units(X[:, sl], normalize), A, C)  # [K, chunk]
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


# ------------------------------------------------------------------------------------ neuron-set summary


def summarize(res: Bootstrap, neurons: NeuronSet, layers: list[int], width: int) -> dict[str, Any]:
    """What a neuron set stores about its stability: per reported unit the interval of its D and its top-k
    inclusion frequency, the mean Jaccard of resampled top-k sets with the reported ones, and the prediction set."""

    def flat(u: Unit) -> int:
        return layers.index(u.layer) * width + u.index

    def unit_of(i: int) -> list[int]:
        return [layers[i // width], i % width]

    out: dict[str, Any] = {
        "resamples": res.resamples,
        "seed": res.seed,
        "alpha": res.alpha,
        "k": res.k,
        "normalize": res.normalize,
        "interval": f"percentile {100 * res.alpha / 2:g}-{100 * (1 - res.alpha / 2):g}",
    }
    for side, units, freq, against in (
        ("for", neurons.units_for, res.freq_for, False),
        ("against", neurons.units_against, res.freq_against, True),
    ):
        idx = [flat(u) for u in units]
        out[f"units_{side}"] = [
            {
                "layer": u.layer,
                "index": u.index,
                "freq": float(freq[i]),
                "lo": float(res.D_lo[i]),
                "hi": float(res.D_hi[i]),
            }
            for u, i in zip(units, idx)
        ]
        out[f"jaccard_{side}"] = float(res.jaccard(idx, against=against).mean())
    out["prediction_set_for"] = [{"unit": unit_of(i), "share": s} for i, s in res.prediction_set()]
    return out


def bootstrap_neurons(
    acts: Activations,
    proposition: Proposition,
    neurons: NeuronSet,
    resamples: int = 200,
    alpha: float = 0.1,
    seed: int = 0,
    progress: bool = False,
) -> dict[str, Any]:
    """Bootstrap a recording for a proposition at a doxastic neuron set's k and score.

    Args:
        acts: the recording the neuron set was found on.
        proposition: its proposition.
        neurons: a whole-model neuron set with a doxastic score (D, zscore-D, rank-D).
        resamples: stratified bootstrap resamples of the worlds.
        alpha: interval and prediction-set level.
        seed: the random seed.
        progress: show a progress bar.

    Returns:
        The stability summary, also stored in ``neurons.extra["stability"]``.
    """
    if neurons.per_layer:
        raise ValueError("stability is computed for whole-model neuron sets (per_layer=False)")
    if neurons.score not in D_SCORES:
        raise ValueError(f"stability is computed for doxastic scores ({', '.join(D_SCORES)}), not {neurons.score!r}")
    X = acts.X
    width = X.shape[2]
    res = bootstrap(
        X.reshape(X.shape[0], -1),
        np.asarray(proposition.mask),
        resamples=resamples,
        k=neurons.k,
        alpha=alpha,
        seed=seed,
        normalize=D_SCORES[neurons.score],
        progress=progress,
    )
    summary = summarize(res, neurons, list(acts.layers), width)
    neurons.extra["stability"] = summary
    return summary
