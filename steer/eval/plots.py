"""Pictures of the evaluation harness: flip rates, success against fluency, score distributions."""

from __future__ import annotations

import os
import textwrap
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


# ------------------------------------------------------------------------------------------ the paper's MNIST


def plot_max_strength(sanity: dict[str, Any], path: str | os.PathLike[str], title: str = "") -> Path:
    """Figure 2: per layer, the largest |D| of any unit for "label = d", one line per digit."""
    fig = Figure(figsize=(6.5, 4))
    ax = fig.subplots()
    layers = list(sanity["max_abs_D"])
    values = np.array([sanity["max_abs_D"][layer] for layer in layers])  # [layers, digits]
    for d in range(values.shape[1]):
        ax.plot(layers, values[:, d], marker="o", label=str(d), color=_digit_color(d))
    ax.set_ylabel('max |D| over the layer\'s units for "label = d"')
    ax.legend(title="digit", fontsize=7, ncol=2)
    ok = "holds" if sanity["holds"] else "FAILS"
    ax.set_title(title or f"output unit d has the largest D for label d: {ok}", fontsize=9)
    fig.tight_layout()
    return save_figure(fig, path)


def plot_digit_flips(faith: dict[str, Any], path: str | os.PathLike[str], coeff: float = 5.0) -> Path:
    """Figure 3: per digit, flip rate of the top-k units and of k random units (Wilson 95% intervals) at one
    coefficient, for pos2neg and neg2pos; a third panel pools the digits over every coefficient."""
    fig = Figure(figsize=(13, 4))
    axes = fig.subplots(1, 3)
    for ax, flip in zip(axes[:2], ("pos2neg", "neg2pos")):
        for shift, units, color in ((-0.2, "top-k", "tab:red"), (0.2, "random", "tab:grey")):
            rs = sorted(
                (r for r in faith["rows"] if r["flip"] == flip and r["units"] == units and r["coeff"] == coeff),
                key=lambda r: r["digit"],
            )
            x = np.array([r["digit"] for r in rs]) + shift
            y = np.array([r["rate"] or 0.0 for r in rs])
            err = np.array(
                [[max(0.0, yi - r["lo"]) for yi, r in zip(y, rs)], [max(0.0, r["hi"] - yi) for yi, r in zip(y, rs)]]
            )
            ax.bar(x, y, width=0.4, color=color, label=f"{units} (k={faith['k']})" if units == "top-k" else units)
            ax.errorbar(x, y, yerr=err, fmt="none", ecolor="k", lw=0.8)
        ax.set_xticks(range(10))
        ax.set_ylim(0, 1.02)
        ax.set_xlabel("digit d")
        ax.set_ylabel("flip rate")
        ax.set_title(f"{flip}, paper rule c = {coeff:g}, site {faith['site']}", fontsize=9)
        ax.legend(fontsize=7)
    ax = axes[2]
    for flip, ls in (("pos2neg", "-"), ("neg2pos", "--")):
        for units, color in (("top-k", "tab:red"), ("random", "tab:grey")):
            cs, ys = [], []
            for c in faith["coeffs"]:
                rs = [r for r in faith["rows"] if r["flip"] == flip and r["units"] == units and r["coeff"] == c]
                n = sum(r["n"] for r in rs)
                cs.append(c)
                ys.append(sum(r["k"] for r in rs) / n if n else np.nan)
            ax.plot(cs, ys, ls, marker="o", color=color, label=f"{flip} {units}")
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("c in a' = m - c a")
    ax.set_title("pooled over digits", fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    return save_figure(fig, path)


def plot_pca_layers(correct: dict[str, Any], labels: Any, path: str | os.PathLike[str]) -> Path:
    """Figure 4: the worlds' activation vectors per layer in their first two principal components, coloured by
    digit, with the silhouette of the digit clusters (full space; 2-D) in each title."""
    layers = list(correct)
    fig = Figure(figsize=(3.2 * len(layers), 3.4))
    axes = np.atleast_1d(fig.subplots(1, len(layers)))
    labels = np.asarray(labels)
    for ax, layer in zip(axes, layers):
        c = correct[layer]
        xy = np.asarray(c["pca"])
        for d in range(10):
            m = labels == d
            ax.scatter(xy[m, 0], xy[m, 1], s=3, color=_digit_color(d), label=str(d))
        ax.set_title(
            f"{layer} ({c['units']} units)\nsilhouette {c['silhouette']:.2f}; 2-D {c['silhouette_pca2']:.2f}",
            fontsize=8,
        )
        ax.set_xticks([])
        ax.set_yticks([])
    axes[-1].legend(fontsize=6, markerscale=3, ncol=2)
    fig.tight_layout()
    return save_figure(fig, path)


def plot_robustness(rows: list[dict[str, Any]], path: str | os.PathLike[str]) -> Path:
    """FGSM accuracy against the perturbation, per training (mean over seeds, band = min..max)."""
    fig = Figure(figsize=(6.5, 4))
    ax = fig.subplots()
    for training in dict.fromkeys(r["training"] for r in rows):
        rs = [r for r in rows if r["training"] == training]
        keys = sorted(rs[0]["fgsm"], key=float)
        acc = np.array([[r["fgsm"][e] for e in keys] for r in rs])
        eps_all = [0.0, *map(float, keys)]
        clean = np.array([r["clean_accuracy"] for r in rs])[:, None]
        acc = np.concatenate([clean, acc], 1)
        line = ax.plot(eps_all, acc.mean(0), marker="o", label=f"{training} ({len(rs)} seeds)")
        ax.fill_between(eps_all, acc.min(0), acc.max(0), alpha=0.2, color=line[0].get_color())
    ax.set_xlabel("FGSM epsilon")
    ax.set_ylabel("accuracy")
    ax.set_ylim(0, 1)
    ax.legend(fontsize=7)
    ax.set_title("robustness of LeNet-5 by training (white-box FGSM)", fontsize=9)
    fig.tight_layout()
    return save_figure(fig, path)


def _digit_color(d: int) -> Any:
    import matplotlib

    return matplotlib.colormaps["tab10"](d)


def plot_fairness(rows: list[dict[str, Any]], path: str | os.PathLike[str]) -> Path:
    """Test accuracy against the equalised-odds difference, one point per (variant, seed)."""
    fig = Figure(figsize=(7, 4.2))
    ax = fig.subplots()
    for name in dict.fromkeys(r["variant"] for r in rows):
        rs = [r for r in rows if r["variant"] == name]
        ax.scatter([r["eo"] for r in rs], [r["accuracy"] for r in rs], label=name, s=18)
    ax.set_xlabel("equalised-odds difference (lower is fairer)")
    ax.set_ylabel("test accuracy")
    ax.legend(fontsize=7)
    ax.set_title("income classifier on UCI Adult, one point per seed", fontsize=9)
    fig.tight_layout()
    return save_figure(fig, path)


def plot_matched(result: dict[str, Any], budget: float, path: str | os.PathLike[str]) -> Path:
    """Success from neutral openings at ``budget`` x unsteered perplexity: one panel per scorer, a pair of bars
    (toward positive, toward negative) per method, with Wilson 95% intervals.

    Args:
        result: a :func:`steer.eval.matched_eval` result.
        budget: the perplexity ratio whose settings are shown (knob-less methods at their only setting).
        path: the PNG to write.

    Returns:
        The path written.
    """
    from steer.eval.matched_report import row_success, rows_at

    scorers = list(result["scorers"])
    rows = rows_at(result, budget)
    names = list(dict.fromkeys(r["method"] for r in rows))
    fig = Figure(figsize=(5 * len(scorers), 0.45 * len(names) + 1.6))
    axes = np.atleast_1d(fig.subplots(1, len(scorers), sharey=True))
    y = np.arange(len(names))[::-1]
    for ax, scorer in zip(axes, scorers):
        for off, (target, color) in zip((0.18, -0.18), (("positive", "tab:green"), ("negative", "tab:purple"))):
            for yi, name in zip(y, names):
                r = next((r for r in rows if r["method"] == name and r["toward"] == target), None)
                s = None if r is None else row_success(r, scorer)
                if s is None or not s["n"]:
                    continue
                ax.barh(yi + off, s["rate"], height=0.34, color=color, label=f"toward {target}" if yi == y[0] else None)
                err = [[max(0.0, s["rate"] - s["lo"])], [max(0.0, s["hi"] - s["rate"])]]
                ax.errorbar(s["rate"], yi + off, xerr=err, fmt="none", ecolor="k", lw=0.8)
        ax.set_yticks(y, [textwrap.fill(n, 48) for n in names], fontsize=7)
        ax.set_xlim(0, 1)
        ax.set_xlabel(f"success from neutral openings ({scorer})", fontsize=8)
        ax.legend(fontsize=7, loc="lower right")
    fig.suptitle(f"steering at {budget:g}x unsteered perplexity (settings found on dev, shown on test)", fontsize=9)
    fig.tight_layout()
    return save_figure(fig, path)


def plot_k_curve(rows: list[dict[str, Any]], path: str | os.PathLike[str], title: str = "") -> Path:
    """Success at matched fluency against the number of units k (log), one line per selection score and target;
    layer-group points (``layers`` other than ``all``) drawn as labelled markers at their k.

    Args:
        rows: dicts with ``score``, ``k``, ``layers``, ``toward``, ``rate``, ``lo``, ``hi``.
        path: the PNG to write.
        title: the figure title.

    Returns:
        The path written.
    """
    fig = Figure(figsize=(7.5, 4.5))
    ax = fig.subplots()
    styles = {"positive": "-", "negative": "--"}
    markers = {"early": "v", "middle": "s", "late": "^"}
    for score in dict.fromkeys(r["score"] for r in rows):
        color = None
        for target in ("positive", "negative"):
            rs = sorted(
                (r for r in rows if r["score"] == score and r["toward"] == target and r["layers"] == "all"),
                key=lambda r: r["k"],
            )
            if rs:
                (line,) = ax.plot(
                    [r["k"] for r in rs],
                    [r["rate"] for r in rs],
                    styles[target],
                    marker="o",
                    color=color,
                    label=f"{score}, toward {target}",
                )
                color = line.get_color()
                ax.fill_between(
                    [r["k"] for r in rs], [r["lo"] for r in rs], [r["hi"] for r in rs], color=color, alpha=0.12
                )
            for r in rows:
                if r["score"] == score and r["toward"] == target and r["layers"] != "all":
                    ax.scatter([r["k"]], [r["rate"]], marker=markers.get(r["layers"], "x"), color=color, zorder=3, s=22)
                    ax.annotate(r["layers"], (r["k"], r["rate"]), fontsize=6, xytext=(3, 0), textcoords="offset points")
    ax.set_xscale("log")
    ax.set_xlabel("units steered k (for + against the proposition)")
    ax.set_ylabel("success from neutral openings")
    ax.set_ylim(0, 1)
    ax.legend(fontsize=7)
    ax.set_title(title or "how many neurons does sentiment need? (success at matched fluency)", fontsize=9)
    fig.tight_layout()
    return save_figure(fig, path)
