"""Strengths for a proposition -> neuron sets (top-k units for and against it), with their provenance.

:class:`Strengths` holds D for every recorded unit ([layers, units]) and the per-unit statistics a steering
rule needs (mean m over the worlds, std, mean on A and on A^c). :meth:`Strengths.top` selects a
:class:`NeuronSet`: the k units with the largest D (for A) and the k with the smallest (against A), over all
layers or per layer. Units are addressed as (layer, index) pairs.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from jaxtyping import Float
from torch import Tensor

from steer.artifacts import FORMAT_VERSION, check_model, check_site, read_json, write_json_atomic
from steer.strength import UnitStats, strength_from_shards


@dataclass(frozen=True)
class Unit:
    """One unit of a hook site: its address and what the worlds say about it."""

    layer: int
    index: int
    D: float
    mean: float  # m, the mean over all worlds
    std: float
    mean_a: float  # mean on A
    mean_c: float  # mean on A^c


@dataclass
class Strengths:
    """D[layers, units] for one proposition, with per-unit stats and the provenance of the recording."""

    D: Float[Tensor, "layers units"]
    stats: UnitStats
    layers: list[int]
    site: str
    normalize: str
    proposition: dict[str, Any]
    provenance: dict[str, Any]

    @classmethod
    def compute(cls, acts: Any, proposition: Any, prior: Tensor | None = None, normalize: str = "none") -> "Strengths":
        mask = torch.as_tensor(np.asarray(proposition.mask))
        if mask.shape[0] != acts.n_worlds:
            raise ValueError(f"proposition {proposition.name!r} has {mask.shape[0]} worlds, the recording {acts.n_worlds}")
        D, stats = strength_from_shards(acts.iter_shards, mask, prior, normalize)
        prop = {"name": proposition.name, "description": proposition.description, "size": int(mask.sum()),
                "n_worlds": int(mask.numel()), "prior": "uniform" if prior is None else "custom"}
        prov = {"model": acts.model, "worlds": acts.worlds, "position": acts.position}
        return cls(D, stats, list(acts.layers), acts.site, normalize, prop, prov)

    def unit(self, layer: int, index: int) -> Unit:
        if layer not in self.layers:
            raise ValueError(f"layer {layer} was not recorded (recorded: {self.layers})")
        j = self.layers.index(layer)
        if not 0 <= index < self.D.shape[1]:
            raise ValueError(f"unit index {index} out of range 0..{self.D.shape[1] - 1}")
        s = self.stats
        return Unit(layer, index, *(float(t[j, index]) for t in (self.D, s.mean, s.std, s.mean_a, s.mean_c)))

    def layer_max(self) -> Tensor:
        return self.D.max(1).values

    def layer_min(self) -> Tensor:
        return self.D.min(1).values

    def restrict(self, layers: list[int]) -> "Strengths":
        """The same strengths, keeping only some of the recorded layers."""
        from dataclasses import replace

        missing = [layer for layer in layers if layer not in self.layers]
        if missing:
            raise ValueError(f"layer(s) {missing} were not recorded (recorded: {self.layers})")
        idx = [self.layers.index(layer) for layer in layers]
        st = self.stats
        return replace(self, D=self.D[idx], layers=list(layers),
                       stats=UnitStats(st.mean[idx], st.std[idx], st.mean_a[idx], st.mean_c[idx]))

    def rescored(self, score: Float[Tensor, "layers units"], name: str) -> "Strengths":
        """The same units and stats ranked by another score (large = for A); ``normalize`` records its name, and
        the units' ``D`` field then holds that score."""
        from dataclasses import replace

        if score.shape != self.D.shape:
            raise ValueError(f"score has shape {tuple(score.shape)}, expected {tuple(self.D.shape)}")
        return replace(self, D=score.to(self.D.dtype), normalize=name)

    def random(self, k: int, seed: int = 0) -> "NeuronSet":
        """A control: k random units 'for' and k other random units 'against' (same stats, random choice)."""
        width = self.D.shape[1]
        if not isinstance(k, int) or k < 1 or 2 * k > self.D.numel():
            raise ValueError(f"random control needs 1 <= k <= {self.D.numel() // 2}, got {k!r}")
        g = torch.Generator().manual_seed(seed)
        flat = torch.randperm(self.D.numel(), generator=g)[:2 * k].tolist()
        units = [self.unit(self.layers[i // width], i % width) for i in flat]
        prop = {**self.proposition, "name": f"random(k={k},seed={seed}) for {self.proposition['name']}"}
        return NeuronSet(units[:k], units[k:], self.site, self.normalize, k, False, prop, self.provenance,
                         {"control": "random", "seed": seed})

    def top(self, k: int = 5, per_layer: bool = False) -> "NeuronSet":
        """The k units with the largest D (for) and the k with the smallest D (against), over all recorded
        layers, or k of each in every layer with ``per_layer=True``."""
        n_units = self.D.shape[1] if per_layer else self.D.numel()
        if not isinstance(k, int) or k < 1:
            raise ValueError(f"k must be a positive integer, got {k!r}")
        if k > n_units:
            raise ValueError(f"k={k} is larger than the {n_units} units {'per layer' if per_layer else 'recorded'}")
        flat_for: list[tuple[int, int]] = []
        flat_against: list[tuple[int, int]] = []
        blocks = [(j, self.D[j]) for j in range(len(self.layers))] if per_layer else [(None, self.D.reshape(-1))]
        width = self.D.shape[1]
        for j, d in blocks:
            hi = torch.topk(d, k).indices.tolist()
            lo = torch.topk(-d, k).indices.tolist()
            to_pair = (lambda i, j=j: (j, i)) if j is not None else (lambda i: divmod(i, width))
            flat_for += [to_pair(i) for i in hi]
            flat_against += [to_pair(i) for i in lo]
        units_for = [self.unit(self.layers[j], i) for j, i in flat_for]
        units_against = [self.unit(self.layers[j], i) for j, i in flat_against]
        return NeuronSet(units_for, units_against, self.site, self.normalize, k, per_layer, self.proposition,
                         self.provenance)


@dataclass
class NeuronSet:
    """Top-k units for and against a proposition, at one site, with the provenance they were found under."""

    units_for: list[Unit]
    units_against: list[Unit]
    site: str
    normalize: str
    k: int
    per_layer: bool
    proposition: dict[str, Any]
    provenance: dict[str, Any]
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def model_identity(self) -> dict[str, Any]:
        from steer.models import IDENTITY_KEYS

        return {k: self.provenance["model"].get(k) for k in IDENTITY_KEYS}

    def check_compatible(self, model: Any, site: str | None = None) -> None:
        """Raise ArtifactMismatchError unless made with this model (and site, when given)."""
        check_site(self.site, site, "neuron set")
        check_model(self.model_identity, model, "neuron set")

    def table(self, direction: str = "for") -> str:
        """A text table of the units; with stability results, the bootstrap D interval and top-k frequency."""
        units = self.units_for if direction == "for" else self.units_against
        stab = self.extra.get("stability", {}).get(f"units_{direction}")
        head = f"{'rank':>4} {'layer':>5} {'unit':>6} {'D':>9} {'mean m':>9} {'mean A':>9} {'mean ~A':>9} {'std':>8}"
        if stab:
            head += f" {'D interval':>19} {'top-k freq':>10}"
        lines = [head]
        for r, u in enumerate(units, 1):
            line = f"{r:>4} {u.layer:>5} {u.index:>6} {u.D:>9.4f} {u.mean:>9.4f} {u.mean_a:>9.4f} {u.mean_c:>9.4f} {u.std:>8.4f}"
            if stab:
                s = stab[r - 1]
                interval = "[{:.3f}, {:.3f}]".format(s["D_lo"], s["D_hi"])
                line += f" {interval:>19} {s['freq']:>10.2f}"
            lines.append(line)
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        return {"kind": "neuron_set", "format": FORMAT_VERSION, "site": self.site, "normalize": self.normalize,
                "k": self.k, "per_layer": self.per_layer, "proposition": self.proposition,
                "provenance": self.provenance, "extra": self.extra,
                "units_for": [asdict(u) for u in self.units_for],
                "units_against": [asdict(u) for u in self.units_against]}

    def save(self, path: str | os.PathLike) -> Path:
        return write_json_atomic(path, self.to_dict())

    @classmethod
    def load(cls, path: str | os.PathLike, model: Any = None, site: str | None = None) -> "NeuronSet":
        d = read_json(path, "neuron_set")
        ns = cls([Unit(**u) for u in d["units_for"]], [Unit(**u) for u in d["units_against"]], d["site"],
                 d["normalize"], d["k"], d["per_layer"], d["proposition"], d["provenance"], d.get("extra", {}))
        if site is not None:
            check_site(ns.site, site, f"neuron set {path}")
        if model is not None:
            check_model(ns.model_identity, model, f"neuron set {path}")
        return ns


def score_units(acts: Any, proposition: Any, score: str = "rank-D", raw: Strengths | None = None) -> Strengths:
    """Strengths whose ranking score is one of ``selection.SCORES``: D on raw activations (``D``, the paper),
    on z-scores (``zscore-D``) or on normal scores of the ranks (``rank-D``), or a non-doxastic score
    (``mean-diff``, ``smd``, ``ap``; see :mod:`steer.selection`). Per-unit stats are always the raw ones.
    ``raw`` (``Strengths.compute`` of the same recording and proposition, normalize="none") is reused when given,
    so comparing several scores computes raw D and the stats once."""
    from steer import selection

    if score not in selection.SCORES:
        raise ValueError(f"unknown selection score {score!r}; use one of {', '.join(selection.SCORES)}")
    if raw is not None and (raw.normalize != "none" or raw.proposition["name"] != proposition.name):
        raise ValueError("raw must be the un-normalized Strengths of the same proposition")
    normalize = {"zscore-D": "zscore", "rank-D": "rank"}
    if score in normalize:
        return Strengths.compute(acts, proposition, normalize=normalize[score])
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
        n, L, U = X.shape
        mask = torch.as_tensor(np.asarray(proposition.mask))
        values = selection.ap_score(X.reshape(n, L * U), mask).reshape(L, U)
    return base.rescored(values, score)
