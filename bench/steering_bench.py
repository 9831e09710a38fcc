"""The steering benchmark at matched fluency: neuron steering against its peers, and how many neurons it needs.

Prompts: prompts/steering_bench/neutral.jsonl (240 neutral openings, six registers) and opposite.jsonl (120
openings of clear sentiment), each with a fixed dev/test split; a smaller size draws the same proportions of every
register and both sentiments (seeded). The protocol (steer/eval/matched.py):

- each method's knob is searched on dev for 1.25x and 1.5x the unsteered perplexity, per target;
- on test, each method runs at a grid of settings bracketing its dev settings (the same seeds at every setting), and
  its success and perplexity ratio are read at exactly the budget from the isotonic test curves; a method whose
  curve does not reach the budget gets no reading; prompting (no knob) is compared at its own cost;
- intervals and verdicts: a bootstrap over test openings (all samples of an opening together), paired between
  methods, Holm-corrected over every comparison of a table.

No method's variant is chosen on dev (no winner's curse): each row is one method as the library or its recipe
defines it. Neuron steering is the library default (rank-D, k=500, additive), and the same rule on the units before
the gate's activation (``neurons-pre``: site mlp_pre, where a constant shift acts differently at every token); linear
transport (Linear-AcT maps fitted per unit from the worlds) runs on the same units and, as AcT does, on every MLP unit
of every layer (fitted at once); ``neurons-write`` and ``neurons-write-normed`` keep the default's rule and k but
choose the units by what they write, not by what they read: each MLP unit's W_out row projected on its layer's CAA
vector, times its sigma (steer.selection.write_alignment), and that divided by the layer's residual norm;
``neurons-dosed`` is the default with each layer's shift rescaled so that it writes a vector whose norm is a fixed
share of the layer's residual norm (the total over layers unchanged);
CAA runs at every layer and at the middle layer (fixed, not searched), PCA of contrast pairs at every layer; the
other peers are random units (same k), prompting (an instruction; a sentiment prefix) and self-conditioning.
``--methods`` runs some of them (the table's Holm family is then those rows' comparisons).

Stages (``--stage all`` runs the first two):

- ``table``: every method at both budgets;
- ``k``: neuron steering at 1.5x as a function of k (all layers) and of the layer third (k=500), for rank-D and
  ``--other-score``;
- ``spread``: only the dev search at the highest budget, with sampling seed 0 and with ``--search-spread`` (default
  1), for every method with a knob: how far the chosen setting moves with the seed (no test run).

    python bench/steering_bench.py --stage table                     # bundled model, full size
    python bench/steering_bench.py --size small                      # a few minutes
    python bench/steering_bench.py --model $(../shared/tools/get-qwen-gguf) --size medium
    python bench/steering_bench.py --stage spread --search-spread 1  # how far the dev search moves with the seed
    python bench/steering_bench.py --model FILE --size medium --methods neurons,caa-all \
        --extend RESULT_JSON --n-test 96 --n-opposite 48             # a stored table grown to 96 + 48 test openings

``--merge`` adds methods to a stored table (same openings and seeds); ``--extend`` adds test openings to it: every
method of the stored table runs again on the openings it did not use, at the test grid it chose on dev, and the two
parts are joined opening by opening (steer.eval.matched_extend), so a table too large for one sitting is measured in
two. Methods merged into a grown table run as its parts were run (the dev search on the first part's, each part's
openings with that part's seed), so every comparison stays paired.

Writes result.json (command line, versions, machine, date, every per-continuation figure), report.md and PNGs under
--out (default docs/results/steering_bench/<model name>).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from dataclasses import asdict, replace
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch

from steer import DEFAULT_PROMPT_SET, Intervention, RecordSpec, Steerer, Worlds, load_model, recording
from steer.artifacts import IDENTITY_KEYS, check_model, content_key
from steer.eval import (
    Bench,
    BenchPrompts,
    MatchedConfig,
    NeuronSteering,
    Prompting,
    PromptPrefix,
    ResidualVector,
    SelfConditioning,
    get_scorer,
    matched_eval,
    matched_table,
    plot_k_curve,
)
from steer.eval.matched import merge_tables, search_spread
from steer.eval.matched_extend import concat_tables, eval_in_parts, extend_eval, part_seed
from steer.eval.matched_report import row_success, unsteered_line, verdict_counts
from steer.eval.methods import (COEFF, Knob, LayerDosedNeurons, contrast_pairs, pca_directions, residual_vectors,
                                self_conditioning_experts)
from steer.eval.plots import plot_matched
from steer.fold import output_projection
from steer.incremental import incremental_transport
from steer.models import versions
from steer.neurons import score_units, with_transport
from steer.resources import PROMPTS_DIR
from steer.selection import write_alignment
from steer.trained_maps import TrainConfig, train_maps
from steer.version import __version__

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
BENCH = PROMPTS_DIR / "steering_bench"
TARGETS = ("positive", "negative")

# dev openings for the search, test neutral / opposite openings, samples per test opening, the k-curve's ks
SIZES = {
    "tiny": dict(n_dev=4, n_test=6, n_opposite=4, samples=2, max_evals=2, grid=4, ks=(5,), resamples=50),
    "small": dict(n_dev=12, n_test=24, n_opposite=12, samples=3, max_evals=4, grid=4, ks=(5, 500), resamples=1000),
    "medium": dict(n_dev=24, n_test=48, n_opposite=24, samples=3, max_evals=5, grid=4, ks=(50, 500), resamples=1000),
    "full": dict(n_dev=24, n_test=96, n_opposite=48, samples=3, max_evals=6, grid=5, ks=(5, 50, 500, 2000),
                 resamples=1000),
}


def thirds(n_layers):
    a, b = n_layers // 3, 2 * n_layers // 3
    groups = {"early": list(range(a)), "middle": list(range(a, b)), "late": list(range(b, n_layers))}
    return {g: layers for g, layers in groups.items() if layers}


def neuron_method(name, scores, k, layers=None, kind="neurons", info=None, rule="additive", knob=COEFF, shared=None):
    """Neuron steering of the top k for and against each target's proposition under ``rule`` (a transport rule
    takes its fits from ``shared``'s recording)."""
    by = {t: (s if layers is None else s.restrict(layers)) for t, s in scores.items()}
    sets = {t: s.top(k) for t, s in by.items()}
    if rule.endswith("transport"):
        sets = {t: with_transport(ns, shared["acts"], shared["props"][t]) for t, ns in sets.items()}
    return NeuronSteering(name, [], kind, {"rule": rule, **(info or {})}, knob, sets=sets,
                          intervention=Intervention(rule))


