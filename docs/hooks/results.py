"""MkDocs hook: one page per stored result, generated at build time from ``docs/results/**/result.json``.

Every results table in the docs is written once, here, from the numbers in a stored ``result.json``; no page
copies a table by hand. For each result folder the hook adds a page ``results/<folder>/index.md`` (its tables, the
command that produced it where known, the machine, versions and run time the file holds, and the PNG figures that lie
beside it) and puts the pages under "Results" in the navigation, after an overview page ``results/index.md``.

Markers in hand-written pages are replaced at build time:

- ``<!-- results-table: steering_bench/bundled headline -->``: the headline table of that result (neutral openings at
  1.5x the unsteered perplexity).

README.md keeps one table (the same headline) between ``<!-- headline-table: steering_bench/bundled -->`` and
``<!-- /headline-table -->``. The build compares it with the stored result and warns (so ``--strict`` fails) when
they differ. ``python docs/hooks/results.py headline`` prints the table to paste there.

The hook imports nothing from ``steer`` (the library may be mid-refactor while the docs build); it reads JSON only.
It knows the result kinds stored today (the steering benchmark's table and k stages, ``steer eval flip``, ``steer eval
steer``, the paper's MNIST and income experiments); any other ``result.json`` gets a generic page (provenance, the
scalar fields, the configuration and the figures).
"""

from __future__ import annotations

import json
import logging
import math
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

log = logging.getLogger("mkdocs.hooks.results")

RESULTS = "results"  # under docs_dir
TARGETS = ("positive", "negative")
HEADLINE = "steering_bench/bundled"  # the result whose headline table README.md and index.md show
HEADLINE_BUDGET = 1.5

# The result files do not store the command line that wrote them. These are the commands documented for the stored
# runs (README and bench scripts); a result.json that holds "command" or "argv" is shown with that instead.
DOCUMENTED_COMMANDS = {
    "paper-mnist": "python bench/paper_mnist.py --out docs/results/paper-mnist",
    "paper-fairness": "python bench/paper_fairness.py --out docs/results/paper-fairness",
}

# Short titles for the navigation; other folders get a title derived from their content.
TITLES = {
    "steering_bench/bundled": "Steering benchmark: bundled model",
    "steering_bench/bundled-k": "How many neurons: k-curve (bundled model)",
    "steering_bench/bundled-spread": "How far the dev search moves (bundled model)",
    "steering_bench/bundled-pre": "Steering benchmark: bundled model, with units before the gate",
    "steering_bench/bundled-write": "Steering benchmark: bundled model, with units chosen by what they write",
    "steering_bench/qwen-fixture": "Steering benchmark: Qwen fixture",
    "steering_bench/qwen-variants": "Steering benchmark: Qwen fixture, with units before the gate and trained transport",
    "qwen-paper-protocol": "The paper's flip protocol: Qwen fixture",
    "qwen-steering-quality": "Steering quality sweep: Qwen fixture",
    "paper-mnist": "The paper's MNIST experiments",
    "paper-fairness": "The paper's income (fairness) experiment",
}


# ------------------------------------------------------------------------------------------------ formatting


def wilson(k: int, n: int, z: float = 1.959964) -> tuple[float, float]:
    """Wilson score interval (the same formula as ``steer.eval.wilson_interval``)."""
    if n == 0:
        return 0.0, 1.0
    p = k / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, min(p, centre - half)), min(1.0, max(p, centre + half))


def pooled(rates: list[dict[str, Any]]) -> dict[str, Any]:
    k, n = sum(r["k"] for r in rates), sum(r["n"] for r in rates)
    lo, hi = wilson(k, n)
    return {"k": k, "n": n, "rate": k / n if n else None, "lo": lo, "hi": hi}


def fmt_rate(r: dict[str, Any] | None) -> str:
    """``61.8% [57.5%, 66.0%]`` (as ``steer.eval.format_rate``)."""
    if r is None:
        return "n/a"
    if not r.get("n"):
        return "n/a (no items)"
    return f"{r['rate']:.1%} [{r['lo']:.1%}, {r['hi']:.1%}]"


def fmt_num(x: Any, spec: str) -> str:
    return "n/a" if x is None else format(x, spec)


def mean_std(values: list[float], scale: float = 1.0, spec: str = ".1f") -> str:
    """Mean ± population std (as the experiments' own reports)."""
    a = [v * scale for v in values]
    m = sum(a) / len(a)
    s = math.sqrt(sum((v - m) ** 2 for v in a) / len(a))
    return f"{m:{spec}} ± {s:{spec}}"


