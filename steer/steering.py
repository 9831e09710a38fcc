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
from dataclasses import fields
from typing import TYPE_CHECKING, Any, overload

from steer.configs import GenerationConfig, SteerConfig, with_overrides
from steer.models import Model, cached_model
from steer.select import select_units
from steer.steerer import Steerer
from steer.worlds import Worlds

if TYPE_CHECKING:
    from steer.neuronset import NeuronSet
    from steer.propositions import Proposition


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
