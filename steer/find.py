"""The `find` job: worlds -> recording -> strengths (raw and z-scored) -> neuron sets, tables and plots."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from steer.artifacts import ArtifactMismatchError, write_json_atomic
from steer.neurons import NeuronSet, Strengths
from steer.plots import plot_stability, plot_strength_by_layer
from steer.record import Activations, record, site_width
from steer.stability import bootstrap_neurons
from steer.strength import NORMALIZATIONS
from steer.worlds import Proposition, Worlds


@dataclass
class FindResult:
    worlds: Worlds  # as used: with VADER fields when the proposition needed them
    proposition: Proposition
    activations: Activations
    strengths: dict[str, Strengths]  # by normalization
    neurons: dict[str, NeuronSet]
    out: Path | None


def needs_vader(worlds: Worlds, proposition: str) -> bool:
    return "vader_" in proposition and not any(k.startswith("vader_") for k in worlds.records[0])


def find_neurons(
    model: Any,
    worlds: Worlds,
    proposition: str,
    site: str = "mlp",
    layers: list[int] | None = None,
    position: str = "last",
    k: int = 5,
    per_layer: bool = False,
    normalizations: tuple[str, ...] = NORMALIZATIONS,
    batch_size: int = 16,
    out: str | os.PathLike | None = None,
    recording: str | os.PathLike | None = None,
    progress: bool = True,
    bootstrap: int = 200,
    alpha: float = 0.1,
    bootstrap_seed: int = 0,
) -> FindResult:
    """Record (or reuse ``recording``), compute D for ``proposition`` under each normalization, select top-k.

    With ``bootstrap`` > 0 (and a whole-model set) every neuron set also gets its stability over that many
    stratified bootstrap resamples of the worlds (steer.stability): D intervals, top-k inclusion frequencies,
    Jaccard stability and the prediction set, stored in the neuron set with K and seed.

    With ``out`` it writes ``activations/``, ``neurons-<normalize>.json``, ``strength_by_layer-<normalize>.png``,
    ``stability-<normalize>.png`` and ``summary.json``."""
    if needs_vader(worlds, proposition):
        worlds = worlds.with_vader()
    prop = worlds.proposition(proposition)
    n_layers = len(layers) if layers is not None else model.n_layers
    n_units = site_width(model, site) * (1 if per_layer else n_layers)
    if k > n_units:
        raise ValueError(f"k={k} is larger than the {n_units} units {'per layer' if per_layer else 'recorded'}")
    out = Path(out) if out is not None else None
    if recording is not None:
        acts = Activations.load(recording, model=model, site=site)
        if acts.worlds.get("prompt_set_sha256") != worlds.prompt_set_hash:
            raise ArtifactMismatchError(f"recording {recording} was made from other worlds than {worlds.source}")
    else:
        acts = record(model, worlds, site=site, layers=layers, position=position, batch_size=batch_size,
                      out=None if out is None else out / "activations", progress=progress)
    strengths, neurons = {}, {}
    for norm in normalizations:
        s = acts.strength(prop, normalize=norm)
        strengths[norm] = s
        neurons[norm] = s.top(k, per_layer=per_layer)
        if bootstrap > 0 and not per_layer:
            bootstrap_neurons(acts, prop, neurons[norm], K=bootstrap, alpha=alpha, seed=bootstrap_seed)
        if out is not None:
            neurons[norm].save(out / f"neurons-{norm}.json")
            plot_strength_by_layer(s, out / f"strength_by_layer-{norm}.png")
            if "stability" in neurons[norm].extra:
                plot_stability(neurons[norm], out / f"stability-{norm}.png")
    if out is not None:
        write_json_atomic(out / "summary.json", {
            "model": model.provenance, "worlds": worlds.provenance, "proposition": strengths[normalizations[0]].proposition,
            "site": site, "position": position, "layers": acts.layers, "k": k, "per_layer": per_layer,
            "layer_max_D": {n: s.layer_max().tolist() for n, s in strengths.items()},
            "layer_min_D": {n: s.layer_min().tolist() for n, s in strengths.items()},
        })
    return FindResult(worlds, prop, acts, strengths, neurons, out)


def format_find(result: FindResult) -> str:
    lines = []
    for norm, ns in result.neurons.items():
        prop = ns.proposition
        lines.append(f"\n== top {ns.k} units {'per layer ' if ns.per_layer else ''}FOR {prop['name']!r} "
                     f"({prop['size']}/{prop['n_worlds']} worlds), site {ns.site}, normalize={norm}")
        lines.append(ns.table("for"))
        lines.append(f"== top {ns.k} units AGAINST {prop['name']!r}, normalize={norm}")
        lines.append(ns.table("against"))
        if "stability" in ns.extra:
            st = ns.extra["stability"]
            ps = st["prediction_set_for"]
            pset = ", ".join(f"L{p['unit'][0]}.{p['unit'][1]} ({p['share']:.2f})" for p in ps[:8])
            pset += f" ... ({len(ps)} units in all)" if len(ps) > 8 else ""
            lines.append(f"   stability over K={st['K']} bootstrap resamples (seed {st['seed']}): mean Jaccard of "
                         f"the top-{ns.k} sets {st['jaccard_for']:.2f} (for), {st['jaccard_against']:.2f} (against); "
                         f"prediction set for the top unit at alpha={st['alpha']}: {pset}")
    s = next(iter(result.strengths.values()))
    lines.append("\nmax / min D per layer (normalize=" + ", ".join(result.strengths) + "):")
    for j, layer in enumerate(s.layers):
        cells = "   ".join(f"{st.layer_max()[j]:8.3f} {st.layer_min()[j]:8.3f}" for st in result.strengths.values())
        lines.append(f"  layer {layer:>3}: {cells}")
    if result.out is not None:
        lines.append(f"\nwrote {result.out}/: " + ", ".join(sorted(p.name for p in result.out.iterdir())))
    return "\n".join(lines)


def trust_report(result: FindResult, q: float = 0.1, delta: float = 0.05, K: int = 200, alpha: float = 0.1,
                 seed: int = 0) -> dict:
    """Sanity checks of D and the alternative scores on each neuron set (for-units against A, against-units
    against A^c), and an explanation of each set's top unit against every candidate proposition."""
    from steer.explain import candidate_propositions, explain_unit, sanity_checks

    prop = result.proposition
    cands = candidate_propositions(result.worlds)
    if prop.name not in {c.name for c in cands}:
        cands.append(prop)
    acts = result.activations
    X = acts.X
    A = torch.as_tensor(prop.mask)
    report = {}
    for norm, ns in result.neurons.items():
        cols = lambda units: torch.stack([X[:, acts.layer_index(u.layer), u.index] for u in units], 1)  # noqa: E731
        top = ns.units_for[0]
        ex = explain_unit(cols([top])[:, 0], cands, q=q, delta=delta, K=K, alpha=alpha, seed=seed)
        report[norm] = {
            "sanity_for": sanity_checks(cols(ns.units_for), A, q=q, seed=seed),
            "sanity_against": sanity_checks(cols(ns.units_against), ~A, q=q, seed=seed),
            "explanation": {"unit": [top.layer, top.index], "sentence": ex.sentence(f"unit ({top.layer}, {top.index})"),
                            "rows": ex.rows, "prediction_set": ex.prediction_set, "best": ex.best,
                            "margins": ex.margins, "params": ex.params},
        }
    return report


