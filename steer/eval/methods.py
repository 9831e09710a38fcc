"""Steering methods compared side by side in generation: neuron steering and the baselines researchers use.

Each method turns (target, coeff) into a context manager that steers ``model.bridge`` while it is open (a
:class:`steer.Steerer`: the same hook machinery for every method, hooks removed on exit, also after an
exception) and, for prompting, a rewrite of the prompts. ``coeffs`` is the method's own sweep of its knob (the
knob means different things per method, so methods are compared at equal fluency).

- :class:`NeuronSteering`: the top-k units of a neuron set (or random units: the control) under a rule.
- :class:`ResidualVector`: the CAA / ActAdd family: add ``coeff x v`` to the residual stream after one layer at
  every position, v = mean(resid on the target's worlds) - mean(resid on the opposite's worlds).
- :class:`SelfConditioning`: the k units with the best average precision for the target, forced to their
  median on the target's worlds (Suau et al.); the knob is k.
- :class:`Prompting`: an instruction before the prompt ("Continue in a positive tone."); one setting.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch

from steer.interventions import Affine, LayerEdit
from steer.neurons import NeuronSet
from steer.steering import Steerer

if TYPE_CHECKING:
    from steer.models import Model
    from steer.strength import UnitStats


@dataclass
class Method:
    """A steering method with its sweep of coefficients; the base steers nothing."""

    name: str
    coeffs: list[float]
    kind: str = "method"
    info: dict[str, Any] = field(default_factory=dict)

    def context(self, model: Model, target: str, coeff: float) -> AbstractContextManager[Any]:
        """A context manager under which generation is steered toward ``target`` with ``coeff``."""
        return nullcontext()

    def prompts(self, prompts: Sequence[str], target: str, coeff: float) -> list[str]:
        """The prompts as this method shows them to the model."""
        return list(prompts)


@dataclass
class NeuronSteering(Method):
    """``sets[target]`` (a neuron set for the proposition of that target) rewritten by ``rule`` toward it."""

    sets: dict[str, NeuronSet] = field(default_factory=dict)
    rule: str = "additive"

    def context(self, model: Model, target: str, coeff: float) -> Steerer:
        return Steerer(model, self.sets[target], rule=self.rule, coeff=coeff, direction="toward")


@dataclass
class ResidualVector(Method):
    """Add ``coeff * vectors[target]`` to ``blocks.{layer}.hook_resid_post`` at every position."""

    vectors: dict[str, torch.Tensor] = field(default_factory=dict)
    layer: int = 0

    def context(self, model: Model, target: str, coeff: float) -> Steerer:
        v = self.vectors[target].float()
        edit = LayerEdit(torch.arange(v.numel()), Affine(torch.ones_like(v), coeff * v))
        return Steerer.from_edits(model, "resid", {self.layer: edit})


@dataclass
class SelfConditioning(Method):
    """``experts[target]`` = (layers [n], indices [n], medians [n]) ranked best first; coeff k uses the first k."""

    experts: dict[str, tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = field(default_factory=dict)
    site: str = "mlp"

    def context(self, model: Model, target: str, coeff: float) -> Steerer:
        layers, index, median = (t[: int(coeff)] for t in self.experts[target])
        edits = {}
        for layer in sorted(set(layers.tolist())):
            sel = layers == layer
            values = median[sel].float()
            edits[layer] = LayerEdit(index[sel], Affine(torch.zeros_like(values), values))
        return Steerer.from_edits(model, self.site, edits)


@dataclass
class Prompting(Method):
    """An instruction line before each prompt; ``{toward}`` in it is replaced by the target's name."""

    instruction: str = "Continue in a {toward} tone.\n\n"

    def prompts(self, prompts: Sequence[str], target: str, coeff: float) -> list[str]:
        return [self.instruction.format(toward=target) + p for p in prompts]


def residual_vectors(stats_by_target: dict[str, UnitStats], layer_index: int) -> dict[str, torch.Tensor]:
    """CAA vectors from per-target UnitStats of a resid recording: v_t = mean_A(t) - mean_A(opposite)."""
    (d1, s1), (d2, s2) = stats_by_target.items()
    v = (s1.mean_a[layer_index] - s2.mean_a[layer_index]).float()
    return {d1: v, d2: -v}


def self_conditioning_experts(
    X: torch.Tensor, mask: torch.Tensor, layers: Sequence[int], k_max: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The k_max units of X [worlds, layers, units] with the highest average precision for the worlds in
    ``mask``, best first, as (layer ids, unit indices, median on those worlds)."""
    from steer.selection import average_precision, median_on

    n, n_layers, width = X.shape
    flat = X.reshape(n, n_layers * width)
    ap = average_precision(flat, mask)
    top = torch.topk(ap, min(k_max, ap.numel())).indices
    med = median_on(flat[:, top], mask)
    layer_ids = torch.as_tensor(list(layers))[top // width]
    return layer_ids, top % width, med
