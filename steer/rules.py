"""Rules: how one layer's selected units are rewritten, per unit, from what the worlds say about them.

A rule sees the layer's units as a :class:`UnitTable` oriented for the direction of the push (+1 sign: the unit
speaks for where we push) and returns an :class:`Affine` form a' = scale * a + shift (what lets it be exported as a
control vector or folded into weights), or rewrites the values itself (a non-affine rule, which cannot be
exported). The table of rules is in :mod:`steer.interventions`; :func:`register_rule` adds one.

The transport rules move each unit from the *source* side (the worlds outside A when pushing toward A; A when
pushing away) onto the *target* side, with strength lam = coeff (:mod:`steer.transport`): their statistics come
from the recording and are stored with the neuron set (:func:`steer.neurons.with_transport`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from jaxtyping import Float, Int
from torch import Tensor

from steer.transport import blend


@dataclass(frozen=True)
class UnitTable:
    """The units of one layer to rewrite, oriented for one direction, with what a rule needs (all [k])."""

    index: Int[Tensor, " k"]  # unit indices
    sign: Float[Tensor, " k"]  # +1: the unit speaks for where we push; -1: against it
    mean: Float[Tensor, " k"]  # m, the mean over all worlds
    mean_target: Float[Tensor, " k"]  # mean on A (toward) or on A^c (away)
    std: Float[Tensor, " k"]
    # transport statistics (None when the neuron set has none): the source side's mean, std and range, the target
    # side's std, and the linear-transport fit (w, b) of the map from source onto target
    mean_source: Float[Tensor, " k"] | None = None
    std_source: Float[Tensor, " k"] | None = None
    std_target: Float[Tensor, " k"] | None = None
    lo_source: Float[Tensor, " k"] | None = None
    hi_source: Float[Tensor, " k"] | None = None
    w: Float[Tensor, " k"] | None = None
    b: Float[Tensor, " k"] | None = None

    @property
    def has_transport(self) -> bool:
        return self.w is not None


@dataclass(frozen=True)
class Affine:
    """A per-unit affine rewrite a' = scale * a + shift (float32 [k] each)."""

    scale: Float[Tensor, " k"]
    shift: Float[Tensor, " k"]

    @property
    def is_shift(self) -> bool:
        """True when every scale is 1: the rewrite only adds a constant (a control vector)."""
        return bool((self.scale == 1).all())

    @property
    def is_constant(self) -> bool:
        """True when every scale is 0: the rewrite writes constants."""
        return bool((self.scale == 0).all())

    def apply(self, a: Float[Tensor, "... k"]) -> Float[Tensor, "... k"]:
        """The rewritten values (units on the last axis); a unit with scale 0 gets exactly its shift."""
        s, t = self.scale.to(a.device), self.shift.to(a.device)
        return torch.where(s == 0, t, a * s + t)


class Rule:
    """How a rule rewrites the units of one layer; subclass it and :func:`register_rule` the instance."""

    name: ClassVar[str] = ""
    default_coeff: ClassVar[float] = 1.0

    def affine(self, units: UnitTable, coeff: float) -> Affine | None:
        """The rule's per-unit affine form at ``coeff``, or None for a rule that is not affine.

        Args:
            units: the layer's units, oriented for the direction of the push.
            coeff: the rule's coefficient (never 0 here: 0 is the identity, handled by the caller).

        Returns:
            ``Affine(scale, shift)`` with one entry per unit, or None.
        """
        return None

    def rewrite(self, a: Float[Tensor, "... k"], units: UnitTable, coeff: float) -> Float[Tensor, "... k"]:
        """The new values of the units (same shape as ``a``, units on the last axis)."""
        form = self.affine(units, coeff)
        if form is None:
            raise NotImplementedError(f"rule {self.name!r} defines neither affine() nor rewrite()")
        return form.apply(a)

    def __repr__(self) -> str:
        return f"<rule {self.name} (default coeff {self.default_coeff:g})>"


class PaperRule(Rule):
    name = "paper"
    default_coeff = 5.0

    def affine(self, units: UnitTable, coeff: float) -> Affine:
        return Affine(torch.where(units.sign < 0, -coeff, 0.0), units.mean.clone())


class ScaleRule(Rule):
    name = "scale"
    default_coeff = 2.0

    def affine(self, units: UnitTable, coeff: float) -> Affine:
        return Affine(torch.zeros_like(units.mean), torch.where(units.sign > 0, coeff * units.mean, units.mean))


class MeanAblateRule(Rule):
    name = "mean-ablate"
    default_coeff = 1.0

    def affine(self, units: UnitTable, coeff: float) -> Affine:
        return Affine(torch.zeros_like(units.mean), units.mean.clone())


