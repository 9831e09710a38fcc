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
``mean-transport``    a' = a + lam*(mu_t - mu_s): the source side's mean moved onto the target side's (a shift).
``gaussian-transport`` a' = (1 - lam)*a + lam*(w*a + b), w = sigma_t/sigma_s, b = mu_t - w*mu_s.
``linear-transport``  the same blend with (w, b) fitted on the rank-paired values of the two sides (Linear-AcT).
``linear-transport-support``  linear transport only where a lies in the source side's range (not affine: no
                      export, no compiled steering).
====================  ==========================================================================================

For the transport rules the *source* side is the worlds outside A when pushing toward A and A when pushing away,
the *target* side the other one; lam = coeff (1: the fitted map itself; 0: the identity). They need the transport
statistics a neuron set carries since 0.3.1 (:func:`steer.neurons.with_transport`); the rules themselves live in
:mod:`steer.rules`.

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

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Literal

import torch
from jaxtyping import Float, Int
from torch import Tensor

from steer.names import APPLY_TO, DIRECTIONS, MAX_COEFF, check_coeff  # noqa: F401 - MAX_COEFF is public here
from steer.rules import (  # noqa: F401 - the rule vocabulary is part of this module's interface
    RULES,
    Affine,
    NoTransportStatsError,
    Rule,
    UnitTable,
    get_rule,
    register_rule,
)

if TYPE_CHECKING:
    from steer.neuronset import NeuronSet, Unit

Direction = Literal["toward", "away"]
HookFn = Callable[..., Tensor]


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
            check_coeff(self.coeff)

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
    """Group a neuron set's units by layer, oriented for ``direction``. A unit in both lists keeps 'for'.

    The transport statistics are filled when every unit of the layer has them (source side: A^c toward, A away)."""
    toward = direction == "toward"
    rows: dict[int, dict[int, tuple[float, ...]]] = {}
    fits: dict[int, dict[int, tuple[float, ...] | None]] = {}
    for role, units in ((-1.0, units_against), (1.0, units_for)):
        for u in units:
            push = role if toward else -role
            rows.setdefault(u.layer, {})[u.index] = (push, u.mean, u.mean_a if toward else u.mean_c, u.std)
            fits.setdefault(u.layer, {})[u.index] = _source_target(u, toward)
    tables = {}
    for layer, by_index in sorted(rows.items()):
        idx = sorted(by_index)
        sign, mean, target, std = (torch.tensor(c, dtype=torch.float32) for c in zip(*(by_index[i] for i in idx)))
        extra: dict[str, Tensor] = {}
        layer_fits = [fits[layer][i] for i in idx]
        if all(f is not None for f in layer_fits):
            names = ("mean_source", "std_source", "std_target", "lo_source", "hi_source", "w", "b")
            cols = zip(*layer_fits)
            extra = {n: torch.tensor(c, dtype=torch.float64) for n, c in zip(names, cols)}
        tables[layer] = UnitTable(torch.tensor(idx, dtype=torch.long), sign, mean, target, std, **extra)
    return tables


def _source_target(u: Unit, toward: bool) -> tuple[float, ...] | None:
    """(source mean, source std, target std, source lo, source hi, w, b) of a unit, or None without transport."""
    if u.w_a is None:
        return None
    if toward:  # A^c onto A
        return (u.mean_c, u.std_c, u.std_a, u.lo_c, u.hi_c, u.w_a, u.b_a)  # type: ignore[return-value]
    return (u.mean_a, u.std_a, u.std_c, u.lo_a, u.hi_a, u.w_c, u.b_c)  # type: ignore[return-value]


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
