"""Pictures of strengths: the paper's Figure 5 (max and min D per layer, and a layer x unit heatmap)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def _save(fig, path: str | os.PathLike) -> Path:
    """Write a figure atomically (temp file, then rename) and close it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp-{os.getpid()}{path.suffix}")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    os.replace(tmp, path)
    return path


def plot_strength_by_layer(strengths: Any, path: str | os.PathLike, title: str | None = None) -> Path:
    """Two panels: max and min D per layer (curves), and D for every unit as a layer x unit heatmap."""
    D = strengths.D.float().numpy()
    layers = strengths.layers
    fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(9, 7), gridspec_kw={"height_ratios": [1, 1.4]})
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
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 0.35 * len(rows) + 1.8), sharey=True)
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
