"""LeNet-5 for the paper's MNIST experiments (:mod:`steer.eval.mnist`): the model, its training, its accuracy
(clean and under FGSM), and the digits as worlds recorded at every layer.

- :class:`LeNet5` with named activation modules, so every layer is a site of :class:`steer.network.Network`
  (``act1`` conv1, ``act2`` conv2, ``act3`` fc1, ``act4`` fc2 = the last hidden layer, ``fc3`` the logits).
- :func:`train_lenet`: cross-entropy alone, + the doxastic loss, + the elementary loss (weight 1, as the paper),
  or FGSM adversarial training (the established robustness baseline); :func:`accuracy`, :func:`fgsm_accuracy`.
- :func:`digit_worlds`, :func:`digit_labels`, :func:`record_lenet`: digits as worlds with a ``label`` field, and
  every layer of :data:`LENET_SITES` recorded in one pass.

Data: :mod:`steer.eval.datasets`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from steer.activations import Activations
from steer.eval.training import fit
from steer.losses import doxastic_loss, elementary_loss
from steer.network import Network
from steer.worlds import TensorWorlds

# layer label -> site (the output of each layer after its activation; the logits for the output layer)
LENET_SITES: dict[str, str] = {"conv1": "act1", "conv2": "act2", "fc1": "act3", "fc2": "act4", "output": "fc3"}
LAST_HIDDEN = "act4"
TRAININGS = ("ce", "doxastic", "elementary", "fgsm")


class LeNet5(nn.Module):
    """LeNet-5 for 28x28 digits (conv1 padded to keep 28x28), ReLU activations as modules, max pooling."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 6, 5, padding=2)
        self.act1 = nn.ReLU()
        self.pool1 = nn.MaxPool2d(2)
        self.conv2 = nn.Conv2d(6, 16, 5)
        self.act2 = nn.ReLU()
        self.pool2 = nn.MaxPool2d(2)
        self.flatten = nn.Flatten()
        self.fc1 = nn.Linear(400, 120)
        self.act3 = nn.ReLU()
        self.fc2 = nn.Linear(120, 84)
        self.act4 = nn.ReLU()
        self.fc3 = nn.Linear(84, 10)

    def forward(self, x: Tensor) -> Tensor:
        x = self.pool1(self.act1(self.conv1(x)))
        x = self.flatten(self.pool2(self.act2(self.conv2(x))))
        return self.fc3(self.act4(self.fc2(self.act3(self.fc1(x)))))


@dataclass(frozen=True)
class TrainConfig:
    """How a LeNet is trained: ``loss`` is one of :data:`TRAININGS`."""

    loss: str = "ce"
    epochs: int = 10
    batch_size: int = 128
    lr: float = 1e-3
    seed: int = 0
    reasons_weight: float = 1.0  # weight of the doxastic / elementary term next to cross-entropy
    fgsm_eps: float = 0.2  # perturbation of FGSM adversarial training (loss="fgsm")

    def __post_init__(self) -> None:
        if self.loss not in TRAININGS:
            raise ValueError(f"unknown training {self.loss!r}; use one of {', '.join(TRAININGS)}")
        if self.epochs < 1 or self.batch_size < 2:
            raise ValueError("epochs must be >= 1 and batch_size >= 2")


def fgsm(model: nn.Module, x: Tensor, y: Tensor, eps: float) -> Tensor:
    """The fast gradient sign attack: x + eps * sign(grad_x CE), clipped to [0, 1]."""
    x = x.clone().requires_grad_(True)
    loss = F.cross_entropy(model(x), y)
    (grad,) = torch.autograd.grad(loss, x)
    return (x + eps * grad.sign()).clamp(0, 1).detach()


def train_lenet(x: Tensor, y: Tensor, config: TrainConfig, progress: bool = False) -> tuple[LeNet5, dict[str, Any]]:
    """Train a LeNet-5 with Adam; returns the model (in eval mode) and a log (loss per epoch, seconds)."""
    torch.manual_seed(config.seed)
    model = LeNet5()

    def batch_loss(idx: Tensor) -> Tensor:
        xb, yb = x[idx], y[idx]
        if config.loss == "fgsm":
            x_adv = fgsm(model, xb, yb, config.fgsm_eps)
            return 0.5 * F.cross_entropy(model(xb), yb) + 0.5 * F.cross_entropy(model(x_adv), yb)
        logits = model(xb)
        loss = F.cross_entropy(logits, yb)
        if config.loss == "doxastic":
            loss = loss + config.reasons_weight * doxastic_loss(logits, yb)
        elif config.loss == "elementary":
            loss = loss + config.reasons_weight * elementary_loss(logits, yb)
        return loss

    desc = f"training ({config.loss}, seed {config.seed})"
    log = fit(
        model,
        len(x),
        batch_loss,
        epochs=config.epochs,
        batch_size=config.batch_size,
        lr=config.lr,
        seed=config.seed,
        desc=desc,
        progress=progress,
    )
    return model, {"config": asdict(config), **log}


def accuracy(model: nn.Module, x: Tensor, y: Tensor, batch_size: int = 1000) -> float:
    """Share of correct predictions."""
    with torch.no_grad():
        pred = torch.cat([model(x[i : i + batch_size]).argmax(1) for i in range(0, len(x), batch_size)])
    return float((pred == y).float().mean())


def fgsm_accuracy(model: nn.Module, x: Tensor, y: Tensor, eps: float, batch_size: int = 1000) -> float:
    """Accuracy on FGSM examples made against the model itself (white box) at perturbation ``eps``."""
    model.eval()
    correct = 0
    for i in range(0, len(x), batch_size):
        xb, yb = x[i : i + batch_size], y[i : i + batch_size]
        x_adv = fgsm(model, xb, yb, eps) if eps > 0 else xb
        with torch.no_grad():
            correct += int((model(x_adv).argmax(1) == yb).sum())
    return correct / len(x)


# ----------------------------------------------------------------------------------------------- digits


def digit_worlds(x: Tensor, y: Tensor, source: str) -> TensorWorlds:
    """Digits as worlds with a ``label`` field (propositions such as ``label=3``)."""
    return TensorWorlds.from_tensors(x, source=source, label=y)


def record_lenet(net: Network, worlds: TensorWorlds) -> dict[str, Activations]:
    """Every layer of :data:`LENET_SITES` recorded in one pass."""
    got = net.record(worlds, list(LENET_SITES.values()))
    assert isinstance(got, dict)
    return got


def digit_labels(worlds: TensorWorlds) -> Tensor:
    return torch.as_tensor(np.asarray(worlds.defined_column("label"), dtype=np.int64))