class AdditiveRule(Rule):
    name = "additive"
    default_coeff = 3.0

    def affine(self, units: UnitTable, coeff: float) -> Affine:
        return Affine(torch.ones_like(units.mean), coeff * units.std * units.sign)


class ClampRule(Rule):
    name = "clamp"
    default_coeff = 1.0

    def affine(self, units: UnitTable, coeff: float) -> Affine:
        target = units.mean_target
        return Affine(torch.zeros_like(target), target + coeff * (target - units.mean))


class NoTransportStatsError(ValueError):
    """A transport rule was given a neuron set without transport statistics."""


def _need_transport(units: UnitTable, rule: str) -> None:
    if not units.has_transport:
        raise NoTransportStatsError(
            f"rule {rule!r} needs the neuron set's transport statistics, and this set has none (made before steer "
            "0.3.1, or by hand): select the units again (steer find, or steer.select_units) to add them"
        )


class TransportRule(Rule):
    """A map of each unit from the source side onto the target side, applied with strength lam = coeff."""

    default_coeff = 1.0

    def fit(self, units: UnitTable) -> tuple[Tensor, Tensor]:
        """The map's (w, b) per unit."""
        raise NotImplementedError

    def affine(self, units: UnitTable, coeff: float) -> Affine:
        _need_transport(units, self.name)
        w, b = self.fit(units)
        scale, shift = blend(w, b, coeff)
        return Affine(scale.float(), shift.float())


class MeanTransportRule(TransportRule):
    name = "mean-transport"

    def fit(self, units: UnitTable) -> tuple[Tensor, Tensor]:
        assert units.mean_source is not None
        return torch.ones_like(units.mean_target), units.mean_target - units.mean_source


class GaussianTransportRule(TransportRule):
    name = "gaussian-transport"

    def fit(self, units: UnitTable) -> tuple[Tensor, Tensor]:
        assert units.std_source is not None and units.std_target is not None and units.mean_source is not None
        flat = units.std_source < 1e-6
        w = torch.where(flat, 1.0, units.std_target / torch.where(flat, 1.0, units.std_source))
        return w, units.mean_target - w * units.mean_source


class LinearTransportRule(TransportRule):
    name = "linear-transport"

    def fit(self, units: UnitTable) -> tuple[Tensor, Tensor]:
        assert units.w is not None and units.b is not None
        return units.w, units.b


class SupportTransportRule(LinearTransportRule):
    """Linear transport only where a value lies inside the source side's range (AcT's support mask); elsewhere the
    unit is left alone. Not affine: it steers through hooks and cannot be exported or compiled."""

    name = "linear-transport-support"

    def affine(self, units: UnitTable, coeff: float) -> None:  # type: ignore[override]
        return None

    def rewrite(self, a: Float[Tensor, "... k"], units: UnitTable, coeff: float) -> Float[Tensor, "... k"]:
        _need_transport(units, self.name)
        assert units.lo_source is not None and units.hi_source is not None
        form = LinearTransportRule.affine(self, units, coeff)
        lo, hi = units.lo_source.to(a.device, a.dtype), units.hi_source.to(a.device, a.dtype)
        return torch.where((a >= lo) & (a <= hi), form.apply(a), a)


RULES: dict[str, Rule] = {}


def register_rule(rule: Rule, replace: bool = False) -> Rule:
    """Make ``rule`` available by its name everywhere a rule is named (API, CLI choices, configs).

    Args:
        rule: an instance of a :class:`Rule` subclass with a non-empty ``name``.
        replace: allow replacing a registered rule of the same name.

    Returns:
        The rule.
    """
    if not isinstance(rule, Rule) or not rule.name:
        raise TypeError("register an instance of a Rule subclass that sets `name`")
    if rule.name in RULES and not replace:
        raise ValueError(f"a rule named {rule.name!r} is already registered (pass replace=True)")
    RULES[rule.name] = rule
    return rule


for _rule in (
    PaperRule(),
    ScaleRule(),
    MeanAblateRule(),
    AdditiveRule(),
    ClampRule(),
    MeanTransportRule(),
    GaussianTransportRule(),
    LinearTransportRule(),
    SupportTransportRule(),
):
    register_rule(_rule)


def get_rule(rule: str | Rule) -> Rule:
    """A registered rule by name (a Rule instance is returned as it is)."""
    if isinstance(rule, Rule):
        return rule
    if rule not in RULES:
        raise ValueError(f"unknown rule {rule!r}; use one of {', '.join(RULES)}")
    return RULES[rule]
