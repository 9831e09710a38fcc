"""The evaluation harness: build the methods and controls from a model and a world set, run them, write a report.

Two modes, each written as ``result.json`` + ``report.md`` + PNG plots in one output directory:

- :func:`evaluate_flips` (``steer eval flip``): the paper's classification protocol (method.md section 4) with
  controls. Defaults are the paper's setting: 1024 SST-2 train sentences in the two-shot prompt, A+/A- = the
  25 sentences with the highest VADER pos/neg, site resid, the last token, top-5 by raw D in the last layer,
  pos2neg = paper rule c=5 away from A+, neg2pos = c=7 away from A-, evaluated on 500 SST-2 validation
  sentences in the three-shot a)/b) prompt. Controls with the same k and rule: random units of the same
  layers (several seeds), the top-k by plain mean difference, and the top-k of the other layer choice.
- :func:`evaluate_steering` (``steer eval steer``): generation quality of neuron steering against random
  units, prompting, a residual steering vector (CAA) and self-conditioning, each over its own strength sweep,
  scored by at least two scorers that share nothing with the model (VADER and a classifier).
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from steer.artifacts import write_json_atomic
from steer.faithfulness import Condition, answer_token_ids, flip_eval
from steer.models import versions
from steer.neurons import Strengths, score_units

LABEL_MAP = {"1": "positive", "0": "negative", "positive": "positive", "negative": "negative"}


# ------------------------------------------------------------------------------------------------ flips


@dataclass
class FlipConfig:
    """The paper's protocol by default; ``sst2`` is the hub dataset or a local GLUE directory."""

    sst2: str = "stanfordnlp/sst2"
    worlds: str | None = None  # default: SST-2 train
    n_worlds: int = 1024
    world_template: str = "paper-2shot"
    text_field: str = "sentence"
    proposition_pos: str = "vader_pos:top25"
    proposition_neg: str = "vader_neg:top25"
    sites: tuple[str, ...] = ("resid",)  # several sites share one pass over the evaluation set
    position: str = "last"
    layers: tuple[int, ...] = (-1,)
    other_layers: tuple[int, ...] | None = None  # default: all layers when `layers` is one layer, else the last
    k: int = 5
    score: str = "D"
    compare_scores: tuple[str, ...] = ("mean-diff",)
    random_seeds: tuple[int, ...] = (0, 1, 2)
    eval_set: str | None = None  # default: SST-2 validation
    n_eval: int | None = 500
    eval_template: str = "paper-3shot-ab"
    label_field: str = "label"
    answers: tuple[str, str] = (" a", " b")  # the answer tokens for positive and negative
    pos2neg: tuple[str, float] = ("paper", 5.0)
    neg2pos: tuple[str, float] = ("paper", 7.0)
    seed: int = 0
    batch_size: int = 32


def _layers(spec: Sequence[int], n_layers: int) -> list[int]:
    return sorted({(layer + n_layers) if layer < 0 else layer for layer in spec})


def flip_conditions(S: dict[str, Strengths], scores: dict[str, dict[str, Strengths]], cfg: FlipConfig,
                    layers: list[int], other: list[int], site: str) -> list[Condition]:
    """The method and its controls for both directions. ``S[direction]`` is the main score's Strengths (all
    recorded layers) of that direction's proposition; ``scores[name][direction]`` those of other scores."""
    out = []
    for direction, (rule, strength) in (("pos2neg", cfg.pos2neg), ("neg2pos", cfg.neg2pos)):
        main = S[direction].restrict(layers)
        common = dict(direction=direction, rule=rule, strength=strength, toward=False)
        where = f"{site}, layers {_span(layers)}"
        out.append(Condition(f"{direction}: top-{cfg.k} {cfg.score}, {where}", neurons=main.top(cfg.k),
                             group="method", info={"score": cfg.score, "layers": layers, "site": site}, **common))
        for seed in cfg.random_seeds:
            out.append(Condition(f"{direction}: random {cfg.k}, {where}, seed {seed}",
                                 neurons=main.random(cfg.k, seed=seed), group="random",
                                 info={"seed": seed, "layers": layers, "site": site}, **common))
        for name, by_dir in scores.items():
            out.append(Condition(f"{direction}: top-{cfg.k} {name}, {where}",
                                 neurons=by_dir[direction].restrict(layers).top(cfg.k), group=f"score:{name}",
                                 info={"score": name, "layers": layers, "site": site}, **common))
        out.append(Condition(f"{direction}: top-{cfg.k} {cfg.score}, {site}, layers {_span(other)}",
                             neurons=S[direction].restrict(other).top(cfg.k), group="other-layers",
                             info={"score": cfg.score, "layers": other, "site": site}, **common))
    return out


