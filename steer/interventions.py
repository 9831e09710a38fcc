"""Interventions: how selected units' activations are rewritten, as rule objects and TransformerLens hooks.

A neuron set for a proposition A has units *for* A (largest score) and units *against* A (smallest score). An
:class:`Intervention` rewrites them with a :class:`Rule`, a coefficient ``coeff`` (the rule's one knob), a
``direction`` (``"toward"`` A or ``"away"`` from it) and the token positions it applies to (``apply_to``).
**coeff 0 turns every rule off** (exact identity: no hook rewrites anything).

Every built-in rule is affine per unit, a' = scale * a + shift, which is what lets a rule be exported as a
control vector or folded into weights. Per unit a rule sees (:class:`UnitTable`) its push sign (+1 when the unit
speaks for where we push: a for-unit pushed toward A, or an against-unit pushed away from A; -1 otherwise), m
(its mean over the worlds), its mean on the target side (A toward, A^c away) and its std sigma.

====================  ==========================================================================================
rule                  rewrite (with the push sign defined above)
====================  ==========================================================================================
``paper``             units with sign -1: a' = m - c*a; units with sign +1: a' = m (mean-ablation); c = coeff.
                      The paper (Hornischer & Leitgeb 2025) uses it *away* from A: pos2neg sets the units for A+
                      to m - 5a and those against A+ to m (c = 5); neg2pos the same with A- and c = 7.
``scale``             sign +1: a' = s*m; sign -1: a' = m; s = coeff. The paper's generation rule (2m for positive,
                      20m for negative). It pushes the wrong way when m < 0.
``mean-ablate``       every selected unit a' = m (direction-free: removes what the units carry).
``additive``          a' = a + alpha*sigma*sign; alpha = coeff.
``clamp``             a' = target + alpha*(target - m), target = the unit's mean on the target side; alpha = coeff.
====================  ==========================================================================================

A new rule is a subclass of :class:`Rule` with a ``name``, a ``default_coeff`` and an :meth:`Rule.affine` (or,
for a rule that is not affine, :meth:`Rule.rewrite`), added with :func:`register_rule`.

Positions rewritten (``apply_to``): ``all`` (default), ``prompt`` (the prompt's tokens only), ``generated`` (new
tokens only), ``last-prompt`` (the prompt's last token only). Under generation with a KV cache a hook sees the
whole prompt on the first step, then one new position per step; :class:`PositionTracker` turns that into
absolute positions (and handles generation without a cache, where every step sees the whole sequence).

Everything that rewrites activations (neuron steering, and the evaluation harness's residual vectors and
self-conditioning) is a set of :class:`LayerEdit` (unit indices with an :class:`Affine` form) turned into hooks
by :func:`edit_hook`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, ClassVar, Literal

import torch
from jaxtyping import Float, Int
from torch import Tensor

if TYPE_CHECKING:
    from steer.neuronset import NeuronSet, Unit

Direction = Literal["toward", "away"]
DIRECTIONS: tuple[str, ...] = ("toward", "away")
APPLY_TO: tuple[str, ...] = ("all", "prompt", "generated", "last-prompt")
MAX_COEFF = 1000.0  # far beyond any useful push (the defaults are 1-20); larger values only destroy the text
HookFn = Callable[..., Tensor]


@dataclass(frozen=True)
class UnitTable:
    """The units of one layer to rewrite, oriented for one direction, with what a rule needs (all [k])."""

    index: Int[Tensor, " k"]  # unit indices
    sign: Float[Tensor, " k"]  # +1: the unit speaks for where we push; -1: against it
    mean: Float[Tensor, " k"]  # m, the mean over all worlds
    mean_target: Float[Tensor, " k"]  # mean on A (toward) or on A^c (away)
    std: Float[Tensor, " k"]


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


for _rule in (PaperRule(), ScaleRule(), MeanAblateRule(), AdditiveRule(), ClampRule()):
    register_rule(_rule)


def get_rule(rule: str | Rule) -> Rule:
    """A registered rule by name (a Rule instance is returned as it is)."""
    if isinstance(rule, Rule):
        return rule
    if rule not in RULES:
        raise ValueError(f"unknown rule {rule!r}; use one of {', '.join(RULES)}")
    return RULES[rule]


@dataclass(frozen=True)
class Intervention:
    """A rule with its coefficient, direction and token positions: everything that says how units are rewritten.

    ``coeff=None`` takes the rule's ``default_coeff``; the resolved value is in :attr:`value`.
    """

    rule: str | Rule = "additive"
    coeff: float | None = None
    direction: Direction = "toward"
    apply_to: str = "all"

    def __post_init__(self) -> None:
        get_rule(self.rule)
        if self.direction not in DIRECTIONS:
            raise ValueError(f"unknown direction {self.direction!r}; use 'toward' or 'away'")
        if self.apply_to not in APPLY_TO:
            raise ValueError(f"unknown apply_to {self.apply_to!r}; use one of {', '.join(APPLY_TO)}")
        if self.coeff is not None:
            if not isinstance(self.coeff, (int, float)) or isinstance(self.coeff, bool):
                raise ValueError(f"coeff must be a number, got {self.coeff!r}")
            if not math.isfinite(self.coeff):
                raise ValueError(f"coeff must be a finite number, got {self.coeff!r}")
            if self.coeff < 0:
                raise ValueError(
                    f"coeff must be >= 0, got {self.coeff:g}: to push the other way use direction='away' "
                    "(or the other proposition), so that the result is labelled for what it does"
                )
            if self.coeff > MAX_COEFF:
                raise ValueError(
                    f"coeff {self.coeff:g} is absurd (more than {MAX_COEFF:g}): the text would be destroyed"
                )

    @property
    def rule_obj(self) -> Rule:
        """The rule object (a name is looked up in the registry)."""
        return get_rule(self.rule)

    def at(self, coeff: float | None) -> Intervention:
        """The same intervention at another coefficient (a knob search varies only this)."""
        return replace(self, coeff=coeff)

    @property
    def value(self) -> float:
        """The coefficient in force: ``coeff``, or the rule's default when it is None."""
        return float(self.rule_obj.default_coeff if self.coeff is None else self.coeff)

    def describe(self) -> dict[str, object]:
        return {"rule": self.rule_obj.name, "coeff": self.value, "direction": self.direction, "apply_to": self.apply_to}


