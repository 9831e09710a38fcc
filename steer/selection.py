"""Unit-selection scores other than D, for comparing what finds units that steer (pure tensor math).

Every score here is a per-unit number where large means "speaks for A" and small "speaks against A", so any of
them can replace D in a :class:`steer.neurons.Strengths` and go through the same ``top(k)`` selection:

- ``mean-diff``: mean on A minus mean on A^c (the plain difference-of-means ranking);
- ``smd``: the standardised mean difference, (mean_A - mean_~A) / std over all worlds;
- ``ap``: average precision of the unit's activation as a detector of A, minus that as a detector of A^c
  (the self-conditioning papers rank "expert units" by AP; the difference makes low values mean "against");
- :func:`write_alignment`: not what a unit reads but what it writes, its W_out row projected on a direction of
  the residual stream (e.g. the CAA vector of its layer); it needs the model's weights, so it is not one of the
  scores :func:`steer.neurons.score_units` computes from a recording.

:func:`average_precision` and :func:`median_on` need every world's activation (X); the others only the
per-unit statistics a D computation already gives.
"""

from __future__ import annotations

import torch
from jaxtyping import Bool, Float
from torch import Tensor

from steer.names import SCORES  # noqa: F401 - every selection score (torch-free, for configs and the CLI)


def mean_difference(mean_a: Tensor, mean_c: Tensor) -> Tensor:
    return mean_a - mean_c


def standardized_mean_difference(mean_a: Tensor, mean_c: Tensor, std: Tensor) -> Tensor:
    """(mean_A - mean_~A) / std; 0 for constant units."""
    safe = torch.where(std > 0, std, torch.ones_like(std))
    return torch.where(std > 0, (mean_a - mean_c) / safe, torch.zeros_like(std))


def average_precision(
    X: Float[Tensor, "worlds units"], mask: Bool[Tensor, " worlds"], chunk: int = 8192
) -> Float[Tensor, " units"]:
    """Average precision of each unit's activations ranking the worlds of A first (ties in sort order).

    AP = (1/|A|) sum over the worlds w of A of precision among the worlds ranked at or above w."""
    mask = torch.as_tensor(mask, dtype=torch.bool)
    n_pos = int(mask.sum())
    if n_pos == 0:
        raise ValueError("average precision needs at least one world in A")
    ranks = torch.arange(1, X.shape[0] + 1, dtype=torch.float64)[:, None]
    out = []
    for s in range(0, X.shape[1], chunk):
        order = torch.argsort(X[:, s : s + chunk].float(), dim=0, descending=True, stable=True)
        hits = mask[order].double()  # [worlds, chunk]: 1 where the world at that rank is in A
        precision = hits.cumsum(0) / ranks
        out.append((precision * hits).sum(0) / n_pos)
    return torch.cat(out)


def ap_score(X: Float[Tensor, "worlds units"], mask: Bool[Tensor, " worlds"]) -> Float[Tensor, " units"]:
    """AP for A minus AP for A^c: positive for detectors of A, negative for detectors of A^c."""
    mask = torch.as_tensor(mask, dtype=torch.bool)
    return average_precision(X, mask) - average_precision(X, ~mask)


def median_on(X: Float[Tensor, "worlds units"], mask: Bool[Tensor, " worlds"]) -> Float[Tensor, " units"]:
    """Each unit's median activation over the worlds of A (the self-conditioning intervention value)."""
    mask = torch.as_tensor(mask, dtype=torch.bool)
    if not mask.any():
        raise ValueError("median on A needs at least one world in A")
    return X[mask].float().median(0).values


def write_alignment(
    w_out: Float[Tensor, "layers units d_model"],
    std: Float[Tensor, "layers units"],
    directions: Float[Tensor, "layers d_model"],
    scale: Float[Tensor, " layers"] | None = None,
) -> Float[Tensor, "layers units"]:
    """What each unit *writes*: how far a one-sigma shift of it moves the residual stream along its layer's
    direction, std_i * <W_out[i], d_l / |d_l|>, divided by ``scale[l]`` when given (e.g. the residual norm at the
    layer, so that layers are ranked by their shift relative to the stream they add to).

    Large means raising the unit writes toward the direction, small (negative) that lowering it does, so a top-k
    of this score under the additive rule (a + coeff*sigma*sign) writes along the direction from both sides. At
    ``site="mlp"`` a shift t_i of unit i adds t_i W_out[i] after the block (:mod:`steer.fold`).
    """
    if w_out.ndim != 3 or std.shape != w_out.shape[:2] or directions.shape != (w_out.shape[0], w_out.shape[2]):
        raise ValueError(
            f"write_alignment needs w_out [L, units, d], std [L, units] and directions [L, d], got "
            f"{tuple(w_out.shape)}, {tuple(std.shape)}, {tuple(directions.shape)}"
        )
    norms = directions.float().norm(dim=1, keepdim=True)
    if not bool((norms > 0).all()):
        raise ValueError("write_alignment needs a nonzero direction at every layer")
    unit = directions.float() / norms
    values = std.float() * torch.einsum("lud,ld->lu", w_out.float(), unit)
    if scale is not None:
        if scale.shape != (w_out.shape[0],) or not bool((scale > 0).all()):
            raise ValueError(f"scale must be [layers] of positive numbers, got {tuple(scale.shape)}")
        values = values / scale.float()[:, None]
    return values