def _span(layers: Sequence[int]) -> str:
    layers = list(layers)
    if len(layers) > 2 and layers == list(range(layers[0], layers[-1] + 1)):
        return f"{layers[0]}-{layers[-1]}"
    return ",".join(map(str, layers))


def evaluate_flips(model: Any, cfg: FlipConfig = FlipConfig(), out: str | Path | None = None,
                   progress: bool = True) -> dict[str, Any]:
    """Run the flip protocol with its controls; write the report to ``out`` when given."""
    from steer.scorers import sst2_split
    from steer.steering import cached_recording
    from steer.worlds import Worlds

    t0 = time.time()
    answer_token_ids(model.tokenizer, dict(zip(("positive", "negative"), cfg.answers)))  # fail before recording
    worlds = Worlds.from_file(cfg.worlds or sst2_split(cfg.sst2, "train"), template=cfg.world_template,
                              text_field=cfg.text_field, n=cfg.n_worlds, seed=cfg.seed).with_vader()
    layers = _layers(cfg.layers, model.n_layers)
    if cfg.other_layers is not None:
        other = _layers(cfg.other_layers, model.n_layers)
    else:
        other = list(range(model.n_layers)) if len(layers) == 1 else [model.n_layers - 1]
    props = {"pos2neg": worlds.proposition(cfg.proposition_pos), "neg2pos": worlds.proposition(cfg.proposition_neg)}
    conditions = []
    for site in cfg.sites:
        acts = cached_recording(model, worlds, site, cfg.position, sorted(set(layers) | set(other)), progress)
        raw = {d: Strengths.compute(acts, p) for d, p in props.items()}  # D and stats, shared by every score
        S = {d: score_units(acts, p, cfg.score, raw=raw[d]) for d, p in props.items()}
        scores = {name: {d: score_units(acts, p, name, raw=raw[d]) for d, p in props.items()}
                  for name in cfg.compare_scores}
        conditions += flip_conditions(S, scores, cfg, layers, other, site)

    items = Worlds.from_file(cfg.eval_set or sst2_split(cfg.sst2, "validation"), template=cfg.eval_template,
                             text_field=cfg.text_field, n=cfg.n_eval, seed=cfg.seed if cfg.n_eval else None)
    labels = [LABEL_MAP.get(str(v), str(v)) for v in items.column(cfg.label_field)]
    result = flip_eval(model, items.prompts, labels, conditions, batch_size=cfg.batch_size, progress=progress,
                       answers=dict(zip(("positive", "negative"), cfg.answers)))
    result.update(mode="flip", config=asdict(cfg), layers=layers, other_layers=other,
                  model=model.provenance, worlds=worlds.provenance, eval_set=items.provenance,
                  steer_version=versions()["steer"], seconds=round(time.time() - t0, 1),
                  propositions={d: {"spec": p.name, "size": int(p.size)} for d, p in props.items()})
    if out is not None:
        write_report(result, out)
    return result


