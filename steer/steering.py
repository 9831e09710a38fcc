"""The one-call API: :func:`generate` steers continuations toward a proposition, with the units and the rewrite a
:class:`SteerConfig` names.

    steer.generate("The hotel was", toward="positive")   # default model, default sentiment set, cached neurons
    steer.generate("The hotel was", toward="negative", k=200, coeff=4, max_new_tokens=30)

One path from the caller to the hook: ``toward`` is parsed once into a :class:`~steer.propositions.Proposition`
(``worlds.proposition``); the config resolves once into a :class:`~steer.select.SelectSpec` (which units) and an
:class:`~steer.interventions.Intervention` (how to rewrite them); :func:`steer.select.select_units` finds the units
and a :class:`~steer.steerer.Steerer` takes the intervention whole. ``toward=None`` or coeff 0 runs the same code
path with no rewrite. :class:`SteerConfig` and :class:`~steer.generation.GenerationConfig` are the single source of
the defaults the CLI shows.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, fields, replace
from typing import TYPE_CHECKING, Any, overload

from steer.generation import GenerationConfig, with_overrides
from steer.interventions import APPLY_TO, RULES, Intervention, get_rule
from steer.models import Model, cached_model
from steer.options import option
from steer.resources import DEFAULT_PROMPT_SET
from steer.select import RecordSpec, SelectSpec, select_units
from steer.selection import SCORES
from steer.sites import REDUCTIONS, SITES
from steer.steerer import Steerer
from steer.worlds import Worlds

if TYPE_CHECKING:
    from steer.neuronset import NeuronSet
    from steer.propositions import Proposition


@dataclass(frozen=True)
class SteerConfig:
    """Which units ``steer.generate`` steers with and how it rewrites them, when the caller does not say.

    Units: the worlds are recorded with ``template`` at ``site``, each prompt's tokens reduced by ``reduce``, over
    ``layers`` (None: all); the ``k`` units for and ``k`` against the proposition by ``score`` are selected.
    Rewrite: ``rule`` with ``coeff`` (None: the rule's default) at the positions ``apply_to``; the resolved
    :class:`~steer.interventions.Intervention` is :attr:`intervention`, built (and validated) once.

    The defaults (rank-D, k = 500, ``additive`` with coeff 3 on every position, MLP activations averaged over each
    sentence's tokens) were chosen by a sweep on our own development prompts and re-checked at matched fluency; the
    runs and their tables are on the docs page ``docs/steering.md`` ("How the defaults were chosen").
    """

    template: str = option("plain", "template that turns each world into a prompt (a name or a string with {text})")
    site: str = option("mlp", "where units are recorded and rewritten", choices=tuple(SITES))
    reduce: str = option("mean", "how a world's tokens become one vector", choices=REDUCTIONS)
    layers: tuple[int, ...] | None = option(
        None, "layers to select units from: all, 23, -1, 0,5,10 or 18-23", none="all"
    )
    score: str = option("rank-D", "selection score", choices=SCORES)
    k: int = option(500, "units for, and units against")
    rule: str = option("additive", "how the units are rewritten", choices=lambda: tuple(RULES))
    coeff: float | None = option(3.0, "the rule's coefficient (0: off); another rule than the default: its own default")
    apply_to: str = option("all", "token positions rewritten", choices=APPLY_TO)
    intervention: Intervention = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        for name in ("template", "site", "reduce", "score", "rule", "apply_to"):
            if not isinstance(getattr(self, name), str):
                raise TypeError(f"{name} must be a string, got {type(getattr(self, name)).__name__}")
        if self.site not in SITES:
            raise ValueError(f"unknown site {self.site!r}; use one of {', '.join(SITES)}")
        if self.reduce not in REDUCTIONS:
            raise ValueError(f"unknown reduce {self.reduce!r}; use one of {', '.join(REDUCTIONS)}")
        if self.score not in SCORES:
            raise ValueError(f"unknown score {self.score!r}; use one of {', '.join(SCORES)}")
        if isinstance(self.k, bool) or not isinstance(self.k, int) or self.k < 1:
            raise ValueError(f"k must be a positive integer, got {self.k!r}")
        object.__setattr__(self, "intervention", Intervention(self.rule, self.coeff, "toward", self.apply_to))
        if self.layers is not None:
            if isinstance(self.layers, (str, bytes)) or not hasattr(self.layers, "__iter__"):
                layers = [self.layers] if isinstance(self.layers, int) and not isinstance(self.layers, bool) else None
                if layers is None:
                    raise TypeError(f"layers must be a sequence of layer indices or None, got {self.layers!r}")
                object.__setattr__(self, "layers", tuple(layers))
            else:
                object.__setattr__(self, "layers", tuple(self.layers))
            if not all(isinstance(v, int) and not isinstance(v, bool) for v in self.layers or ()):
                raise TypeError(f"layers must be integers, got {self.layers!r}")

    def resolve(self, **overrides: Any) -> SteerConfig:
        """This config with the caller's non-None choices applied. A coeff left unset follows the rule: this
        config's coeff for its own rule, the rule's ``default_coeff`` for another rule."""
        given = {k: v for k, v in overrides.items() if v is not None}
        if "intervention" in given:
            raise TypeError("set rule, coeff and apply_to; the intervention is built from them")
        out: SteerConfig = with_overrides(self, given, "steering")
        if "coeff" not in given and out.rule != self.rule:
            out = replace(out, coeff=get_rule(out.rule).default_coeff)
        return out

    def select_spec(self, model: Model, worlds: Worlds, proposition: Proposition) -> SelectSpec:
        """The units this config asks for, of ``proposition`` over ``worlds`` (recorded with their template)."""
        return SelectSpec(
            RecordSpec(model, worlds, self.site, self.reduce, self.layers), proposition, self.score, self.k
        )

    def worlds(self, worlds: Worlds | str | None = None) -> Worlds:
        """``worlds`` as they are, or the prompt set at a path (default: the bundled sentiment set) read with
        :attr:`template`."""
        if isinstance(worlds, Worlds):
            return worlds
        return Worlds.from_file(worlds or DEFAULT_PROMPT_SET, template=self.template)


def steering_neurons(
    model: Model, worlds: Worlds, toward: str | Proposition, config: SteerConfig | None = None, progress: bool = True
) -> NeuronSet:
    """The neuron set ``steer.generate`` steers with toward a proposition (found once, cached on disk).

    Args:
        model: the model.
        worlds: the worlds the proposition is a set of.
        toward: a label (``positive``), a proposition spec (``vader_pos:top25``) or a parsed Proposition.
        config: which units (default :class:`SteerConfig`).
        progress: show a progress bar while recording.

    Returns:
        The neuron set: ``config.k`` units for and against the proposition by ``config.score``.
    """
    cfg = config or SteerConfig()
    prop = worlds.proposition(toward) if isinstance(toward, str) else toward
    return select_units(cfg.select_spec(model, worlds, prop), progress)


@overload
def generate(
    prompts: str,
    toward: str | Proposition | None = "positive",
    *,
    model: Model | str | None = None,
    worlds: Worlds | str | None = None,
    dtype: str = "float32",
    device: str = "cpu",
    config: SteerConfig | None = None,
    generation: GenerationConfig | None = None,
    compiled: bool = False,
    progress: bool = True,
    **overrides: Any,
) -> str: ...


@overload
def generate(
    prompts: Sequence[str],
    toward: str | Proposition | None = "positive",
    *,
    model: Model | str | None = None,
    worlds: Worlds | str | None = None,
    dtype: str = "float32",
    device: str = "cpu",
    config: SteerConfig | None = None,
    generation: GenerationConfig | None = None,
    compiled: bool = False,
    progress: bool = True,
    **overrides: Any,
) -> list[str]: ...


def generate(
    prompts: str | Sequence[str],
    toward: str | Proposition | None = "positive",
    *,
    model: Model | str | None = None,
    worlds: Worlds | str | None = None,
    dtype: str = "float32",
    device: str = "cpu",
    config: SteerConfig | None = None,
    generation: GenerationConfig | None = None,
    compiled: bool = False,
    progress: bool = True,
    **overrides: Any,
) -> str | list[str]:
    """Steered continuations of ``prompts`` toward a proposition of the world set.

    Args:
        prompts: one prompt (returns a string) or several (returns a list).
        toward: a label of the worlds ("positive", "negative", any label present), a predicate or a Proposition
            ("vader_pos:top25"); None gives the unsteered output through the same code path.
        model: a loaded Model or a spec (default ``"default"``), loaded once per process.
        worlds: a Worlds or a prompt-set path (default: the bundled ``sentiment.jsonl``, with ``config.template``).
        dtype: the dtype a model spec is loaded in.
        device: the device a model spec is loaded on (``cpu``, ``cuda``, ``cuda:1``, ``mps``).
        config: which units and how to rewrite them (default :class:`SteerConfig`).
        generation: how to decode (default :class:`~steer.generation.GenerationConfig`).
        compiled: steer through the exported form (edited weights, no hooks; see :class:`~steer.steerer.Steerer`).
        progress: show a progress bar when the units must be recorded first.
        **overrides: fields of either config, e.g. ``k=200, coeff=4, max_new_tokens=30, seed=1``.

    Returns:
        The continuations (the new text only).
    """
    if not isinstance(prompts, (str, list, tuple)):
        raise TypeError(f"prompts must be a string or a list of strings, got {type(prompts).__name__}")
    if toward is not None and not isinstance(toward, str):
        raise TypeError(f"toward must be a label or proposition string (or None), got {type(toward).__name__}")
    if config is not None and not isinstance(config, SteerConfig):
        raise TypeError(f"config must be a steer.SteerConfig, got {type(config).__name__}")
    if generation is not None and not isinstance(generation, GenerationConfig):
        raise TypeError(f"generation must be a steer.GenerationConfig, got {type(generation).__name__}")
    if model is not None and not isinstance(model, (str, Model)):
        raise TypeError(f"model must be a steer Model or a model spec string, got {type(model).__name__}")
    if not isinstance(compiled, bool):
        raise TypeError(f"compiled must be True or False, got {compiled!r}")
    steer_names = {f.name for f in fields(SteerConfig) if f.init}
    cfg = (config or SteerConfig()).resolve(**{k: v for k, v in overrides.items() if k in steer_names})
    gen = with_overrides(
        generation or GenerationConfig(),
        {k: v for k, v in overrides.items() if k not in steer_names},
        "steering or generation",
    )
    m = cached_model(model, dtype, device)
    if toward is None:
        return Steerer(m, None).generate(prompts, gen)
    w = cfg.worlds(worlds)
    neurons = select_units(
        cfg.select_spec(m, w, w.proposition(toward) if isinstance(toward, str) else toward), progress
    )
    return Steerer(m, neurons, cfg.intervention, compiled=compiled).generate(prompts, gen)
