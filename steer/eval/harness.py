"""The evaluation harness: build the methods and controls from a model and a world set, run them, write a report.

Two modes, each written as ``result.json`` + ``report.md`` + PNG plots in one output directory:

- :func:`evaluate_flips` (``steer eval flip``): the paper's classification protocol (method.md section 4) with
  controls. Defaults are the paper's setting: 1024 SST-2 train sentences in the two-shot prompt, A+/A- = the
  25 sentences with the highest VADER pos/neg, site resid, the last token, top-5 by raw D in the last layer,
  pos2neg = paper rule c=5 away from A+, neg2pos = c=7 away from A-, evaluated on 500 SST-2 validation
  sentences in the three-shot a)/b) prompt. Controls with the same k and rule: random units of the same
  layers (several seeds), the top-k by plain mean difference, and the top-k of the other layer choice.
- :func:`evaluate_steering` (``steer eval steer``): generation quality of neuron steering against random
  units, prompting, a residual steering vector (CAA) and self-conditioning, each over its own coefficient
  sweep, scored by at least two scorers that share nothing with the model (VADER and a classifier).
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from steer.artifacts import atomic_file, write_json_atomic
from steer.cache import cached_recording
from steer.eval.faithfulness import FLIPS, Condition, answer_token_ids, flip_eval
from steer.eval.methods import Method
from steer.eval.metrics import format_rate, rate
from steer.interventions import Intervention
from steer.models import versions
from steer.neurons import Strengths, UnitScores, score_units
from steer.record import format_layers, resolve_layers
from steer.resources import DEFAULT_PROMPT_SET, PROMPTS_DIR
from steer.steering import GenerationConfig
from steer.worlds import Template, Worlds

if TYPE_CHECKING:
    from steer.eval.scorers import Scorer
    from steer.models import Model

LABEL_MAP = {"1": "positive", "0": "negative", "positive": "positive", "negative": "negative"}


# ------------------------------------------------------------------------------------------------ flips


@dataclass(frozen=True)
class FlipWorlds:
    """Where the units are found: the worlds (default: SST-2 train), their template and the two propositions."""

    source: str | None = None
    n: int = 1024
    template: str | Template = "paper-2shot"
    positive: str = "vader_pos:top25"
    negative: str = "vader_neg:top25"


@dataclass(frozen=True)
class FlipItems:
    """What is classified: labelled items (default: SST-2 validation) in an answer-letter template."""

    source: str | None = None
    n: int | None = 500
    template: str | Template = "paper-3shot-ab"
    label_field: str = "label"
    answers: tuple[str, str] = (" a", " b")  # the answer tokens for positive and negative


@dataclass(frozen=True)
class UnitChoice:
    """Which units are rewritten: the method's (top-k by ``score`` in ``layers`` at each site) and the controls'."""

    sites: tuple[str, ...] = ("resid",)  # several sites share one pass over the evaluation items
    reduce: str = "last"
    layers: tuple[int, ...] = (-1,)
    other_layers: tuple[int, ...] | None = None  # default: all layers when `layers` is one layer, else the last
    k: int = 5
    score: str = "D"
    compare_scores: tuple[str, ...] = ("mean-diff",)
    random_seeds: tuple[int, ...] = (0, 1, 2)


@dataclass(frozen=True)
class FlipConfig:
    """The paper's protocol by default; ``sst2`` is the hub dataset or a local GLUE directory, the default source
    of the worlds and the items."""

    sst2: str = "stanfordnlp/sst2"
    text_field: str = "sentence"
    seed: int = 0  # samples the worlds and the items
    worlds: FlipWorlds = field(default_factory=FlipWorlds)
    items: FlipItems = field(default_factory=FlipItems)
    units: UnitChoice = field(default_factory=UnitChoice)
    pos2neg: Intervention = field(default_factory=lambda: Intervention("paper", 5.0, "away"))
    neg2pos: Intervention = field(default_factory=lambda: Intervention("paper", 7.0, "away"))
    batch_size: int = 32


def flip_conditions(
    S: dict[str, UnitScores],
    scores: dict[str, dict[str, UnitScores]],
    cfg: FlipConfig,
    layers: list[int],
    other: list[int],
    site: str,
) -> list[Condition]:
    """The method and its controls for both flips. ``S[flip]`` is the main score's scores (all recorded layers)
    of that flip's proposition; ``scores[name][flip]`` those of other scores."""
    u = cfg.units
    out = []
    for flip, iv in (("pos2neg", cfg.pos2neg), ("neg2pos", cfg.neg2pos)):
        main = S[flip].restrict(layers)
        where = f"{site}, layers {format_layers(layers)}"
        out.append(
            Condition(
                f"{flip}: top-{u.k} {u.score}, {where}",
                flip,
                main.top(u.k),
                iv,
                "method",
                {"score": u.score, "layers": layers, "site": site},
            )
        )
        for seed in u.random_seeds:
            out.append(
                Condition(
                    f"{flip}: random {u.k}, {where}, seed {seed}",
                    flip,
                    main.random(u.k, seed=seed),
                    iv,
                    "random",
                    {"seed": seed, "layers": layers, "site": site},
                )
            )
        for name, by_flip in scores.items():
            out.append(
                Condition(
                    f"{flip}: top-{u.k} {name}, {where}",
                    flip,
                    by_flip[flip].restrict(layers).top(u.k),
                    iv,
                    f"score:{name}",
                    {"score": name, "layers": layers, "site": site},
                )
            )
        out.append(
            Condition(
                f"{flip}: top-{u.k} {u.score}, {site}, layers {format_layers(other)}",
                flip,
                S[flip].restrict(other).top(u.k),
                iv,
                "other-layers",
                {"score": u.score, "layers": other, "site": site},
            )
        )
    return out


