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

import copy
import math
import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import torch
from jaxtyping import Float
from torch import Tensor

from steer.artifacts import (
    FORMAT_VERSION,
    IDENTITY_KEYS,
    ArtifactMismatchError,
    check_model,
    check_replaceable,
    check_site,
    read_json,
    sealed,
    unseal,
    write_json_atomic,
)
from steer.strength import Normalize, UnitStats, strength_from_shards

if TYPE_CHECKING:
    from steer.models import Model
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


# The doxastic scores and the normalization each applies before D.
D_SCORES: dict[str, Normalize] = {"D": "none", "zscore-D": "zscore", "rank-D": "rank"}


def d_score_name(normalize: Normalize) -> str:
    """``none`` -> ``D``, ``zscore`` -> ``zscore-D``, ``rank`` -> ``rank-D``."""
    for name, norm in D_SCORES.items():
        if norm == normalize:
            return name
    raise ValueError(f"unknown normalize {normalize!r}; use one of {', '.join(D_SCORES.values())}")


@dataclass(frozen=True)
class Unit:
    """One unit of a hook site: its address, its ranking score, and what the worlds say about it."""

    layer: int
    index: int
    score: float  # the neuron set's ranking score (D for a doxastic set)
    mean: float  # m, the mean over all worlds
    std: float
    mean_a: float  # mean on A
    mean_c: float  # mean on A^c


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
        if not isinstance(k, int) or k < 1 or 2 * k > self.values.numel():
            raise ValueError(f"random control needs 1 <= k <= {self.values.numel() // 2}, got {k!r}")
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


