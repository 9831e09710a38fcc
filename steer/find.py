"""The `find` job: a recording + worlds + proposition -> strengths (by normalization) -> neuron sets, with their
stability, then tables and plots. :func:`find_units` computes and writes nothing; :meth:`FindResult.save` writes."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from steer.activations import Activations
from steer.artifacts import ArtifactMismatchError, check_replaceable, steer_made, write_json_atomic
from steer.configs import FindConfig  # noqa: F401 - public here too (it lives in steer.configs)
from steer.neurons import Strengths
from steer.neuronset import NeuronSet, Unit
from steer.plots import plot_stability, plot_strength_by_layer
from steer.propositions import Proposition
from steer.stability import bootstrap_neurons
from steer.strength import NORMALIZATIONS, Normalize
from steer.worlds import WorldFields


@dataclass
class FindResult:
    """What :func:`find_units` found: strengths and neuron sets by normalization, with what they were found from."""

    worlds: WorldFields
    proposition: Proposition
    activations: Activations
    strengths: dict[str, Strengths]  # by normalization
    neurons: dict[str, NeuronSet]

    def save(self, out: str | os.PathLike[str]) -> Path:
        """Write ``neurons-<normalize>.json``, ``strength_by_layer-<normalize>.png``, ``stability-<normalize>.png``
        (with stability results) and ``summary.json`` to ``out``; the recording too (``activations/``) when it is
        only in memory.

        Returns:
            The output directory.
        """
        out = Path(out)
        if out.is_dir() and not steer_made(out) and not all(steer_made(p) for p in out.iterdir()):
            check_replaceable(out, "the result folder")  # a folder of the user's: refused, nothing written
        out.mkdir(parents=True, exist_ok=True)
        acts = self.activations
        if acts.path is None:
            acts.save(out / "activations")
        for norm, ns in self.neurons.items():
            ns.save(out / f"neurons-{norm}.json")
            plot_strength_by_layer(self.strengths[norm], out / f"strength_by_layer-{norm}.png")
            if "stability" in ns.extra:
                plot_stability(ns, out / f"stability-{norm}.png")
        first = next(iter(self.neurons.values()))
        write_json_atomic(
            out / "summary.json",
            {
                "kind": "find_summary",
                "model": acts.model,
                "worlds": self.worlds.provenance,
                "proposition": next(iter(self.strengths.values())).proposition,
                "recording": _relative(acts.path if acts.path is not None else out / "activations", out),
                "site": acts.site,
                "reduce": acts.reduce,
                "layers": acts.layers,
                "k": first.k,
                "per_layer": first.per_layer,
                "layer_max_D": {n: s.layer_max().tolist() for n, s in self.strengths.items()},
                "layer_min_D": {n: s.layer_min().tolist() for n, s in self.strengths.items()},
            },
        )
        return out


def _relative(path: Path, base: Path) -> str:
    """``path`` relative to ``base`` when inside it (a result folder moves as a whole), else absolute."""
    try:
        return str(path.resolve().relative_to(base.resolve()))
    except ValueError:
        return str(path.resolve())


def find_units(
    acts: Activations,
    worlds: WorldFields,
    proposition: str | Proposition,
    *,
    k: int = 5,
    per_layer: bool = False,
    normalizations: tuple[Normalize, ...] = NORMALIZATIONS,
    bootstrap: int = 200,
    alpha: float = 0.1,
    seed: int = 0,
) -> FindResult:
    """D for a proposition under each normalization, and the top-k units for and against it.

    Args:
        acts: a recording of ``worlds``.
        worlds: the worlds.
        proposition: a proposition spec (``label=positive``, ``vader_pos:top25``...) or a Proposition.
        k: units on each side.
        per_layer: k of each in every recorded layer instead of k over all layers.
        normalizations: which of ``none`` (the paper), ``zscore``, ``rank``.
        bootstrap: stratified bootstrap resamples of the worlds for each whole-model neuron set's stability
            (D intervals, top-k inclusion frequencies, Jaccard stability, prediction set); 0 for none.
        alpha: the interval and prediction-set level.
        seed: the bootstrap's random seed.

    Returns:
        A :class:`FindResult` (nothing is written; see :meth:`FindResult.save`).
    """
    prop = worlds.proposition(proposition) if isinstance(proposition, str) else proposition
    if acts.worlds.get(worlds.HASH_KEY) != worlds.content_hash:
        where = acts.path if acts.path is not None else "in memory"
        raise ArtifactMismatchError(f"recording ({where}) was made from other worlds than {worlds.source}")
    width = acts.shape[2]
    n_units = width * (1 if per_layer else len(acts.layers))
    if k > n_units:
        raise ValueError(f"k={k} is larger than the {n_units} units {'per layer' if per_layer else 'recorded'}")
    strengths: dict[str, Strengths] = {}
    neurons: dict[str, NeuronSet] = {}
    for norm in normalizations:
        s = acts.strength(prop, normalize=norm)
        strengths[norm] = s
        neurons[norm] = s.top(k, per_layer=per_layer)
        if bootstrap > 0 and not per_layer:
            bootstrap_neurons(acts, prop, neurons[norm], resamples=bootstrap, alpha=alpha, seed=seed)
    return FindResult(worlds, prop, acts, strengths, neurons)


def format_find(result: FindResult, out: Path | None = None) -> str:
    """The neuron sets of a find result as text tables (and the files in ``out``, when given)."""
    lines = []
    for norm, ns in result.neurons.items():
        prop = ns.proposition
        lines.append(
            f"\n== top {ns.k} units {'per layer ' if ns.per_layer else ''}FOR {prop['name']!r} "
            f"({prop['size']}/{prop['n_worlds']} worlds), site {ns.site}, score {ns.score} (normalize={norm})"
        )
        lines.append(ns.table("for"))
        lines.append(f"== top {ns.k} units AGAINST {prop['name']!r}, normalize={norm}")
        lines.append(ns.table("against"))
        if "stability" in ns.extra:
            st = ns.extra["stability"]
            ps = st["prediction_set_for"]
            pset = ", ".join(f"L{p['unit'][0]}.{p['unit'][1]} ({p['share']:.2f})" for p in ps[:8])
            pset += f" ... ({len(ps)} units in all)" if len(ps) > 8 else ""
            lines.append(
                f"   stability over {st['resamples']} bootstrap resamples (seed {st['seed']}): mean Jaccard of "
                f"the top-{ns.k} sets {st['jaccard_for']:.2f} (for), {st['jaccard_against']:.2f} (against); "
                f"prediction set for the top unit at alpha={st['alpha']}: {pset}"
            )
    s = next(iter(result.strengths.values()))
    lines.append("\nmax / min D per layer (normalize=" + ", ".join(result.strengths) + "):")
    for j, layer in enumerate(s.layers):
        cells = "   ".join(f"{st.layer_max()[j]:8.3f} {st.layer_min()[j]:8.3f}" for st in result.strengths.values())
        lines.append(f"  layer {layer:>3}: {cells}")
    if out is not None:
        lines.append(f"\nwrote {out}/: " + ", ".join(sorted(p.name for p in out.iterdir())))
    return "\n".join(lines)


def trust_report(
    result: FindResult, q: float = 0.1, delta: float = 0.05, resamples: int = 200, alpha: float = 0.1, seed: int = 0
) -> dict[str, Any]:
    """Sanity checks of D and the other similarities on each neuron set (for-units against A, against-units
    against A^c), and an explanation of each set's top unit against every candidate proposition.

    Args:
        result: a find result.
        q: the top share of worlds that binarizes a unit.
        delta: failure probability of the uniform bounds.
        resamples: bootstrap resamples for the explanation's intervals.
        alpha: interval and prediction-set level.
        seed: the random seed.

    Returns:
        A JSON-ready dict by normalization.
    """
    from steer.explain import candidate_propositions, explain_unit, sanity_checks

    prop = result.proposition
    cands = candidate_propositions(result.worlds)
    if prop.name not in {c.name for c in cands}:
        cands.append(prop)
    acts = result.activations
    X = acts.X
    A = torch.as_tensor(prop.mask)
    report = {}

    def cols(units: list[Unit]) -> torch.Tensor:
        return torch.stack([X[:, acts.layer_index(u.layer), u.index] for u in units], 1)

    for norm, ns in result.neurons.items():
        top = ns.units_for[0]
        ex = explain_unit(cols([top])[:, 0], cands, q=q, delta=delta, resamples=resamples, alpha=alpha, seed=seed)
        report[norm] = {
            "sanity_for": sanity_checks(cols(ns.units_for), A, q=q, seed=seed),
            "sanity_against": sanity_checks(cols(ns.units_against), ~A, q=q, seed=seed),
            "explanation": {
                "unit": [top.layer, top.index],
                "sentence": ex.sentence(f"unit ({top.layer}, {top.index})"),
                "rows": ex.rows,
                "prediction_set": ex.prediction_set,
                "best": ex.best,
                "margins": ex.margins,
                "params": ex.params,
            },
        }
    return report


def format_trust(report: dict[str, Any]) -> str:
    """A trust report as text: the sanity-check tables and the top unit's explanation, per normalization."""
    from steer.explain import format_sanity

    lines = []
    for norm, r in report.items():
        ex = r["explanation"]
        lines.append(f"\n== normalize={norm}: sanity checks of the scores on the top units FOR the proposition")
        lines.append(format_sanity(r["sanity_for"]))
        lines.append(f"== normalize={norm}: ... on the top units AGAINST it (checked against the complement)")
        lines.append(format_sanity(r["sanity_against"]))
        lines.append(
            f"== explaining unit {tuple(ex['unit'])} against {ex['params']['n_candidates']} candidate "
            f"propositions (top-{ex['params']['q']:g} set T, delta={ex['params']['delta']}, "
            f"{ex['params']['resamples']} resamples):"
        )
        lines.append(
            f"{'candidate':>22} {'|A|':>5} {'D':>8} {'D interval':>19} {'IoU':>6} {'+-r':>5} "
            f"{'AUROC':>6} {'+-r':>5} {'corr':>6}"
        )
        for row in sorted(ex["rows"], key=lambda x: -x["D"])[:8]:
            interval = "[{:.3f}, {:.3f}]".format(row["D_lo"], row["D_hi"])
            lines.append(
                f"{row['name'][:22]:>22} {row['size']:>5} {row['D']:>8.3f} {interval:>19} {row['iou']:>6.3f} "
                f"{row['r_iou']:>5.2f} {row['auroc']:>6.3f} {row['r_auroc']:>5.2f} {row['corr']:>6.3f}"
            )
        pset = ", ".join(f"{name} ({share:.2f})" for name, share in ex["prediction_set"])
        lines.append(f"   prediction set (alpha={ex['params']['alpha']}): {pset}")
        lines.append(f"   {ex['sentence']}")
    return "\n".join(lines)