def evaluate_flips(
    model: Model, cfg: FlipConfig | None = None, out: str | Path | None = None, progress: bool = True
) -> dict[str, Any]:
    """Run the flip protocol with its controls.

    Args:
        model: the model.
        cfg: the protocol (default: the paper's, :class:`FlipConfig`).
        out: a report directory to write (``result.json``, ``report.md``, ``flips.png``); None writes nothing.
        progress: show progress bars.

    Returns:
        The result, JSON-ready.
    """
    from steer.eval.scorers import sst2_split

    cfg = cfg or FlipConfig()
    t0 = time.time()
    answers = dict(zip(("positive", "negative"), cfg.items.answers))
    answer_token_ids(model.tokenizer, answers)  # fail before recording
    w, u = cfg.worlds, cfg.units
    worlds = Worlds.from_file(
        w.source or sst2_split(cfg.sst2, "train"), template=w.template, text_field=cfg.text_field, n=w.n, seed=cfg.seed
    ).with_vader()
    layers = resolve_layers(list(u.layers), model.n_layers)
    if u.other_layers is not None:
        other = resolve_layers(list(u.other_layers), model.n_layers)
    else:
        other = list(range(model.n_layers)) if len(layers) == 1 else [model.n_layers - 1]
    props = {"pos2neg": worlds.proposition(w.positive), "neg2pos": worlds.proposition(w.negative)}
    conditions = []
    for site in u.sites:
        acts = cached_recording(model, worlds, site, u.reduce, sorted(set(layers) | set(other)), progress)
        raw = {f: Strengths.compute(acts, p) for f, p in props.items()}  # D and stats, shared by every score
        S = {f: score_units(acts, p, u.score, raw=raw[f]) for f, p in props.items()}
        scores = {
            name: {f: score_units(acts, p, name, raw=raw[f]) for f, p in props.items()} for name in u.compare_scores
        }
        conditions += flip_conditions(S, scores, cfg, layers, other, site)

    it = cfg.items
    items = Worlds.from_file(
        it.source or sst2_split(cfg.sst2, "validation"),
        template=it.template,
        text_field=cfg.text_field,
        n=it.n,
        seed=cfg.seed if it.n else None,
    )
    labels = [LABEL_MAP.get(str(v), str(v)) for v in items.column(it.label_field)]
    result = flip_eval(
        model, items.prompts, labels, conditions, batch_size=cfg.batch_size, progress=progress, answers=answers
    )
    result.update(
        mode="flip",
        config=asdict(cfg),
        layers=layers,
        other_layers=other,
        model=model.provenance,
        worlds=worlds.provenance,
        eval_set=items.provenance,
        steer_version=versions()["steer"],
        seconds=round(time.time() - t0, 1),
        propositions={f: {"spec": p.name, "size": int(p.size)} for f, p in props.items()},
    )
    if out is not None:
        write_report(result, out)
    return result


