"""Steering methods compared side by side in generation: neuron steering and the baselines researchers use.

Each method turns (direction, strength) into a context manager that installs its hooks on ``model.bridge``
(removed on exit, also after an exception) and, for prompting, a rewrite of the prompts. ``strengths`` is the
method's own sweep (its knob means different things per method, so methods are compared at equal fluency).

- :class:`NeuronSteering`: a :class:`steer.Steerer` on the top-k units (or random units: the control).
- :class:`ResidualVector`: the CAA / ActAdd family: add ``strength x v`` to the residual stream after one
  layer at every position, v = mean(resid on the target's worlds) - mean(resid on the opposite's worlds).
- :class:`SelfConditioning`: the k units with the best average precision for the target, forced to their
  median on the target's worlds (Suau et al.); the knob is k.
- :class:`Prompting`: an instruction before the prompt ("Continue in a positive tone."); one setting.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from typing import Any

import torch

from steer.neurons import NeuronSet
from steer.record import hook_name


@dataclass
class Method:
    name: str
    strengths: list[float]
    kind: str = "method"
    info: dict[str, Any] = field(default_factory=dict)

    def context(self, model: Any, toward: str, strength: float):
        return nullcontext()

    def prompts(self, prompts: Sequence[str], toward: str, strength: float) -> list[str]:
        return list(prompts)


@dataclass
class NeuronSteering(Method):
    """``sets[toward]`` (a NeuronSet for the proposition of that direction) rewritten by ``rule``."""

    sets: dict[str, NeuronSet] = field(default_factory=dict)
    rule: str = "additive"

    def context(self, model: Any, toward: str, strength: float):
        from steer.steering import Steerer

        return Steerer(model, self.sets[toward], rule=self.rule, strength=strength, toward=True)


@dataclass
class ResidualVector(Method):
    """Add ``strength * vectors[toward]`` to ``blocks.{layer}.hook_resid_post`` at every position."""

    vectors: dict[str, torch.Tensor] = field(default_factory=dict)
    layer: int = 0

    @contextmanager
    def context(self, model: Any, toward: str, strength: float):
        v = self.vectors[toward]

        def hook(act, hook=None):
            return act + (strength * v).to(act.device, act.dtype)

        with model.bridge.hooks(fwd_hooks=[(hook_name("resid", self.layer), hook)]):
            yield


@dataclass
class SelfConditioning(Method):
    """``experts[toward]`` = (layers [n], indices [n], medians [n]) ranked best first; strength k uses the first k."""

    experts: dict[str, tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = field(default_factory=dict)
    site: str = "mlp"

    @contextmanager
    def context(self, model: Any, toward: str, strength: float):
        layers, index, median = (t[: int(strength)] for t in self.experts[toward])
        hooks = []
        for layer in sorted(set(layers.tolist())):
            sel = layers == layer
            idx, val = index[sel], median[sel]

            def hook(act, hook=None, idx=idx, val=val):
                act[..., idx.to(act.device)] = val.to(act.device, act.dtype)
                return act

            hooks.append((hook_name(self.site, layer), hook))
        with model.bridge.hooks(fwd_hooks=hooks):
            yield


@dataclass
class Prompting(Method):
    """An instruction line before each prompt; ``{toward}`` in it is replaced by the direction's name."""

    instruction: str = "Continue in a {toward} tone.\n\n"

    def prompts(self, prompts: Sequence[str], toward: str, strength: float) -> list[str]:
        return [self.instruction.format(toward=toward) + p for p in prompts]


def residual_vectors(stats_by_direction: dict[str, Any], layer_index: int) -> dict[str, torch.Tensor]:
    """CAA vectors from per-direction UnitStats of a resid recording: v_dir = mean_A(dir) - mean_A(opposite)."""
    (d1, s1), (d2, s2) = stats_by_direction.items()
    v = (s1.mean_a[layer_index] - s2.mean_a[layer_index]).float()
    return {d1: v, d2: -v}


def self_conditioning_experts(X: torch.Tensor, mask: torch.Tensor, layers: Sequence[int], k_max: int
                              ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The k_max units of X [worlds, layers, units] with the highest average precision for the worlds in
    ``mask``, best first, as (layer ids, unit indices, median on those worlds)."""
    from steer.selection import average_precision, median_on

    n, L, U = X.shape
    flat = X.reshape(n, L * U)
    ap = average_precision(flat, mask)
    top = torch.topk(ap, min(k_max, ap.numel())).indices
    med = median_on(flat[:, top], mask)
    layer_ids = torch.as_tensor(list(layers))[top // U]
    return layer_ids, top % U, med