@dataclass
class NeuronSet:
    """Top-k units for and against a proposition, at one site, with the score and provenance they were found by."""

    units_for: list[Unit]
    units_against: list[Unit]
    site: str
    score: str
    k: int
    per_layer: bool
    proposition: dict[str, Any]
    provenance: dict[str, Any]
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def model_identity(self) -> dict[str, Any]:
        return {k: self.provenance["model"].get(k) for k in IDENTITY_KEYS}

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise ArtifactMismatchError unless every field makes sense: both sides non-empty, units of integers
        >= 0 with finite statistics and a std >= 0 (a negative std would silently reverse a push that divides by
        it), a named site, a k >= 1 and a named proposition. Called on construction, on load and by everything that
        steers with a set (it may have been changed since)."""
        problems = []
        if not isinstance(self.units_for, list) or not isinstance(self.units_against, list):
            raise ArtifactMismatchError("invalid neuron set: units_for and units_against must be lists of Unit")
        if not all(isinstance(u, Unit) for u in self.units_for + self.units_against):
            raise ArtifactMismatchError("invalid neuron set: units_for and units_against must be lists of Unit")
        if not isinstance(self.site, str) or not self.site:
            problems.append(f"site {self.site!r} is not a name")
        if isinstance(self.k, bool) or not isinstance(self.k, int) or self.k < 1:
            problems.append(f"k {self.k!r} is not a positive integer")
        if not isinstance(self.proposition, dict) or not isinstance(self.proposition.get("name"), str):
            problems.append("the proposition has no name")
        if not isinstance(self.provenance, dict):
            problems.append("the provenance is not a mapping")
        if not self.units_for or not self.units_against:
            problems.append("a side is empty (it needs units for and against)")
        for side, units in (("for", self.units_for), ("against", self.units_against)):
            for u in units:
                if not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in (u.layer, u.index)):
                    problems.append(f"unit {side} ({u.layer!r}, {u.index!r}) is not a (layer, index) of integers >= 0")
                    break
                stats = (u.score, u.mean, u.std, u.mean_a, u.mean_c)
                if not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in stats):
                    problems.append(f"unit {side} ({u.layer}, {u.index}) has a non-finite statistic {stats}")
                    break
                if u.std < 0:
                    problems.append(f"unit {side} ({u.layer}, {u.index}) has a negative std {u.std:g}")
                    break
        if problems:
            raise ArtifactMismatchError(f"invalid neuron set: {'; '.join(problems)}")

    def check_compatible(self, model: Model | Mapping[str, Any], site: str | None = None) -> None:
        """Raise ArtifactMismatchError unless made with this model (a Model or its identity dict) and site, and
        every unit exists in the model (and :meth:`validate` passes)."""
        self.validate()
        check_site(self.site, site, "neuron set")
        identity = model if isinstance(model, Mapping) else model.identity
        check_model(self.model_identity, identity, "neuron set")
        n_layers = identity.get("n_layers")
        width = identity.get("d_mlp" if self.site == "mlp" else "d_model")
        outside = [
            (u.layer, u.index)
            for u in self.units_for + self.units_against
            if (n_layers is not None and u.layer >= n_layers) or (width is not None and u.index >= width)
        ]
        if outside:
            raise ArtifactMismatchError(
                f"neuron set has {len(outside)} unit(s) outside the model ({n_layers} layers x {width} units at "
                f"site {self.site}), e.g. {outside[0]}"
            )

    def copy(self) -> NeuronSet:
        """An independent copy (its lists and dicts are new)."""
        return copy.deepcopy(self)

    def head(self, n: int) -> NeuronSet:
        """The first n units of each side (the strongest), as a neuron set of k = n."""
        return replace(self, units_for=self.units_for[:n], units_against=self.units_against[:n], k=min(n, self.k))

    def table(self, side: str = "for") -> str:
        """A text table of the units of one side (``for`` or ``against``); with stability results, the bootstrap
        interval of each unit's score and its top-k frequency."""
        if side not in ("for", "against"):
            raise ValueError(f"side must be 'for' or 'against', got {side!r}")
        units = self.units_for if side == "for" else self.units_against
        stab = self.extra.get("stability", {}).get(f"units_{side}")
        head = f"{'rank':>4} {'layer':>5} {'unit':>6} {self.score:>9} {'mean m':>9} {'mean A':>9} {'mean ~A':>9}"
        head += f" {'std':>8}"
        if stab:
            head += f" {self.score + ' interval':>19} {'top-k freq':>10}"
        lines = [head]
        for r, u in enumerate(units, 1):
            line = (
                f"{r:>4} {u.layer:>5} {u.index:>6} {u.score:>9.4f} {u.mean:>9.4f} {u.mean_a:>9.4f} "
                f"{u.mean_c:>9.4f} {u.std:>8.4f}"
            )
            if stab:
                s = stab[r - 1]
                interval = "[{:.3f}, {:.3f}]".format(s["lo"], s["hi"])
                line += f" {interval:>19} {s['freq']:>10.2f}"
            lines.append(line)
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": "neuron_set",
            "format": FORMAT_VERSION,
            "site": self.site,
            "score": self.score,
            "k": self.k,
            "per_layer": self.per_layer,
            "proposition": self.proposition,
            "provenance": self.provenance,
            "extra": self.extra,
            "units_for": [asdict(u) for u in self.units_for],
            "units_against": [asdict(u) for u in self.units_against],
        }

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the neuron set as JSON (atomically), with the sha256 of its content that :meth:`load` checks, and
        return the path. An existing file is replaced only when it is a steer artifact."""
        check_replaceable(path, "the neuron set file", folder=False)
        return write_json_atomic(path, sealed(self.to_dict()))

    @classmethod
    def load(cls, path: str | os.PathLike[str], model: Model | None = None, site: str | None = None) -> NeuronSet:
        """Read a saved neuron set; with ``model``/``site`` given, refuse one made with another model or site.

        Its fields are checked (:meth:`validate`), then its content against the sha256 written with it: an edited
        unit, statistic or relabelled proposition is an ArtifactMismatchError."""
        raw = read_json(path, "neuron_set")
        d = {k: v for k, v in raw.items() if k != "sha256"}
        try:
            ns = cls(
                [Unit(**u) for u in d["units_for"]],
                [Unit(**u) for u in d["units_against"]],
                d["site"],
                d["score"],
                d["k"],
                d["per_layer"],
                d["proposition"],
                d["provenance"],
                d.get("extra", {}),
            )
            ns.model_identity  # noqa: B018 - the provenance must name the model
        except (KeyError, TypeError, AttributeError) as e:
            raise ArtifactMismatchError(f"{path} is not a complete neuron set ({type(e).__name__}: {e})") from None
        unseal(raw, f"neuron set {path}")
        if site is not None:
            check_site(ns.site, site, f"neuron set {path}")
        if model is not None:
            ns.check_compatible(model)
        return ns


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

    if score not in selection.SCORES:
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
