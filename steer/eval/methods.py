"""Steering methods compared side by side in generation: neuron steering and the baselines researchers use.

Each method turns (target, coeff) into a context manager that steers ``model.bridge`` while it is open (a
:class:`steer.Steerer`: the same hook machinery for every method, hooks removed on exit, also after an
exception) and, for prompting, a rewrite of the prompts. ``coeffs`` is the method's own sweep of its knob (the
knob means different things per method, so methods are compared at equal fluency).

- :class:`NeuronSteering`: the top-k units of a neuron set (or random units: the control) under a rule;
  :class:`LayerDosedNeurons`: the same with each layer's shift scaled by its own dose.
- :class:`ResidualVector`: the CAA / ActAdd family: add ``coeff x v_l`` to the residual stream after each of its
  layers at every position. CAA: v_l = mean(resid on the target's worlds) - mean(resid on the opposite's worlds)
  (:func:`residual_vectors`), at one layer or at all; the repeng recipe: v_l = the first principal component of
  contrast-pair differences at every layer (:func:`pca_directions`, :func:`contrast_pairs`).
- :class:`SelfConditioning`: the k units with the best average precision for the target, forced to their
  median on the target's worlds (Suau et al.); the knob is k.
- :class:`Prompting`: an instruction before the prompt ("Continue in a positive tone."); one setting.
  :class:`PromptPrefix`: a sentence of the target's sentiment before the prompt; one setting.
- :class:`CombinedSteering`: several methods at once; :class:`PerTarget`: a different method per target.

``knob`` says how the benchmark at matched fluency (:mod:`steer.eval.matched`) searches the method's setting: a
:class:`Knob` (its start, bounds, and whether it is an integer), or None for a method with a single setting.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractContextManager, ExitStack, nullcontext
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch

from steer.interventions import Affine, Intervention, LayerEdit
from steer.neuronset import NeuronSet
from steer.steerer import Steerer

if TYPE_CHECKING:
    from steer.models import Model
    from steer.strength import UnitStats


@dataclass(frozen=True)
class Knob:
    """How a method's setting is searched: from ``start`` within [``lo``, ``hi``], rounded when ``integer``."""

    start: float
    lo: float
    hi: float
    integer: bool = False

    def __post_init__(self) -> None:
        if not 0 < self.lo <= self.start <= self.hi:
            raise ValueError(f"a knob needs 0 < lo <= start <= hi, got {self.lo}, {self.start}, {self.hi}")

    def clip(self, x: float) -> float:
        """``x`` within the bounds (rounded for an integer knob)."""
        x = min(max(x, self.lo), self.hi)
        return float(round(x)) if self.integer else float(x)


COEFF = Knob(3.0, 0.05, 64.0)


@dataclass
class Method:
    """A steering method with its sweep of coefficients; the base steers nothing."""

    name: str
    coeffs: list[float]
    kind: str = "method"
    info: dict[str, Any] = field(default_factory=dict)
    knob: Knob | None = COEFF

    def context(self, model: Model, target: str, coeff: float) -> AbstractContextManager[Any]:
        """A context manager under which generation is steered toward ``target`` with ``coeff``."""
        return nullcontext()

    def prompts(self, prompts: Sequence[str], target: str, coeff: float) -> list[str]:
        """The prompts as this method shows them to the model."""
        return list(prompts)

    def knob_for(self, target: str) -> Knob | None:
        """The knob searched toward ``target`` (the same for every target, except in :class:`PerTarget`)."""
        return self.knob


@dataclass
class NeuronSteering(Method):
    """``sets[target]`` (a neuron set for the proposition of that target) rewritten by ``intervention`` (its rule,
    direction and positions; the knob sets its coefficient)."""

    sets: dict[str, NeuronSet] = field(default_factory=dict)
    intervention: Intervention = field(default_factory=Intervention)

    def context(self, model: Model, target: str, coeff: float) -> Steerer:
        return Steerer(model, self.sets[target], self.intervention.at(coeff))


@dataclass
class LayerDosedNeurons(NeuronSteering):
    """Neuron steering under a shift rule (``additive``) with each layer's shifts multiplied by
    ``doses[target][layer]`` (e.g. so that every layer writes the same fraction of its residual norm); the knob
    scales them all."""

    doses: dict[str, dict[int, float]] = field(default_factory=dict)

    def context(self, model: Model, target: str, coeff: float) -> Steerer:
        plain = Steerer(model, self.sets[target], self.intervention.at(coeff))
        edits = {}
        for layer, e in plain.edits.items():
            if e.affine is None or not e.affine.is_shift:
                raise ValueError(f"layer doses scale shifts; rule {self.intervention.rule!r} is not a shift rule")
            edits[layer] = LayerEdit(e.index, Affine(e.affine.scale, e.affine.shift * self.doses[target][layer]))
        return Steerer.from_edits(model, plain.site or "mlp", edits, plain.apply_to)


@dataclass
class ResidualVector(Method):
    """Add ``coeff * vectors[target][i]`` to ``blocks.{layers[i]}.hook_resid_post`` at every position.

    ``vectors[target]`` is [d_model] for one layer or [len(layers), d_model]."""

    vectors: dict[str, torch.Tensor] = field(default_factory=dict)
    layers: tuple[int, ...] = (0,)

    def context(self, model: Model, target: str, coeff: float) -> Steerer:
        vs = self.vectors[target].float().reshape(len(self.layers), -1)
        edits = {
            layer: LayerEdit(torch.arange(v.numel()), Affine(torch.ones_like(v), coeff * v))
            for layer, v in zip(self.layers, vs)
        }
        return Steerer.from_edits(model, "resid", edits)