def table(head: list[str], rows: list[list[str]]) -> str:
    def cell(x: str) -> str:
        return str(x).replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(cell(h) for h in head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(cell(c) for c in r) + " |" for r in rows]
    return "\n".join(lines)


def fmt_seconds(s: float | None) -> str | None:
    if s is None:
        return None
    return f"{s:.0f} s" if s < 120 else f"{s:.0f} s ({s / 60:.0f} min)"


# ------------------------------------------------------------------------------------------------ provenance


def git_date(path: Path) -> str | None:
    """The date of the last commit that changed ``path``, or None (no git, or not committed)."""
    try:
        out = subprocess.run(
            ["git", "log", "-1", "--format=%cs", "--", path.name],
            cwd=path.parent,
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def model_info(res: dict[str, Any]) -> dict[str, Any]:
    for key in ("provenance", "model"):
        m = res.get(key)
        if isinstance(m, dict):
            return m
    return {}


def provenance(res: dict[str, Any], key: str, path: Path) -> str:
    """The header every result page starts with: what was run, on what, with which versions, how long."""
    m = model_info(res)
    lines = []
    if m.get("model_id"):
        desc = [f"`{m['model_id']}`"]
        extra = [str(m[k]) for k in ("architecture", "dtype", "device") if m.get(k)]
        if extra:
            desc.append(f"({', '.join(extra)})")
        if m.get("sha256"):
            desc.append(f"sha256 `{str(m['sha256'])[:12]}`")
        lines.append("- **Model**: " + " ".join(desc))
    versions = dict(m.get("versions") or res.get("versions") or {})
    if "steer" not in versions and res.get("steer_version"):
        versions = {"steer": res["steer_version"], **versions}
    if versions:
        lines.append("- **Versions**: " + ", ".join(f"{k} {v}" for k, v in versions.items()))
    machine = res.get("machine")
    if isinstance(machine, dict):
        machine = ", ".join(f"{k} {v}" for k, v in machine.items())
    if not machine and res.get("torch_threads"):
        machine = f"{res['torch_threads']} CPU threads"
    if machine:
        lines.append(f"- **Machine**: {machine}")
    run_time = fmt_seconds(res.get("seconds"))
    if run_time:
        lines.append(f"- **Run time**: {run_time}")
    date = res.get("date") or res.get("created")
    if date:
        lines.append(f"- **Date**: {date}")
    else:
        committed = git_date(path)
        lines.append(
            "- **Date**: not recorded in the file"
            + (f"; the file last changed in git on {committed}" if committed else "")
        )
    lines.append(f"- **Stored result**: [`docs/{RESULTS}/{key}/result.json`](result.json)")
    command = res.get("command") or (" ".join(res["argv"]) if isinstance(res.get("argv"), list) else None)
    if command:
        lines += ["", "Command line (recorded in the file):", "", "```bash", str(command), "```"]
    elif key in DOCUMENTED_COMMANDS:
        lines += [
            "",
            "The file does not record its command line; this is the command documented for this run:",
            "",
            "```bash",
            DOCUMENTED_COMMANDS[key],
            "```",
        ]
    else:
        lines += ["", "The file does not record its command line; its settings are under *Configuration* below."]
    return "\n".join(lines)


def config_block(res: dict[str, Any]) -> str:
    cfg = res.get("config")
    if not cfg:
        return ""
    body = json.dumps(cfg, indent=2, ensure_ascii=False)
    return "## Configuration\n\nAs stored in the file:\n\n```json\n" + body + "\n```\n"


# ------------------------------------------------------------------------------------------------ figures


class Figures:
    """The PNGs beside a result; each one placed once, the rest listed at the end."""

    def __init__(self, folder: Path) -> None:
        self.available = sorted(p.name for p in folder.glob("*.png"))
        self.used: set[str] = set()

    def md(self, name: str | None, alt: str) -> str:
        if not name:
            return ""
        name = Path(name).name
        if name not in self.available:
            return ""
        self.used.add(name)
        return f"![{alt}]({name})\n"

    def rest(self) -> str:
        left = [n for n in self.available if n not in self.used]
        if not left:
            return ""
        return "## Other figures\n\n" + "\n".join(self.md(n, n.removesuffix(".png")) for n in left)


# ------------------------------------------------------------------------------------------------ steering bench


def headline_table(res: dict[str, Any], budget: float = HEADLINE_BUDGET) -> str:
    """Success from neutral openings at ``budget`` per method, target and scorer (bootstrap intervals over openings),
    and the test perplexity ratio; a method whose test curve does not reach the budget says so."""
    t = res["table"]
    scorers = list(t["scorers"])
    head = ["method"] + [f"→ {x}: {s}" for x in TARGETS for s in scorers] + ["ppl × (+ / −)"]
    by: dict[str, dict[str, dict[str, Any]]] = {}
    for r in t["rows"]:
        if r["budget"] in (budget, None):
            by.setdefault(r["method"], {})[r["toward"]] = r
    rows = []
    for name, d in ((m, d) for m, d in by.items() if set(d) == set(TARGETS)):
        cells = [name]
        for target in TARGETS:
            for s in scorers:
                if not d[target].get("reached", True):
                    lo = d[target].get("min_ratio")
                    cells.append(f"above {budget:g}× at every setting (min {lo:.2f})" if lo is not None and lo > budget
                                 else f"does not reach {budget:g}× (max {d[target]['max_ratio']:.2f})")
                    continue
                r = d[target].get("success", {}).get("neutral", {}).get(s)
                cells.append("n/a" if r is None else f"{r['rate']:.1%} [{r['lo']:.1%}, {r['hi']:.1%}]")
        cells.append(" / ".join("–" if d[x].get("ratio") is None else f"{d[x]['ratio']:.2f}" for x in TARGETS))
        rows.append(cells)
    return table(head, rows)


def scorer_lines(scorers: dict[str, Any]) -> str:
    out = []
    for name, info in scorers.items():
        line = f"- `{name}`: {info.get('kind', '')}"
        if "heldout_accuracy" in info:
            line += f"; held-out accuracy {info['heldout_accuracy']:.1%} on {info['n_heldout']} items"
        if "threshold" in info:
            line += f"; threshold {info['threshold']}"
        out.append(line)
    return "\n".join(out)


def render_bench_v2(res: dict[str, Any], figs: Figures) -> str:
    """A table of the second protocol (test curves read at the budget, paired bootstrap, Holm): read with the
    library's own functions, so the page and the bench's report agree."""
    from steer.eval.matched_report import matched_table as v2_table
    from steer.eval.matched_report import unsteered_line, verdicts

    t = res["table"]
    c = t["config"]
    parts = "; ".join(f"{p['n_test']} + {sum(p['n_test_against'].values())} openings, seed {p['seed']}, "
                      f"{p['seconds']:.0f} s" for p in t.get("parts", []))
    md = [
        "## Set-up",
        "",
        f"Knob ranges searched on {t['n_dev']} dev openings × {c['dev_samples']} samples; test: {t['n_test']} neutral "
        f"openings and {sum(t['n_test_against'].values())} openings of the opposite sentiment × {c['samples']} "
        f"samples, {c['max_new_tokens']} new tokens (temperature 1, top-p 0.9), at a grid of {c['grid']} settings per "
        "method and target (the same seeds at every setting), read at the budget from the isotonic test curves. "
        f"Intervals: 95% bootstrap over openings ({c['resamples']} resamples, all samples of an opening together). "
        f"Verdicts: paired bootstrap of the difference, Holm over every comparison at a budget, alpha {c['alpha']}. "
        "No method's variant was chosen on dev. *does not reach*: the test curve never meets the budget.",
        "",
        *([f"Measured in parts (`--extend`: the same settings, new test openings, joined opening by opening): "
           f"{parts}.", ""] if parts else []),
        "Scorers:",
        "",
        scorer_lines(t["scorers"]),
        "",
        "### Unsteered",
        "",
        unsteered_line(t),
        "",
    ]
    plots = res.get("plots") or {}
    main = t["rows"][0]["method"]
    for b in t["budgets"]:
        md += [f"## At {b:g}× the unsteered perplexity", "", v2_table(t, b), ""]
        md.append(figs.md(plots.get(f"matched_{b:g}") or f"matched_{b:g}x.png", f"success at {b:g}x perplexity"))
        rows = [
            [v["peer"], v["toward"], v["scorer"], v["part"],
             "n/a" if v["diff"] is None else f"{v['diff']:+.1%} [{v['lo']:+.1%}, {v['hi']:+.1%}]",
             "n/a" if v["p_holm"] is None else f"{v['p_holm']:.3f}", v["verdict"]]
            for v in verdicts(t, main, b)
        ]
        md += ["", f"Verdicts of **{main}** against each peer:", "",
               table(["peer", "toward", "scorer", "openings", "difference [95%]", "p (Holm)", "verdict"], rows), ""]
    return "\n".join(md)


def render_spread(sp: dict[str, Any]) -> str:
    rows = [[k, f"{v['knob']:.3g}", f"{v['knob_other_seed']:.3g}", f"{math.exp(v['log_ratio']):.2f}"]
            for k, v in sp["settings"].items()]
    return "\n".join(["## How far the dev search moves with the seed", "",
                      f"At {sp['budget']:g}×, each setting searched on dev with sampling seed 0 and again with seed "
                      f"{sp['seed']}: median factor between the two settings {sp['median_factor']:.2f}.", "",
                      table(["method -> target", "seed 0", f"seed {sp['seed']}", "factor"], rows), ""])


def render_bench_k_v2(res: dict[str, Any], figs: Figures) -> str:
    k = res["k_curve"]
    rows = [
        [r["score"], str(r["k"]), str(r["layers"]), r["toward"], r["scorer"],
         f"{r['rate']:.1%} [{r['lo']:.1%}, {r['hi']:.1%}]" if r["reached"]
         else f"does not reach 1.5× (max {r['max_ratio']:.2f})"]
        for r in k["rows"]
    ]
    md = ["## How many neurons does sentiment need?", "",
          f"Success at 1.5× the unsteered perplexity on {k['n_test']} neutral test openings, read on the test curve "
          f"(as in the table), as a function of k and of the layers used; the second score is `{k['other_score']}`.",
          "", table(["score", "k", "layers", "toward", "scorer", "success at 1.5×"], rows), ""]
    plots = res.get("plots") or {}
    for name in sorted(p for p in plots if p.startswith("k_curve_")):
        md.append(figs.md(plots[name], f"success against k ({name.removeprefix('k_curve_')})"))
    return "\n".join(md)


def render_bench(res: dict[str, Any], figs: Figures) -> str:
    """A steering-benchmark result (its table, k-curve and search spread, whichever it holds)."""
    s = res.get("sizes") or {}
    sizes = ", ".join(f"{k} {v}" for k, v in s.items())
    md = [f"Benchmark size `{res.get('size')}`, stage `{res.get('stage')}`: {sizes}.", ""]
    if res.get("table"):
        md.append(render_bench_v2(res, figs))
    if res.get("k_curve"):
        md.append(render_bench_k_v2(res, figs))
    if res.get("search_spread"):
        md.append(render_spread(res["search_spread"]))
    return "\n".join(md)


# ------------------------------------------------------------------------------------------------ eval modes


def render_flip(res: dict[str, Any], figs: Figures) -> str:
    cfg = res["config"]
    rows = []
    for c in res["conditions"]:
        f = c["flip_rate"]
        probs = f"{fmt_num(c['p_source_before'], '.1%')} → {fmt_num(c['p_source_after'], '.1%')}"
        rows.append([c["flip"], c["name"].split(": ", 1)[-1], c["group"], fmt_rate(f), str(f["n"]), probs,
                     fmt_num(c["kl_answers"], ".3f"), fmt_num(c["kl_vocab"], ".3f")])
    for flip in ("pos2neg", "neg2pos"):
        for site in cfg["units"]["sites"]:
            rs = [c["flip_rate"] for c in res["conditions"]
                  if c["group"] == "random" and c["flip"] == flip and c["info"].get("site") == site]
            if rs:
                p = pooled(rs)
                rows.append([flip, f"random units at {site}, all seeds pooled", "random", fmt_rate(p), str(p["n"]),
                             "", "", ""])
    by_label = res.get("clean_accuracy_by_label") or {}
    md = [
        "## Set-up",
        "",
        f"Evaluation items: {res['eval_set']['source']} ({res['n_items']} items, template "
        f"`{res['eval_set']['template']}`). Units found on {res['worlds']['source']} (template "
        f"`{res['worlds']['template']}`) at sites `{', '.join(cfg['units']['sites'])}`, token reduction "
        f"`{cfg['units']['reduce']}`, top-{cfg['units']['k']} by `{cfg['units']['score']}`, propositions "
        + ", ".join(f"{k}: `{v['spec']}` ({v['size']} worlds)" for k, v in res["propositions"].items())
        + f". Rules: pos2neg `{cfg['pos2neg']['rule']}` c = {cfg['pos2neg']['coeff']:g}, neg2pos "
        f"`{cfg['neg2pos']['rule']}` c = {cfg['neg2pos']['coeff']:g}.",
        "",
        f"Clean accuracy: {fmt_rate(res['clean_accuracy'])}"
        + ("; by label: " + ", ".join(f"{k} {fmt_rate(v)}" for k, v in by_label.items()) if by_label else "")
        + ".",
        "",
        "## Flip rates",
        "",
        "Flip rates are over the correctly classified items of the source label, with Wilson 95% intervals. "
        "*P(source)*: the mean probability of the source answer before and after the rewrite.",
        "",
        table(["flip", "condition", "group", "flip rate [95% CI]", "n", "P(source) before → after", "KL answers",
               "KL vocab"], rows),
        "",
        figs.md("flips.png", "flip rates"),
    ]
    return "\n".join(md)


def render_steer(res: dict[str, Any], figs: Figures) -> str:
    gen = res.get("generation") or {}
    md = [
        "## Set-up",
        "",
        f"{res['n_prompts']} prompts, {gen.get('max_new_tokens')} new tokens (sampled: temperature "
        f"{gen.get('temperature')}, top-p {gen.get('top_p')}), seeds {res.get('seeds')}. Success is the share of "
        "continuations the scorer judges to be the target, with its Wilson 95% interval; *sep* is half the "
        "difference of the mean scores toward positive and toward negative; *ppl* is the perplexity of the "
        "continuations under the unsteered model.",
        "",
        "Scorers:",
        "",
        scorer_lines(res["scorers"]),
        "",
    ]
    u = res["unsteered"]
    for name in res["summary"]:
        s = u["scores"][name]
        rows = [[r["method"], f"{r['coeff']:g}", fmt_rate(r["success_pos"]), fmt_rate(r["success_neg"]),
                 f"{r['success']:.1%}", f"{r['sep']:+.3f}", f"{r['ppl']:.1f}", f"{r['distinct_2']:.2f}"]
                for r in res["summary"][name]]
        md += [
            f"## Scorer `{name}`",
            "",
            f"Unsteered: share positive {fmt_rate(s['positive'])}, share negative {fmt_rate(s['negative'])}, mean "
            f"score {s['mean']:+.3f}, perplexity {u['ppl']:.1f}, distinct-2 {u['distinct_2']:.2f}.",
            "",
            table(["method", "coeff", "success toward positive", "success toward negative", "mean success", "sep",
                   "ppl", "distinct-2"], rows),
            "",
        ]
        best = (res.get("at_equal_fluency") or {}).get(name) or {}
        if best:
            md += [
                f"Best setting per method at perplexity ≤ {res['ppl_budget']:.1f} "
                f"({res['config']['fluency_budget']}× unsteered); methods not listed have no setting within it:",
                "",
                table(["method", "coeff", "mean success", "ppl"],
                      [[m, f"{r['coeff']:g}", f"{r['success']:.1%}", f"{r['ppl']:.1f}"] for m, r in best.items()]),
                "",
            ]
        safe = name.replace(":", "_").replace("/", "_")
        md.append(figs.md(f"tradeoff_{safe}.png", f"success against perplexity ({name})"))
        md.append(figs.md(f"scores_{safe}.png", f"score distributions ({name})"))
    return "\n".join(md)


# ------------------------------------------------------------------------------------------------ paper experiments


def render_mnist(res: dict[str, Any], figs: Figures) -> str:
    cfg, models = res["config"], res["models"]
    eps = list(models[0]["fgsm"])
    rows = []
    for training in dict.fromkeys(m["training"] for m in models):
        ms = [m for m in models if m["training"] == training]
        cells = [training, str(len(ms)), mean_std([m["clean_accuracy"] for m in ms], 100)]
        cells += [mean_std([m["fgsm"][e] for m in ms], 100) for e in eps]
        for flip in ("pos2neg", "neg2pos"):
            top = mean_std([m["faithfulness_at_5"][f"{flip}/top-k"]["rate"] for m in ms], 100)
            rnd = mean_std([m["faithfulness_at_5"][f"{flip}/random"]["rate"] for m in ms], 100)
            cells.append(f"{top} / {rnd}")
        cells.append(mean_std([m["silhouette"]["fc2"] for m in ms], 1, ".3f"))
        cells.append(f"{sum(bool(m['sanity']['holds']) for m in ms)}/{len(ms)}")
        rows.append(cells)
    head = ["training", "seeds", "clean", *[f"FGSM {e}" for e in eps], "pos2neg top-k / random",
            "neg2pos top-k / random", "silhouette fc2", "output unit d = argmax D"]
    paper = res.get("paper") or {}
    ref_key = res["reference"]
    ref = next(m for m in models if m["training"] == ref_key["training"] and m["seed"] == ref_key["seed"])
    f = ref["faithfulness"]
    digit_rows = []
    for d in range(10):
        cells = [str(d)]
        for flip in ("pos2neg", "neg2pos"):
            for units in ("top-k", "random"):
                r = next((r for r in f["rows"] if r["digit"] == d and r["flip"] == flip and r["units"] == units
                          and r["coeff"] == 5.0), None)
                cells.append("n/a" if r is None else f"{fmt_rate(r)} (n={r['n']})")
        digit_rows.append(cells)
    sil = ref_key["correctness"]
    md = [
        "## Set-up",
        "",
        f"Data: {res['data']}. Training: {cfg['epochs']} epochs, seeds {cfg['seeds']}, trainings "
        f"{', '.join(cfg['trainings'])}.",
        "",
        "## Robustness, faithfulness and correctness of every training",
        "",
        f"Mean ± std over seeds. Accuracies in % on the {res['n_evaluation']:,} evaluation digits (white-box FGSM "
        f"at each ε against each model). Flip rates in % at c = 5 with the paper's rule on the top-{cfg['k']} units "
        f"of fc2 (after ReLU) and on {cfg['k']} random units of the same layer ({len(cfg['random_seeds'])} seeds), "
        "pooled over digits.",
        "",
        table(head, rows),
        "",
    ]
    if paper:
        fg = paper.get("fgsm_0.15") or {}
        md += [
            table(["the paper reports (60,000 training digits)", "value"],
                  [["clean accuracy", fmt_num(paper.get("clean_accuracy"), ".0%")],
                   *[[f"FGSM at 0.15, {k}", fmt_num(v, ".0%")] for k, v in fg.items()],
                   ["flips", str(paper.get("flips", ""))]]),
            "",
        ]
    md += [
        figs.md("robustness.png", "robustness"),
        f"## Reference model: {ref['training']}, seed {ref['seed']}",
        "",
        f"Figure 2 (sanity): output unit d has the largest D for label d for every digit: "
        f"**{ref['sanity']['holds']}** (argmax per digit {ref['sanity']['output_argmax']}).",
        "",
        figs.md("fig2_max_strength.png", "figure 2: largest D per digit"),
        f"Figure 3 (faithfulness): flip rates with Wilson 95% intervals at c = 5, k = {cfg['k']}:",
        "",
        table(["digit", "pos2neg top-k", "pos2neg random", "neg2pos top-k", "neg2pos random"], digit_rows),
        "",
        figs.md("fig3_flips.png", "figure 3: flips per digit"),
        "Figure 4 (correctness): silhouette of the digit clusters per layer:",
        "",
        table(["layer", "site", "units", "silhouette", "silhouette (first two principal components)"],
              [[k, v["site"], str(v["units"]), f"{v['silhouette']:.3f}", f"{v['silhouette_pca2']:.3f}"]
               for k, v in sil.items()]),
        "",
        figs.md("fig4_pca.png", "figure 4: PCA of the reasons characters"),
    ]
    return "\n".join(md)


FAIRNESS_METRICS = (
    ("accuracy", "accuracy"),
    ("dp", "DP difference"),
    ("eo", "EO difference"),
    ("tpr_gap", "TPR gap"),
    ("fpr_gap", "FPR gap"),
    ("positive_rate_privileged", "positive rate, privileged"),
    ("positive_rate_unprivileged", "positive rate, unprivileged"),
    ("rd_probability", "RD (probability)"),
    ("rd_logit", "RD (logit)"),
)


def render_fairness(res: dict[str, Any], figs: Figures) -> str:
    cfg = res["config"]
    rows = []
    for name in dict.fromkeys(r["variant"] for r in res["rows"]):
        rs = [r for r in res["rows"] if r["variant"] == name]
        cells = [name, str(len(rs))]
        for key, _ in FAIRNESS_METRICS:
            if key not in rs[0]:
                cells.append("n/a")
            elif key.startswith("rd"):
                cells.append(mean_std([r[key] for r in rs], 1, ".4f"))
            else:
                cells.append(mean_std([r[key] for r in rs], 100))
        rows.append(cells)
    md = [
        "## Set-up",
        "",
        f"Data: {res['data']}. {cfg['epochs']} epochs, seeds {cfg['seeds']}.",
        "",
        "DP difference = |P(>50K predicted | male) − P(>50K predicted | female)|; EO difference = the larger of the "
        "true- and false-positive-rate gaps; RD on the test rows, on the predicted probability and on the logit.",
        "",
        "## Results",
        "",
        "Rates in %, mean ± std over seeds.",
        "",
        table(["variant", "seeds", *[label for _, label in FAIRNESS_METRICS]], rows),
        "",
    ]
    if res.get("paper"):
        md += [f"The paper's claim: {res['paper']}.", ""]
    md.append(figs.md("fairness.png", "fairness"))
    return "\n".join(md)


# ------------------------------------------------------------------------------------------------ generic


def render_run(res: dict[str, Any], figs: Figures) -> str:
    """A run a bench script stored with ``bench/common.py`` ``write_result``: its figures, rows as a table."""
    f = res["figures"]
    scalars = [[k, json.dumps(v) if not isinstance(v, str) else v] for k, v in f.items() if not isinstance(v, list)]
    md = ["## Figures", "", table(["figure", "value"], scalars) if scalars else "", ""]
    rows = f.get("rows") or []
    if rows and isinstance(rows[0], dict):
        head = list(rows[0])
        cells = [[fmt_num(r.get(h), ".4g") if isinstance(r.get(h), float) else json.dumps(r.get(h))
                  if isinstance(r.get(h), (dict, list)) else str(r.get(h)) for h in head] for r in rows]
        md += ["## Rows", "", table(head, cells), ""]
    return "\n".join(md)


def render_generic(res: dict[str, Any], figs: Figures) -> str:
    scalars = [[k, json.dumps(v) if not isinstance(v, str) else v] for k, v in res.items()
               if isinstance(v, (str, int, float, bool)) or v is None]
    md = ["## Fields", "", table(["field", "value"], scalars) if scalars else "No scalar fields.", ""]
    return "\n".join(md)


def kind_of(res: dict[str, Any]) -> str:
    if res.get("bench") and isinstance(res.get("figures"), dict):
        return "run"
    if res.get("table") or res.get("k_curve") or res.get("search_spread"):
        return "bench"
    if res.get("mode") in ("flip", "steer"):
        return str(res["mode"])
    if res.get("experiment") in ("paper-mnist", "paper-fairness"):
        return str(res["experiment"])
    return "generic"


RENDERERS = {
    "run": render_run,
    "bench": render_bench,
    "flip": render_flip,
    "steer": render_steer,
    "paper-mnist": render_mnist,
    "paper-fairness": render_fairness,
    "generic": render_generic,
}

KIND_TEXT = {
    "run": "a benchmark run (`bench/<script>.py`, written by `bench/common.py`)",
    "bench": "the steering benchmark at matched fluency (`bench/steering_bench.py`)",
    "flip": "the paper's classification (flip) protocol (`steer eval flip`)",
    "steer": "steering quality in generation against baselines (`steer eval steer`)",
    "paper-mnist": "the paper's MNIST experiments (`bench/paper_mnist.py`)",
    "paper-fairness": "the paper's income experiment (`bench/paper_fairness.py`)",
    "generic": "a stored result",
}


def title_of(key: str, res: dict[str, Any]) -> str:
    if key in TITLES:
        return TITLES[key]
    model = model_info(res).get("model_id")
    base = {"bench": "Steering benchmark", "flip": "Flip protocol", "steer": "Steering quality"}.get(kind_of(res))
    if base:
        return f"{base}: {model}" if model else f"{base}: {key}"
    return key


# ------------------------------------------------------------------------------------------------ pages


def find_results(docs_dir: Path) -> dict[str, Path]:
    """``folder key`` (relative to docs/results, posix) -> result.json, sorted."""
    root = docs_dir / RESULTS
    found = {p.parent.relative_to(root).as_posix(): p for p in root.glob("**/result.json")}
    return dict(sorted(found.items()))


def load(path: Path) -> dict[str, Any]:
    return dict(json.loads(path.read_text(encoding="utf-8")))


def render_page(key: str, path: Path) -> str:
    res = load(path)
    kind = kind_of(res)
    figs = Figures(path.parent)
    body = RENDERERS[kind](res, figs)
    parts = [
        f"# {title_of(key, res)}",
        "",
        f"This page is generated when the docs are built, from the stored result of {KIND_TEXT[kind]} in "
        f"`docs/{RESULTS}/{key}/`. Nothing on it is typed by hand.",
        "",
        provenance(res, key, path),
        "",
        body,
        "",
        figs.rest(),
        "",
        config_block(res),
    ]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(parts)).strip() + "\n"


