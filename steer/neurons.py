"""Scores for a proposition -> neuron sets (the top-k units for and against it), with their provenance.

:class:`UnitScores` holds one ranking score for every recorded unit ([layers, units]), named by ``score``, and
the per-unit statistics a steering rule needs (mean m over the worlds, std, mean on A and on A^c).
:class:`Strengths` is the doxastic case: ``score`` is ``D`` (raw activations, the paper), ``zscore-D`` or
``rank-D``, and :attr:`Strengths.D` is the strength itself. Other scores (``mean-diff``, ``smd``, ``ap``; see
:mod:`steer.selection`) come from :func:`score_units`. :meth:`UnitScores.top` selects a :class:`NeuronSet`: the
k units with the largest score (for A) and the k with the smallest (against A), over all layers or per layer.
Units are addressed as (layer, index) pairs.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import torch
from jaxtyping import Float
from torch import Tensor

from steer.names import D_SCORES  # the doxastic scores and the normalization each applies before D
from steer.neuronset import NeuronSet, Unit
from steer.strength import Normalize, UnitStats, strength_from_shards

if TYPE_CHECKING:
    from steer.propositions import Proposition


class ShardSource(Protocol):
    """What strengths and scores are computed from: a recording's rows of X in shards over the worlds, with its
    provenance (:class:`steer.activations.Activations` is one)."""

    @property
    def site(self) -> str: ...
    @property
    def reduce(self) -> str: ...
    @property
    def layers(self) -> list[int]: ...
    @property
    def model(self) -> dict[str, Any]: ...
    @property
    def worlds(self) -> dict[str, Any]: ...
    @property
    def path(self) -> Path | None: ...
    @property
    def n_worlds(self) -> int: ...
    @property
    def X(self) -> Tensor: ...
    def iter_shards(self) -> Iterator[Tensor]: ...
    def iter_unit_blocks(self, width: int) -> Iterator[Tensor]: ...


def d_score_name(normalize: Normalize) -> str:
    """``none`` -> ``D``, ``zscore`` -> ``zscore-D``, ``rank`` -> ``rank-D``."""
    for name, norm in D_SCORES.items():
        if norm == normalize:
            return name
    raise ValueError(f"unknown normalize {normalize!r}; use one of {', '.join(D_SCORES.values())}")


@dataclass
class UnitScores:
    """One ranking score for every recorded unit of one proposition, with per-unit stats and provenance."""

    values: Float[Tensor, "layers units"]
    score: str
    stats: UnitStats
    layers: list[int]
    site: str
    proposition: dict[str, Any]
    provenance: dict[str, Any]

    def unit(self, layer: int, index: int) -> Unit:
        """The unit at (layer, index) with its score and stats."""
        if layer not in self.layers:
            raise ValueError(f"layer {layer} was not recorded (recorded: {self.layers})")
        j = self.layers.index(layer)
        if not 0 <= index < self.values.shape[1]:
            raise ValueError(f"unit index {index} out of range 0..{self.values.shape[1] - 1}")
        s = self.stats
        v = [float(t[j, index]) for t in (self.values, s.mean, s.std, s.mean_a, s.mean_c)]
        return Unit(layer, index, *v)

    def layer_max(self) -> Tensor:
        return self.values.max(1).values

    def layer_min(self) -> Tensor:
        return self.values.min(1).values

    def restrict(self, layers: Sequence[int]) -> UnitScores:
        """The same scores, keeping only some of the recorded layers."""
        missing = [layer for layer in layers if layer not in self.layers]
        if missing:
            raise ValueError(f"layer(s) {missing} were not recorded (recorded: {self.layers})")
        idx = [self.layers.index(layer) for layer in layers]
        st = self.stats
        return replace(
            self,
            values=self.values[idx],
            layers=list(layers),
            stats=UnitStats(st.mean[idx], st.std[idx], st.mean_a[idx], st.mean_c[idx]),
        )

    def random(self, k: int, seed: int = 0) -> NeuronSet:
        """A control: k random units 'for' and k other random units 'against' (same stats, random choice)."""
        width = self.values.shape[1]
        if isinstance(k, bool) or not isinstance(k, int) or k < 1 or 2 * k > self.values.numel():
            raise ValueError(f"random control needs 1 <= k <= {self.values.numel() // 2}, got {k!r}")
        if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
            raise ValueError(f"seed must be an integer >= 0, got {seed!r}")
        g = torch.Generator().manual_seed(seed)
        flat = torch.randperm(self.values.numel(), generator=g)[: 2 * k].tolist()
        units = [self.unit(self.layers[i // width], i % width) for i in flat]
        prop = {**self.proposition, "name": f"random(k={k},seed={seed}) for {self.proposition['name']}"}
        return NeuronSet(
            units[:k],
            units[k:],
            self.site,
            self.score,
            k,
            False,
            prop,
            self.provenance,
            {"control": "random", "seed": seed},
        )

    def top(self, k: int = 5, per_layer: bool = False) -> NeuronSet:
        """The k units with the largest score (for A) and the k with the smallest (against A).

        Args:
            k: units on each side.
            per_layer: k of each in every recorded layer instead of k over all layers.

        Returns:
            A :class:`NeuronSet`.
        """
        if not isinstance(per_layer, bool):
            raise TypeError(f"per_layer must be True or False, got {per_layer!r}")
        n_units = self.values.shape[1] if per_layer else self.values.numel()
        if not isinstance(k, int) or isinstance(k, bool) or k < 1:
            raise ValueError(f"k must be a positive integer, got {k!r}")
        where = "per layer" if per_layer else "recorded"
        if k > n_units:
            raise ValueError(f"k={k} is larger than the {n_units} units {where}")
        if 2 * k > n_units:
            raise ValueError(
                f"k={k} for and k={k} against are more than the {n_units} units {where}: some units would be both "
                f"for and against; use k <= {n_units // 2}"
            )
        spread = self.values.max() - self.values.min()
        if not bool(spread > 1e-9):  # D of identical value sets differs only by rounding (~1e-16)
            raise ValueError(
                f"every unit has the same {self.score} ({float(self.values.max()):g}) for "
                f"{self.proposition['name']!r}: a top-k would be arbitrary. Are the worlds in A and outside it the "
                "same prompts (identical texts with contradictory labels)?"
            )
        pairs_for: list[tuple[int, int]] = []
        pairs_against: list[tuple[int, int]] = []
        width = self.values.shape[1]
        if per_layer:
            for j in range(len(self.layers)):
                pairs_for += [(j, i) for i in torch.topk(self.values[j], k).indices.tolist()]
                pairs_against += [(j, i) for i in torch.topk(-self.values[j], k).indices.tolist()]
        else:
            flat = self.values.reshape(-1)
            pairs_for = [divmod(i, width) for i in torch.topk(flat, k).indices.tolist()]
            pairs_against = [divmod(i, width) for i in torch.topk(-flat, k).indices.tolist()]
        units_for = [self.unit(self.layers[j], i) for j, i in pairs_for]
        units_against = [self.unit(self.layers[j], i) for j, i in pairs_against]
        return NeuronSet(
            units_for, units_against, self.site, self.score, k, per_layer, self.proposition, self.provenance
        )


@dataclass
class Strengths(UnitScores):
    """The doxastic strength D[layers, units] of every recorded unit for one proposition (``score`` is ``D``,
    ``zscore-D`` or ``rank-D``)."""

    @classmethod
    def compute(
        cls, acts: ShardSource, proposition: Proposition, prior: Tensor | None = None, normalize: Normalize = "none"
    ) -> Strengths:
        """D of every unit of a recording (streamed shard by shard); see
        :meth:`steer.activations.Activations.strength`."""
        mask = torch.as_tensor(np.asarray(proposition.mask))
        if mask.shape[0] != acts.n_worlds:
            raise ValueError(
                f"proposition {proposition.name!r} has {mask.shape[0]} worlds, the recording {acts.n_worlds}"
            )
        blocks = acts.iter_unit_blocks if acts.path is not None else None  # on disk: rank in bounded memory
        D, stats = strength_from_shards(acts.iter_shards, mask, prior, normalize, unit_blocks=blocks)
        prop = {
            "name": proposition.name,
            "description": proposition.description,
            "size": int(mask.sum()),
            "n_worlds": int(mask.numel()),
            "prior": "uniform" if prior is None else "custom",
        }
        prov = {"model": acts.model, "worlds": acts.worlds, "reduce": acts.reduce}
        return cls(D, d_score_name(normalize), stats, list(acts.layers), acts.site, prop, prov)

    @property
    def D(self) -> Float[Tensor, "layers units"]:
        """The doxastic strengths (the same tensor as ``values``)."""
        return self.values

    @property
    def normalize(self) -> Normalize:
        """The normalization applied to the activations before D."""
        return D_SCORES[self.score]

    def rescored(self, values: Float[Tensor, "layers units"], score: str) -> UnitScores:
        """The same units and stats ranked by another score (large = for A)."""
        if values.shape != self.values.shape:
            raise ValueError(f"score has shape {tuple(values.shape)}, expected {tuple(self.values.shape)}")
        return UnitScores(
            values.to(self.values.dtype), score, self.stats, self.layers, self.site, self.proposition, self.provenance
        )


def score_units(
    acts: ShardSource, proposition: Proposition, score: str = "rank-D", raw: Strengths | None = None
) -> UnitScores:
    """Scores of every recorded unit for a proposition by one of ``selection.SCORES``.

    Args:
        acts: the recording.
        proposition: a proposition over its worlds.
        score: ``D`` (raw activations, the paper), ``zscore-D``, ``rank-D`` (all :class:`Strengths`), or a
            non-doxastic score: ``mean-diff``, ``smd``, ``ap`` (see :mod:`steer.selection`).
        raw: ``Strengths.compute`` of the same recording and proposition with normalize="none", reused when
            given, so comparing several scores computes raw D and the stats once.

    Returns:
        The scores; per-unit stats are always those of the raw activations.
    """
    from steer import selection
    from steer.propositions import Proposition

    if not all(hasattr(acts, a) for a in ("iter_shards", "n_worlds", "layers")):
        raise TypeError(f"acts must be a recording (steer.Activations, from steer.record), got {type(acts).__name__}")
    if not isinstance(proposition, Proposition):
        raise TypeError(
            f"proposition must be a steer.Proposition (e.g. worlds.proposition('positive')), got "
            f"{type(proposition).__name__}"
        )
    if not isinstance(score, str) or score not in selection.SCORES:
        raise ValueError(f"unknown selection score {score!r}; use one of {', '.join(selection.SCORES)}")
    if raw is not None and (raw.score != "D" or raw.proposition["name"] != proposition.name):
        raise ValueError("raw must be the un-normalized Strengths of the same proposition")
    if score in ("zscore-D", "rank-D"):
        return Strengths.compute(acts, proposition, normalize=D_SCORES[score])
    base = raw if raw is not None else Strengths.compute(acts, proposition, normalize="none")
    if score == "D":
        return base
    st = base.stats
    if score == "mean-diff":
        values = selection.mean_difference(st.mean_a, st.mean_c)
    elif score == "smd":
        values = selection.standardized_mean_difference(st.mean_a, st.mean_c, st.std)
    else:
        X = acts.X
        n, n_layers, width = X.shape
        mask = torch.as_tensor(np.asarray(proposition.mask))
        values = selection.ap_score(X.reshape(n, n_layers * width), mask).reshape(n_layers, width)
    return base.rescored(values, score)


def with_transport(neurons: NeuronSet, acts: ShardSource, proposition: Proposition) -> NeuronSet:
    """The neuron set with the transport statistics of every unit, from the recording it was selected on: per side
    (A and A^c) the std and range, and the linear-transport fits of the map onto A and onto A^c
    (:mod:`steer.transport`). Only the selected units' columns are read (shard by shard).

    Args:
        neurons: a set selected from ``acts`` (same site and layers).
        acts: the recording.
        proposition: the proposition the set was selected for (over the recording's worlds).

    Returns:
        A new neuron set; ``extra["transport"]`` says how the statistics were made.
    """
    from steer.transport import linear_fit, side_stats

    if not isinstance(neurons, NeuronSet):
        raise TypeError(f"neurons must be a steer.NeuronSet, got {type(neurons).__name__}")
    mask = torch.as_tensor(np.asarray(proposition.mask), dtype=torch.bool)
    if mask.shape[0] != acts.n_worlds:
        raise ValueError(f"proposition {proposition.name!r} has {mask.shape[0]} worlds, the recording {acts.n_worlds}")
    if neurons.site != acts.site:
        raise ValueError(f"the neuron set is at site {neurons.site!r}, the recording at {acts.site!r}")
    if int(mask.sum()) < 2 or int((~mask).sum()) < 2:
        raise ValueError(f"proposition {proposition.name!r} needs at least two worlds in it and two outside it")
    units = neurons.units_for + neurons.units_against
    missing = sorted({u.layer for u in units} - set(acts.layers))
    if missing:
        raise ValueError(f"the neuron set has layer(s) {missing} the recording does not have ({acts.layers})")
    lj = torch.tensor([acts.layers.index(u.layer) for u in units])
    ui = torch.tensor([u.index for u in units])
    cols = torch.cat([shard[:, lj, ui].double() for shard in acts.iter_shards()])  # [worlds, units]
    on_a, on_c = cols[mask], cols[~mask]
    sa, sc = side_stats(on_a), side_stats(on_c)
    (w_a, b_a), (w_c, b_c) = linear_fit(on_c, on_a), linear_fit(on_a, on_c)
    stats = torch.stack([sa.std, sc.std, sa.lo, sa.hi, sc.lo, sc.hi, w_a, b_a, w_c, b_c], 1).tolist()
    fields = ("std_a", "std_c", "lo_a", "hi_a", "lo_c", "hi_c", "w_a", "b_a", "w_c", "b_c")
    new = [replace(u, **dict(zip(fields, row))) for u, row in zip(units, stats)]
    n = len(neurons.units_for)
    extra = {
        **neurons.extra,
        "transport": {
            "fit": "per side std and range; linear map by least squares on rank-paired values (1-D OT)",
            "worlds": {"A": int(mask.sum()), "not A": int((~mask).sum())},
        },
    }
    return replace(neurons, units_for=new[:n], units_against=new[n:], extra=extra)