def flip_table(result: dict[str, Any]) -> str:
    """Markdown table of the flip conditions, random seeds pooled into one row per direction as well."""
    lines = ["| direction | condition | group | flip rate [95% CI] | n | P(source) before -> after | KL answers | KL vocab |",
             "|---|---|---|---|---|---|---|---|"]
    for c in result["conditions"]:
        f = c["flip"]
        probs = f"{_num(c['p_source_before'], '.1%')} -> {_num(c['p_source_after'], '.1%')}"
        lines.append(f"| {c['direction']} | {c['name'].split(': ', 1)[1]} | {c['group']} | {_pct(f)} | {f['n']} | "
                     f"{probs} | {_num(c['kl_answers'], '.3f')} | {_num(c['kl_vocab'], '.3f')} |")
    for (direction, site), pooled in pooled_random(result).items():
        lines.append(f"| {direction} | random units at {site}, all seeds pooled | random | {_pct(pooled)} | "
                     f"{pooled['n']} | | | |")
    return "\n".join(lines)


def pooled_random(result: dict[str, Any]) -> dict[tuple[str, str], dict[str, float]]:
    """The random-unit controls of each direction and site, seeds pooled (as one rate with its interval)."""
    from steer.metrics import rate

    out = {}
    for direction in ("pos2neg", "neg2pos"):
        for site in result["config"]["sites"]:
            rs = [c["flip"] for c in result["conditions"] if c["group"] == "random" and c["direction"] == direction
                  and c["info"].get("site") == site]
            if rs:
                out[direction, site] = rate(sum(r["k"] for r in rs), sum(r["n"] for r in rs))
    return out


def _num(x: float | None, fmt: str) -> str:
    return "n/a" if x is None else format(x, fmt)


def _pct(r: dict[str, float]) -> str:
    if not r["n"]:
        return "n/a (no items)"
    return f"{r['rate']:.1%} [{r['lo']:.1%}, {r['hi']:.1%}]"


# ------------------------------------------------------------------------------------------------ steering


@dataclass
class SteeringEvalConfig:
    """What ``steer eval steer`` compares. Neuron steering uses the project's defaults (SteerConfig)."""

    prompts: tuple[str, ...] = ("prompts/steering_test.jsonl", "prompts/steering_opposite.jsonl")
    n_prompts: int | None = None
    worlds: str | None = None  # default: prompts/sentiment.jsonl
    template: str = "plain"
    position: str = "mean"
    site: str = "mlp"
    score: str = "rank-D"
    k: int = 500
    rule: str = "additive"
    strengths: tuple[float, ...] = (1.0, 2.0, 3.0, 4.0, 6.0)
    compare_scores: tuple[str, ...] = ()  # other selection scores at the same k/rule/strengths
    random_seed: int = 0
    caa_layer: int | None = None  # default: the middle layer
    caa_strengths: tuple[float, ...] = (2.0, 4.0, 8.0, 16.0)
    selfcond_k: tuple[int, ...] = (10, 50, 200, 1000)
    prompting: bool = True
    scorers: tuple[str, ...] = ("vader", "minilm-sst2")
    sst2: str = "stanfordnlp/sst2"
    seeds: tuple[int, ...] = (0, 1)
    max_new_tokens: int = 30
    fluency_budget: float = 1.5  # compare methods at perplexity <= budget x unsteered perplexity