def render_index(results: dict[str, Path]) -> str:
    rows = []
    for key, path in results.items():
        res = load(path)
        m = model_info(res)
        rows.append([
            f"[{title_of(key, res)}]({key}/index.md)",
            f"`{m['model_id']}`" if m.get("model_id") else (res.get("experiment") or ""),
            res.get("steer_version") or (m.get("versions") or {}).get("steer", ""),
            fmt_seconds(res.get("seconds")) or "",
        ])
    return "\n".join([
        "# Results",
        "",
        "Every stored run of the benchmarks and experiments, one page each. The pages are generated when the docs "
        "are built (`docs/hooks/results.py`) from the `result.json` files under `docs/results/`; the tables on them "
        "are the only copies in the docs, and other pages link here instead of repeating numbers.",
        "",
        table(["result", "model / experiment", "steer", "run time"], rows),
        "",
        "Some figures quoted in these docs come from runs whose result files were not kept (an earlier run's "
        "recording speed-ups, the 100,000-world scale run, the export tests' measured error, the steering sweep and "
        "the stability example); the pages that quote them say so.",
        "",
    ])


# ------------------------------------------------------------------------------------------------ MkDocs events

_results: dict[str, Path] = {}


def _page_uri(key: str) -> str:
    return f"{RESULTS}/{key}/index.md"


