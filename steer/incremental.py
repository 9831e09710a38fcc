"""Incremental transport fits (AcT's "incremental" option): each layer's maps fitted with the earlier layers' maps
already active, so a map sees the inputs it will actually get when the whole set steers.

:func:`steer.neurons.with_transport` fits every unit from one unsteered recording, as if the other layers' maps were
not there; with many units (every MLP unit of every layer) the maps then compound and can destroy the text.
:func:`incremental_transport` refits layer by layer, in order: the source side's worlds are recorded again at layer
l while the maps of layers < l steer (at full strength, lam = 1), and layer l's linear-transport fits are made
from that recording against the target side's unsteered one. It costs one pass over the source worlds per steered
layer (each pass stops at its layer), per direction.

    ns = incremental_transport(model, steer.select_units(spec), worlds, worlds.proposition("positive"))
"""

from __future__ import annotations

from contextlib import nullcontext
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import numpy as np

from steer.interventions import Direction, Intervention, neuron_edits
from steer.neuronset import NeuronSet
from steer.record import record
from steer.steerer import Steerer
from steer.transport import linear_fit

if TYPE_CHECKING:
    from steer.models import Model
    from steer.propositions import Proposition
    from steer.worlds import Worlds


def incremental_transport(
    model: Model,
    neurons: NeuronSet,
    worlds: Worlds,
    proposition: Proposition,
    directions: tuple[Direction, ...] = ("toward", "away"),
    progress: bool = True,
) -> NeuronSet:
    """The neuron set with its linear-transport fits made layer by layer, earlier layers' maps active.

    Args:
        model: the model the set was selected on.
        neurons: a set with transport statistics (``steer.select_units`` adds them); its other statistics stay.
        worlds: the worlds it was selected on (their template makes the prompts).
        proposition: the set's proposition over ``worlds``.
        directions: the maps to refit: ``toward`` (onto A: ``w_a, b_a``) and/or ``away`` (onto A^c: ``w_c, b_c``).
        progress: show a progress bar over the layers.

    Returns:
        A new neuron set; ``extra["transport"]["incremental"]`` records the directions refitted.
    """
    from tqdm.auto import tqdm

    from steer.worlds import Worlds

    if not isinstance(neurons, NeuronSet) or not neurons.has_transport:
        raise ValueError("incremental fits start from a neuron set with transport statistics (select_units)")
    neurons.check_compatible(model)
    if not directions or any(d not in ("toward", "away") for d in directions):
        raise ValueError(f"directions must be some of ('toward', 'away'), got {directions!r}")
    mask = np.asarray(proposition.mask, dtype=bool)
    if mask.shape[0] != len(worlds):
        raise ValueError(f"proposition {proposition.name!r} has {mask.shape[0]} worlds, the worlds are {len(worlds)}")
    reduce = str(neurons.provenance.get("reduce", "mean"))
    units = neurons.units_for + neurons.units_against
    layers = sorted({u.layer for u in units})
    fits: dict[tuple[str, int, int], tuple[float, float]] = {}
    with tqdm(total=len(directions) * len(layers), desc="incremental fits", disable=not progress) as bar:
        for direction in directions:
            src_mask = ~mask if direction == "toward" else mask
            side = {
                name: Worlds.from_records([r for r, m in zip(worlds.records, want) if m], worlds.template)
                for name, want in (("source", src_mask), ("target", ~src_mask))
            }
            target = record(model, side["target"], neurons.site, layers, reduce, progress=False).X
            current = neurons
            for j, layer in enumerate(layers):
                earlier = {
                    k: e for k, e in neuron_edits(current, Intervention("linear-transport", 1.0, direction)).items()
                    if k < layer
                }  # fmt: skip
                ctx: Any = Steerer.from_edits(model, neurons.site, earlier) if earlier else nullcontext()
                with ctx:
                    source = record(model, side["source"], neurons.site, [layer], reduce, progress=False).X[:, 0]
                idx = sorted({u.index for u in units if u.layer == layer})
                w, b = linear_fit(source[:, idx].double(), target[:, j, idx].double())
                for i, wi, bi in zip(idx, w.tolist(), b.tolist()):
                    fits[direction, layer, i] = (wi, bi)
                current = _with_fits(current, fits, direction)
                bar.update(1)
    out = neurons
    for direction in directions:
        out = _with_fits(out, fits, direction)
    extra = {**out.extra, "transport": {**out.extra.get("transport", {}), "incremental": list(directions)}}
    return replace(out, extra=extra)


def _with_fits(ns: NeuronSet, fits: dict[tuple[str, int, int], tuple[float, float]], direction: str) -> NeuronSet:
    """``ns`` with the fits made so far for ``direction`` (the other units keep theirs)."""
    keys = ("w_a", "b_a") if direction == "toward" else ("w_c", "b_c")

    def update(u: Any) -> Any:
        got = fits.get((direction, u.layer, u.index))
        return u if got is None else replace(u, **dict(zip(keys, got)))

    return replace(ns, units_for=[update(u) for u in ns.units_for], units_against=[update(u) for u in ns.units_against])