def build_methods(model: Any, cfg: SteeringEvalConfig, progress: bool = True) -> tuple[list, dict[str, Any]]:
    """Neuron steering (main score, other scores, random control), CAA, self-conditioning and prompting."""
    import torch

    from steer.methods import NeuronSteering, Prompting, ResidualVector, SelfConditioning, residual_vectors, \
        self_conditioning_experts
    from steer.steering import cached_recording
    from steer.worlds import DEFAULT_PROMPT_SET, Worlds

    worlds = Worlds.from_file(cfg.worlds or DEFAULT_PROMPT_SET, template=cfg.template)
    props = {d: worlds.proposition(f"label={d}") for d in ("positive", "negative")}
    acts = cached_recording(model, worlds, cfg.site, cfg.position, None, progress)
    methods: list = []
    strengths = list(cfg.strengths)
    main = {d: score_units(acts, p, cfg.score) for d, p in props.items()}
    methods.append(NeuronSteering(f"neurons ({cfg.score}, k={cfg.k})", strengths, "neurons",
                                  {"score": cfg.score, "k": cfg.k, "rule": cfg.rule, "site": cfg.site},
                                  sets={d: s.top(cfg.k) for d, s in main.items()}, rule=cfg.rule))
    for name in cfg.compare_scores:
        by = {d: score_units(acts, p, name) for d, p in props.items()}
        methods.append(NeuronSteering(f"neurons ({name}, k={cfg.k})", strengths, "neurons",
                                      {"score": name, "k": cfg.k, "rule": cfg.rule, "site": cfg.site},
                                      sets={d: s.top(cfg.k) for d, s in by.items()}, rule=cfg.rule))
    # the random control draws different units per direction (the same units would make the two directions equal)
    methods.append(NeuronSteering(f"random units (k={cfg.k})", strengths, "control",
                                  {"k": cfg.k, "rule": cfg.rule, "seed": cfg.random_seed},
                                  sets={d: main[d].random(cfg.k, seed=cfg.random_seed + i)
                                        for i, d in enumerate(main)}, rule=cfg.rule))
    if cfg.caa_strengths:
        layer = model.n_layers // 2 if cfg.caa_layer is None else cfg.caa_layer
        resid = cached_recording(model, worlds, "resid", cfg.position, [layer], progress)
        stats = {d: resid.strength(p).stats for d, p in props.items()}
        methods.append(ResidualVector(f"residual vector (CAA, layer {layer})", list(cfg.caa_strengths), "baseline",
                                      {"layer": layer}, vectors=residual_vectors(stats, 0), layer=layer))
    if cfg.selfcond_k:
        X = acts.X
        experts = {d: self_conditioning_experts(X, torch.as_tensor(np.asarray(p.mask)), acts.layers,
                                                max(cfg.selfcond_k)) for d, p in props.items()}
        methods.append(SelfConditioning("self-conditioning (AP, median on A)", [float(k) for k in cfg.selfcond_k],
                                        "baseline", {"site": cfg.site}, experts=experts, site=cfg.site))
    if cfg.prompting:
        methods.append(Prompting("prompting", [1.0], "baseline", {"instruction": Prompting.instruction}))
    return methods, {"worlds": worlds.provenance, "recording_site": cfg.site}


def load_prompts(paths: Sequence[str], n: int | None = None) -> tuple[list[str], str]:
    from steer.worlds import PROMPTS_DIR, Worlds

    texts, sources = [], []
    for p in paths:
        path = Path(p)
        if not path.exists() and (PROMPTS_DIR / path.name).exists():
            path = PROMPTS_DIR / path.name
        w = Worlds.from_file(path)
        texts += w.prompts
        sources.append(w.provenance["prompt_set_sha256"][:12])
    return (texts[:n] if n else texts), ",".join(sources)


def evaluate_steering(model: Any, cfg: SteeringEvalConfig = SteeringEvalConfig(), out: str | Path | None = None,
                      scorers: Sequence[Any] | None = None, progress: bool = True) -> dict[str, Any]:
    """Run every method's sweep on the prompts; write the report to ``out`` when given."""
    from steer.quality import best_at_fluency, quality_eval, summary_rows
    from steer.scorers import get_scorer

    t0 = time.time()
    scorers = list(scorers) if scorers is not None else [get_scorer(s, sst2=cfg.sst2, progress=progress)
                                                         for s in cfg.scorers]
    prompts, prompt_hash = load_prompts(cfg.prompts, cfg.n_prompts)
    methods, prov = build_methods(model, cfg, progress)
    result = quality_eval(model, prompts, methods, scorers, seeds=cfg.seeds, max_new_tokens=cfg.max_new_tokens,
                          progress=progress)
    budget = cfg.fluency_budget * result["unsteered"]["ppl"]
    result.update(mode="steer", config=asdict(cfg), model=model.provenance, prompts_sha256=prompt_hash, **prov,
                  steer_version=versions()["steer"], seconds=round(time.time() - t0, 1), ppl_budget=budget)
    result["summary"] = {sc.name: summary_rows(result, sc.name) for sc in scorers}
    result["at_equal_fluency"] = {name: best_at_fluency(rows, budget) for name, rows in result["summary"].items()}
    if out is not None:
        write_report(result, out)
    return result


