"""``steer.view``: one self-contained HTML page per neuron set (data: :mod:`steer.view_data`, page:
:mod:`steer.view_html`)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from steer.interventions import Intervention
from steer.network import Network
from steer.neuronset import NeuronSet
from steer.view_data import gather, read_bench
from steer.view_html import ViewPage, build
from steer.worlds import TensorWorlds, Worlds

if TYPE_CHECKING:
    from steer.models import Model
    from steer.steering import SteerConfig


def _count(name: str, value: object, least: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < least:
        raise ValueError(f"{name} must be an integer >= {least}, got {value!r}")
    return value


def _set_worlds(ns: NeuronSet, cfg: SteerConfig) -> Worlds:
    """The worlds a saved neuron set was selected on, read again from its provenance (checked by hash)."""
    prov = ns.provenance.get("worlds", {})
    source, template = prov.get("source"), prov.get("template_text") or prov.get("template")
    if not source or not Path(str(source)).exists():
        raise ValueError(f"the neuron set's worlds ({source}) are not here; pass worlds=")
    worlds = Worlds.from_file(str(source), template=template or cfg.template)
    want = prov.get("prompt_set_sha256")
    if want and worlds.prompt_set_hash != want:
        raise ValueError(f"the worlds at {source} are not the ones the neuron set was selected on (hash differs)")
    return worlds


def view(
    model: Model | Network | str | None = None,
    neurons: NeuronSet | str | os.PathLike[str] | None = None,
    *,
    toward: str | None = None,
    worlds: Worlds | TensorWorlds | str | None = None,
    config: SteerConfig | None = None,
    intervention: Intervention | None = None,
    out: str | os.PathLike[str] | None = None,
    detail: int = 50,
    examples: int = 5,
    prompts: Sequence[str] | None = None,
    bench: str | os.PathLike[str] | dict[str, Any] | None = None,
    explain: int = 5,
    max_new_tokens: int = 20,
    seed: int = 0,
    progress: bool = False,
) -> ViewPage:
    """A self-contained HTML page that shows a neuron set: the overview (score heatmap, the units' table), a panel
    per unit (examples with per-token activations, histogram, written and read tokens, the rule's map) and a
    steering panel. Inline CSS, JavaScript and data; it makes no network request.

    Args:
        model: a loaded Model, a :class:`steer.Network`, or a model spec (default ``"default"``).
        neurons: a NeuronSet or a saved one's path; None selects the set ``steer.generate`` steers with ``toward``.
        toward: the proposition to select units for when ``neurons`` is None (default ``positive``).
        worlds: the worlds (a Worlds, a prompt-set path, or TensorWorlds for a Network); default: the set's own.
        config: units and rule (default :class:`steer.SteerConfig`).
        intervention: the rule drawn and used in the steering panel (default ``config.intervention``).
        out: also write the page here.
        detail: units per side with per-token activations (the strongest; the rest get summary rows).
        examples: worlds shown that activate a unit most, and least.
        prompts: prompts for the steering panel (default: a few neutral openings of ours).
        bench: a steering-benchmark ``result.json`` (path or loaded): adds its success-against-perplexity curve.
        explain: units per side explained against the worlds' field propositions (0: none).
        max_new_tokens: new tokens per continuation in the steering panel.
        seed: sampling seed of the steering panel and the quantile samples.
        progress: show a progress bar if a recording is needed.

    Returns:
        The page's HTML (a ``str`` that a notebook shows inline).
    """
    from steer.models import cached_model
    from steer.select import RecordSpec, recording
    from steer.steering import SteerConfig, steering_neurons

    _count("detail", detail, 0)
    _count("examples", examples, 1)
    _count("explain", explain, 0)
    _count("max_new_tokens", max_new_tokens, 1)
    if neurons is not None and toward is not None:
        raise ValueError("give neurons or toward, not both: a neuron set has its own proposition")
    if intervention is not None and not isinstance(intervention, Intervention):
        raise TypeError(f"intervention must be a steer.Intervention, got {type(intervention).__name__}")
    cfg = config or SteerConfig()
    bench_data = bench if isinstance(bench, dict) else read_bench(bench)
    if isinstance(model, Network):
        if not isinstance(neurons, (NeuronSet, str, os.PathLike)):
            raise ValueError("a Network needs its neuron set (neurons=)")
        if not isinstance(worlds, TensorWorlds):
            raise ValueError("a Network needs its worlds as TensorWorlds (worlds=)")
        ns = neurons if isinstance(neurons, NeuronSet) else NeuronSet.load(neurons)
        ns.check_compatible(model.identity)
        acts = model.record(worlds, ns.site)
        assert not isinstance(acts, dict)
        iv = intervention or Intervention("paper")
        data = gather(model, ns, worlds, acts, intervention=iv, detail=detail, n_examples=examples, explain=explain,
                      seed=seed)  # fmt: skip
    else:
        m = model if model is not None and not isinstance(model, str) else cached_model(model)
        if isinstance(worlds, TensorWorlds):
            raise ValueError("TensorWorlds are the worlds of a Network; a language model takes Worlds or a path")
        if neurons is None:
            w = cfg.worlds(worlds)
            ns = steering_neurons(m, w, toward or "positive", cfg, progress=progress)
        else:
            ns = neurons if isinstance(neurons, NeuronSet) else NeuronSet.load(neurons, model=m)
            ns.check_compatible(m)
            w = cfg.worlds(worlds) if worlds is not None else _set_worlds(ns, cfg)
        reduce = str(ns.provenance.get("reduce", cfg.reduce))
        acts = recording(RecordSpec(m, w, ns.site, reduce, cfg.layers), progress)
        data = gather(m, ns, w, acts, intervention=intervention or cfg.intervention, detail=detail,
                      n_examples=examples, prompts=prompts, bench=bench_data, explain=explain,
                      max_new_tokens=max_new_tokens, seed=seed)  # fmt: skip
    page = ViewPage(build(data))
    if out is not None:
        page.save(out)
    return page
