"""Pictures: strengths (the paper's Figure 5), stability, and the evaluation harness's flips and trade-offs.

Figures are built with matplotlib's object API (no pyplot state), so importing this module never changes the
backend of a notebook or script; every function writes a PNG atomically and returns its path."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure


def _save(fig, path: str | os.PathLike) -> Path:
    """Write a figure atomically (temp file, then rename) and close it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp-{os.getpid()}{path.suffix}")
    fig.savefig(tmp, dpi=110)
    os.replace(tmp, path)
    return path


def plot_strength_by_layer(strengths: Any, path: str | os.PathLike, title: str | None = None) -> Path:
    """Two panels: max and min D per layer (curves), and D for every unit as a layer x unit heatmap."""
    D = strengths.D.float().numpy()
    layers = strengths.layers
    fig = Figure(figsize=(9, 7))
    ax1, ax2 = fig.subplots(2, 1, gridspec_kw={"height_ratios": [1, 1.4]})
    ax1.plot(layers, D.max(1), "o-", color="tab:red", label="max D (for)")
    ax1.plot(layers, D.min(1), "o-", color="tab:blue", label="min D (against)")
    ax1.axhline(0, color="grey", lw=0.5)
    ax1.set_xlabel("layer")
    ax1.set_ylabel("doxastic strength D")
    ax1.legend()
    # Clip the colour scale at the 99.9th percentile of |D| so the few extreme units don't wash out the rest.
    lim = float(np.quantile(np.abs(D), 0.999)) or 1.0
    im = ax2.imshow(D, aspect="auto", cmap="RdBu_r", vmin=-lim, vmax=lim, interpolation="nearest",
                    extent=(-0.5, D.shape[1] - 0.5, layers[-1] + 0.5, layers[0] - 0.5))
    ax2.set_xlabel("unit")
    ax2.set_ylabel("layer")
    fig.colorbar(im, ax=ax2, label="D (colour clipped at the 99.9th percentile of |D|)", extend="both")
    prop = strengths.proposition["name"]
    model = strengths.provenance["model"].get("model_id", "?")
    fig.suptitle(title or f"strength for {prop!r} by layer: {model}, site {strengths.site}, normalize={strengths.normalize}",
                 fontsize=9)
    fig.tight_layout()
    return _save(fig, path)


def plot_stability(neurons: Any, path: str | os.PathLike) -> Path:
    """The reported units with their bootstrap D intervals (left) and top-k inclusion frequencies (right)."""
    stab = neurons.extra["stability"]
    rows = [(f"L{u['layer']}.{u['index']}", v.D, u, side) for side, units in (("for", neurons.units_for),
            ("against", neurons.units_against)) for v, u in zip(units, stab[f"units_{side}"])]
    fig = Figure(figsize=(10, 0.35 * len(rows) + 1.8))
    ax1, ax2 = fig.subplots(1, 2, sharey=True)
    y = np.arange(len(rows))[::-1]
    colors = ["tab:red" if r[3] == "for" else "tab:blue" for r in rows]
    D = np.array([r[1] for r in rows])
    lo = np.array([r[2]["D_lo"] for r in rows])
    hi = np.array([r[2]["D_hi"] for r in rows])
    ax1.errorbar(D, y, xerr=[np.clip(D - lo, 0, None), np.clip(hi - D, 0, None)], fmt="none", ecolor="grey")
    ax1.scatter(D, y, c=colors, zorder=3)
    ax1.axvline(0, color="grey", lw=0.5)
    ax1.set_yticks(y, [r[0] for r in rows])
    ax1.set_xlabel(f"D with bootstrap {stab['interval']} interval")
    ax2.barh(y, [r[2]["freq"] for r in rows], color=colors)
    ax2.set_xlim(0, 1)
    ax2.set_xlabel(f"share of {stab['K']} resamples in the top-{stab['k']}")
    fig.suptitle(f"stability of the top-{neurons.k} units for / against {neurons.proposition['name']!r} "
                 f"(normalize={neurons.normalize}; Jaccard for {stab['jaccard_for']:.2f}, "
                 f"against {stab['jaccard_against']:.2f})", fontsize=9)
    fig.tight_layout()
    return _save(fig, path)


# ------------------------------------------------------------------------------------ evaluation harness


