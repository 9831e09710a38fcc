"""Folding: neuron steering in exported form, and folded into the model's weights in-process.

Data flow: prompt set -> worlds -> recorded activations -> strengths -> selected units -> **intervention** ->
steered generation. An intervention on selected units (:mod:`steer.interventions`) becomes a
:class:`SteeringExport`: per layer, a vector added after the block and some W_down columns scaled. That form is
what :mod:`steer.export` writes to files (a llama.cpp control vector, direction files, an edited checkpoint) and
what :func:`compile_steering` applies to the loaded model's weights with no hook at all
(``Steerer(..., compiled=True)``).

**The math.** Every built-in rule is affine per unit, a'_i = s_i * a_i + t_i (:mod:`steer.interventions`). At site
``mlp`` the units are the input of the MLP's output projection W_down [d_model, d_mlp] (TransformerLens
``blocks.{l}.mlp.hook_post``, whose ``W_out`` is W_down transposed). Rewritten at every position, the MLP output is

    W_down a' = W_down diag(s) a + sum_i t_i W_down[:, i] = W'_down a + v_l

with s = 1 and t = 0 for the units not selected: W'_down is W_down with column i multiplied by s_i, and v_l is a
constant. The block adds the MLP output to the residual stream (resid_post = resid_mid + mlp_out), so v_l is a vector
added to ``blocks.{l}.hook_resid_post`` at every position: a control vector. ``additive`` (s = 1) changes no weight;
``paper``, ``scale``, ``mean-ablate`` and ``clamp`` scale columns (by -c or 0) and add the constant part. At site
``resid`` the units are coordinates of resid_post itself, and only additive rewrites (v_l = sum_i t_i e_i) are
constant; the others are refused, as are rewrites at some positions only (``apply_to`` other than ``all``) and
architectures with a norm after the MLP (Gemma-2/3 ``post_feedforward_layernorm``: v_l would pass through it).

:func:`compile_steering` applies the exported form in-process (a bias on each steered layer's W_down, equal to a
vector at ``hook_resid_post``, and the scaled columns) and restores the weights exactly on exit.
"""

from __future__ import annotations

import weakref
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import torch
from jaxtyping import Float, Int
from torch import Tensor, nn

from steer.artifacts import content_key
from steer.interventions import Intervention, LayerEdit, neuron_edits
from steer.version import __version__

if TYPE_CHECKING:
    from steer.models import Model
    from steer.neuronset import NeuronSet

POST_MLP_NORMS = ("post_feedforward_layernorm",)  # a norm between the MLP and the residual add (Gemma-2/3)


class ExportError(ValueError):
    """The steering cannot be written in the requested form exactly; the message says why and what to do."""


@dataclass
class SteeringExport:
    """Neuron steering in exported form: per layer, a vector added after the block and the W_down columns scaled.

    ``vectors[l]`` (float32 [d_model]) is added to ``blocks.{l}.hook_resid_post`` at every position.
    ``column_scales[l]`` = (unit indices, scales) multiplies those columns of layer l's W_down (units whose scale is
    not 1; empty for additive rules). ``metadata`` is the provenance written into every exported file.
    """

    vectors: dict[int, Float[Tensor, " d_model"]]
    column_scales: dict[int, tuple[Int[Tensor, " k"], Float[Tensor, " k"]]]
    n_layers: int
    d_model: int
    model_hint: str
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def changes_weights(self) -> bool:
        """True when some W_down column is scaled (every rule but additive)."""
        return any(idx.numel() for idx, _ in self.column_scales.values())

    def layer_mass(self) -> dict[int, float]:
        """sum |v_l| per steered layer (the L1 norm of its vector)."""
        return {layer: float(v.abs().sum()) for layer, v in sorted(self.vectors.items())}

    def layer0_share(self) -> float:
        """The share of the vectors' total mass (sum |v|) at layer 0: what a llama.cpp control vector cannot carry."""
        mass = self.layer_mass()
        total = sum(mass.values())
        return mass.get(0, 0.0) / total if total > 0 else 0.0

    def without_layer0(self) -> SteeringExport:
        """The same steering without the vector at layer 0 (no longer equal to the in-process steering)."""
        vectors = {k: v for k, v in self.vectors.items() if k != 0}
        share = self.layer0_share()
        return replace(self, vectors=vectors, metadata={**self.metadata, "layer0_dropped_share": share})

    def dense(self) -> Float[Tensor, "layers d_model"]:
        """All vectors as one [n_layers, d_model] tensor (zeros where a layer is not steered)."""
        out = torch.zeros(self.n_layers, self.d_model)
        for layer, v in self.vectors.items():
            out[layer] = v
        return out


