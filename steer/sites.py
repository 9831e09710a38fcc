"""Sites and layers: where in a model activations are read, and how layers are named.

Data flow: prompt set -> worlds -> **recorded activations** -> strengths -> selected units -> intervention ->
steered generation. Recording (:mod:`steer.record`) reads a site's units in some layers; interventions
(:mod:`steer.interventions`) rewrite them at the same hooks during generation.

Sites (TransformerLens hook names):
- ``mlp``   -> ``blocks.{l}.mlp.hook_post``: MLP neuron activations; for gated MLPs (Qwen2, Llama) the input
  of down_proj, act(gate(x)) * up(x). d_mlp units per layer.
- ``mlp_pre`` -> ``blocks.{l}.mlp.hook_pre``: the gate's pre-activation gate(x), before the activation function
  (gated MLPs; for an ungated MLP the input of the activation). A shift here reaches the MLP's output multiplied by
  act'(gate(x)) * up(x), which depends on the input. d_mlp units per layer.
- ``mlp_pre_linear`` -> ``blocks.{l}.mlp.hook_pre_linear``: the linear branch up(x) of a gated MLP; a shift is
  multiplied by act(gate(x)). d_mlp units per layer.
- ``resid`` -> ``blocks.{l}.hook_resid_post``: the residual stream after block l. d_model units per layer.

Only ``mlp`` and ``resid`` rewrites can be exported (:mod:`steer.fold`): at the pre-activation sites even a
constant shift is not a constant vector after the block.

Token reductions (:data:`REDUCTIONS`): ``last`` (the prompt's last token) or ``mean`` (the mean over the world's
own text); see :func:`steer.record.record`.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from steer.models import Model

SITES = {
    "mlp": "blocks.{layer}.mlp.hook_post",
    "mlp_pre": "blocks.{layer}.mlp.hook_pre",
    "mlp_pre_linear": "blocks.{layer}.mlp.hook_pre_linear",
    "resid": "blocks.{layer}.hook_resid_post",
}
MLP_SITES = ("mlp", "mlp_pre", "mlp_pre_linear")  # d_mlp units per layer
REDUCTIONS = ("last", "mean")


def hook_name(site: str, layer: int) -> str:
    """The TransformerLens hook name of ``site`` in ``layer`` (e.g. ``blocks.3.mlp.hook_post``)."""
    if site not in SITES:
        raise ValueError(f"unknown site {site!r}; use one of {', '.join(SITES)}")
    return SITES[site].format(layer=layer)


def site_hooks(site: str, layers: Sequence[int]) -> list[str]:
    """Where a site is read: TransformerLens hook names for ``mlp``/``resid``, else the forward hook on the
    module of that path of a plain PyTorch network (see :mod:`steer.network`)."""
    if site in SITES:
        return [hook_name(site, layer) for layer in layers]
    return [f"forward hook on module {site}"]


def site_width(model: Model, site: str) -> int:
    """Units per layer at a site: d_mlp for the MLP sites, d_model for ``resid``."""
    hook_name(site, 0)
    return model.d_mlp if site in MLP_SITES else model.d_model


def resolve_layers(layers: int | Sequence[int] | None, n_layers: int) -> list[int]:
    """None -> all layers; negative indices count from the end; sorted, without duplicates."""
    if layers is None:
        return list(range(n_layers))
    if isinstance(layers, (str, bytes, bool)) or not isinstance(layers, (int, np.integer, Sequence, range)):
        raise TypeError(f"layers must be an integer, a sequence of integers or None, got {layers!r}")
    layers = [layers] if isinstance(layers, (int, np.integer)) else list(layers)
    if not layers:
        raise ValueError("no layers requested")
    out = set()
    for layer in layers:
        if not isinstance(layer, (int, np.integer)) or not -n_layers <= layer < n_layers:
            raise ValueError(f"unknown layer {layer!r}: the model has layers 0..{n_layers - 1}")
        out.add(int(layer) % n_layers)
    return sorted(out)


_LAYER = re.compile(r"^-?\d+$")
_RANGE = re.compile(r"^(\d+)-(\d+)$")


def parse_layers(text: str | None, n_layers: int) -> list[int]:
    """CLI syntax: ``all`` / None, ``23``, ``-1`` (from the end), ``0,5,10``, ``18-23`` (an inclusive range of
    non-negative indices), and combinations. Anything else (``-2-3``, ``5-3``, an empty part) is an error."""
    if text is None or text.strip() == "all":
        return list(range(n_layers))
    layers: list[int] = []
    usage = "use e.g. all, 23, -1, 0,5,10 or 18-23"
    for part in (p.strip() for p in text.split(",")):
        if _LAYER.match(part):
            layers.append(int(part))
        elif m := _RANGE.match(part):
            a, b = int(m[1]), int(m[2])
            if a > b:
                raise ValueError(f"layer range {part!r} is empty (start after end); {usage}")
            layers += list(range(a, b + 1))
        else:
            raise ValueError(f"cannot parse layers {text!r} (the part {part!r}); {usage}")
    return resolve_layers(layers, n_layers)


def format_layers(layers: Sequence[int]) -> str:
    """Layers as the CLI writes them (the inverse of :func:`parse_layers`): ``18-23`` for a run, else ``0,5,10``."""
    layers = list(layers)
    if len(layers) > 2 and layers == list(range(layers[0], layers[-1] + 1)):
        return f"{layers[0]}-{layers[-1]}"
    return ",".join(map(str, layers))
