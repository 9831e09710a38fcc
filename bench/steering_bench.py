"""The steering benchmark at matched fluency: neuron steering against its peers, and how many neurons it needs.

Prompts: prompts/steering_bench/neutral.jsonl (240 neutral openings, six registers) and opposite.jsonl (120
openings of clear sentiment), each with a fixed dev/test split. Every choice (the neuron-steering variant, the
CAA layer, the second selection score, every method's setting) is made on dev; only the chosen settings run on test.

Stages (``--stage all`` runs both):

- ``table``: each method's knob is searched on dev for 1.25x and 1.5x the unsteered perplexity, per target; at that
  setting it continues the test split (neutral openings and openings of the opposite sentiment) with 3 samples per opening.
  Methods: neuron steering (per target, the variant with the best dev success at 1.5x among rank-D k=500, rank-D
  k=2000, rank-D k=500 with both propositions' sets, with the clamp rule, and on generated tokens only), random units (same k), CAA at its best single layer (chosen on dev
  among a few) and at all layers, PCA of contrast-pair differences at all layers (repeng's recipe), prompting
  (an instruction; a sentiment prefix) and self-conditioning.
- ``k``: success at 1.5x as a function of k (5 ... 2000, all layers) and of the layers (early / middle / late
  thirds, k=500), for rank-D and for the other score with the best dev success at k=500.

    python bench/steering_bench.py --stage table            # bundled model, full size (32 minutes here)
    python bench/steering_bench.py --size small             # a few minutes: smoke-size splits
    python bench/steering_bench.py --model $(../shared/tools/get-qwen-gguf) --size medium

Writes result.json, report.md and PNGs under --out (default docs/results/steering_bench/<model name>).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from steer import DEFAULT_PROMPT_SET, Intervention, RecordSpec, Worlds, load_model, recording
from steer.eval import (
    Bench,
    BenchPrompts,
    CombinedSteering,
    MatchedConfig,
    NeuronSteering,
    PerTarget,
    Prompting,
    PromptPrefix,
    ResidualVector,
    SelfConditioning,
    get_scorer,
    matched_eval,
    matched_table,
    plot_k_curve,
)
from steer.eval.matched import pooled_rate, rows_at, unsteered_line, verdicts
from steer.eval.methods import Knob, contrast_pairs, pca_directions, residual_vectors, self_conditioning_experts
from steer.eval.plots import plot_matched
from steer.neurons import score_units
from steer.resources import PROMPTS_DIR

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
BENCH = PROMPTS_DIR / "steering_bench"
TARGETS = ("positive", "negative")

# split sizes: dev openings for the search, test neutral / opposite openings, samples per test opening, CAA candidate layers
SIZES = {
    "small": dict(n_dev=8, n_test=12, n_opposite=8, samples=3, max_evals=4, caa_layers=2, ks=(5, 500)),
    "medium": dict(n_dev=16, n_test=48, n_opposite=24, samples=3, max_evals=5, caa_layers=3, ks=(50, 500)),
    "full": dict(n_dev=24, n_test=48, n_opposite=24, samples=3, max_evals=6, caa_layers=3, ks=(5, 50, 500, 2000)),
}


MATCH = 0.1  # a dev run within 10% of the budget counts as matched


def matched(ratio, budget):
    """Whether a perplexity ratio is within MATCH of ``budget``."""
    return abs(ratio / budget - 1) <= MATCH


def reached(bench, method, budget, targets=TARGETS):
    """Whether the knob search found a dev setting within MATCH of ``budget`` for every target."""
    return all(matched(bench.calibrate(method, t, budget)["ratio"], budget) for t in targets)


def thirds(n_layers):
    a, b = n_layers // 3, 2 * n_layers // 3
    return {"early": list(range(0, a)), "middle": list(range(a, b)), "late": list(range(b, n_layers))}


def neuron_method(name, scores, k, layers=None, kind="neurons", info=None):
    by = {t: (s if layers is None else s.restrict(layers)) for t, s in scores.items()}
    return NeuronSteering(name, [], kind, info or {}, sets={t: s.top(k) for t, s in by.items()})


def both_sets(name, scores, k):
    """Toward t: t's set pushed toward t, and the other target's set pushed away from it."""
    toward = NeuronSteering("toward", [], sets={t: s.top(k) for t, s in scores.items()})
    away = NeuronSteering("away", [], sets=toward.sets, intervention=Intervention(direction="away"))
    other = {"positive": "negative", "negative": "positive"}
    parts = {t: [(toward, t), (away, other[t])] for t in TARGETS}
    return CombinedSteering(name, [], "neurons", {"score": "rank-D", "k": k, "sets": "both"}, parts=parts)


def contrast_states(model, pairs, progress):
    """Last-token resid of every layer for the two members of each contrast pair: ([pairs, L, d], [pairs, L, d])."""
    recs = [{"text": p, "side": side} for pair in pairs for p, side in zip(pair, ("pos", "neg"))]
    w = Worlds.from_records(recs, source="contrast pairs (repeng recipe)")
    acts = recording(RecordSpec(model, w, "resid", "last", list(range(model.n_layers))), progress)
    X = acts.X.float()
    return X[0::2], X[1::2]


def units(model, progress):
    """The worlds (prompts/sentiment.jsonl, plain), their MLP recording (mean over the text) and rank-D per target."""
    worlds = Worlds.from_file(DEFAULT_PROMPT_SET, template="plain")
    props = {t: worlds.proposition(f"label={t}") for t in TARGETS}
    acts = recording(RecordSpec(model, worlds, "mlp", "mean", None), progress)
    rank = {t: score_units(acts, p, "rank-D") for t, p in props.items()}
    return {"worlds": worlds, "acts": acts, "props": props, "rank": rank}


def build(model, bench, size, shared, progress, log):
    """Every method of the table, with the dev choices made on the way (and logged)."""
    worlds, acts, props, rank = shared["worlds"], shared["acts"], shared["props"], shared["rank"]
    choices = {}

    # neuron steering: the variants (the levers of the issue), each target's best dev success at 1.5x is compared
    variants = [
        neuron_method("neurons (rank-D, k=500)", rank, 500, info={"score": "rank-D", "k": 500}),
        neuron_method("neurons (rank-D, k=2000)", rank, 2000, info={"score": "rank-D", "k": 2000}),
        both_sets("neurons (rank-D, k=500, both sets)", rank, 500),
        replace(neuron_method("neurons (rank-D, k=500, clamp)", rank, 500,
                              info={"score": "rank-D", "k": 500, "rule": "clamp"}),
                intervention=Intervention("clamp"), knob=Knob(1.0, 0.01, 64.0)),
        replace(neuron_method("neurons (rank-D, k=500, generated tokens only)", rank, 500,
                              info={"score": "rank-D", "k": 500, "apply_to": "generated"}),
                intervention=Intervention(apply_to="generated")),
    ][: 1 if size["variants"] == "default" else None]
    top = max(bench.cfg.budgets)
    dev = {t: {m.name: bench.dev_success(m, top, (t,)) for m in variants} for t in TARGETS}
    log(f"dev success at 1.5x per target, neuron variants: {json.dumps(dev)}")
    best = {t: max([m for m in variants if reached(bench, m, top, (t,))] or variants, key=lambda m: dev[t][m.name])
            for t in TARGETS}
    if best["positive"] is best["negative"]:
        neurons = best["positive"]
    else:
        neurons = PerTarget(f"neurons ({'; '.join(f'{t}: {best[t].name[9:-1]}' for t in TARGETS)})", [], "neurons",
                            {**best["positive"].info, "per_target": {t: best[t].name for t in TARGETS}}, parts=best)
    choices["neurons"] = {"candidates": dev, "chosen": neurons.name}
    k = neurons.info["k"]

    random = NeuronSteering(
        f"random units (k={k})", [], "control", {"k": k},
        sets={t: rank[t].random(k, seed=i) for i, t in enumerate(TARGETS)},
    )
    resid = recording(RecordSpec(model, worlds, "resid", "mean", list(range(model.n_layers))), progress)
    stats = {t: resid.strength(p).stats for t, p in props.items()}
    vectors = residual_vectors(stats)  # [layers, d] per target
    L = model.n_layers
    cands = sorted({int(round(L * (i + 1) / (size["caa_layers"] + 1))) for i in range(size["caa_layers"])})
    caa_single = [
        ResidualVector(f"CAA, layer {layer}", [], "baseline", {"layer": layer},
                       Knob(2.0, 0.01, 64.0), vectors={t: v[layer] for t, v in vectors.items()}, layers=(layer,))
        for layer in cands
    ]
    dev = {m.name: bench.dev_success(m, max(bench.cfg.budgets)) for m in caa_single}
    log(f"dev success at 1.5x, CAA layers: {json.dumps({k: round(v, 3) for k, v in dev.items()})}")
    caa = max([m for m in caa_single if reached(bench, m, max(bench.cfg.budgets))] or caa_single,
              key=lambda m: dev[m.name])
    choices["caa_layer"] = {"candidates": dev, "chosen": caa.name}
    caa_all = ResidualVector("CAA, all layers", [], "baseline", {"layers": "all"}, Knob(0.2, 0.001, 16.0),
                             vectors=vectors, layers=tuple(range(L)))

    pairs = contrast_pairs(worlds.prompts, n=256, seed=0)
    pos, neg = contrast_states(model, pairs, progress)
    d = pca_directions(pos, neg)
    pca = ResidualVector("PCA of contrast pairs (repeng), all layers", [], "baseline",
                         {"pairs": len(pairs), "layers": "all"}, Knob(1.0, 0.01, 64.0),
                         vectors={"positive": d, "negative": -d}, layers=tuple(range(L)))

    experts = {
        t: self_conditioning_experts(acts.X, torch.as_tensor(np.asarray(p.mask)), acts.layers, 2000)
        for t, p in props.items()
    }
    selfcond = SelfConditioning("self-conditioning (top-AP units at their median)", [], "baseline",
                                {"site": "mlp"}, experts=experts, site="mlp")
    prompting = Prompting("prompting: instruction", [], "baseline", {"instruction": Prompting.instruction})
    prefix = PromptPrefix("prompting: sentiment prefix", [], "baseline", {})
    methods = [neurons, random, caa, caa_all, pca, prompting, prefix, selfcond]
    return methods, choices


def k_stage(model, bench, size, shared, log):
    """Success at 1.5x for k and layer groups, rank-D and the best other score (chosen on dev at k=500)."""
    acts, props, rank = shared["acts"], shared["props"], shared["rank"]
    others, missed = {}, {}
    for score in size["other_scores"]:
        s = {t: score_units(acts, p, score) for t, p in props.items()}
        m = neuron_method(f"neurons ({score}, k=500)", s, 500, info={"score": score, "k": 500})
        others[score] = (bench.dev_success(m, 1.5), s)
        missed[score] = not reached(bench, m, 1.5)
    log(f"dev success at 1.5x, other scores at k=500: {json.dumps({n: round(v[0], 3) for n, v in others.items()})}"
        f"; budget not reached on dev: {[n for n in missed if missed[n]]}")
    # a score whose units wreck the text even at the knob's smallest setting cannot be compared at 1.5x
    other = max([n for n in others if not missed[n]] or list(others), key=lambda n: others[n][0])
    methods = []
    for score, s in (("rank-D", rank), (other, others[other][1])):
        for k in size["ks"]:
            methods.append(neuron_method(f"neurons ({score}, k={k})", s, k, info={"score": score, "k": k,
                                                                                   "layers": "all"}))
        if score != "rank-D":
            continue  # layer groups for rank-D only (time)
        for group, layers in thirds(model.n_layers).items():
            k = min(500, len(layers) * acts.X.shape[-1] // 2)
            methods.append(neuron_method(f"neurons ({score}, k={k}, {group} layers)", s, k, layers,
                                         info={"score": score, "k": k, "layers": group}))
    kb = replace(bench, test=BenchPrompts(bench.test.neutral), cfg=replace(bench.cfg, samples=1, max_evals=4))
    res = matched_eval(kb, methods, budgets=(1.5,))
    rows = []
    for r in res["rows"]:
        for scorer in res["scorers"]:
            s = r["test"]["neutral"]["scores"][scorer]["success"]
            rows.append({**s, "successes": s["k"], "score": r["info"]["score"], "k": r["info"]["k"],
                         "layers": r["info"]["layers"], "toward": r["toward"], "scorer": scorer, "knob": r["knob"],
                         "ratio": r["ratio"], "dev_ratio": r["dev"]["ratio"],
                         "matched": matched(r["dev"]["ratio"], 1.5)})
    return {"other_score": other, "dev_other_scores": {n: v[0] for n, v in others.items()},
            "dev_budget_missed": [n for n in missed if missed[n]], "rows": rows,
            "n_test": len(kb.test.neutral), "samples": 1, "seconds": res["seconds"]}


def report(result, out):
    md = [f"# Steering benchmark at matched fluency: `{result['model']}`", "",
          f"steer {result['steer_version']}; {result['seconds']:.0f} s on {result['machine']}.", ""]
    t = result.get("table")
    if t:
        md += [unsteered_line(t), "",
               f"Settings searched on {t['n_dev']} dev openings x {t['config']['dev_samples']} sample; test: "
               f"{t['n_test']} neutral openings and {sum(t['n_test_against'].values())} openings of the opposite "
               f"sentiment, x {t['config']['samples']} samples, {t['config']['max_new_tokens']} new tokens "
               "(temperature 1, top-p 0.9). Success = share judged the target sentiment; [Wilson 95%]. "
               "`against`: openings of the other sentiment steered toward the target. ppl x: test perplexity "
               "(under the unsteered model) over the unsteered test perplexity.", "",
               "Dev choices: " + json.dumps(result["choices"]), ""]
        for b in t["budgets"]:
            md += [f"## At {b:g}x unsteered perplexity", "", matched_table(t, b), "",
                   f"![matched]({Path(result['plots'][f'matched_{b:g}']).name})", ""]
        main = result["choices"]["neurons"]["chosen"]
        for b in t["budgets"]:
            vs = verdicts(t, main, b)
            counts = {}
            for v in vs:
                counts.setdefault(v["peer"], {"win": 0, "tie": 0, "lose": 0})[v["verdict"]] += 1
            md += [f"Verdicts of `{main}` at {b:g}x (intervals; per target x scorer x opening kind):", ""]
            md += [f"- {p}: {c['win']} win, {c['tie']} tie, {c['lose']} lose" for p, c in counts.items()]
            md += [""]
    k = result.get("k_curve")
    if k and "k_curve" in result["plots"]:
        md += ["## How many neurons does sentiment need?", "",
               f"At 1.5x, {k['n_test']} neutral test openings x 1 sample; other score chosen on dev: "
               f"`{k['other_score']}` (dev success {json.dumps({n: round(v, 3) for n, v in k['dev_other_scores'].items()})}).",
               f"Budget not reached on dev at k=500 (excluded from that choice): {k.get('dev_budget_missed', [])}. "
               "Rows whose dev perplexity ratio missed 1.5x by more than 10% (the knob's smallest setting already "
               "costs more) are marked `no` and left out of the plot.",
               "", "| score | k | layers | toward | scorer | success | ppl x dev / test | matched |",
               "|---|---|---|---|---|---|---|---|"]
        for r in k["rows"]:
            md.append(f"| {r['score']} | {r['k']} | {r['layers']} | {r['toward']} | {r['scorer']} | "
                      f"{r['rate']:.1%} [{r['lo']:.1%}, {r['hi']:.1%}] | {r.get('dev_ratio', float('nan')):.2f} / "
                      f"{r['ratio']:.2f} | {'yes' if r.get('matched', True) else 'no'} |")
        md += ["", f"![k curve]({Path(result['plots']['k_curve']).name})", ""]
    (out / "report.md").write_text("\n".join(md) + "\n")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="bundled")
    ap.add_argument("--size", default="full", choices=sorted(SIZES))
    ap.add_argument("--stage", default="all", choices=["all", "table", "k"])
    ap.add_argument("--scorers", default="vader,minilm-sst2")
    ap.add_argument("--sst2", default=str(SHARED / "data" / "sst2") if (SHARED / "data" / "sst2").is_dir()
                    else "stanfordnlp/sst2", help="labelled data of the probe scorer (a GLUE dir or the hub id)")
    ap.add_argument("--budgets", default="1.25,1.5", help="perplexity ratios of the table (the k-curve uses 1.5)")
    ap.add_argument("--n-dev", type=int, default=None, help="dev openings for the search (default: the size's)")
    ap.add_argument("--n-test", type=int, default=None, help="neutral test openings (default: the size's)")
    ap.add_argument("--n-opposite", type=int, default=None, help="opposite test openings (default: the size's)")
    ap.add_argument("--variants", default="all", choices=["all", "default"],
                    help="neuron-steering variants tried on dev (default: only rank-D k=500)")
    ap.add_argument("--ks", default=None, help="k values of the k-curve (default: the size's)")
    ap.add_argument("--other-scores", default="zscore-D,D,mean-diff",
                    help="selection scores the k-curve's second line is chosen from on dev (at k=500)")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    torch.set_num_threads(os.cpu_count() or 1)
    t0 = time.time()
    size = dict(SIZES[args.size])
    for key in ("n_dev", "n_test", "n_opposite"):
        if getattr(args, key) is not None:
            size[key] = getattr(args, key)
    size["variants"] = args.variants
    if args.ks:
        size["ks"] = tuple(int(k) for k in args.ks.split(","))
    size["other_scores"] = tuple(args.other_scores.split(","))
    model = load_model(args.model)
    out = Path(args.out or ROOT / "docs" / "results" / "steering_bench" / model.name.replace("/", "_"))
    out.mkdir(parents=True, exist_ok=True)

    def log(msg):
        print(f"[{time.time() - t0:6.0f}s] {msg}", flush=True)

    scorers = [get_scorer(s, sst2=args.sst2) for s in args.scorers.split(",")]
    dev = BenchPrompts.from_files(BENCH / "neutral.jsonl", None, "dev", n_neutral=size["n_dev"])
    test = BenchPrompts.from_files(BENCH / "neutral.jsonl", BENCH / "opposite.jsonl", "test",
                                   n_neutral=size["n_test"], n_opposite=size["n_opposite"])
    budgets = tuple(float(b) for b in args.budgets.split(","))
    cfg = MatchedConfig(budgets=budgets, samples=size["samples"], max_evals=size["max_evals"])
    bench = Bench(model, scorers, dev, test, cfg, progress=False)
    log(f"model {model.name}; unsteered dev ppl {bench.unsteered_dev_ppl():.2f}")
    shared = units(model, False)
    methods, choices = build(model, bench, size, shared, False, log) if args.stage != "k" else ([], {})
    log(f"methods: {[m.name for m in methods]}; choices {choices}")
    result = {"model": model.name, "provenance": model.provenance, "size": args.size, "sizes": size,
              "stage": args.stage, "choices": choices,
              "machine": f"{os.cpu_count()} CPU cores, torch {torch.__version__}", "plots": {}}
    from steer import __version__
    result["steer_version"] = __version__
    if args.stage in ("all", "table"):
        table = matched_eval(bench, methods)
        result["table"] = table
        for b in table["budgets"]:
            result["plots"][f"matched_{b:g}"] = str(plot_matched(table, b, out / f"matched_{b:g}x.png"))
            log(f"at {b:g}x:\n" + matched_table(table, b))
        top = max(table["budgets"])
        for name in dict.fromkeys(r["method"] for r in rows_at(table, top)):
            rs = [r for r in rows_at(table, top) if r["method"] == name]
            log(f"{name}: pooled success at {top:g}x " + ", ".join(
                f"{s} {pooled_rate(rs, s)['rate']:.1%}" for s in table["scorers"]))
        save(result, bench, out, t0)  # the table is kept even if the k stage is interrupted
    if args.stage in ("all", "k"):
        k = k_stage(model, bench, size, shared, log)
        result["k_curve"] = k
        for scorer in {r["scorer"] for r in k["rows"]}:
            rows = [r for r in k["rows"] if r["scorer"] == scorer and r["matched"]]
            result["plots"][f"k_curve_{scorer}"] = str(plot_k_curve(rows, out / f"k_curve_{scorer}.png",
                                                                    f"success at 1.5x perplexity ({scorer})"))
        result["plots"]["k_curve"] = result["plots"][f"k_curve_{scorers[0].name}"]
    save(result, bench, out, t0)
    log(f"wrote {out}/report.md")


def save(result, bench, out, t0):
    """result.json (with every dev run of the search) and report.md, written whole each time (temp + rename)."""
    result["dev_traces"] = {f"{a} -> {b}": sorted(v.values(), key=lambda r: r["knob"])
                            for (a, b), v in bench.traces.items()}
    result["seconds"] = round(time.time() - t0, 1)
    tmp = out / "result.json.tmp"
    tmp.write_text(json.dumps(result, indent=1, default=str))
    tmp.replace(out / "result.json")
    report(result, out)


if __name__ == "__main__":
    main()