# ------------------------------------------------------------------------------------- the exported form


def check_architecture(model: Model) -> None:
    """Refuse architectures where a vector after the MLP is not the same as rewriting its units (a norm after it)."""
    names = [n for n, _ in model.bridge.original_model.named_modules()]
    found = sorted({norm for norm in POST_MLP_NORMS for n in names if n.endswith(norm)})
    if found:
        raise ExportError(
            f"model {model.name} ({model.provenance.get('architecture')}) normalizes the MLP output before the "
            f"residual add ({', '.join(found)}): a control vector after the block is not the same as rewriting the "
            "MLP's units, so this model's steering cannot be exported exactly"
        )


def output_projection(model: Model, layer: int) -> nn.Linear:
    """The ``nn.Linear`` W_down of a layer's MLP (the module whose weight is TransformerLens' ``W_out``)."""
    mlp = model.bridge.blocks[layer].mlp
    w_out = mlp.W_out
    for mod in mlp.modules():
        if isinstance(mod, nn.Linear) and mod.weight.data_ptr() == w_out.data_ptr():
            return mod
    raise ExportError(
        f"layer {layer} of {model.name} has no nn.Linear MLP output projection sharing W_out's storage: its MLP "
        "steering cannot be folded into weights"
    )


def compile_edits(model: Model, site: str, edits: Mapping[int, LayerEdit], apply_to: str = "all") -> SteeringExport:
    """The exported form of per-layer edits at a site: vectors after each block and scaled W_down columns.

    Args:
        model: the model the edits are for.
        site: ``mlp`` or ``resid``.
        edits: ``{layer: LayerEdit}`` (from :func:`steer.interventions.neuron_edits`).
        apply_to: the positions the edits rewrite; only ``all`` can be exported.

    Returns:
        The :class:`SteeringExport` (no metadata; see :func:`export_form`).
    """
    if apply_to != "all":
        raise ExportError(
            f"apply_to={apply_to!r} rewrites some positions only; a control vector acts at every position, so only "
            "apply_to='all' can be exported"
        )
    if site in ("mlp_pre", "mlp_pre_linear"):
        raise ExportError(
            f"site {site!r} rewrites the MLP before its nonlinearity, so even a constant shift is not a constant "
            "vector after the block: only mlp and resid rewrites can be exported"
        )
    if site not in ("mlp", "resid"):
        raise ExportError(f"unknown site {site!r}; exportable sites are mlp and resid")
    check_architecture(model)
    vectors: dict[int, Tensor] = {}
    scales: dict[int, tuple[Tensor, Tensor]] = {}
    for layer, edit in sorted(edits.items()):
        if not 0 <= layer < model.n_layers:
            raise ExportError(f"layer {layer} is outside the model ({model.n_layers} layers)")
        form = edit.affine
        if form is None:
            name = edit.rule.name if edit.rule is not None else "?"
            raise ExportError(f"rule {name!r} is not affine per unit (it defines no affine()): it cannot be exported")
        idx = edit.index.long()
        if idx.numel() == 0:
            continue
        if site == "resid":
            if not form.is_shift:
                raise ExportError(
                    "at site resid only additive rewrites (scale 1) are a constant vector; this rule rewrites the "
                    "residual stream's coordinates with a scale, which no control vector or weight edit expresses"
                )
            vectors[layer] = torch.zeros(model.d_model, dtype=torch.float64).index_add_(0, idx, form.shift.double())
        else:
            w_out = model.bridge.blocks[layer].mlp.W_out.detach()  # [d_mlp, d_model]
            if idx.max() >= w_out.shape[0]:
                raise ExportError(f"unit {int(idx.max())} is outside layer {layer}'s {w_out.shape[0]} MLP units")
            vectors[layer] = form.shift.double() @ w_out[idx.to(w_out.device)].double().cpu()
            keep = form.scale != 1
            if keep.any():
                scales[layer] = (idx[keep].clone(), form.scale[keep].float().clone())
    hint = getattr(model.bridge.original_model.config, "model_type", None) or str(model.provenance.get("architecture"))
    return SteeringExport({k: v.float() for k, v in vectors.items()}, scales, model.n_layers, model.d_model, str(hint))


