"""Intervention rules: how the selected units' activations are rewritten, as TransformerLens hook functions.

A neuron set for a proposition A has units *for* A (largest D) and units *against* A (smallest D). Every rule
is applied with a direction: ``toward=True`` pushes the model toward A, ``toward=False`` away from it.
Per unit the rules know a (the current activation), m (its mean over the worlds), its mean on A and on A^c,
and its std sigma. ``strength`` is the rule's one knob; **strength 0 turns every rule off** (exact identity).

====================  ===========================================================================================
rule                  rewrite (toward A; away from A swaps the roles of for- and against-units, and of A / A^c)
====================  ===========================================================================================
``paper``             against-units a' = m - c*a, for-units a' = m (mean-ablation); c = strength.
                      The paper (Hornischer & Leitgeb 2025) uses it *away* from A: pos2neg sets the units for A+ to
                      m - 5a and those against A+ to m (c = 5); neg2pos the same with A- and c = 7.
``scale``             for-units a' = s*m, against-units a' = m; s = strength. The paper's generation rule (2m for
                      positive, 20m for negative). It pushes the wrong way when m < 0.
``mean-ablate``       every selected unit a' = m (direction-free: removes what the units carry).
``additive``          a' = a + alpha*sigma*sign, sign = +1 for for-units and -1 for against-units; alpha = strength.
``clamp``             a' = mean_A + alpha*(mean_A - m) (away: mean_{A^c} + alpha*(mean_{A^c} - m)); alpha = strength.
====================  ===========================================================================================

Positions rewritten: ``all`` (default), ``prompt`` (the prompt's tokens only), ``generated`` (new tokens only),
``last-prompt`` (the prompt's last token only). Under generation with a KV cache a hook sees the whole prompt
on the first step, then one new position per step; :class:`PositionTracker` turns that into absolute
positions (and handles generation without a cache, where every step sees the whole sequence).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from jaxtyping import Float
from torch import Tensor

RULES = ("paper", "scale", "mean-ablate", "additive", "clamp")
POSITIONS = ("all", "prompt", "generated", "last-prompt")
DEFAULT_STRENGTH = {"paper": 5.0, "scale": 2.0, "mean-ablate": 1.0, "additive": 3.0, "clamp": 1.0}
# The paper's named settings: (rule, strength, toward).
PAPER_SETTINGS = {
    "pos2neg": ("paper", 5.0, False),  # with the neuron set of A+ (top-25 VADER pos)
    "neg2pos": ("paper", 7.0, False),  # with the neuron set of A- (top-25 VADER neg)
    "gen-positive": ("scale", 2.0, True),  # with A+
    "gen-negative": ("scale", 20.0, True),  # with A-
}


@dataclass
class LayerPlan:
    """The units of one layer to rewrite, with the statistics a rule needs (all [k_l])."""

    index: torch.Tensor  # unit indices (long)
    role: torch.Tensor  # +1 for-unit, -1 against-unit
    mean: torch.Tensor  # m
    mean_a: torch.Tensor
    mean_c: torch.Tensor
    std: torch.Tensor


def build_plans(units_for: Sequence, units_against: Sequence) -> dict[int, LayerPlan]:
    """Group the neuron set's units by layer. A unit in both lists (possible with tiny sets) keeps 'for'."""
    rows: dict[int, dict[int, tuple]] = {}
    for role, units in ((-1.0, units_against), (1.0, units_for)):
        for u in units:
            rows.setdefault(u.layer, {})[u.index] = (role, u.mean, u.mean_a, u.mean_c, u.std)
    plans = {}
    for layer, by_index in sorted(rows.items()):
        idx = sorted(by_index)
        cols = list(zip(*(by_index[i] for i in idx)))
        plans[layer] = LayerPlan(torch.tensor(idx, dtype=torch.long), *(torch.tensor(c, dtype=torch.float32) for c in cols))
    return plans


