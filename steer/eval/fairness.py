"""The paper's fairness experiment (section 4.2): an income classifier trained with and without the reasons-
difference (RD) loss, against a standard mitigation (reweighing), on UCI Adult with sex as the protected attribute.

Trainings (:data:`TRAININGS`), all on the same features and split (:func:`steer.eval.datasets.load_adult`):

- ``ce``: binary cross-entropy alone;
- ``rd``: cross-entropy + ``rd_weight`` * RD on each batch, RD = (D(s, A+, b(.|male)) - D(s, A+, b(.|female)))^2
  with s the classifier's logit and A+ the batch items earning >50K (:func:`steer.losses.reasons_difference`);
- ``reweighing``: cross-entropy with the sample weights of Kamiran & Calders (2012), w(g, y) = P(g) P(y) / P(g, y),
  which make group and outcome independent in the weighted training data (the established pre-processing
  baseline).

Reported per model (:func:`evaluate`): accuracy, demographic-parity difference, equalised-odds difference and
RD on the test rows.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from steer.eval.datasets import Adult
from steer.eval.metrics import fairness_gaps
from steer.eval.training import fit
from steer.losses import reasons_difference

TRAININGS = ("ce", "rd", "reweighing")


class IncomeMLP(nn.Module):
    """features -> 64 -> 32 -> 1 logit (>50K), ReLU activations as modules (sites ``act1``, ``act2``)."""

    def __init__(self, n_features: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(n_features, 64)
        self.act1 = nn.ReLU()
        self.fc2 = nn.Linear(64, 32)
        self.act2 = nn.ReLU()
        self.out = nn.Linear(32, 1)

    def forward(self, x: Tensor) -> Tensor:
        return self.out(self.act2(self.fc2(self.act1(self.fc1(x))))).squeeze(-1)


@dataclass(frozen=True)
class FairConfig:
    """How an income classifier is trained: ``training`` is one of :data:`TRAININGS`."""

    training: str = "ce"
    epochs: int = 10
    batch_size: int = 256
    lr: float = 1e-3
    seed: int = 0
    rd_weight: float = 1.0
    rd_on: str = "probability"  # what RD compares: the predicted probability (the paper's y-hat) or the logit

    def __post_init__(self) -> None:
        if self.training not in TRAININGS:
            raise ValueError(f"unknown training {self.training!r}; use one of {', '.join(TRAININGS)}")
        if self.rd_on not in ("probability", "logit"):
            raise ValueError(f"rd_on must be 'probability' or 'logit', got {self.rd_on!r}")


def reweighing_weights(y: Tensor, group: Tensor) -> Tensor:
    """Kamiran & Calders' weights w(g, y) = P(g) P(y) / P(g, y), one per item."""
    w = torch.empty(len(y), dtype=torch.float32)
    for g in (0, 1):
        for c in (0, 1):
            cell = (group == g) & (y == c)
            if cell.any():
                w[cell] = float((group == g).float().mean() * (y == c).float().mean() / cell.float().mean())
    return w


def train_income(data: Adult, config: FairConfig) -> tuple[IncomeMLP, dict[str, Any]]:
    """Train an :class:`IncomeMLP` on the training rows; returns the model (eval mode) and a log."""
    torch.manual_seed(config.seed)
    model = IncomeMLP(data.x_train.shape[1])
    x, y, group = data.x_train, data.y_train, data.group_train
    weights = reweighing_weights(y, group) if config.training == "reweighing" else torch.ones(len(y))

    def batch_loss(idx: Tensor) -> Tensor:
        logit = model(x[idx])
        yb = y[idx]
        loss = (F.binary_cross_entropy_with_logits(logit, yb.float(), reduction="none") * weights[idx]).mean()
        if config.training == "rd":
            s = torch.sigmoid(logit) if config.rd_on == "probability" else logit
            loss = loss + config.rd_weight * reasons_difference(s, yb.bool(), group[idx].bool())
        return loss

    log = fit(
        model, len(x), batch_loss, epochs=config.epochs, batch_size=config.batch_size, lr=config.lr, seed=config.seed
    )
    return model, {"config": asdict(config), **log}


def evaluate(model: nn.Module, data: Adult) -> dict[str, float]:
    """Test-set accuracy, demographic-parity and equalised-odds differences, and RD of the logits."""
    with torch.no_grad():
        logit = model(data.x_test)
    pred = logit > 0
    y, group = data.y_test.bool(), data.group_test.bool()
    return {
        "accuracy": float((pred == y).float().mean()),
        **fairness_gaps(pred, y, group),
        "rd_probability": float(reasons_difference(torch.sigmoid(logit.double()), y, group)),
        "rd_logit": float(reasons_difference(logit.double(), y, group)),
    }


