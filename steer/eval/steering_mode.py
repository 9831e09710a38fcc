"""The steering-quality mode of the evaluation harness (``steer eval steer``).

:func:`evaluate_steering` compares the generation quality of neuron steering against random units, prompting, a
residual steering vector (CAA) and self-conditioning, each over its own coefficient sweep, scored by at least two
scorers that share nothing with the model (VADER and a classifier); :func:`build_methods` builds those methods from
a model and a world set. The result is written as ``result.json`` + ``report.md`` + PNG plots
(:mod:`steer.eval.report`).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from steer.eval.configs import SteeringEvalConfig
from steer.eval.methods import Method
from steer.eval.report import write_report
from steer.generation import GenerationConfig
from steer.interventions import Intervention
from steer.models import versions
from steer.neurons import score_units
from steer.resources import DEFAULT_PROMPT_SET, PROMPTS_DIR
from steer.select import RecordSpec, SelectSpec, recording, select_units
from steer.worlds import Worlds

if TYPE_CHECKING:
    from steer.eval.scorers import Scorer
    from steer.models import Model


def build_methods(model: Model, cfg: SteeringEvalConfig, progress: bool = True) -> tuple[list[Method], dict[str, Any]]:
    """Neuron steering (main score, other scores, random control), CAA, self-conditioning and prompting."""
    import torch

    from steer.eval.methods import (
        NeuronSteering,
        Prompting,
        ResidualVector,
        SelfConditioning,
        residual_vectors,
        self_conditioning_experts,
    )

    worlds = Worlds.from_file(cfg.worlds or DEFAULT_PROMPT_SET, template=cfg.template)
    props = {t: worlds.proposition(f"label={t}") for t in ("positive", "negative")}
    spec = RecordSpec(model, worlds, cfg.site, cfg.reduce)
    acts = recording(spec, progress)
    methods: list[Method] = []
    coeffs = list(cfg.coeffs)
    rewrite = Intervention(cfg.rule)
    for name in (cfg.score, *cfg.compare_scores):
        methods.append(
            NeuronSteering(
                f"neurons ({name}, k={cfg.k})",
                coeffs,
                "neurons",
                {"score": name, "k": cfg.k, "rule": cfg.rule, "site": cfg.site},
                sets={t: select_units(SelectSpec(spec, p, name, cfg.k), progress) for t, p in props.items()},
                intervention=rewrite,
            )
        )
    # the random control draws different units per target (the same units would make the two targets equal)
    main = {t: score_units(acts, p, cfg.score) for t, p in props.items()}
    methods.append(
        NeuronSteering(
            f"random units (k={cfg.k})",
            coeffs,
            "control",
            {"k": cfg.k, "rule": cfg.rule, "seed": cfg.random_seed},
            sets={t: main[t].random(cfg.k, seed=cfg.random_seed + i) for i, t in enumerate(main)},
            intervention=rewrite,
        )
    )
    if cfg.caa_coeffs:
        layer = model.n_layers // 2 if cfg.caa_layer is None else cfg.caa_layer
        resid = recording(RecordSpec(model, worlds, "resid", cfg.reduce, (layer,)), progress)
        stats = {t: resid.strength(p).stats for t, p in props.items()}
        methods.append(
            ResidualVector(
                f"residual vector (CAA, layer {layer})",
                list(cfg.caa_coeffs),
                "baseline",
                {"layer": layer},
                vectors=residual_vectors(stats, 0),
                layers=(layer,),
            )
        )
    if cfg.selfcond_k:
        X = acts.X
        experts = {
            t: self_conditioning_experts(X, torch.as_tensor(np.asarray(p.mask)), acts.layers, max(cfg.selfcond_k))
            for t, p in props.items()
        }
        methods.append(
            SelfConditioning(
                "self-conditioning (AP, median on A)",
                [float(k) for k in cfg.selfcond_k],
                "baseline",
                {"site": cfg.site},
                experts=experts,
                site=cfg.site,
            )
        )
    if cfg.prompting:
        methods.append(Prompting("prompting", [1.0], "baseline", {"instruction": Prompting.instruction}))
    return methods, {"worlds": worlds.provenance, "recording_site": cfg.site}


def load_prompts(paths: Sequence[str], n: int | None = None) -> tuple[list[str], str]:
    """The prompts of several prompt files (looked up in prompts/ when not found as given), and their hashes."""
    texts, sources = [], []
    for p in paths:
        path = Path(p)
        if not path.exists() and (PROMPTS_DIR / path.name).exists():
            path = PROMPTS_DIR / path.name
        w = Worlds.from_file(path)
        texts += w.prompts
        sources.append(w.provenance["prompt_set_sha256"][:12])
    return (texts[:n] if n else texts), ",".join(sources)


def evaluate_steering(
    model: Model,
    cfg: SteeringEvalConfig | None = None,
    out: str | Path | None = None,
    scorers: Sequence[Scorer] | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Run every method's sweep on the prompts.

    Args:
        model: the model.
        cfg: what to compare (default :class:`SteeringEvalConfig`).
        out: a report directory to write (``result.json``, ``report.md``, PNGs); None writes nothing.
        scorers: scorers to use instead of building ``cfg.scorers``.
        progress: show progress bars.

    Returns:
        The result, JSON-ready.
    """
    from steer.eval.quality import best_at_fluency, quality_eval, summary_rows
    from steer.eval.scorers import get_scorer

    cfg = cfg or SteeringEvalConfig()
    t0 = time.time()
    scorers = (
        list(scorers) if scorers is not None else [get_scorer(s, sst2=cfg.sst2, progress=progress) for s in cfg.scorers]
    )
    prompts, prompt_hash = load_prompts(cfg.prompts, cfg.n_prompts)
    methods, prov = build_methods(model, cfg, progress)
    result = quality_eval(
        model,
        prompts,
        methods,
        scorers,
        seeds=cfg.seeds,
        generation=GenerationConfig(max_new_tokens=cfg.max_new_tokens),
        progress=progress,
    )
    budget = cfg.fluency_budget * result["unsteered"]["ppl"]
    result.update(
        mode="steer",
        config=asdict(cfg),
        model=model.provenance,
        prompts_sha256=prompt_hash,
        **prov,
        steer_version=versions()["steer"],
        seconds=round(time.time() - t0, 1),
        ppl_budget=budget,
    )
    result["summary"] = {sc.name: summary_rows(result, sc.name) for sc in scorers}
    result["at_equal_fluency"] = {name: best_at_fluency(rows, budget) for name, rows in result["summary"].items()}
    if out is not None:
        write_report(result, out)
    return result