def steering_table(result: dict[str, Any], scorer: str) -> str:
    u = result["unsteered"]
    s = u["scores"][scorer]
    lines = [f"Unsteered: share positive {_pct(s['positive'])}, share negative {_pct(s['negative'])}, "
             f"mean score {s['mean']:+.3f}, perplexity {u['ppl']:.1f}, distinct-2 {u['distinct_2']:.2f}.", "",
             "| method | strength | success toward positive | success toward negative | mean success | sep | ppl | distinct-2 |",
             "|---|---|---|---|---|---|---|---|"]
    for r in result["summary"][scorer]:
        lines.append(f"| {r['method']} | {r['strength']:g} | {_pct(r['success_pos'])} | {_pct(r['success_neg'])} | "
                     f"{r['success']:.1%} | {r['sep']:+.3f} | {r['ppl']:.1f} | {r['distinct_2']:.2f} |")
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------------ report


def write_report(result: dict[str, Any], out: str | Path) -> Path:
    """``out/result.json``, ``out/report.md`` and the mode's PNG plots."""
    from steer import plots

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    write_json_atomic(out / "result.json", result)
    md = [f"# steer eval {result['mode']}", "",
          f"Model: `{result['model'].get('model_id', '?')}` (sha256 {str(result['model'].get('sha256'))[:12]}); steer {result['steer_version']}; "
          f"{result['seconds']:.0f} s.", ""]
    if result["mode"] == "flip":
        plots.plot_flips(result, out / "flips.png")
        acc = result["clean_accuracy"]
        md += [f"Evaluation set: {result['eval_set']['source']} ({result['n_items']} items, template "
               f"`{result['eval_set']['template']}`). Clean accuracy {_pct(acc)}.", "",
               f"Units from {result['worlds']['source']} (template `{result['worlds']['template']}`), sites "
               f"`{', '.join(result['config']['sites'])}`, position `{result['config']['position']}`, propositions "
               f"{result['propositions']}.", "", flip_table(result), "", "![flip rates](flips.png)", ""]
    else:
        for name in result["summary"]:
            safe = name.replace(":", "_").replace("/", "_")
            plots.plot_tradeoff(result, name, out / f"tradeoff_{safe}.png")
            plots.plot_score_distributions(result, name, out / f"scores_{safe}.png")
            info = result["scorers"][name]
            acc = f" (held-out accuracy {info['heldout_accuracy']:.1%} on {info['n_heldout']} items)" \
                if "heldout_accuracy" in info else ""
            md += [f"## Scorer `{name}`{acc}", "", steering_table(result, name), "",
                   f"Best setting per method at perplexity <= {result['ppl_budget']:.1f} "
                   f"({result['config']['fluency_budget']}x unsteered):", ""]
            for m, r in result["at_equal_fluency"][name].items():
                md.append(f"- {m}: strength {r['strength']:g}, mean success {r['success']:.1%}, ppl {r['ppl']:.1f}")
            md += ["", f"![success vs perplexity](tradeoff_{safe}.png)", "", f"![scores](scores_{safe}.png)", ""]
    (out / "report.md").write_text("\n".join(md) + "\n")
    return out


def load_result(path: str | Path) -> dict[str, Any]:
    p = Path(path)
    return json.loads((p / "result.json" if p.is_dir() else p).read_text())


__all__ = ["FlipConfig", "SteeringEvalConfig", "evaluate_flips", "evaluate_steering", "flip_table", "steering_table",
           "write_report", "load_result"]
