"""Synthetic data with known ground truth, for the statistics tests (not part of the library)."""

from __future__ import annotations

import torch
from torch import Tensor


def planted(n_worlds: int = 400, n_units: int = 200, n_a: int = 100, planted_for: int = 3, planted_against: int = 3,
            effect: float = 1.5, noise: float = 1.0, seed: int = 0) -> tuple[Tensor, Tensor, list[int], list[int]]:
    """Activations with known ground truth: Gaussian noise, plus ``effect`` on A for the first ``planted_for``
    units and minus ``effect`` on A for the next ``planted_against``. Returns (X, A, for_units, against_units)."""
    if planted_for + planted_against > n_units or not 0 < n_a < n_worlds:
        raise ValueError("need planted_for + planted_against <= n_units and 0 < n_a < n_worlds")
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(n_worlds, n_units, generator=g, dtype=torch.float64) * noise
    A = torch.zeros(n_worlds, dtype=torch.bool)
    A[torch.randperm(n_worlds, generator=g)[:n_a]] = True
    units_for = list(range(planted_for))
    units_against = list(range(planted_for, planted_for + planted_against))
    rows = A.nonzero()[:, 0][:, None]
    X[rows, torch.tensor(units_for, dtype=torch.long)] += effect
    X[rows, torch.tensor(units_against, dtype=torch.long)] -= effect
    return X, A, units_for, units_against
