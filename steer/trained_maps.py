"""Trained per-unit maps: the linear-transport fits of a neuron set, optimised through the model (LinEAS-style).

A fitted map (:mod:`steer.transport`) moves each unit from the source side onto the target side as if the other
units stayed put; but the maps of earlier layers change the inputs of later ones. Training fixes that (Rodriguez et
al. 2025, "LinEAS"): the maps of every layer are optimised jointly, end to end, so that the *steered* source worlds'
activations of each selected unit match the target worlds' (a 1-D Wasserstein loss per unit, on the mean over each
prompt's tokens, scaled by the target's spread), with a group-lasso pull of each unit's (w, b) toward the identity
(1, 0), which leaves alone the units the loss does not need, and a fluency term: the KL divergence of the steered
model's next-token distributions from the unsteered model's on the source worlds.

Both maps of a set are trained, each on its own source: onto A (from the worlds outside A: ``w_a, b_a``) and onto
A^c (from A: ``w_c, b_c``). The result is a neuron set like any other: the ``linear-transport`` rule applies it with
strength lam, and it exports exactly (the maps are still affine per unit). Trained only on the worlds, never on
benchmark prompts.

    from steer.trained_maps import train_maps
    ns = train_maps(model, ns, worlds, worlds.proposition("positive"))
    steer.Steerer(model, ns, steer.Intervention("linear-transport", 1.0))
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, replace
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import Tensor

from steer.interventions import unit_tables
from steer.neuronset import NeuronSet
from steer.sites import hook_name

if TYPE_CHECKING:
    from steer.models import Model
    from steer.propositions import Proposition
    from steer.worlds import Worlds


@dataclass(frozen=True)
class TrainConfig:
    """How the maps are trained (per direction)."""

    steps: int = 60  # optimiser steps
    batch: int = 16  # source worlds per step
    lr: float = 0.02  # Adam learning rate (of w, and of b in units of the target side's spread)
    sparsity: float = 0.01  # weight of the group lasso pulling each unit's (w, b) to (1, 0)
    fluency: float = 0.1  # weight of the KL of steered next-token distributions from unsteered ones
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("steps", "batch"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be a positive integer, got {v!r}")
        for name in ("lr", "sparsity", "fluency"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
                raise ValueError(f"{name} must be a finite number >= 0, got {v!r}")
        if self.lr <= 0:
            raise ValueError(f"lr must be > 0, got {self.lr!r}")


def _pooled_hooks(
    index: dict[int, Tensor], maps: dict[int, tuple[Tensor, Tensor]] | None, mask: Tensor, site: str, out: dict
) -> list[tuple[str, Any]]:
    """Hooks that (optionally) apply w*a + b to each layer's units and keep their mean over the real tokens."""
    count = mask.sum(1, keepdim=True).float()

    def make(layer: int) -> Any:
        idx = index[layer]

        def fn(act: Tensor, hook: object = None) -> Tensor:
            sel = act[..., idx].float()
            if maps is not None:
                w, b = maps[layer]
                new = sel * w + b
                act = act.clone()
                act[..., idx] = new.to(act.dtype)
                sel = new
            out[layer] = (sel * mask[:, :, None]).sum(1) / count
            return act

        return fn

    return [(hook_name(site, layer), make(layer)) for layer in sorted(index)]


def _w2(x: Tensor, target_sorted: Tensor, scale: Tensor) -> Tensor:
    """Mean over units of the squared 1-D Wasserstein-2 distance between the batch values ``x`` [n, k] and the
    target's (sorted [m, k]), at the batch's quantile levels, each unit scaled by ``scale`` [k]."""
    n, m = x.shape[0], target_sorted.shape[0]
    levels = ((torch.arange(n, dtype=torch.float64) + 0.5) / n * m).floor().long().clamp(max=m - 1)
    diff = (x.sort(0).values - target_sorted[levels]) / scale
    return (diff**2).mean()


def _train_direction(
    model: Model, neurons: NeuronSet, source: list[str], target: list[str], direction: str, cfg: TrainConfig, bar: Any
) -> tuple[dict[int, tuple[Tensor, Tensor]], list[float]]:
    tables = unit_tables(neurons.units_for, neurons.units_against, direction)  # type: ignore[arg-type]
    index = {layer: t.index for layer, t in tables.items()}
    site = neurons.site
    tgt: dict[int, list[Tensor]] = {layer: [] for layer in index}
    with torch.no_grad():  # the target side's pooled activations, unsteered
        for i in range(0, len(target), 32):
            ids, mask = model.tokenize(target[i : i + 32])
            got: dict[int, Tensor] = {}
            model.bridge.run_with_hooks(
                ids, fwd_hooks=_pooled_hooks(index, None, mask, site, got), attention_mask=mask, return_type=None
            )
            for layer in index:
                tgt[layer].append(got[layer].cpu())
    tgt_sorted = {layer: torch.cat(v).double().sort(0).values for layer, v in tgt.items()}
    scale = {layer: v.std(0).clamp(min=1e-3) for layer, v in tgt_sorted.items()}
    # parameters: offsets from the fitted (w, b), b's in units of the target's spread (so one learning rate fits
    # units of any scale)
    start, offsets = {}, {}
    for layer, t in tables.items():
        assert t.w is not None and t.b is not None, "the neuron set needs transport statistics (with_transport)"
        start[layer] = (t.w.float(), t.b.float(), scale[layer].float())
        offsets[layer] = (
            torch.zeros_like(t.w.float(), requires_grad=True),
            torch.zeros_like(t.b.float(), requires_grad=True),
        )

    def current() -> dict[int, tuple[Tensor, Tensor]]:
        return {layer: (w0 + offsets[layer][0], b0 + offsets[layer][1] * sc) for layer, (w0, b0, sc) in start.items()}

    opt = torch.optim.Adam([p for pair in offsets.values() for p in pair], lr=cfg.lr)
    g = torch.Generator().manual_seed(cfg.seed)
    losses = []
    for _ in range(cfg.steps):
        rows = torch.randperm(len(source), generator=g)[: cfg.batch].tolist()
        ids, mask = model.tokenize([source[i] for i in rows])
        base = None
        if cfg.fluency > 0:
            with torch.no_grad():
                base = model.bridge(ids, attention_mask=mask).float().log_softmax(-1)
        pooled: dict[int, Tensor] = {}
        params = current()
        logits = model.bridge.run_with_hooks(
            ids, fwd_hooks=_pooled_hooks(index, params, mask, site, pooled), attention_mask=mask
        )
        loss = torch.stack([_w2(pooled[layer].double(), tgt_sorted[layer], scale[layer]) for layer in index]).mean()
        for layer, (w, b) in params.items():
            group = torch.sqrt((w - 1) ** 2 + (b / scale[layer].float()) ** 2 + 1e-12)
            loss = loss + cfg.sparsity * group.mean()
        if base is not None:
            steered = logits.float().log_softmax(-1)
            kl = (base.exp() * (base - steered)).sum(-1)
            loss = loss + cfg.fluency * (kl * mask).sum() / mask.sum()
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(round(float(loss.detach()), 5))
        bar.update(1)
    with torch.no_grad():
        return {layer: (w.double(), b.double()) for layer, (w, b) in current().items()}, losses