def format_trust(report: dict) -> str:
    from steer.explain import format_sanity

    lines = []
    for norm, r in report.items():
        ex = r["explanation"]
        lines.append(f"\n== normalize={norm}: sanity checks of the scores on the top units FOR the proposition")
        lines.append(format_sanity(r["sanity_for"]))
        lines.append(f"== normalize={norm}: ... on the top units AGAINST it (checked against the complement)")
        lines.append(format_sanity(r["sanity_against"]))
        lines.append(f"== explaining unit {tuple(ex['unit'])} against {ex['params']['n_candidates']} candidate "
                     f"propositions (top-{ex['params']['q']:g} set T, delta={ex['params']['delta']}, "
                     f"K={ex['params']['K']}):")
        lines.append(f"{'candidate':>22} {'|A|':>5} {'D':>8} {'D interval':>19} {'IoU':>6} {'+-r':>5} "
                     f"{'AUROC':>6} {'+-r':>5} {'corr':>6}")
        for row in sorted(ex["rows"], key=lambda x: -x["D"])[:8]:
            interval = "[{:.3f}, {:.3f}]".format(row["D_lo"], row["D_hi"])
            lines.append(f"{row['name'][:22]:>22} {row['size']:>5} {row['D']:>8.3f} {interval:>19} {row['iou']:>6.3f} "
                         f"{row['r_iou']:>5.2f} {row['auroc']:>6.3f} {row['r_auroc']:>5.2f} {row['corr']:>6.3f}")
        pset = ", ".join(f"{name} ({share:.2f})" for name, share in ex["prediction_set"])
        lines.append(f"   prediction set (alpha={ex['params']['alpha']}): {pset}")
        lines.append(f"   {ex['sentence']}")
    return "\n".join(lines)