def layer_doses(model, ns, resid_norm):
    """Per layer, the factor that makes the additive rule's shift (at coeff 1) write a vector whose norm is
    proportional to the layer's residual norm, with the total written norm over layers unchanged."""
    # the shift's exported form is the vector it writes after each block (steer.fold)
    vectors = Steerer(model, ns, Intervention("additive", 1.0)).exported.vectors
    written = {layer: float(v.norm()) for layer, v in vectors.items()}
    raw = {layer: float(resid_norm[layer]) / w for layer, w in written.items()}
    f = sum(written.values()) / sum(raw[layer] * w for layer, w in written.items())
    return {layer: f * r for layer, r in raw.items()}


def contrast_states(model, pairs, progress):
    """Last-token resid of every layer for the two members of each contrast pair: ([pairs, L, d], [pairs, L, d])."""
    recs = [{"text": p, "side": side} for pair in pairs for p, side in zip(pair, ("pos", "neg"))]
    w = Worlds.from_records(recs, source="contrast pairs (repeng recipe)")
    acts = recording(RecordSpec(model, w, "resid", "last", tuple(range(model.n_layers))), progress)
    X = acts.X.float()
    return X[0::2], X[1::2]


def units(model, worlds_path, progress):
    """The worlds (plain template), their MLP recording (mean over the text) and rank-D per target."""
    worlds = Worlds.from_file(worlds_path, template="plain")
    props = {t: worlds.proposition(t) for t in TARGETS}
    acts = recording(RecordSpec(model, worlds, "mlp", "mean"), progress)
    rank = {t: score_units(acts, p, "rank-D") for t, p in props.items()}
    return {"worlds": worlds, "acts": acts, "props": props, "rank": rank}