def export_form(
    model: Model,
    neurons: NeuronSet,
    intervention: Intervention | None = None,
) -> SteeringExport:
    """Neuron steering in exported form, with the provenance every exported file carries.

    Args:
        model: the model the neuron set was found in.
        neurons: the neuron set.
        intervention: how the units are rewritten (default ``Intervention()``), as in :class:`steer.Steerer`.

    Returns:
        The :class:`SteeringExport`.
    """
    neurons.check_compatible(model)
    iv = intervention or Intervention()
    form = compile_edits(model, neurons.site, neuron_edits(neurons, iv), iv.apply_to)
    form.metadata = {
        "model": model.identity,
        "neuron_set_sha256": content_key(neurons.to_dict(), length=64),
        "proposition": neurons.proposition.get("name"),
        "site": neurons.site,
        "score": neurons.score,
        "k": neurons.k,
        **iv.describe(),
        "steer_version": __version__,
    }
    return form


# ------------------------------------------------------------------------------------ in-process (compiled)


class _Folded:
    """The compiled steering in force on one model: the original bias and columns of every W_down any context
    changed (saved before the first change), and the forms of the contexts still open, in the order they opened.
    The weights are always the originals with the open forms applied in that order, so contexts may exit in any
    order and the last one to exit restores the original weights exactly."""

    def __init__(self) -> None:
        self.bias: dict[nn.Linear, Tensor | None] = {}
        self.cols: dict[nn.Linear, dict[int, Tensor]] = {}
        self.open: list[tuple[object, SteeringExport]] = []

    def save(self, lin: nn.Linear, idx: list[int]) -> None:
        if lin not in self.bias:
            self.bias[lin] = lin.bias
            self.cols[lin] = {}
        saved = self.cols[lin]
        for i in idx:
            if i not in saved:
                saved[i] = lin.weight[:, i].detach().clone()

    def restore(self) -> None:
        for lin, bias in self.bias.items():
            lin.register_parameter("bias", bias if isinstance(bias, nn.Parameter) else None)
            for i, col in self.cols[lin].items():
                lin.weight[:, i] = col

    def apply(self, model: Model) -> None:
        """Originals, then every open form in order."""
        self.restore()
        for _, form in self.open:
            for layer in sorted(set(form.vectors) | set(form.column_scales)):
                lin = output_projection(model, layer)
                w = lin.weight
                if layer in form.column_scales:
                    idx, s = form.column_scales[layer]
                    idx_dev = idx.to(w.device)
                    w[:, idx_dev] = (w[:, idx_dev].float() * s.to(w.device)).to(w.dtype)
                if layer in form.vectors:
                    v = form.vectors[layer].to(w.device)
                    base = torch.zeros_like(v) if lin.bias is None else lin.bias.detach().float()
                    lin.bias = nn.Parameter((base + v).to(w.dtype), requires_grad=False)


_FOLDED: weakref.WeakKeyDictionary[nn.Module, _Folded] = weakref.WeakKeyDictionary()


@contextmanager
def compile_steering(model: Model, form: SteeringExport) -> Iterator[None]:
    """Apply an exported form to the model's weights in place, and restore them exactly on exit.

    Each vector becomes a bias of its layer's W_down (the MLP output feeds the residual add, so this is the vector
    at ``hook_resid_post``); scaled columns are multiplied in place. No hook is installed, so generation runs at the
    speed of the unsteered model. Contexts may be nested and may exit in any order: the original weights and
    biases are saved before the first change, and on every exit the weights become the originals with the forms
    still open applied in the order they opened; when the last one exits the model is exactly as it was.
    """
    if not isinstance(form, SteeringExport):
        raise TypeError(f"form must be a SteeringExport (steer.fold.export_form), got {type(form).__name__}")
    if form.n_layers != model.n_layers or form.d_model != model.d_model:
        raise ExportError(
            f"this steering is for {form.n_layers} layers x d_model {form.d_model}, the model has "
            f"{model.n_layers} x {model.d_model}"
        )
    if not form.vectors and not form.changes_weights:
        yield
        return
    key: nn.Module = model.bridge
    state = _FOLDED.get(key)
    if state is None:
        state = _FOLDED[key] = _Folded()
    token = object()
    try:
        with torch.no_grad():
            for layer in sorted(set(form.vectors) | set(form.column_scales)):
                lin = output_projection(model, layer)
                idx = form.column_scales[layer][0].tolist() if layer in form.column_scales else []
                state.save(lin, [int(i) for i in idx])
            state.open.append((token, form))
            state.apply(model)
        yield
    finally:
        with torch.no_grad():
            state.open = [(t, f) for t, f in state.open if t is not token]
            if state.open:
                state.apply(model)
            else:
                state.restore()
                _FOLDED.pop(key, None)


__all__ = [
    "POST_MLP_NORMS",
    "ExportError",
    "SteeringExport",
    "check_architecture",
    "compile_edits",
    "compile_steering",
    "export_form",
    "output_projection",
]