def flip_table(result: dict[str, Any]) -> str:
    """Markdown table of the flip conditions, random seeds pooled into one row per flip as well."""
    lines = [
        "| flip | condition | group | flip rate [95% CI] | n | P(source) before -> after | KL answers | KL vocab |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for c in result["conditions"]:
        f = c["flip_rate"]
        probs = f"{_num(c['p_source_before'], '.1%')} -> {_num(c['p_source_after'], '.1%')}"
        lines.append(
            f"| {c['flip']} | {c['name'].split(': ', 1)[1]} | {c['group']} | {format_rate(f)} | {f['n']} | "
            f"{probs} | {_num(c['kl_answers'], '.3f')} | {_num(c['kl_vocab'], '.3f')} |"
        )
    for (flip, site), pooled in pooled_random(result).items():
        lines.append(
            f"| {flip} | random units at {site}, all seeds pooled | random | {format_rate(pooled)} | "
            f"{pooled['n']} | | | |"
        )
    return "\n".join(lines)


def pooled_random(result: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    """The random-unit controls of each flip and site, seeds pooled (as one rate with its interval)."""
    out = {}
    for flip in FLIPS:
        for site in result["config"]["units"]["sites"]:
            rs = [
                c["flip_rate"]
                for c in result["conditions"]
                if c["group"] == "random" and c["flip"] == flip and c["info"].get("site") == site
            ]
            if rs:
                out[flip, site] = rate(sum(r["k"] for r in rs), sum(r["n"] for r in rs))
    return out


def _num(x: float | None, fmt: str) -> str:
    return "n/a" if x is None else format(x, fmt)


# ------------------------------------------------------------------------------------------------ steering


@dataclass(frozen=True)
class SteeringEvalConfig:
    """What ``steer eval steer`` compares. Neuron steering uses the project's defaults (SteerConfig)."""

    prompts: tuple[str, ...] = ("prompts/steering_test.jsonl", "prompts/steering_opposite.jsonl")
    n_prompts: int | None = None
    worlds: str | None = None  # default: prompts/sentiment.jsonl
    template: str | Template = "plain"
    reduce: str = "mean"
    site: str = "mlp"
    score: str = "rank-D"
    k: int = 500
    rule: str = "additive"
    coeffs: tuple[float, ...] = (1.0, 2.0, 3.0, 4.0, 6.0)
    compare_scores: tuple[str, ...] = ()  # other selection scores at the same k/rule/coeffs
    random_seed: int = 0
    caa_layer: int | None = None  # default: the middle layer
    caa_coeffs: tuple[float, ...] = (2.0, 4.0, 8.0, 16.0)
    selfcond_k: tuple[int, ...] = (10, 50, 200, 1000)
    prompting: bool = True
    scorers: tuple[str, ...] = ("vader", "minilm-sst2")
    sst2: str = "stanfordnlp/sst2"
    seeds: tuple[int, ...] = (0, 1)
    max_new_tokens: int = 30
    fluency_budget: float = 1.5  # compare methods at perplexity <= budget x unsteered perplexity


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
    acts = cached_recording(model, worlds, cfg.site, cfg.reduce, None, progress)
    methods: list[Method] = []
    coeffs = list(cfg.coeffs)
    main = {t: score_units(acts, p, cfg.score) for t, p in props.items()}
    methods.append(
        NeuronSteering(
            f"neurons ({cfg.score}, k={cfg.k})",
            coeffs,
            "neurons",
            {"score": cfg.score, "k": cfg.k, "rule": cfg.rule, "site": cfg.site},
            sets={t: s.top(cfg.k) for t, s in main.items()},
            rule=cfg.rule,
        )
    )
    for name in cfg.compare_scores:
        by = {t: score_units(acts, p, name) for t, p in props.items()}
        methods.append(
            NeuronSteering(
                f"neurons ({name}, k={cfg.k})",
                coeffs,
                "neurons",
                {"score": name, "k": cfg.k, "rule": cfg.rule, "site": cfg.site},
                sets={t: s.top(cfg.k) for t, s in by.items()},
                rule=cfg.rule,
            )
        )
    # the random control draws different units per target (the same units would make the two targets equal)
    methods.append(
        NeuronSteering(
            f"random units (k={cfg.k})",
            coeffs,
            "control",
            {"k": cfg.k, "rule": cfg.rule, "seed": cfg.random_seed},
            sets={t: main[t].random(cfg.k, seed=cfg.random_seed + i) for i, t in enumerate(main)},
            rule=cfg.rule,
        )
    )
    if cfg.caa_coeffs:
        layer = model.n_layers // 2 if cfg.caa_layer is None else cfg.caa_layer
        resid = cached_recording(model, worlds, "resid", cfg.reduce, [layer], progress)
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


def steering_table(result: dict[str, Any], scorer: str) -> str:
    """Markdown table of every method x coeff for one scorer, after a line about the unsteered model."""
    u = result["unsteered"]
    s = u["scores"][scorer]
    lines = [
        f"Unsteered: share positive {format_rate(s['positive'])}, share negative {format_rate(s['negative'])}, "
        f"mean score {s['mean']:+.3f}, perplexity {u['ppl']:.1f}, distinct-2 {u['distinct_2']:.2f}.",
        "",
        "| method | coeff | success toward positive | success toward negative | mean success | sep | ppl "
        "| distinct-2 |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in result["summary"][scorer]:
        lines.append(
            f"| {r['method']} | {r['coeff']:g} | {format_rate(r['success_pos'])} | "
            f"{format_rate(r['success_neg'])} | {r['success']:.1%} | {r['sep']:+.3f} | {r['ppl']:.1f} | "
            f"{r['distinct_2']:.2f} |"
        )
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------------ report


def write_report(result: dict[str, Any], out: str | Path) -> Path:
    """``out/result.json``, ``out/report.md`` and the mode's PNG plots; returns ``out``."""
    from steer.eval import plots

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    write_json_atomic(out / "result.json", result)
    md = [
        f"# steer eval {result['mode']}",
        "",
        f"Model: `{result['model'].get('model_id', '?')}` (sha256 {str(result['model'].get('sha256'))[:12]}); "
        f"steer {result['steer_version']}; {result['seconds']:.0f} s.",
        "",
    ]
    if result["mode"] == "flip":
        plots.plot_flips(result, out / "flips.png")
        acc = result["clean_accuracy"]
        cfg = result["config"]
        md += [
            f"Evaluation set: {result['eval_set']['source']} ({result['n_items']} items, template "
            f"`{result['eval_set']['template']}`). Clean accuracy {format_rate(acc)}.",
            "",
            f"Units from {result['worlds']['source']} (template `{result['worlds']['template']}`), sites "
            f"`{', '.join(cfg['units']['sites'])}`, token reduction `{cfg['units']['reduce']}`, propositions "
            f"{result['propositions']}.",
            "",
            flip_table(result),
            "",
            "![flip rates](flips.png)",
            "",
        ]
    else:
        for name in result["summary"]:
            safe = name.replace(":", "_").replace("/", "_")
            plots.plot_tradeoff(result, name, out / f"tradeoff_{safe}.png")
            plots.plot_score_distributions(result, name, out / f"scores_{safe}.png")
            info = result["scorers"][name]
            acc = (
                f" (held-out accuracy {info['heldout_accuracy']:.1%} on {info['n_heldout']} items)"
                if "heldout_accuracy" in info
                else ""
            )
            md += [
                f"## Scorer `{name}`{acc}",
                "",
                steering_table(result, name),
                "",
                f"Best setting per method at perplexity <= {result['ppl_budget']:.1f} "
                f"({result['config']['fluency_budget']}x unsteered):",
                "",
            ]
            for m, r in result["at_equal_fluency"][name].items():
                md.append(f"- {m}: coeff {r['coeff']:g}, mean success {r['success']:.1%}, ppl {r['ppl']:.1f}")
            md += ["", f"![success vs perplexity](tradeoff_{safe}.png)", "", f"![scores](scores_{safe}.png)", ""]
    with atomic_file(out / "report.md") as tmp:
        tmp.write_text("\n".join(md) + "\n")
    return out


def load_result(path: str | Path) -> dict[str, Any]:
    """A saved result (a report directory or its result.json)."""
    p = Path(path)
    return dict(json.loads((p / "result.json" if p.is_dir() else p).read_text()))