def train_maps(
    model: Model,
    neurons: NeuronSet,
    worlds: Worlds,
    proposition: Proposition,
    config: TrainConfig | None = None,
    progress: bool = True,
    directions: tuple[str, ...] = ("toward", "away"),
) -> NeuronSet:
    """The neuron set with both of its transport maps trained through the model (see the module docstring).

    Args:
        model: the model the set was selected on.
        neurons: a neuron set with transport statistics (:func:`steer.select_units` adds them), the start.
        worlds: the worlds (their prompts are the training data).
        proposition: the set's proposition over ``worlds`` (A: the target of the map onto A).
        config: steps, batch, learning rate and the weights of the sparsity and fluency terms.
        progress: show a progress bar.
        directions: the maps to train: ``toward`` (onto A) and/or ``away`` (onto A^c); the other keeps its fit.

    Returns:
        A new neuron set whose ``w_a, b_a, w_c, b_c`` are the trained maps (those not trained: their fits);
        ``extra["transport"]`` records the training (config, directions, losses, seconds).
    """
    from tqdm.auto import tqdm

    cfg = config or TrainConfig()
    if not isinstance(cfg, TrainConfig):
        raise TypeError(f"config must be a steer.TrainConfig, got {type(cfg).__name__}")
    if not isinstance(neurons, NeuronSet):
        raise TypeError(f"neurons must be a steer.NeuronSet, got {type(neurons).__name__}")
    if not neurons.has_transport:
        raise ValueError("the neuron set has no transport statistics to start from: select it with select_units")
    neurons.check_compatible(model)
    if neurons.site != "mlp":
        raise ValueError(f"trained maps need site 'mlp' (the units a W_down column writes), got {neurons.site!r}")
    mask = np.asarray(proposition.mask, dtype=bool)
    if mask.shape[0] != len(worlds):
        raise ValueError(f"proposition {proposition.name!r} has {mask.shape[0]} worlds, the worlds are {len(worlds)}")
    prompts = worlds.prompts
    on_a = [p for p, m in zip(prompts, mask) if m]
    off_a = [p for p, m in zip(prompts, mask) if not m]
    if len(on_a) < 2 or len(off_a) < 2:
        raise ValueError(f"proposition {proposition.name!r} needs at least two worlds in it and two outside it")
    if not directions or any(d not in ("toward", "away") for d in directions):
        raise ValueError(f"directions must be some of ('toward', 'away'), got {directions!r}")
    t0 = time.time()
    frozen = [(p, p.requires_grad) for p in model.bridge.parameters()]
    for p, _ in frozen:
        p.requires_grad_(False)
    trained, losses = {}, {}
    try:
        with tqdm(total=len(directions) * cfg.steps, desc="training maps", disable=not progress) as bar:
            if "toward" in directions:
                trained["toward"], losses["onto A"] = _train_direction(model, neurons, off_a, on_a, "toward", cfg, bar)
            if "away" in directions:
                trained["away"], losses["onto not A"] = _train_direction(model, neurons, on_a, off_a, "away", cfg, bar)
    finally:
        for p, flag in frozen:
            p.requires_grad_(flag)

    where = {}  # (direction, layer, unit index) -> (w, b)
    for direction in trained:
        for layer, table in unit_tables(neurons.units_for, neurons.units_against, direction).items():  # type: ignore[arg-type]
            w, b = trained[direction][layer]
            for j, i in enumerate(table.index.tolist()):
                where[direction, layer, i] = (float(w[j]), float(b[j]))

    def update(u: Any) -> Any:
        w_a, b_a = where.get(("toward", u.layer, u.index), (u.w_a, u.b_a))
        w_c, b_c = where.get(("away", u.layer, u.index), (u.w_c, u.b_c))
        return replace(u, w_a=w_a, b_a=b_a, w_c=w_c, b_c=b_c)

    extra = {
        **neurons.extra,
        "transport": {
            **neurons.extra.get("transport", {}),
            "trained": {
                "config": asdict(cfg),
                "directions": list(directions),
                "losses": losses,
                "seconds": round(time.time() - t0, 1),
            },
        },
    }
    return replace(
        neurons,
        units_for=[update(u) for u in neurons.units_for],
        units_against=[update(u) for u in neurons.units_against],
        extra=extra,
    )
