"""Pictures of the evaluation harness: flip rates, success against fluency, score distributions."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from steer.plots import save_figure


def plot_flips(result: dict[str, Any], path: str | os.PathLike[str]) -> Path:
    """Flip rate with its Wilson 95% interval for every condition, one panel per flip."""
    colors = {"method": "tab:red", "random": "tab:grey", "other-layers": "tab:blue"}
    fig = Figure(figsize=(10, 4.5))
    axes = fig.subplots(1, 2, sharex=True)
    for ax, flip in zip(axes, ("pos2neg", "neg2pos")):
        conds = [c for c in result["conditions"] if c["flip"] == flip]
        y = np.arange(len(conds))[::-1]
        for yi, c in zip(y, conds):
            f = c["flip_rate"]
            ax.barh(yi, f["rate"] if f["n"] else 0, color=colors.get(c["group"], "tab:green"))
            if f["n"]:
                err = [[max(0.0, f["rate"] - f["lo"])], [max(0.0, f["hi"] - f["rate"])]]
                ax.errorbar(f["rate"], yi, xerr=err, fmt="none", ecolor="k")
        ax.set_yticks(y, [c["name"].split(": ", 1)[1] for c in conds], fontsize=7)
        n = conds[0]["flip_rate"]["n"] if conds else 0
        ax.set_title(f"{flip} (n = {n} correctly classified items)", fontsize=9)
        ax.set_xlim(0, 1)
        ax.set_xlabel("flip rate (95% Wilson interval)")
    fig.suptitle(f"flips at the last token; clean accuracy {result['clean_accuracy']['rate']:.1%}", fontsize=10)
    fig.tight_layout()
    return save_figure(fig, path)


def plot_tradeoff(result: dict[str, Any], scorer: str, path: str | os.PathLike[str]) -> Path:
    """Success (mean over both targets) against perplexity, one curve per method over its coefficient sweep.

    Args:
        result: a ``steer eval steer`` result.
        scorer: the scorer whose success is plotted.
        path: the PNG to write.

    Returns:
        The path written.
    """
    fig = Figure(figsize=(7, 4.5))
    ax = fig.subplots()
    rows = result["summary"][scorer]
    for name in dict.fromkeys(r["method"] for r in rows):
        rs = sorted((r for r in rows if r["method"] == name), key=lambda r: r["coeff"])
        x, y = [r["ppl"] for r in rs], [r["success"] for r in rs]
        style = "--" if rs[0]["kind"] == "control" else "-"
        ax.plot(x, y, style, marker="o", label=name)
        for r in rs:
            ax.annotate(
                f"{r['coeff']:g}", (r["ppl"], r["success"]), fontsize=6, xytext=(2, 2), textcoords="offset points"
            )
    u = result["unsteered"]
    base = (u["scores"][scorer]["positive"]["rate"] + u["scores"][scorer]["negative"]["rate"]) / 2
    ax.scatter([u["ppl"]], [base], color="k", zorder=3, label="unsteered")
    ax.axvline(result["ppl_budget"], color="grey", lw=0.6, ls=":", label="fluency budget")
    ax.set_xscale("log")
    ax.set_xlabel("perplexity under the unsteered model (log)")
    ax.set_ylabel(f"success ({scorer}), mean of the two targets", fontsize=8)
    ax.set_ylim(0, 1)
    ax.legend(fontsize=7)
    ax.set_title("steering success vs fluency (labels: coeff)", fontsize=9)
    fig.tight_layout()
    return save_figure(fig, path)


def plot_score_distributions(result: dict[str, Any], scorer: str, path: str | os.PathLike[str]) -> Path:
    """Histograms of the scorer's values: unsteered vs each method's best setting at the fluency budget.

    Args:
        result: a ``steer eval steer`` result.
        scorer: the scorer whose values are shown.
        path: the PNG to write.

    Returns:
        The path written.
    """
    best = result["at_equal_fluency"][scorer]
    fig = Figure(figsize=(8, 1.6 * (len(best) + 1) + 0.6))
    axes = np.atleast_1d(fig.subplots(len(best) + 1, 1, sharex=True))
    bins = np.linspace(-1, 1, 21)
    axes[0].hist(result["unsteered"]["scores"][scorer]["values"], bins=bins, color="k", alpha=0.6)
    axes[0].set_title("unsteered", fontsize=8)
    for ax, (name, row) in zip(axes[1:], best.items()):
        for target, color in (("positive", "tab:green"), ("negative", "tab:purple")):
            run = next(
                r
                for r in result["runs"]
                if r["method"] == name and r["coeff"] == row["coeff"] and r["toward"] == target
            )
            ax.hist(run["scores"][scorer]["values"], bins=bins, color=color, alpha=0.5, label=f"toward {target}")
        ax.set_title(f"{name}, coeff {row['coeff']:g}", fontsize=8)
        ax.legend(fontsize=6)
    axes[-1].set_xlabel(f"{scorer} score")
    fig.tight_layout()
    return save_figure(fig, path)