def build(model, shared, progress, names, extra):
    """The methods ``names`` of the table (each built only when asked for), with no choice made among variants
    (each method as the library or its recipe defines it). What building cost is added to ``extra``."""
    worlds, acts, props, rank = shared["worlds"], shared["acts"], shared["props"], shared["rank"]
    k = min(500, acts.X.shape[1] * acts.X.shape[2] // 2)
    L = model.n_layers
    mid = L // 2

    def caa():
        if "vectors" not in shared:
            resid = recording(RecordSpec(model, worlds, "resid", "mean", tuple(range(L))), progress)
            stats = {t: resid.strength(p).stats for t, p in props.items()}
            shared["vectors"] = residual_vectors(stats)
            st = next(iter(stats.values()))  # the residual's norm per layer (mean-pooled worlds): sqrt(E|x|^2)
            shared["resid_norm"] = (st.mean.double() ** 2 + st.std.double() ** 2).sum(-1).sqrt().float()
        return shared["vectors"]  # [layers, d] per target

    def by_writes(normed):  # every MLP unit scored by what it writes along its layer's CAA vector (top k each way)
        vectors, layers = caa(), list(acts.layers)
        w_out = torch.stack([output_projection(model, layer).weight.detach().float().T for layer in layers])
        scale = shared["resid_norm"][layers] if normed else None
        score = "write-caa" + ("/resid-norm" if normed else "")
        scores = {t: rank[t].rescored(write_alignment(w_out, rank[t].stats.std, vectors[t][layers], scale), score)
                  for t in TARGETS}
        what = "relative to the residual norm" if normed else "along the CAA vector"
        # their shifts cost more fluency per unit of coeff than the default's: a floor far below COEFF's 0.05
        return neuron_method(f"neurons by what they write ({what}, k={k})", scores, k, info={"score": score, "k": k},
                             knob=Knob(0.1, 0.002, 64.0))

    def pca():
        pairs = contrast_pairs(worlds.prompts, n=256, seed=0)
        d = pca_directions(*contrast_states(model, pairs, progress))
        return ResidualVector("PCA of contrast pairs (repeng), all layers", [], "baseline",
                              {"pairs": len(pairs), "layers": "all"}, Knob(1.0, 0.01, 64.0),
                              vectors={"positive": d, "negative": -d}, layers=tuple(range(L)))

    def trained():
        t0 = time.time()
        cfg = TrainConfig()
        sets = {t: train_maps(model, with_transport(rank[t].top(k), acts, props[t]), worlds, props[t], cfg,
                              progress=progress, directions=("toward",)) for t in TARGETS}
        extra["training"] = {"seconds": round(time.time() - t0, 1), "config": asdict(cfg), "k": k,
                             "losses": {t: ns.extra["transport"]["trained"]["losses"] for t, ns in sets.items()}}
        return NeuronSteering(f"trained transport (rank-D, k={k})", [], "neurons",
                              {"rule": "linear-transport", "score": "rank-D", "k": k, "trained": asdict(cfg)},
                              Knob(1.0, 0.02, 32.0), sets=sets, intervention=Intervention("linear-transport"))

    every = acts.X.shape[1] * acts.X.shape[2] // 2  # half for, half against: every unit of every layer

    def act_incremental():
        t0 = time.time()
        sets = {t: incremental_transport(model, with_transport(rank[t].top(every), acts, props[t]), worlds, props[t],
                                         directions=("toward",), progress=progress) for t in TARGETS}
        extra["incremental"] = {"seconds": round(time.time() - t0, 1)}
        return NeuronSteering("linear transport, every MLP unit (AcT, incremental)", [], "neurons",
                              {"rule": "linear-transport", "score": "none (all units)", "k": "all",
                               "incremental": True}, Knob(0.3, 0.005, 4.0), sets=sets,
                              intervention=Intervention("linear-transport"))

    def dosed():  # the default's units and rule, each layer's shift rescaled to a fixed share of its residual norm
        caa()  # records the residual stream, and with it shared["resid_norm"]
        sets = {t: rank[t].top(k) for t in TARGETS}
        doses = {t: layer_doses(model, ns, shared["resid_norm"]) for t, ns in sets.items()}
        return LayerDosedNeurons(f"neurons, dose per layer by the residual norm (rank-D, k={k})", [], "neurons",
                                 {"rule": "additive", "score": "rank-D", "k": k, "dose": "residual norm",
                                  "doses": doses}, COEFF, sets=sets, intervention=Intervention("additive"),
                                 doses=doses)

    def rank_at(site):  # rank-D of the units at another MLP site (recorded once, mean over the text)
        if f"rank {site}" not in shared:
            at = recording(RecordSpec(model, worlds, site, "mean"), progress)
            shared[f"rank {site}"] = {t: score_units(at, p, "rank-D") for t, p in props.items()}
        return shared[f"rank {site}"]

    factories = {
        "neurons": lambda: neuron_method(f"neurons (rank-D, k={k})", rank, k, info={"score": "rank-D", "k": k}),
        "neurons-pre": lambda: neuron_method(f"neurons before the gate (mlp_pre, rank-D, k={k})", rank_at("mlp_pre"),
                                             k, info={"score": "rank-D", "k": k, "site": "mlp_pre"}),
        "neurons-write": lambda: by_writes(False),
        "neurons-write-normed": lambda: by_writes(True),
        "neurons-dosed": dosed,
        "transport": lambda: neuron_method(f"linear transport (rank-D, k={k})", rank, k,
                                           info={"score": "rank-D", "k": k}, rule="linear-transport",
                                           knob=Knob(1.0, 0.02, 32.0), shared=shared),
        "trained": trained,
        "act-all": lambda: neuron_method("linear transport, every MLP unit (AcT, fitted at once)", rank, every,
                                         info={"score": "none (all units)", "k": "all"}, rule="linear-transport",
                                         knob=Knob(0.3, 0.005, 4.0), shared=shared),
        "act-incremental": act_incremental,
        "random": lambda: NeuronSteering(f"random units (k={k})", [], "control", {"k": k},
                                         sets={t: rank[t].random(k, seed=i) for i, t in enumerate(TARGETS)}),
        "caa-mid": lambda: ResidualVector(f"CAA, layer {mid} (the middle, fixed)", [], "baseline", {"layer": mid},
                                          Knob(2.0, 0.01, 64.0), vectors={t: v[mid] for t, v in caa().items()},
                                          layers=(mid,)),
        "caa-all": lambda: ResidualVector("CAA, all layers", [], "baseline", {"layers": "all"},
                                          Knob(0.2, 0.001, 16.0), vectors=caa(), layers=tuple(range(L))),
        "pca": pca,
        "prompting": lambda: Prompting("prompting: instruction", [], "baseline",
                                       {"instruction": Prompting.instruction}),
        "prefix": lambda: PromptPrefix("prompting: sentiment prefix", [], "baseline", {}),
        "self-conditioning": lambda: SelfConditioning(
            "self-conditioning (top-AP units at their median)", [], "baseline", {"site": "mlp"},
            experts={t: self_conditioning_experts(acts.X, torch.as_tensor(np.asarray(p.mask)), acts.layers, 2000)
                     for t, p in props.items()}, site="mlp"),
    }
    names = list(factories) if names == "all" else names.split(",")
    unknown = [n for n in names if n not in factories]
    if unknown:
        sys.exit(f"steering_bench: unknown method(s) {unknown}; use 'all' or some of {', '.join(factories)}")
    return [factories[n]() for n in names]


def k_stage(model, bench, size, shared, other, log):
    """Neuron steering at 1.5x for each k and layer third, rank-D and ``other``, by the same protocol."""
    acts, props, rank = shared["acts"], shared["props"], shared["rank"]
    width = acts.X.shape[2]
    methods = []
    for score, s in (("rank-D", rank), (other, {t: score_units(acts, p, other) for t, p in props.items()})):
        for k in size["ks"]:
            methods.append(neuron_method(f"neurons ({score}, k={k})", s, k,
                                         info={"score": score, "k": k, "layers": "all"}))
        if score != "rank-D":
            continue  # layer groups for rank-D only (time)
        for group, layers in thirds(model.n_layers).items():
            k = min(500, len(layers) * width // 2)
            methods.append(neuron_method(f"neurons ({score}, k={k}, {group} layers)", s, k, layers,
                                         info={"score": score, "k": k, "layers": group}))
    kb = replace(bench, test=BenchPrompts(bench.test.neutral))
    res = matched_eval(kb, methods, budgets=(1.5,))
    log(f"k stage: {res['seconds']:.0f} s")
    rows = []
    for r in res["rows"]:
        for scorer in res["scorers"]:
            s = row_success(r, scorer) if r["reached"] else None
            rows.append({"score": r["info"]["score"], "k": r["info"]["k"], "layers": r["info"]["layers"],
                         "toward": r["toward"], "scorer": scorer, "reached": r["reached"], "knob": r["knob"],
                         "max_ratio": r.get("max_ratio"), **(s or {})})
    return {"other_score": other, "rows": rows, "n_test": len(kb.test.neutral), "result": res}


def report(result, out):
    md = [f"# Steering benchmark at matched fluency: `{result['model']}`", "",
          f"steer {result['steer_version']}; {result['seconds']:.0f} s on {result['machine']}; {result['date']}.",
          f"Command: `{result['command']}`", ""]
    t = result.get("table")
    if t:
        c = t["config"]
        md += [unsteered_line(t), "",
               f"Settings searched on {t['n_dev']} dev openings x {c['dev_samples']} samples; test: {t['n_test']} "
               f"neutral openings and {sum(t['n_test_against'].values())} openings of the opposite sentiment, x "
               f"{c['samples']} samples, {c['max_new_tokens']} new tokens (temperature 1, top-p 0.9), at a grid of "
               f"{c['grid']} settings per method and target read at the budget (isotonic). Intervals: 95% bootstrap "
               f"over openings ({c['resamples']} resamples). Verdicts: paired bootstrap, Holm over every comparison "
               f"at a budget, alpha {c['alpha']}. No variant was chosen on dev.", ""]
        for b in t["budgets"]:
            md += [f"## At {b:g}x unsteered perplexity", "", matched_table(t, b), "",
                   f"![matched]({Path(result['plots'][f'matched_{b:g}']).name})", ""]
            main = t["rows"][0]["method"]
            md += [f"Verdicts of `{main}` at {b:g}x (per target x scorer x opening kind):", ""]
            md += [f"- {p}: {n['win']} win, {n['tie']} tie, {n['lose']} lose"
                   for p, n in verdict_counts(t, main, b).items()] + [""]
    if "search_spread" in result:
        sp = result["search_spread"]
        md += ["## How far the dev search moves with the seed", "",
               f"At {sp['budget']:g}x, seed {sp['seed']} against seed 0: median factor between the two settings "
               f"{sp['median_factor']:.2f}.", ""]
        md += [f"- {k}: {v['knob']:.3g} vs {v['knob_other_seed']:.3g}" for k, v in sp["settings"].items()] + [""]
    k = result.get("k_curve")
    if k:
        md += ["## How many neurons does sentiment need?", "",
               f"At 1.5x, {k['n_test']} neutral test openings; the second score: `{k['other_score']}`.", "",
               "| score | k | layers | toward | scorer | success at 1.5x |", "|---|---|---|---|---|---|"]
        for r in k["rows"]:
            cell = (f"{r['rate']:.1%} [{r['lo']:.1%}, {r['hi']:.1%}]" if r["reached"]
                    else f"does not reach 1.5x (max {r['max_ratio']:.2f})")
            md.append(f"| {r['score']} | {r['k']} | {r['layers']} | {r['toward']} | {r['scorer']} | {cell} |")
        if "k_curve" in result["plots"]:
            md += ["", f"![k curve]({Path(result['plots']['k_curve']).name})", ""]
    (out / "report.md").write_text("\n".join(md) + "\n")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="bundled")
    ap.add_argument("--size", default="full", choices=sorted(SIZES))
    ap.add_argument("--stage", default="all", choices=["all", "table", "k", "spread"])
    ap.add_argument("--scorers", default="vader,minilm-sst2")
    ap.add_argument("--sst2", default=str(SHARED / "data" / "sst2") if (SHARED / "data" / "sst2").is_dir()
                    else "stanfordnlp/sst2", help="labelled data of the probe scorer (a GLUE dir or the hub id)")
    ap.add_argument("--worlds", default=str(DEFAULT_PROMPT_SET), help="the labelled worlds units are selected on")
    ap.add_argument("--budgets", default="1.25,1.5", help="perplexity ratios of the table (the k-curve uses 1.5)")
    ap.add_argument("--n-dev", type=int, default=None, help="dev openings for the search (default: the size's)")
    ap.add_argument("--n-test", type=int, default=None, help="neutral test openings (default: the size's)")
    ap.add_argument("--n-opposite", type=int, default=None, help="opposite test openings (default: the size's)")
    ap.add_argument("--split-seed", type=int, default=0, help="the seed of the stratified draw of the splits")
    ap.add_argument("--max-new-tokens", type=int, default=20)
    ap.add_argument("--ks", default=None, help="k values of the k-curve (default: the size's)")
    ap.add_argument("--other-score", default="zscore-D", help="the k-curve's second selection score")
    ap.add_argument("--search-spread", type=int, default=None, metavar="SEED",
                    help="search every method's 1.5x setting again with this sampling seed and report the spread")
    ap.add_argument("--methods", default="all", help="comma-separated methods of the table, or all (see build())")
    ap.add_argument("--grid", type=int, default=None, help="test settings per method and target (default: size's)")
    ap.add_argument("--merge", default=None, metavar="RESULT_JSON",
                    help="a stored run of the same bench to add these methods to (one table, compared afresh)")
    ap.add_argument("--extend", default=None, metavar="RESULT_JSON",
                    help="a stored table to add test openings to, at the settings it chose (--n-test and "
                         "--n-opposite give the new totals; --methods must name all of its methods)")
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)
    if args.extend and args.merge:
        sys.exit("steering_bench: --extend and --merge are separate runs; do one, then the other")
    if args.extend and args.stage != "table":
        sys.exit("steering_bench: --extend grows a table; give --stage table")
    torch.set_num_threads(os.cpu_count() or 1)
    t0 = time.time()
    size = dict(SIZES[args.size])
    for key in ("n_dev", "n_test", "n_opposite"):
        if getattr(args, key) is not None:
            size[key] = getattr(args, key)
    if args.grid is not None:
        size["grid"] = args.grid
    if args.ks:
        size["ks"] = tuple(int(k) for k in args.ks.split(","))
    model = load_model(args.model)
    out = Path(args.out or ROOT / "docs" / "results" / "steering_bench" / model.name.replace("/", "_"))
    out.mkdir(parents=True, exist_ok=True)

    def log(msg):
        print(f"[{time.time() - t0:6.0f}s] {msg}", flush=True)

    scorers = [get_scorer(s, sst2=args.sst2) for s in args.scorers.split(",")]
    seed = args.split_seed
    dev = BenchPrompts.from_files(BENCH / "neutral.jsonl", None, "dev", n_neutral=size["n_dev"], seed=seed)
    test = BenchPrompts.from_files(BENCH / "neutral.jsonl", BENCH / "opposite.jsonl", "test",
                                   n_neutral=size["n_test"], n_opposite=size["n_opposite"], seed=seed)
    openings = sha256_of(test.neutral, test.opposite)
    first = json.loads(Path(args.merge).read_text()) if args.merge else None
    if first is not None:  # the stored run's own openings (a prompt file may have grown since)
        if "table" not in first:
            sys.exit(f"steering_bench: {args.merge} holds no table (a k or spread stage); merge into a table")
        test = stored_openings(first)
        openings = first.get("test_openings_sha256", sha256_of(test.neutral, test.opposite))
    old = json.loads(Path(args.extend).read_text()) if args.extend else None
    used = BenchPrompts([], [])  # the stored run's openings, in its table's order
    if old is not None:
        used = stored_openings(old)
        test = added_openings(old, test)
    budgets = tuple(float(b) for b in args.budgets.split(","))
    cfg = MatchedConfig(budgets=budgets, samples=size["samples"], max_evals=size["max_evals"], grid=size["grid"],
                        resamples=size["resamples"], max_new_tokens=args.max_new_tokens)
    bench = Bench(model, scorers, dev, test, cfg, progress=True)  # a bar over the (method, target) jobs
    log(f"model {model.name}; unsteered dev ppl {bench.unsteered_dev_ppl():.2f}")
    shared = units(model, args.worlds, False)
    result = {"model": model.name, "provenance": model.provenance, "size": args.size, "sizes": size,
              "stage": args.stage, "command": " ".join([Path(sys.argv[0]).name, *(argv or sys.argv[1:])]),
              "date": datetime.now(timezone.utc).isoformat(timespec="seconds"), "versions": versions(),
              "machine": f"{os.cpu_count()} CPU cores, {platform.machine()}, {platform.system()}, torch {torch.__version__}",
              "steer_version": __version__, "split_seed": seed, "test_openings_sha256": openings,
              "test_openings": {"neutral": used.neutral + test.neutral,  # in the order of the table's openings
                                "opposite": [list(p) for p in used.opposite + test.opposite]},
              "worlds_sha256": sha256_of(Path(args.worlds).read_text()), "plots": {}}
    if old is not None:  # before anything is built or trained
        same_bench(old, model, result["worlds_sha256"], args.extend)
    if args.stage in ("all", "table"):
        result["extra"] = {}
        methods = build(model, shared, False, args.methods, result["extra"])
        log(f"methods: {[m.name for m in methods]}")
        if old is not None:  # the stored table's settings on new test openings, joined opening by opening
            check_rebuilt(old.get("extra", {}), result["extra"])
            table = concat_tables(old["table"], extend_eval(bench, methods, old["table"]))
            result["extended_from"] = {key: old.get(key) for key in ("command", "date", "seconds", "merged_with",
                                                                     "extended_from", "test_openings_sha256")}
            result["extended_from"].update(n_test=old["table"]["n_test"], n_test_against=old["table"]["n_test_against"])
            result["extra"] = {**old.get("extra", {}), **result["extra"]}
        elif first is not None and len(first["table"].get("parts") or []) > 1:  # a grown table: run as its parts were
            table = eval_in_parts(bench, methods, part_openings(first, test))
        else:
            table = matched_eval(bench, methods)
        if first is not None:  # methods added to a stored run of the same bench: one table, compared afresh
            table = merge_tables(first["table"], table)
            result["merged_with"] = {"command": first.get("command"), "date": first.get("date"),
                                     "seconds": first.get("seconds"), "extra": first.get("extra", {}),
                                     # the stored run's own history, so a chain of merges keeps every command
                                     **{k: first[k] for k in ("merged_with", "extended_from") if k in first}}
            result["extra"] = {**first.get("extra", {}), **result.get("extra", {})}
        result["table"] = table
        for b in table["budgets"]:
            result["plots"][f"matched_{b:g}"] = str(plot_matched(table, b, out / f"matched_{b:g}x.png"))
            log(f"at {b:g}x:\n" + matched_table(table, b))
        if args.search_spread is not None:
            result["search_spread"] = search_spread(bench, [m for m in methods if m.knob is not None],
                                                    max(budgets), args.search_spread)
        save(result, out, t0)  # the table is kept even if the k stage is interrupted
    if args.stage == "spread":  # the dev search alone, with two seeds: how far its setting moves
        methods = [m for m in build(model, shared, False, args.methods, {}) if m.knob is not None]
        log(f"methods: {[m.name for m in methods]}")
        result["search_spread"] = search_spread(bench, methods, max(budgets), args.search_spread or 1)
    if args.stage in ("all", "k"):
        k = k_stage(model, bench, size, shared, args.other_score, log)
        result["k_curve"] = k
        for scorer in {r["scorer"] for r in k["rows"]}:
            rows = [r for r in k["rows"] if r["scorer"] == scorer and r["reached"]]
            if rows:
                result["plots"][f"k_curve_{scorer}"] = str(plot_k_curve(rows, out / f"k_curve_{scorer}.png",
                                                                        f"success at 1.5x perplexity ({scorer})"))
        if f"k_curve_{scorers[0].name}" in result["plots"]:
            result["plots"]["k_curve"] = result["plots"][f"k_curve_{scorers[0].name}"]
    save(result, out, t0)
    log(f"wrote {out}/report.md")
    return result