def on_config(config: Any) -> Any:
    """Find the stored results and put their pages under "Results" in the navigation."""
    global _results
    docs_dir = Path(config["docs_dir"])
    _results = find_results(docs_dir)
    entries: list[Any] = [{"Overview": f"{RESULTS}/index.md"}]
    entries += [{title_of(k, load(p)): _page_uri(k)} for k, p in _results.items()]
    nav = config.get("nav")
    if nav is None:
        return config
    for i, item in enumerate(nav):
        if isinstance(item, dict) and "Results" in item:
            nav[i] = {"Results": entries}
            break
    else:
        nav.append({"Results": entries})
    return config


def on_files(files: Any, config: Any) -> Any:
    from mkdocs.structure.files import File

    files.append(File.generated(config, f"{RESULTS}/index.md", content=render_index(_results)))
    for key, path in _results.items():
        files.append(File.generated(config, _page_uri(key), content=render_page(key, path)))
    return files


_MARKER = re.compile(r"<!--\s*results-table:\s*(\S+)\s+(\S+)\s*-->")


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any) -> str:
    def replace(m: re.Match[str]) -> str:
        key, which = m.group(1), m.group(2)
        path = _results.get(key)
        if path is None or which != "headline":
            log.warning("%s: unknown results table '%s %s'", page.file.src_uri, key, which)
            return m.group(0)
        return headline_table(load(path))

    return _MARKER.sub(replace, markdown)


def on_post_build(config: Any) -> None:
    """README.md's one table must equal the stored result it names."""
    readme = Path(config["config_file_path"]).parent / "README.md"
    if not readme.is_file():
        return
    text = readme.read_text(encoding="utf-8")
    for m in re.finditer(r"<!--\s*headline-table:\s*(\S+)\s*-->\n(.*?)\n<!--\s*/headline-table\s*-->", text, re.S):
        key, shown = m.group(1), m.group(2).strip()
        path = _results.get(key)
        if path is None:
            log.warning("README.md: headline table names '%s', which has no result.json", key)
        elif shown != headline_table(load(path)).strip():
            log.warning(
                "README.md: the headline table differs from docs/%s/%s/result.json; "
                "paste the output of `python docs/hooks/results.py headline`",
                RESULTS,
                key,
            )


if __name__ == "__main__":
    docs = Path(__file__).resolve().parent.parent
    if sys.argv[1:] == ["headline"]:
        print(headline_table(load(docs / RESULTS / HEADLINE / "result.json")))
    else:
        for k, p in find_results(docs).items():
            print(f"--- {k}\n{render_page(k, p)}")