def plot_flips(result: dict[str, Any], path: str | os.PathLike) -> Path:
    """Flip rate with its Wilson 95% interval for every condition, one panel per direction."""
    colors = {"method": "tab:red", "random": "tab:grey", "other-layers": "tab:blue"}
    fig = Figure(figsize=(10, 4.5))
    axes = fig.subplots(1, 2, sharex=True)
    for ax, direction in zip(axes, ("pos2neg", "neg2pos")):
        conds = [c for c in result["conditions"] if c["direction"] == direction]
        y = np.arange(len(conds))[::-1]
        for yi, c in zip(y, conds):
            f = c["flip"]
            ax.barh(yi, f["rate"] if f["n"] else 0, color=colors.get(c["group"], "tab:green"))
            if f["n"]:
                err = [[max(0.0, f["rate"] - f["lo"])], [max(0.0, f["hi"] - f["rate"])]]
                ax.errorbar(f["rate"], yi, xerr=err, fmt="none", ecolor="k")
        ax.set_yticks(y, [c["name"].split(": ", 1)[1] for c in conds], fontsize=7)
        n = conds[0]["flip"]["n"] if conds else 0
        ax.set_title(f"{direction} (n = {n} correctly classified items)", fontsize=9)
        ax.set_xlim(0, 1)
        ax.set_xlabel("flip rate (95% Wilson interval)")
    fig.suptitle(f"flips at the last token; clean accuracy {result['clean_accuracy']['rate']:.1%}", fontsize=10)
    fig.tight_layout()
    return _save(fig, path)


def plot_tradeoff(result: dict[str, Any], scorer: str, path: str | os.PathLike) -> Path:
    """Success (mean over both directions) against perplexity, one curve per method over its strength sweep."""
    fig = Figure(figsize=(7, 4.5))
    ax = fig.subplots()
    rows = result["summary"][scorer]
    for name in dict.fromkeys(r["method"] for r in rows):
        rs = sorted((r for r in rows if r["method"] == name), key=lambda r: r["strength"])
        x, y = [r["ppl"] for r in rs], [r["success"] for r in rs]
        style = "--" if rs[0]["kind"] == "control" else "-"
        ax.plot(x, y, style, marker="o", label=name)
        for r in rs:
            ax.annotate(f"{r['strength']:g}", (r["ppl"], r["success"]), fontsize=6, xytext=(2, 2),
                        textcoords="offset points")
    u = result["unsteered"]
    base = (u["scores"][scorer]["positive"]["rate"] + u["scores"][scorer]["negative"]["rate"]) / 2
    ax.scatter([u["ppl"]], [base], color="k", zorder=3, label="unsteered")
    ax.axvline(result["ppl_budget"], color="grey", lw=0.6, ls=":", label="fluency budget")
    ax.set_xscale("log")
    ax.set_xlabel("perplexity under the unsteered model (log)")
    ax.set_ylabel(f"success ({scorer}), mean of the two directions", fontsize=8)
    ax.set_ylim(0, 1)
    ax.legend(fontsize=7)
    ax.set_title("steering success vs fluency (labels: strength)", fontsize=9)
    fig.tight_layout()
    return _save(fig, path)


def plot_score_distributions(result: dict[str, Any], scorer: str, path: str | os.PathLike) -> Path:
    """Histograms of the scorer's values: unsteered vs each method's best setting at the fluency budget."""
    best = result["at_equal_fluency"][scorer]
    fig = Figure(figsize=(8, 1.6 * (len(best) + 1) + 0.6))
    axes = np.atleast_1d(fig.subplots(len(best) + 1, 1, sharex=True))
    bins = np.linspace(-1, 1, 21)
    axes[0].hist(result["unsteered"]["scores"][scorer]["values"], bins=bins, color="k", alpha=0.6)
    axes[0].set_title("unsteered", fontsize=8)
    for ax, (name, row) in zip(axes[1:], best.items()):
        for direction, color in (("positive", "tab:green"), ("negative", "tab:purple")):
            run = next(r for r in result["runs"] if r["method"] == name and r["strength"] == row["strength"]
                       and r["toward"] == direction)
            ax.hist(run["scores"][scorer]["values"], bins=bins, color=color, alpha=0.5, label=f"toward {direction}")
        ax.set_title(f"{name}, strength {row['strength']:g}", fontsize=8)
        ax.legend(fontsize=6)
    axes[-1].set_xlabel(f"{scorer} score")
    fig.tight_layout()
    return _save(fig, path)
