"""Pictures of strengths: the paper's Figure 5 (max and min D per layer, and a layer x unit heatmap)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


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
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp-{os.getpid()}{path.suffix}")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    os.replace(tmp, path)
    return path