# --------------------------------------------------------------------------------------------- layer edits


@dataclass(frozen=True)
class LayerEdit:
    """Units of one layer of a hook site and their affine rewrite (or a rule to call, for non-affine rules)."""

    index: Int[Tensor, " k"]
    affine: Affine | None
    rule: Rule | None = None  # used when affine is None
    units: UnitTable | None = None
    coeff: float = 0.0

    def rewrite(self, a: Float[Tensor, "... k"]) -> Float[Tensor, "... k"]:
        if self.affine is not None:
            return self.affine.apply(a)
        assert self.rule is not None and self.units is not None
        return self.rule.rewrite(a, self.units, self.coeff)


def unit_tables(units_for: Iterable[Unit], units_against: Iterable[Unit], direction: Direction) -> dict[int, UnitTable]:
    """Group a neuron set's units by layer, oriented for ``direction``. A unit in both lists keeps 'for'."""
    toward = direction == "toward"
    rows: dict[int, dict[int, tuple[float, float, float, float]]] = {}
    for role, units in ((-1.0, units_against), (1.0, units_for)):
        for u in units:
            push = role if toward else -role
            rows.setdefault(u.layer, {})[u.index] = (push, u.mean, u.mean_a if toward else u.mean_c, u.std)
    tables = {}
    for layer, by_index in sorted(rows.items()):
        idx = sorted(by_index)
        sign, mean, target, std = (torch.tensor(c, dtype=torch.float32) for c in zip(*(by_index[i] for i in idx)))
        tables[layer] = UnitTable(torch.tensor(idx, dtype=torch.long), sign, mean, target, std)
    return tables


def neuron_edits(neurons: NeuronSet, intervention: Intervention) -> dict[int, LayerEdit]:
    """The edits that apply ``intervention`` to a neuron set, by layer ({} when coeff is 0: the identity)."""
    coeff = intervention.value
    if coeff == 0:
        return {}
    rule = intervention.rule_obj
    edits = {}
    for layer, table in unit_tables(neurons.units_for, neurons.units_against, intervention.direction).items():
        edits[layer] = LayerEdit(table.index, rule.affine(table, coeff), rule, table, coeff)
    return edits


