"""The training loop the paper's experiments share: Adam over shuffled mini-batches, with a per-epoch loss log."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn
from tqdm.auto import tqdm


def fit(
    model: nn.Module,
    n: int,
    batch_loss: Callable[[Tensor], Tensor],
    *,
    epochs: int,
    batch_size: int,
    lr: float,
    seed: int,
    desc: str = "training",
    progress: bool = False,
) -> dict[str, Any]:
    """Train ``model`` with Adam on ``n`` items in shuffled mini-batches (the order seeded by ``seed``).

    Args:
        model: the network (left in eval mode afterwards).
        n: the number of training items.
        batch_loss: the loss of the items at the given indices (the caller's model, data and loss terms).
        epochs, batch_size, lr, seed: the usual.
        desc, progress: the progress bar over epochs.

    Returns:
        ``{"loss": [mean loss per epoch], "seconds": training time}``.
    """
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    g = torch.Generator().manual_seed(seed)
    losses: list[float] = []
    t0 = time.perf_counter()
    for _ in tqdm(range(epochs), desc=desc, disable=not progress):
        model.train()
        perm = torch.randperm(n, generator=g)
        total = 0.0
        for b in range(0, n, batch_size):
            idx = perm[b : b + batch_size]
            loss = batch_loss(idx)
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += float(loss.detach()) * len(idx)
        losses.append(total / n)
    model.eval()
    return {"loss": losses, "seconds": time.perf_counter() - t0}
