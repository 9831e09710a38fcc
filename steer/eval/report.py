"""The reports of the evaluation harness's two modes: markdown tables of a result, ``result.json`` + ``report.md``
+ the mode's PNG plots in one output directory, and reading a saved result back.

- :func:`flip_table`, :func:`pooled_random`: the flip mode's conditions (:mod:`steer.eval.flip_mode`);
- :func:`steering_table`: the steering-quality mode's sweep (:mod:`steer.eval.steering_mode`);
- :func:`write_report`, :func:`load_result`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from steer.artifacts import atomic_file, write_json_atomic
from steer.eval.faithfulness import FLIPS
from steer.eval.metrics import format_rate, rate


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