# ------------------------------------------------------------------------------------------------ hooks


class PositionTracker:
    """Absolute positions of what a hook sees, across the steps of one generation (reset per generation)."""

    def __init__(self) -> None:
        self.prompt_len: dict[str, int] = {}
        self.calls: dict[str, int] = {}

    def reset(self) -> None:
        self.prompt_len.clear()
        self.calls.clear()

    def positions(self, key: str, n_pos: int) -> tuple[int, int]:
        """(start, prompt_len) for a call that sees ``n_pos`` positions: the first call is the prompt; later
        one-position calls are KV-cache steps; later longer calls (no cache) see the whole sequence."""
        calls = self.calls.get(key, 0)
        self.calls[key] = calls + 1
        if calls == 0:
            self.prompt_len[key] = n_pos
            return 0, n_pos
        prompt_len = self.prompt_len[key]
        start = prompt_len + calls - 1 if n_pos == 1 else 0
        return start, prompt_len


def position_mask(apply_to: str, start: int, n_pos: int, prompt_len: int) -> Tensor:
    """Which of the ``n_pos`` positions starting at ``start`` an intervention rewrites."""
    pos = torch.arange(start, start + n_pos)
    if apply_to == "all":
        return torch.ones(n_pos, dtype=torch.bool)
    if apply_to == "prompt":
        return pos < prompt_len
    if apply_to == "generated":
        return pos >= prompt_len
    if apply_to == "last-prompt":
        return pos == prompt_len - 1
    raise ValueError(f"unknown apply_to {apply_to!r}; use one of {', '.join(APPLY_TO)}")


def edit_hook(
    key: str,
    edit: LayerEdit,
    apply_to: str,
    tracker: PositionTracker,
    on_call: Callable[[str, int, int], None] | None = None,
) -> HookFn:
    """A TransformerLens forward hook applying ``edit`` to an activation [batch, pos, units] in place.

    Fast paths (generation calls this once per layer per token) when every position is rewritten: a pure shift
    adds one precomputed dense vector; a constant rewrite writes precomputed values. Tensors are converted to
    the activation's device and dtype once.
    """
    prepared: dict[tuple[torch.device, torch.dtype, int], tuple[Tensor, Tensor]] = {}
    form = edit.affine

    def prepare(act: Tensor) -> tuple[Tensor, Tensor]:
        k = (act.device, act.dtype, act.shape[-1])
        if k not in prepared:
            idx = edit.index.to(act.device)
            if form is not None and form.is_shift:
                dense = torch.zeros(act.shape[-1]).index_add_(0, edit.index, form.shift)
                prepared[k] = (idx, dense.to(act.device, act.dtype))
            elif form is not None and form.is_constant:
                prepared[k] = (idx, form.shift.to(act.device, act.dtype))
            else:
                prepared[k] = (idx, torch.empty(0))
        return prepared[k]

    def hook(act: Tensor, hook: object = None) -> Tensor:
        start, prompt_len = tracker.positions(key, act.shape[1])
        if on_call is not None:
            on_call(key, start, act.shape[1])
        if edit.index.numel() == 0:
            return act
        idx, pre = prepare(act)
        if apply_to == "all" and form is not None and form.is_shift:
            act.add_(pre)
            return act
        if apply_to == "all" and form is not None and form.is_constant:
            act[..., idx] = pre
            return act
        old = act[..., idx]
        new = edit.rewrite(old.float()).to(act.dtype)
        if apply_to == "all":
            act[..., idx] = new
            return act
        mask = position_mask(apply_to, start, act.shape[1], prompt_len).to(act.device)
        if mask.any():
            act[..., idx] = torch.where(mask[None, :, None], new, old)
        return act

    return hook


def edit_hooks(
    hook_names: Mapping[int, str],
    edits: Mapping[int, LayerEdit],
    apply_to: str,
    tracker: PositionTracker,
    on_call: Callable[[str, int, int], None] | None = None,
) -> list[tuple[str, HookFn]]:
    """(hook name, hook) pairs for TransformerLens, one per edited layer; ``hook_names[layer]`` names the site."""
    return [(hook_names[layer], edit_hook(f"L{layer}", e, apply_to, tracker, on_call)) for layer, e in edits.items()]
