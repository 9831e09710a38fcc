"""A neuron set: the top-k units for and against a proposition at one site, with the score and provenance they were
found by; the artifact steering takes (saved as JSON with a content checksum, checked on load).

Data flow: recorded activations -> strengths (:mod:`steer.neurons`) -> **a neuron set** (:meth:`UnitScores.top`,
:func:`steer.select.select_units`) -> intervention -> steered generation.
"""

from __future__ import annotations

import copy
import math
import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

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
from steer.sites import MLP_SITES

if TYPE_CHECKING:
    from steer.models import Model


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
    # transport statistics (None in a set made without them, before 0.3.1): std and range on A and on A^c, and the
    # linear-transport fits (rank-paired least squares) of the map onto A (from A^c: w_a, b_a) and onto A^c (w_c, b_c)
    std_a: float | None = None
    std_c: float | None = None
    lo_a: float | None = None
    hi_a: float | None = None
    lo_c: float | None = None
    hi_c: float | None = None
    w_a: float | None = None
    b_a: float | None = None
    w_c: float | None = None
    b_c: float | None = None

    @property
    def transport(self) -> tuple[float | None, ...]:
        """The transport statistics, in field order."""
        return tuple(getattr(self, f) for f in TRANSPORT_FIELDS)


TRANSPORT_FIELDS = ("std_a", "std_c", "lo_a", "hi_a", "lo_c", "hi_c", "w_a", "b_a", "w_c", "b_c")


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
                problem = _transport_problem(u)
                if problem:
                    problems.append(f"unit {side} ({u.layer}, {u.index}) {problem}")
                    break
        if problems:
            raise ArtifactMismatchError(f"invalid neuron set: {'; '.join(problems)}")

    @property
    def has_transport(self) -> bool:
        """True when every unit carries the transport statistics the transport rules need."""
        return all(u.w_a is not None for u in self.units_for + self.units_against)

    def check_compatible(self, model: Model | Mapping[str, Any], site: str | None = None) -> None:
        """Raise ArtifactMismatchError unless made with this model (a Model or its identity dict) and site, and
        every unit exists in the model (and :meth:`validate` passes)."""
        self.validate()
        check_site(self.site, site, "neuron set")
        identity = model if isinstance(model, Mapping) else model.identity
        check_model(self.model_identity, identity, "neuron set")
        n_layers = identity.get("n_layers")
        width = identity.get("d_mlp" if self.site in MLP_SITES else "d_model")
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


def _transport_problem(u: Unit) -> str | None:
    """What is wrong with a unit's transport statistics (all or none, finite, std >= 0, lo <= hi), or None."""
    values = u.transport
    if all(v is None for v in values):
        return None
    if any(v is None for v in values):
        return "has only some of its transport statistics"
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in values):
        return f"has a non-finite transport statistic {values}"
    assert u.std_a is not None and u.std_c is not None and u.lo_a is not None and u.hi_a is not None
    assert u.lo_c is not None and u.hi_c is not None
    if u.std_a < 0 or u.std_c < 0:
        return f"has a negative std on a side ({u.std_a:g}, {u.std_c:g})"
    if u.lo_a > u.hi_a or u.lo_c > u.hi_c:
        return "has a side whose range has lo > hi"
    return None