@dataclass
class SelfConditioning(Method):
    """``experts[target]`` = (layers [n], indices [n], medians [n]) ranked best first; coeff k uses the first k."""

    experts: dict[str, tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = field(default_factory=dict)
    site: str = "mlp"

    knob: Knob | None = Knob(50, 1, 2000, integer=True)

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
    knob: Knob | None = None

    def prompts(self, prompts: Sequence[str], target: str, coeff: float) -> list[str]:
        return [self.instruction.format(toward=target) + p for p in prompts]


# sentences of our own, one per target, shown before the prompt by PromptPrefix
PREFIXES = {
    "positive": "What a lovely day it has been; everything went wonderfully. ",
    "negative": "What an awful day it has been; everything went terribly. ",
}


@dataclass
class PromptPrefix(Method):
    """A sentence of the target's sentiment (``prefixes[target]``) before each prompt."""

    prefixes: dict[str, str] = field(default_factory=lambda: dict(PREFIXES))
    knob: Knob | None = None

    def prompts(self, prompts: Sequence[str], target: str, coeff: float) -> list[str]:
        return [self.prefixes[target] + p for p in prompts]


@dataclass
class CombinedSteering(Method):
    """Several methods at once, one coefficient for all (e.g. toward positive: the positive set pushed toward its
    proposition and the negative set pushed away from its own); ``parts[target]`` lists (method, target) pairs."""

    parts: dict[str, list[tuple[Method, str]]] = field(default_factory=dict)

    def context(self, model: Model, target: str, coeff: float) -> AbstractContextManager[Any]:
        stack = ExitStack()
        for method, t in self.parts[target]:
            stack.enter_context(method.context(model, t, coeff))
        return stack


@dataclass
class PerTarget(Method):
    """A different method per target (``parts[target]``, e.g. additive toward positive and clamp toward negative),
    each with its own knob."""

    parts: dict[str, Method] = field(default_factory=dict)

    def context(self, model: Model, target: str, coeff: float) -> AbstractContextManager[Any]:
        return self.parts[target].context(model, target, coeff)

    def prompts(self, prompts: Sequence[str], target: str, coeff: float) -> list[str]:
        return self.parts[target].prompts(prompts, target, coeff)

    def knob_for(self, target: str) -> Knob | None:
        return self.parts[target].knob_for(target)


def residual_vectors(
    stats_by_target: dict[str, UnitStats], layer_index: int | slice = slice(None)
) -> dict[str, torch.Tensor]:
    """CAA vectors from per-target UnitStats of a resid recording: v_t = mean_A(t) - mean_A(opposite), at the
    recorded layer ``layer_index`` ([d_model]) or at every recorded layer (the default, [layers, d_model])."""
    (d1, s1), (d2, s2) = stats_by_target.items()
    v = (s1.mean_a[layer_index] - s2.mean_a[layer_index]).float()
    return {d1: v, d2: -v}


def pca_directions(pos: torch.Tensor, neg: torch.Tensor) -> torch.Tensor:
    """repeng's ``pca_diff`` reading vector per layer, implemented natively (repeng pins transformers < 5).

    Recipe of repeng (github.com/vgel/repeng, ``extract.py``, ``read_representations(method="pca_diff")``): per
    layer, the differences h(positive member) - h(negative member) of the contrast pairs; the first principal
    component of those differences (PCA centres them, as scikit-learn's does); its sign chosen so that the
    positive member of most pairs projects higher than the negative one. Unit vectors.

    Args:
        pos: the positive members' hidden states [pairs, layers, d_model].
        neg: the negative members' hidden states, same shape.

    Returns:
        The directions [layers, d_model], pointing toward the positive members.
    """
    if pos.shape != neg.shape or pos.ndim != 3 or len(pos) < 2:
        raise ValueError(
            f"pca_directions needs two [pairs>=2, layers, d] tensors of one shape, got {pos.shape}, {neg.shape}"
        )
    diff = (pos - neg).double()
    diff = diff - diff.mean(0, keepdim=True)
    out = []
    for layer in range(diff.shape[1]):
        _, _, vh = torch.linalg.svd(diff[:, layer], full_matrices=False)
        d = vh[0]
        votes = ((pos[:, layer].double() @ d) > (neg[:, layer].double() @ d)).double().mean()
        out.append(d if votes >= 0.5 else -d)
    return torch.stack(out).float()


# repeng's persona framing, with a plain-text instruction (the suffixes are the model's to continue)
PERSONAS = {
    "positive": "Write as someone who feels extremely happy. ",
    "negative": "Write as someone who feels extremely unhappy. ",
}


def contrast_pairs(texts: Sequence[str], n: int = 256, seed: int = 0) -> list[tuple[str, str]]:
    """repeng-style contrast pairs: a persona instruction (:data:`PERSONAS`) and the same suffix, a word-level
    truncation of one of ``texts`` (as repeng truncates its outputs), ``n`` pairs drawn with ``seed``."""
    import random

    suffixes = sorted({" ".join(t.split()[:i]) for t in texts for i in range(1, len(t.split()) + 1)})
    if not suffixes:
        raise ValueError("contrast_pairs needs some text to truncate")
    rng = random.Random(seed)
    chosen = rng.sample(suffixes, min(n, len(suffixes)))
    return [(PERSONAS["positive"] + s, PERSONAS["negative"] + s) for s in chosen]


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
