"""The paper's MNIST experiments (Hornischer & Leitgeb 2025, sections 3 and 4.2) on LeNet-5, with controls.

- The model and its trainings: :mod:`steer.eval.lenet` (LeNet-5 with every layer a site; cross-entropy alone,
  + the doxastic or the elementary loss, or FGSM adversarial training; clean and FGSM accuracy).
- :func:`sanity` (Figure 2): per layer the largest |D| for "label = d", and whether output unit d has the largest
  D for its own label.
- :func:`faithfulness` (Figure 3): per digit, pos2neg (correct d's should stop being d) and neg2pos (correct
  non-d's should become d) with the paper's rule a' = m - c*a on the top-k units of the last hidden layer, with
  Wilson intervals, and the same rule on k random units of that layer (the control the paper did not run).
- :func:`correctness` (Figure 4): PCA of the worlds' reasons characters (their activation vectors) per layer,
  and the silhouette of the digit clusters per layer.

Data: :mod:`steer.eval.datasets` (only MNIST's 10,000 test digits exist here: 8,000 train, 2,000 for the worlds
and every evaluation).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor
from tqdm.auto import tqdm

from steer.activations import Activations
from steer.eval.datasets import load_mnist, mnist_split
from steer.eval.lenet import (
    LAST_HIDDEN,
    LENET_SITES,
    TRAININGS,
    TrainConfig,
    accuracy,
    digit_labels,
    digit_worlds,
    fgsm_accuracy,
    record_lenet,
    train_lenet,
)
from steer.eval.metrics import pca, rate, silhouette_score
from steer.interventions import Direction, Intervention
from steer.network import Network
from steer.neurons import Strengths
from steer.worlds import TensorWorlds

# ----------------------------------------------------------------------------------------------- reasons


def digit_strengths(acts: Activations, worlds: TensorWorlds) -> dict[int, Strengths]:
    """Raw D (the paper's) of every unit of a recording for "label = d", for each digit d."""
    return {d: acts.strength(worlds.proposition(f"label={d}")) for d in range(10)}


def sanity(recordings: dict[str, Activations], worlds: TensorWorlds) -> dict[str, Any]:
    """Figure 2: per layer and digit the largest |D| for "label = d"; at the output layer, the unit with the
    largest D for each label (the paper: unit d for label d)."""
    max_abs: dict[str, list[float]] = {}
    argmax_output: list[int] = []
    for layer, site in LENET_SITES.items():
        strengths = digit_strengths(recordings[site], worlds)
        max_abs[layer] = [float(strengths[d].D.abs().max()) for d in range(10)]
        if layer == "output":
            argmax_output = [int(strengths[d].D[0].argmax()) for d in range(10)]
    return {
        "max_abs_D": max_abs,
        "output_argmax": argmax_output,
        "output_unit_is_own_digit": [a == d for d, a in enumerate(argmax_output)],
        "holds": all(a == d for d, a in enumerate(argmax_output)),
    }


def digit_flips(
    net: Network,
    acts: Activations,
    worlds: TensorWorlds,
    x_eval: Tensor,
    y_eval: Tensor,
    k: int = 5,
    coeffs: Sequence[float] = (3, 5, 7),
    random_seeds: Sequence[int] = (0, 1, 2, 3, 4),
) -> dict[str, Any]:
    """Figure 3: flip rates per digit with the paper's rule on the top-k units of ``acts`` (and random units).

    pos2neg for d: evaluation digits labelled and predicted d, rewritten *away* from "label = d" (units for it
    -> m - c*a, units against it -> m); success = the prediction is no longer d. neg2pos for d: digits labelled
    and predicted as something else, rewritten *toward* "label = d" (units against it -> m - c*a, units for it
    -> m); success = the prediction becomes d.
    """
    pred0 = net.predict(x_eval).argmax(1)
    strengths = digit_strengths(acts, worlds)
    rows = []
    for d in range(10):
        items = {
            "pos2neg": (y_eval == d) & (pred0 == d),
            "neg2pos": (y_eval != d) & (pred0 == y_eval),
        }
        sets = {"top-k": [strengths[d].top(k)], "random": [strengths[d].random(k, seed=s) for s in random_seeds]}
        for flip, mask in items.items():
            xs = x_eval[mask]
            direction: Direction = "away" if flip == "pos2neg" else "toward"
            for c in coeffs:
                for units, neuron_sets in sets.items():
                    hits = n = 0
                    for ns in neuron_sets if len(xs) else []:
                        with net.intervene(ns, Intervention("paper", float(c), direction)):
                            pred = net.predict(xs).argmax(1)
                        hits += int((pred != d).sum() if flip == "pos2neg" else (pred == d).sum())
                        n += len(xs)
                    rows.append({"digit": d, "flip": flip, "coeff": float(c), "units": units, **rate(hits, n)})
    return {
        "k": k,
        "site": acts.site,
        "coeffs": [float(c) for c in coeffs],
        "random_seeds": list(random_seeds),
        "rows": rows,
    }


def digit_flips_summary(result: dict[str, Any], coeff: float = 5.0) -> dict[str, dict[str, Any]]:
    """Pooled over digits at one coefficient: flip rate (with interval) per flip and unit choice."""
    out: dict[str, dict[str, Any]] = {}
    for flip in ("pos2neg", "neg2pos"):
        for units in ("top-k", "random"):
            rs = [r for r in result["rows"] if r["flip"] == flip and r["units"] == units and r["coeff"] == coeff]
            out[f"{flip}/{units}"] = rate(sum(r["k"] for r in rs), sum(r["n"] for r in rs))
    return out


def correctness(recordings: dict[str, Activations], labels: Tensor) -> dict[str, Any]:
    """Figure 4: per layer, 2-D PCA of the worlds' activation vectors and the silhouette of the digit clusters
    (in the full activation space and in the 2-D projection)."""
    out: dict[str, Any] = {}
    for layer, site in LENET_SITES.items():
        X = recordings[site].X[:, 0, :]
        coords, share = pca(X, 2)
        out[layer] = {
            "site": site,
            "units": int(X.shape[1]),
            "silhouette": silhouette_score(X, labels),
            "silhouette_pca2": silhouette_score(coords, labels),
            "pca_variance_share": share.tolist(),
            "pca": coords.float().numpy().round(4).tolist(),
        }
    return out


# ------------------------------------------------------------------------------------------- the experiment

PAPER_MNIST: dict[str, Any] = {
    "clean_accuracy": 0.99,
    "fgsm_0.15": {"ce": 0.62, "doxastic": 0.78},
    "flips": "100% for every digit but one",
}


@dataclass(frozen=True)
class MnistExperiment:
    """Everything the MNIST reproduction runs: trainings x seeds, then per model robustness, sanity,
    faithfulness and correctness."""

    mnist: str
    trainings: tuple[str, ...] = TRAININGS
    seeds: tuple[int, ...] = (0, 1, 2)
    epochs: int = 15
    eps: tuple[float, ...] = (0.05, 0.1, 0.15, 0.2, 0.3)
    k: int = 5
    coeffs: tuple[float, ...] = (3, 4, 5, 6, 7)
    random_seeds: tuple[int, ...] = (0, 1, 2, 3, 4)
    n_train: int = 8_000
    n_worlds: int = 1_024
    split_seed: int = 0

    def __post_init__(self) -> None:
        for t in self.trainings:
            TrainConfig(loss=t)
        if not self.seeds:
            raise ValueError("give at least one seed")
        if 5.0 not in self.coeffs:
            raise ValueError("coeffs must include 5 (the coefficient the summaries are reported at)")


def run_mnist(cfg: MnistExperiment, progress: bool = True) -> dict[str, Any]:
    """Train every (training, seed) model and measure it; the first seed's model of the first training is the
    reference shown in the figures. Returns a JSON-ready result."""
    from steer.version import __version__

    t0 = time.perf_counter()
    x, y = load_mnist(cfg.mnist)
    split = mnist_split(len(x), cfg.n_train, cfg.n_worlds, cfg.split_seed)
    ev = split.evaluation
    worlds = digit_worlds(
        x[split.worlds], y[split.worlds], f"mnist-test[worlds {len(split.worlds)}, seed {cfg.split_seed}]"
    )
    labels = digit_labels(worlds)
    models = []
    reference: dict[str, Any] = {}
    runs = [(t, s) for t in cfg.trainings for s in cfg.seeds]
    for training, seed in tqdm(runs, desc="models", disable=not progress):
        model, log = train_lenet(x[split.train], y[split.train], TrainConfig(training, cfg.epochs, seed=seed))
        net = Network(model, f"lenet5-{training}-seed{seed}")
        recs = record_lenet(net, worlds)
        faith = digit_flips(
            net, recs[LAST_HIDDEN], worlds, x[split.held_out], y[split.held_out], cfg.k, cfg.coeffs, cfg.random_seeds
        )
        correct = correctness(recs, labels)
        row = {
            "training": training,
            "seed": seed,
            "train_seconds": log["seconds"],
            "train_loss": log["loss"],
            "model": net.identity,
            "clean_accuracy": accuracy(model, x[ev], y[ev]),
            "fgsm": {f"{e:g}": fgsm_accuracy(model, x[ev], y[ev], e) for e in cfg.eps},
            "sanity": sanity(recs, worlds),
            "faithfulness": faith,
            "faithfulness_at_5": digit_flips_summary(faith, 5.0),
            "silhouette": {layer: c["silhouette"] for layer, c in correct.items()},
        }
        models.append(row)
        if not reference:
            reference = {"training": training, "seed": seed, "correctness": correct}
    return {
        "experiment": "paper-mnist",
        "config": asdict(cfg),
        "data": split.describe(),
        "worlds": worlds.provenance,
        "labels": labels.tolist(),
        "n_evaluation": len(ev),
        "models": models,
        "reference": reference,
        "paper": PAPER_MNIST,
        "seconds": time.perf_counter() - t0,
        "steer_version": __version__,
        "torch_threads": torch.get_num_threads(),
    }


def robustness_table(result: dict[str, Any]) -> str:
    """Markdown: per training, clean and FGSM accuracy (mean ± std over seeds), flips and silhouette."""
    eps = list(result["models"][0]["fgsm"])
    head = [
        "training",
        "seeds",
        "clean",
        *[f"FGSM {e}" for e in eps],
        "pos2neg top-k / random",
        "neg2pos top-k / random",
        "silhouette fc2",
        "output unit d = argmax D",
    ]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for training in dict.fromkeys(m["training"] for m in result["models"]):
        ms = [m for m in result["models"] if m["training"] == training]

        def ms_(values: list[float], pct: bool = True) -> str:
            a = np.array(values) * (100 if pct else 1)
            return f"{a.mean():.1f} ± {a.std():.1f}" if pct else f"{a.mean():.3f} ± {a.std():.3f}"

        cells = [training, str(len(ms)), ms_([m["clean_accuracy"] for m in ms])]
        cells += [ms_([m["fgsm"][e] for m in ms]) for e in eps]
        for flip in ("pos2neg", "neg2pos"):
            top = ms_([m["faithfulness_at_5"][f"{flip}/top-k"]["rate"] for m in ms])
            rnd = ms_([m["faithfulness_at_5"][f"{flip}/random"]["rate"] for m in ms])
            cells.append(f"{top} / {rnd}")
        cells.append(ms_([m["silhouette"]["fc2"] for m in ms], pct=False))
        cells.append(f"{sum(m['sanity']['holds'] for m in ms)}/{len(ms)}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def flips_table(model: dict[str, Any], coeff: float = 5.0) -> str:
    """Markdown: per digit, flip rates with Wilson intervals of the top-k and of random units at ``coeff``."""
    from steer.eval.metrics import format_rate

    f = model["faithfulness"]
    lines = ["| digit | pos2neg top-k | pos2neg random | neg2pos top-k | neg2pos random |", "|---|---|---|---|---|"]
    for d in range(10):
        cells = []
        for flip in ("pos2neg", "neg2pos"):
            for units in ("top-k", "random"):
                r = next(
                    r
                    for r in f["rows"]
                    if r["digit"] == d and r["flip"] == flip and r["units"] == units and r["coeff"] == coeff
                )
                cells.append(f"{format_rate(r)} (n={r['n']})")
        lines.append(f"| {d} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def write_mnist_report(result: dict[str, Any], out: str | Any) -> Any:
    """``out/result.json``, ``out/report.md`` and the figures (2, 3, 4 and robustness); returns ``out``."""
    from pathlib import Path

    from steer.artifacts import write_json_atomic
    from steer.eval import plots

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    write_json_atomic(out / "result.json", result)
    ref = next(
        m
        for m in result["models"]
        if m["training"] == result["reference"]["training"] and m["seed"] == result["reference"]["seed"]
    )
    plots.plot_max_strength(ref["sanity"], out / "fig2_max_strength.png")
    plots.plot_digit_flips(ref["faithfulness"], out / "fig3_flips.png")
    plots.plot_pca_layers(result["reference"]["correctness"], result["labels"], out / "fig4_pca.png")
    plots.plot_robustness(result["models"], out / "robustness.png")
    cfg = result["config"]
    sil = result["reference"]["correctness"]
    md = [
        "# The paper's MNIST experiments (LeNet-5)",
        "",
        f"Data: {result['data']}. Training: {cfg['epochs']} epochs of Adam, batch 128, seeds {cfg['seeds']}; "
        f"steer {result['steer_version']}, {result['seconds']:.0f} s on {result['torch_threads']} CPU threads.",
        "",
        "## Robustness, faithfulness and correctness of every training (mean ± std over seeds)",
        "",
        f"Accuracies in % on the {result['n_evaluation']:,} "
        "evaluation digits (white-box FGSM against each model). Flip rates in % at c = 5 with the paper's rule on "
        f"the top-{cfg['k']} units of fc2 (after ReLU) and on {cfg['k']} random units of the same layer "
        f"({len(cfg['random_seeds'])} seeds), pooled over digits.",
        "",
        robustness_table(result),
        "",
        f"Paper (60,000 training digits): clean {PAPER_MNIST['clean_accuracy']:.0%}; FGSM at 0.15: cross-entropy "
        f"{PAPER_MNIST['fgsm_0.15']['ce']:.0%}, with the doxastic loss "
        f"{PAPER_MNIST['fgsm_0.15']['doxastic']:.0%}; flips: {PAPER_MNIST['flips']}.",
        "",
        "![robustness](robustness.png)",
        "",
        f"## Reference model: {ref['training']}, seed {ref['seed']} (figures 2-4)",
        "",
        f"Figure 2 (sanity): output unit d has the largest D for label d for every digit: **{ref['sanity']['holds']}** "
        f"(argmax per digit {ref['sanity']['output_argmax']}).",
        "",
        "![figure 2](fig2_max_strength.png)",
        "",
        f"Figure 3 (faithfulness), flip rates with Wilson 95% intervals at c = 5, k = {cfg['k']}:",
        "",
        flips_table(ref),
        "",
        "![figure 3](fig3_flips.png)",
        "",
        "Figure 4 (correctness): silhouette of the digit clusters per layer (full space / first two principal "
        "components): "
        + ", ".join(f"{k} {v['silhouette']:.3f} / {v['silhouette_pca2']:.3f}" for k, v in sil.items())
        + ".",
        "",
        "![figure 4](fig4_pca.png)",
        "",
    ]
    (out / "report.md").write_text("\n".join(md))
    return out