# ------------------------------------------------------------------------------------------- the experiment

PAPER_FAIRNESS = "the RD loss improves fairness on income prediction (docs/method.md §6; no numbers to compare with)"

# name -> (training, rd_weight, rd_on)
VARIANTS: dict[str, tuple[str, float, str]] = {
    "ce": ("ce", 0.0, "probability"),
    "rd (probability, weight 1)": ("rd", 1.0, "probability"),
    "rd (probability, weight 10)": ("rd", 10.0, "probability"),
    "rd (logit, weight 1)": ("rd", 1.0, "logit"),
    "reweighing": ("reweighing", 0.0, "probability"),
}


@dataclass(frozen=True)
class FairnessExperiment:
    """The fairness comparison: every variant of :data:`VARIANTS` (or a subset) x seeds on one fixed split."""

    adult: str
    variants: tuple[str, ...] = tuple(VARIANTS)
    seeds: tuple[int, ...] = (0, 1, 2)
    epochs: int = 10
    split_seed: int = 0

    def __post_init__(self) -> None:
        unknown = [v for v in self.variants if v not in VARIANTS]
        if unknown:
            raise ValueError(f"unknown variant(s) {unknown}; use {', '.join(VARIANTS)}")


def run_fairness(cfg: FairnessExperiment) -> dict[str, Any]:
    """Train and evaluate every (variant, seed); returns a JSON-ready result."""
    from steer.eval.datasets import load_adult
    from steer.version import __version__

    t0 = time.perf_counter()
    data = load_adult(cfg.adult, seed=cfg.split_seed)
    rows = []
    for name in cfg.variants:
        training, weight, on = VARIANTS[name]
        for seed in cfg.seeds:
            fc = FairConfig(training, cfg.epochs, seed=seed, rd_weight=weight or 1.0, rd_on=on)
            model, log = train_income(data, fc)
            rows.append({"variant": name, "seed": seed, "train_seconds": log["seconds"], **evaluate(model, data)})
    return {
        "experiment": "paper-fairness",
        "config": asdict(cfg),
        "data": data.describe(),
        "rows": rows,
        "paper": PAPER_FAIRNESS,
        "seconds": time.perf_counter() - t0,
        "steer_version": __version__,
    }


METRICS = (
    ("accuracy", "accuracy"),
    ("dp", "DP difference"),
    ("eo", "EO difference"),
    ("tpr_gap", "TPR gap"),
    ("fpr_gap", "FPR gap"),
    ("rd_probability", "RD (probability)"),
    ("rd_logit", "RD (logit)"),
)


def fairness_table(result: dict[str, Any]) -> str:
    """Markdown: per variant, every metric as mean ± std over seeds (rates in %)."""
    head = ["variant", "seeds", *[label for _, label in METRICS]]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name in dict.fromkeys(r["variant"] for r in result["rows"]):
        rs = [r for r in result["rows"] if r["variant"] == name]
        cells = [name, str(len(rs))]
        for key, _ in METRICS:
            a = torch.tensor([r[key] for r in rs], dtype=torch.float64)
            scale, fmt = (100, ".1f") if not key.startswith("rd") else (1, ".4f")
            cells.append(f"{float(a.mean()) * scale:{fmt}} ± {float(a.std(unbiased=False)) * scale:{fmt}}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def write_fairness_report(result: dict[str, Any], out: str | Any) -> Any:
    """``out/result.json``, ``out/report.md`` and ``out/fairness.png``; returns ``out``."""
    from pathlib import Path

    from steer.artifacts import write_json_atomic
    from steer.eval import plots

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    write_json_atomic(out / "result.json", result)
    plots.plot_fairness(result["rows"], out / "fairness.png")
    cfg = result["config"]
    md = [
        "# The paper's fairness experiment (UCI Adult, sex as the protected attribute)",
        "",
        f"Data: {result['data']}. An MLP (64-32) trained {cfg['epochs']} epochs with Adam, batch 256, seeds "
        f"{cfg['seeds']}; steer {result['steer_version']}, {result['seconds']:.0f} s in all.",
        "",
        "DP difference = |P(>50K predicted | male) - P(>50K predicted | female)|; EO difference = the larger of the "
        "true- and false-positive-rate gaps; RD on the test rows, on the predicted probability and on the logit. "
        "Rates in %, mean ± std over seeds.",
        "",
        fairness_table(result),
        "",
        f"Paper: {result['paper']}.",
        "",
        "![fairness](fairness.png)",
        "",
    ]
    (out / "report.md").write_text("\n".join(md))
    return out
