"""Pictures of what the library finds: strengths by layer (the paper's Figure 5) and stability.

Figures are built with matplotlib's object API (no pyplot state), so importing this module never changes the
backend of a notebook or script; every function writes a PNG atomically and returns its path."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from matplotlib.figure import Figure

from steer.artifacts import atomic_file

if TYPE_CHECKING:
    from steer.neurons import UnitScores
    from steer.neuronset import NeuronSet


PNG_SOFTWARE = "steer"  # the PNG's Software text: how steer knows a picture is its own


def steer_png(path: Path) -> bool:
    """True when ``path`` is a PNG that steer wrote (its Software text chunk says ``steer``)."""
    try:
        with open(path, "rb") as f:
            head = f.read(1 << 16)
    except OSError:
        return False
    return head.startswith(b"\x89PNG") and b"tEXtSoftware\x00" + PNG_SOFTWARE.encode() in head


def save_figure(fig: Figure, path: str | os.PathLike[str], dpi: int = 110) -> Path:
    """Write a figure as a PNG atomically (temp file, then rename) and return the path. An existing file is
    replaced only when it is a PNG steer wrote; a symbolic link, a folder or any other file is refused."""
    path = Path(path)
    if path.is_symlink() or path.is_dir() or (path.exists() and not steer_png(path)):
        what = "a symbolic link" if path.is_symlink() else "a folder" if path.is_dir() else "not a picture steer wrote"
        raise FileExistsError(f"the figure {path} is {what}; steer never replaces it: choose another file name")
    with atomic_file(path) as tmp:
        fig.savefig(tmp, dpi=dpi, format="png", metadata={"Software": PNG_SOFTWARE})
    return path


def plot_strength_by_layer(scores: UnitScores, path: str | os.PathLike[str], title: str | None = None) -> Path:
    """Two panels: max and min score per layer (curves), and the score of every unit as a layer x unit heatmap.

    Args:
        scores: strengths (or any unit scores) of one proposition.
        path: the PNG to write.
        title: the figure title (default: proposition, model, site and score).

    Returns:
        The path written.
    """
    D = scores.values.float().numpy()
    name = "doxastic strength D" if scores.score in ("D", "zscore-D", "rank-D") else scores.score
    layers = scores.layers
    fig = Figure(figsize=(9, 7))
    ax1, ax2 = fig.subplots(2, 1, gridspec_kw={"height_ratios": [1, 1.4]})
    ax1.plot(layers, D.max(1), "o-", color="tab:red", label=f"max {scores.score} (for)")
    ax1.plot(layers, D.min(1), "o-", color="tab:blue", label=f"min {scores.score} (against)")
    ax1.axhline(0, color="grey", lw=0.5)
    ax1.set_xlabel("layer")
    ax1.set_ylabel(name)
    ax1.legend()
    # Clip the colour scale at the 99.9th percentile of |D| so the few extreme units don't wash out the rest.
    lim = float(np.quantile(np.abs(D), 0.999)) or 1.0
    im = ax2.imshow(
        D,
        aspect="auto",
        cmap="RdBu_r",
        vmin=-lim,
        vmax=lim,
        interpolation="nearest",
        extent=(-0.5, D.shape[1] - 0.5, layers[-1] + 0.5, layers[0] - 0.5),
    )
    ax2.set_xlabel("unit")
    ax2.set_ylabel("layer")
    fig.colorbar(
        im, ax=ax2, label=f"{scores.score} (colour clipped at the 99.9th percentile of |{scores.score}|)", extend="both"
    )
    prop = scores.proposition["name"]
    model = scores.provenance["model"].get("model_id", "?")
    fig.suptitle(title or f"{scores.score} for {prop!r} by layer: {model}, site {scores.site}", fontsize=9)
    fig.tight_layout()
    return save_figure(fig, path)


def plot_stability(neurons: NeuronSet, path: str | os.PathLike[str]) -> Path:
    """The reported units with their bootstrap intervals (left) and top-k inclusion frequencies (right).

    Args:
        neurons: a neuron set with stability results (``steer find`` with bootstrap resamples).
        path: the PNG to write.

    Returns:
        The path written.
    """
    stab = neurons.extra["stability"]
    rows = [
        (f"L{u['layer']}.{u['index']}", v.score, u, side)
        for side, units in (("for", neurons.units_for), ("against", neurons.units_against))
        for v, u in zip(units, stab[f"units_{side}"])
    ]
    fig = Figure(figsize=(10, 0.35 * len(rows) + 1.8))
    ax1, ax2 = fig.subplots(1, 2, sharey=True)
    y = np.arange(len(rows))[::-1]
    colors = ["tab:red" if r[3] == "for" else "tab:blue" for r in rows]
    D = np.array([r[1] for r in rows])
    lo = np.array([r[2]["lo"] for r in rows])
    hi = np.array([r[2]["hi"] for r in rows])
    ax1.errorbar(D, y, xerr=[np.clip(D - lo, 0, None), np.clip(hi - D, 0, None)], fmt="none", ecolor="grey")
    ax1.scatter(D, y, c=colors, zorder=3)
    ax1.axvline(0, color="grey", lw=0.5)
    ax1.set_yticks(y, [r[0] for r in rows])
    ax1.set_xlabel(f"{neurons.score} with bootstrap {stab['interval']} interval")
    ax2.barh(y, [r[2]["freq"] for r in rows], color=colors)
    ax2.set_xlim(0, 1)
    ax2.set_xlabel(f"share of {stab['resamples']} resamples in the top-{stab['k']}")
    fig.suptitle(
        f"stability of the top-{neurons.k} units for / against {neurons.proposition['name']!r} "
        f"(score {neurons.score}; Jaccard for {stab['jaccard_for']:.2f}, "
        f"against {stab['jaccard_against']:.2f})",
        fontsize=9,
    )
    fig.tight_layout()
    return save_figure(fig, path)