def sha256_of(*parts):
    """The sha256 of the parts as JSON (the test openings, or a file's text)."""
    return content_key(parts, length=64)


def same_bench(old, model, worlds_sha256, path):
    """Exit unless the stored run ``old`` used this model (its identity: weights and config) and these worlds."""
    if old.get("worlds_sha256", worlds_sha256) != worlds_sha256:
        sys.exit(f"steering_bench: {path} was run with other worlds (sha256 {old['worlds_sha256']}, now "
                 f"{worlds_sha256})")
    check_model({k: old["provenance"].get(k) for k in IDENTITY_KEYS}, model.identity, path)


def stored_openings(old):
    """The test openings of the stored run ``old``, in its table's order: the list it holds (``test_openings``), or
    for a run stored without one, today's prompt files drawn at its sizes and ``--split-seed``, which must give the
    openings it hashed (exits when the files have changed since)."""
    t = old["table"]
    if "test_openings" in old:
        kept = old["test_openings"]
        before = BenchPrompts(list(kept["neutral"]), [(p, lab) for p, lab in kept["opposite"]])
        if len(before.neutral) != t["n_test"] or len(before.opposite) != sum(t["n_test_against"].values()):
            sys.exit("steering_bench: the stored run's test_openings do not match its table's sizes")
        return before
    before = BenchPrompts.from_files(BENCH / "neutral.jsonl", BENCH / "opposite.jsonl", "test", n_neutral=t["n_test"],
                                     n_opposite=sum(t["n_test_against"].values()), seed=old.get("split_seed", 0))
    now = sha256_of(before.neutral, before.opposite)
    if old.get("test_openings_sha256", now) != now:
        sys.exit("steering_bench: the stored run's test openings are not those of today's prompt files at its sizes "
                 "and --split-seed (the files changed?), and it holds no list of them; it cannot be extended")
    return before