def rewrite(rule: str, a: Float[Tensor, "... k"], plan: LayerPlan, strength: float, toward: bool) -> Float[Tensor, "... k"]:
    """The new values of the selected units (same shape as ``a``), in float32."""
    if strength == 0:
        return a
    p = {k: v.to(a.device) for k, v in vars(plan).items() if k != "index"}
    role = p["role"] if toward else -p["role"]  # +1: the unit speaks for where we push
    pushers, others = role > 0, role < 0
    m = p["mean"]
    if rule == "paper":
        return torch.where(others, m - strength * a, m.expand_as(a))
    if rule == "scale":
        return torch.where(pushers, strength * m, m).expand_as(a).clone()
    if rule == "mean-ablate":
        return m.expand_as(a).clone()
    if rule == "additive":
        return a + strength * p["std"] * role
    if rule == "clamp":
        anchor = p["mean_a"] if toward else p["mean_c"]
        return (anchor + strength * (anchor - m)).expand_as(a).clone()
    raise ValueError(f"unknown rule {rule!r}; use one of {', '.join(RULES)}")


class PositionTracker:
    """Absolute positions of what a hook sees, across the steps of one generation (reset per generation)."""

    def __init__(self):
        self.reset()

    def reset(self) -> None:
        self.prompt_len: dict[str, int] = {}
        self.calls: dict[str, int] = {}

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


def position_mask(which: str, start: int, n_pos: int, prompt_len: int) -> Tensor:
    pos = torch.arange(start, start + n_pos)
    if which == "all":
        return torch.ones(n_pos, dtype=torch.bool)
    if which == "prompt":
        return pos < prompt_len
    if which == "generated":
        return pos >= prompt_len
    if which == "last-prompt":
        return pos == prompt_len - 1
    raise ValueError(f"unknown positions {which!r}; use one of {', '.join(POSITIONS)}")


def make_hook(key: str, plan: LayerPlan, rule: str, strength: float, toward: bool, positions: str,
              tracker: PositionTracker, on_call: Callable[[str, int, int], None] | None = None):
    """A TransformerLens forward hook rewriting ``plan``'s units of an activation [batch, pos, units].

    Fast paths (generation calls this once per layer per token): ``additive`` adds one precomputed dense
    vector; ``mean-ablate``/``scale``/``clamp`` write precomputed constants; ``paper`` needs the current
    values and goes through :func:`rewrite`. Tensors are converted to the activation's device/dtype once."""
    index = plan.index
    n_units = index.numel()
    cache: dict[tuple, tuple[Tensor, Tensor]] = {}
    constant_rule = rule in ("mean-ablate", "scale", "clamp")

    def prepared(act: Tensor) -> tuple[Tensor, Tensor]:
        k = (act.device, act.dtype, act.shape[-1])
        if k not in cache:
            idx = index.to(act.device)
            if rule == "additive":
                delta = rewrite(rule, torch.zeros(n_units), plan, strength, toward)
                dense = torch.zeros(act.shape[-1]).index_add_(0, index, delta)
                cache[k] = (idx, dense.to(act.device, act.dtype))
            elif constant_rule:
                cache[k] = (idx, rewrite(rule, torch.zeros(n_units), plan, strength, toward).to(act.device, act.dtype))
            else:
                cache[k] = (idx, torch.empty(0))
        return cache[k]

    def hook(act: Tensor, hook=None) -> Tensor:
        start, prompt_len = tracker.positions(key, act.shape[1])
        if on_call is not None:
            on_call(key, start, act.shape[1])
        if strength == 0 or n_units == 0:
            return act
        idx, pre = prepared(act)
        if positions == "all":
            if rule == "additive":
                act.add_(pre)
            elif constant_rule:
                act[..., idx] = pre
            else:
                act[..., idx] = rewrite(rule, act[..., idx].float(), plan, strength, toward).to(act.dtype)
            return act
        mask = position_mask(positions, start, act.shape[1], prompt_len).to(act.device)
        if not mask.any():
            return act
        old = act[..., idx]
        new = rewrite(rule, old.float(), plan, strength, toward).to(act.dtype)
        act[..., idx] = torch.where(mask[None, :, None], new, old)
        return act

    return hook