def part_openings(old, kept):
    """The test openings ``kept`` of the grown table ``old`` (:func:`stored_openings`, in its order), split into its
    parts; exits unless its parts were sampled with the seeds an extension gives them (``part_seed``)."""
    t = old["table"]
    seeds = [p["seed"] for p in t["parts"]]
    if seeds != [part_seed(t["config"]["seed"], i) for i in range(len(seeds))]:
        sys.exit(f"steering_bench: the stored table's parts were sampled with seeds {seeds}, not its seed and one more "
                 "per part: its runs cannot be repeated")
    parts, n, m = [], 0, 0
    for p in t["parts"]:
        k = sum(p["n_test_against"].values())
        parts.append(BenchPrompts(kept.neutral[n:n + p["n_test"]], kept.opposite[m:m + k]))
        n, m = n + p["n_test"], m + k
    return parts


def added_openings(old, test):
    """The test openings of ``test`` that the stored run ``old`` did not use; exits when its openings are not all
    among them (the stratified draws of two sizes nest when every group's share grows; a prompt file that grew is
    drawn whole)."""
    t = old["table"]
    before = stored_openings(old)
    neutral, opposite = set(before.neutral), set(before.opposite)
    if not neutral <= set(test.neutral) or not opposite <= set(test.opposite):
        sys.exit("steering_bench: the stored run's test openings are not all in this draw; give --n-test and "
                 "--n-opposite at least its sizes, in the same proportions, with its --split-seed")
    added = BenchPrompts([p for p in test.neutral if p not in neutral], [p for p in test.opposite if p not in opposite])
    if not added.neutral:
        sys.exit(f"steering_bench: no new test openings among the neutral ones; give --n-test above the stored run's "
                 f"{t['n_test']} (every part needs neutral openings: its perplexity is read on them)")
    return added


def check_rebuilt(old_extra, extra):
    """Methods built by training must come out as they did in the stored run (seeded), or the rows mix two maps."""
    a, b = old_extra.get("training", {}).get("losses"), extra.get("training", {}).get("losses")
    if a is None or b is None:
        return
    if sorted(a) != sorted(b) or any(sorted(a[t]) != sorted(b[t]) for t in a):
        sys.exit("steering_bench: the trained maps are of other targets or directions than the stored run's")
    last = [[v[-1] for _, v in sorted(by.items())] for _, by in sorted(a.items())]
    now = [[v[-1] for _, v in sorted(by.items())] for _, by in sorted(b.items())]
    if not np.allclose(last, now, rtol=1e-3):
        sys.exit(f"steering_bench: the trained maps came out differently from the stored run's (final losses {now} "
                 f"vs {last}); extend on the machine that trained them")


def save(result, out, t0):
    """result.json and report.md, written whole each time (temp + rename)."""
    result["seconds"] = round(time.time() - t0, 1)
    tmp = out / "result.json.tmp"
    tmp.write_text(json.dumps(result, indent=None, separators=(",", ":"), default=str))
    tmp.replace(out / "result.json")
    report(result, out)


if __name__ == "__main__":
    main()
