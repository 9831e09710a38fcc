"""Export: neuron steering as a control vector, as direction files and as an edited checkpoint, exactly.

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

**Formats** (:data:`FORMATS`):

- ``control-vector``: a GGUF file as llama.cpp reads it (``--control-vector``; ``common_control_vector_load_one`` in
  ``common/common.cpp``, ``llama_adapter_cvec`` in ``src/llama-adapter.cpp``) and as repeng and EasySteer write and
  read it: ``general.architecture = "controlvector"``, ``controlvector.model_hint`` (the HF ``model_type``),
  ``controlvector.layer_count`` (the number of direction tensors), and one F32 1-D tensor ``direction.{k}`` of length
  n_embd for every block k = 1 .. n_layers - 1, added to the output of 0-based block k at every position. llama.cpp
  rejects the whole file when it holds ``direction.0`` (block 0's output is never steerable there), so steering at
  layer 0 is refused unless dropped on purpose. Our provenance rides along as ``steer.*`` keys.
- ``pt``: a directory for EasySteer (vLLM) and anything that reads plain tensors: ``layer_{k}.pt`` (one 1-D float32
  tensor each, EasySteer's ``.pt`` form: one file per target layer), ``directions.safetensors`` (``direction.{k}``
  for every steered layer, layer 0 included), ``easysteer.json`` (the multi-vector request: path, scale 1,
  ``target_layers`` [k]) and ``steer_export.json``.
- ``model``: an edited Hugging Face checkpoint (safetensors + config + tokenizer, loadable by plain ``transformers``)
  with the columns scaled, and the constant part beside it as ``control_vector.gguf``. Serve the pair: the checkpoint
  with llama.cpp (after ``convert_hf_to_gguf.py``) and ``--control-vector control_vector.gguf``, or with transformers
  and :func:`control_vector_hooks`.

:func:`compile_steering` applies the same exported form in-process (a bias on each steered layer's W_down, equal to a
vector at ``hook_resid_post``, and the scaled columns) with no hook at all: ``Steerer(..., compiled=True)``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from jaxtyping import Float, Int
from torch import Tensor, nn

from steer.artifacts import atomic_dir, atomic_file, content_key
from steer.interventions import Direction, Intervention, LayerEdit, Rule, neuron_edits

if TYPE_CHECKING:
    from steer.models import Model
    from steer.neurons import NeuronSet

FORMATS: tuple[str, ...] = ("control-vector", "pt", "model")
CONTROL_VECTOR_ARCH = "controlvector"
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
    rule: str | Rule = "additive",
    coeff: float | None = None,
    direction: Direction = "toward",
    apply_to: str = "all",
) -> SteeringExport:
    """Neuron steering in exported form, with the provenance every exported file carries.

    Args:
        model: the model the neuron set was found in.
        neurons: the neuron set.
        rule, coeff, direction, apply_to: the intervention (as in :class:`steer.Steerer`).

    Returns:
        The :class:`SteeringExport`.
    """
    from steer import __version__

    neurons.check_compatible(model)
    iv = Intervention(rule, coeff, direction, apply_to)
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


@contextmanager
def compile_steering(model: Model, form: SteeringExport) -> Iterator[None]:
    """Apply an exported form to the model's weights in place, and restore them exactly on exit.

    Each vector becomes a bias of its layer's W_down (the MLP output feeds the residual add, so this is the vector
    at ``hook_resid_post``); scaled columns are multiplied in place. No hook is installed, so generation runs at the
    speed of the unsteered model. Contexts may be nested; they must exit in reverse order.
    """
    if form.n_layers != model.n_layers or form.d_model != model.d_model:
        raise ExportError(
            f"this steering is for {form.n_layers} layers x d_model {form.d_model}, the model has "
            f"{model.n_layers} x {model.d_model}"
        )
    if not form.vectors and not form.changes_weights:
        yield
        return
    undo: list[tuple[nn.Linear, Tensor | None, Tensor | None, Tensor | None]] = []
    try:
        with torch.no_grad():
            for layer in sorted(set(form.vectors) | set(form.column_scales)):
                lin = output_projection(model, layer)
                w = lin.weight
                old_bias: Tensor | None = lin.bias
                idx_dev = cols = None
                if layer in form.column_scales:
                    idx, s = form.column_scales[layer]
                    idx_dev = idx.to(w.device)
                    cols = w[:, idx_dev].clone()
                    w[:, idx_dev] = (cols.float() * s.to(w.device)).to(w.dtype)
                undo.append((lin, old_bias, idx_dev, cols))
                if layer in form.vectors:
                    v = form.vectors[layer].to(w.device)
                    base = torch.zeros_like(v) if old_bias is None else old_bias.detach().float()
                    lin.bias = nn.Parameter((base + v).to(w.dtype), requires_grad=False)
        yield
    finally:
        with torch.no_grad():
            for lin, old_bias, idx_dev, cols in reversed(undo):
                lin.register_parameter("bias", old_bias if isinstance(old_bias, nn.Parameter) else None)
                if idx_dev is not None and cols is not None:
                    lin.weight[:, idx_dev] = cols


# -------------------------------------------------------------------------------------------- file formats


def _check_layer0(form: SteeringExport, drop_layer_0: bool, what: str) -> SteeringExport:
    v0 = form.vectors.get(0)
    if v0 is None or not bool(v0.abs().sum() > 0):
        return replace(form, vectors={k: v for k, v in form.vectors.items() if k != 0})
    share = form.layer0_share()
    if drop_layer_0:
        return form.without_layer0()
    raise ExportError(
        f"{share:.1%} of this steering's mass (sum |v| over layers) is at layer 0, which {what} never applies "
        "(llama.cpp rejects a direction.0 tensor): select units without layer 0 (steer export --skip-layer-0; "
        "steer.generate(..., layers=range(1, n_layers))) so exported and in-process steering are the same thing, "
        "or drop it knowingly (--drop-layer-0)"
    )


def _flat_metadata(metadata: Mapping[str, Any]) -> dict[str, str]:
    out = {}
    for k, v in metadata.items():
        if isinstance(v, Mapping):
            out.update({f"{k}.{kk}": vv for kk, vv in _flat_metadata(v).items()})
        elif v is not None:
            out[k] = v if isinstance(v, str) else json.dumps(v)
    return out


def write_control_vector(form: SteeringExport, path: str | os.PathLike[str], drop_layer_0: bool = False) -> Path:
    """Write the vectors as a llama.cpp / repeng / EasySteer GGUF control vector (atomically).

    Args:
        form: the exported form. Its column scales are not part of a control vector: a form that changes weights
            needs the edited checkpoint as well (format ``model``).
        path: the ``.gguf`` file to write.
        drop_layer_0: write the file even though layer 0 is steered (its vector is dropped, and the file says how
            much of the mass that was); by default that is an error.

    Returns:
        The path.
    """
    import gguf

    form = _check_layer0(form, drop_layer_0, "llama.cpp")
    path = Path(path)
    layers = list(range(1, form.n_layers))
    dense = form.dense()
    with atomic_file(path) as tmp:
        writer = gguf.GGUFWriter(str(tmp), CONTROL_VECTOR_ARCH)
        writer.add_string(f"{CONTROL_VECTOR_ARCH}.model_hint", form.model_hint)
        writer.add_uint32(f"{CONTROL_VECTOR_ARCH}.layer_count", len(layers))
        for key, value in sorted(_flat_metadata(form.metadata).items()):
            writer.add_string(f"steer.{key}", value)
        writer.add_string("steer.changes_weights", json.dumps(form.changes_weights))
        for k in layers:
            writer.add_tensor(f"direction.{k}", dense[k].numpy().astype(np.float32))
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()
    return path


@dataclass(frozen=True)
class ControlVectorFile:
    """A control vector read back from GGUF: the vectors by block, the model hint and every metadata string."""

    vectors: dict[int, Float[Tensor, " d_model"]]
    model_hint: str
    layer_count: int
    metadata: dict[str, str]


def read_control_vector(path: str | os.PathLike[str]) -> ControlVectorFile:
    """Read a GGUF control vector (ours, repeng's or llama.cpp's), checking it the way llama.cpp does.

    Raises:
        ExportError: not a control vector, a tensor that is not F32 and 1-D, unequal lengths, or ``direction.0``.
    """
    import gguf

    reader = gguf.GGUFReader(str(path))

    def text(key: str) -> str | None:
        f = reader.get_field(key)
        return None if f is None else str(bytes(f.parts[-1]), encoding="utf-8")

    arch = text("general.architecture")
    if arch != CONTROL_VECTOR_ARCH:
        raise ExportError(f"{path} is not a control vector (general.architecture is {arch!r})")
    count = reader.get_field(f"{CONTROL_VECTOR_ARCH}.layer_count")
    vectors: dict[int, Tensor] = {}
    n_embd = None
    for t in reader.tensors:
        prefix, _, index = t.name.partition(".")
        if prefix != "direction" or not index.isdigit():
            raise ExportError(f"{path}: tensor {t.name!r} is not named direction.<layer>")
        k = int(index)
        if k == 0:
            raise ExportError(f"{path}: direction.0 (llama.cpp rejects the whole file)")
        if t.tensor_type != gguf.GGMLQuantizationType.F32 or len(t.shape) != 1:
            raise ExportError(f"{path}: {t.name} must be a 1-D F32 tensor")
        if n_embd is not None and int(t.n_elements) != n_embd:
            raise ExportError(f"{path}: {t.name} has {int(t.n_elements)} values, the others {n_embd}")
        n_embd = int(t.n_elements)
        vectors[k] = torch.from_numpy(np.array(t.data, dtype=np.float32, copy=True))
    metadata = {}
    for key in reader.fields:
        if key.startswith("steer."):
            metadata[key.removeprefix("steer.")] = text(key) or ""
    return ControlVectorFile(
        vectors,
        text(f"{CONTROL_VECTOR_ARCH}.model_hint") or "",
        int(count.parts[-1][0]) if count is not None else len(vectors),
        metadata,
    )


def write_direction_files(form: SteeringExport, out: str | os.PathLike[str]) -> Path:
    """Write the vectors for EasySteer and plain-tensor readers into a new directory ``out`` (atomically).

    Layer 0 is included (EasySteer steers any decoder layer's output). Column scales are not expressible here.
    """
    from safetensors.torch import save_file

    if form.changes_weights:
        raise ExportError(
            "this rule scales MLP weights; direction files carry only vectors. Export --format model (the edited "
            "checkpoint with its control vector) instead"
        )
    out = Path(out)
    with atomic_dir(out) as tmp:
        requests = []
        for k, v in sorted(form.vectors.items()):
            torch.save(v.clone(), tmp / f"layer_{k}.pt")
            requests.append({"path": f"layer_{k}.pt", "scale": 1.0, "target_layers": [k], "algorithm": "direct"})
        tensors = {f"direction.{k}": v.contiguous() for k, v in sorted(form.vectors.items())}
        save_file(tensors, str(tmp / "directions.safetensors"), metadata=_flat_metadata(form.metadata))
        (tmp / "easysteer.json").write_text(json.dumps({"vectors": requests}, indent=1) + "\n")
        (tmp / "steer_export.json").write_text(json.dumps(_manifest(form, "pt"), indent=1, default=str) + "\n")
    return out


def hf_state_dict(model: Model) -> dict[str, Tensor]:
    """The model's weights under plain Hugging Face names (TransformerLens' wrapping removed)."""
    sd = model.bridge.original_model.state_dict()
    return {k.replace("._original_component", ""): v for k, v in sd.items()}


def _param_name(model: Model, param: Tensor) -> str:
    for name, p in model.bridge.original_model.named_parameters(remove_duplicate=False):
        if p.data_ptr() == param.data_ptr() and p.shape == param.shape:
            return name.replace("._original_component", "")
    raise ExportError("the MLP output projection is not a parameter of the Hugging Face model")


def write_edited_model(
    model: Model, form: SteeringExport, out: str | os.PathLike[str], drop_layer_0: bool = False
) -> Path:
    """Write the edited checkpoint (scaled W_down columns) with its constant part as ``control_vector.gguf``.

    The directory loads with plain ``transformers`` (``AutoModelForCausalLM.from_pretrained(out)``); adding the
    control vector to block outputs (llama.cpp ``--control-vector``, or :func:`control_vector_hooks`) gives the
    steered model.
    """
    from transformers import AutoModelForCausalLM

    checked = _check_layer0(form, drop_layer_0, "llama.cpp")
    sd = {k: v.detach().clone() for k, v in hf_state_dict(model).items()}
    for layer, (idx, s) in form.column_scales.items():
        name = _param_name(model, output_projection(model, layer).weight)
        w = sd[name]
        w[:, idx.to(w.device)] = (w[:, idx.to(w.device)].float() * s.to(w.device)).to(w.dtype)
    config = model.bridge.original_model.config
    out = Path(out)
    with atomic_dir(out) as tmp:
        fresh = AutoModelForCausalLM.from_config(config, dtype=model.dtype)
        wanted = fresh.state_dict()
        missing = [k for k in wanted if k not in sd]  # the bridge's own aliases (ln1, attn...) are extra, not missing
        if missing:
            raise ExportError(f"the weights do not map onto a fresh {type(fresh).__name__}: missing {missing[:5]}")
        fresh.load_state_dict({k: sd[k] for k in wanted}, strict=True)
        fresh.save_pretrained(tmp, safe_serialization=True)
        model.tokenizer.save_pretrained(tmp)
        write_control_vector(checked, tmp / "control_vector.gguf", drop_layer_0=drop_layer_0)
        (tmp / "steer_export.json").write_text(json.dumps(_manifest(checked, "model"), indent=1, default=str) + "\n")
    return out


def _manifest(form: SteeringExport, fmt: str) -> dict[str, Any]:
    return {
        "kind": "steer_export",
        "format": fmt,
        "model_hint": form.model_hint,
        "n_layers": form.n_layers,
        "d_model": form.d_model,
        "vector_layers": sorted(form.vectors),
        "layer_mass": form.layer_mass(),
        "scaled_columns": {str(k): len(idx) for k, (idx, _) in sorted(form.column_scales.items())},
        "provenance": form.metadata,
    }


def export_steering(
    model: Model,
    neurons: NeuronSet,
    fmt: str,
    out: str | os.PathLike[str],
    *,
    rule: str | Rule = "additive",
    coeff: float | None = None,
    direction: Direction = "toward",
    drop_layer_0: bool = False,
) -> Path:
    """Export a neuron set's steering to ``out`` in format ``fmt`` (see the module doc).

    Args:
        model: the model the neuron set was found in.
        neurons: the neuron set.
        fmt: ``control-vector`` (a .gguf file), ``pt`` (a directory) or ``model`` (a directory).
        out: where to write.
        rule, coeff, direction: the intervention.
        drop_layer_0: export although layer 0 is steered (inexact; see :func:`write_control_vector`).

    Returns:
        The path written.
    """
    if fmt not in FORMATS:
        raise ExportError(f"unknown format {fmt!r}; use one of {', '.join(FORMATS)}")
    return write_export(model, export_form(model, neurons, rule, coeff, direction), fmt, out, drop_layer_0)


def write_export(
    model: Model, form: SteeringExport, fmt: str, out: str | os.PathLike[str], drop_layer_0: bool = False
) -> Path:
    """Write an exported form (from :func:`export_form`) to ``out`` in format ``fmt``; see :func:`export_steering`."""
    if fmt not in FORMATS:
        raise ExportError(f"unknown format {fmt!r}; use one of {', '.join(FORMATS)}")
    if fmt == "control-vector":
        if form.changes_weights:
            raise ExportError(
                f"rule {form.metadata.get('rule')!r} scales MLP weights, which a control vector cannot do: export "
                "--format model (the edited checkpoint with its control vector), or use the additive rule"
            )
        return write_control_vector(form, out, drop_layer_0)
    if fmt == "pt":
        return write_direction_files(form, out)
    return write_edited_model(model, form, out, drop_layer_0)


# --------------------------------------------------------------------------------- replay in transformers


@contextmanager
def control_vector_hooks(hf_model: nn.Module, vectors: Mapping[int, Tensor]) -> Iterator[None]:
    """Add ``vectors[k]`` to the output of decoder layer k of a plain transformers model (what llama.cpp does with
    a control vector), and remove the hooks on exit."""
    layers = _decoder_layers(hf_model)
    handles = []

    def adder(v: Tensor) -> Any:
        def hook(module: nn.Module, args: Any, output: Any) -> Any:
            if isinstance(output, tuple):
                return (output[0] + v.to(output[0].device, output[0].dtype), *output[1:])
            return output + v.to(output.device, output.dtype)

        return hook

    try:
        for k, v in vectors.items():
            if not 0 <= k < len(layers):
                raise ExportError(f"layer {k} is outside the model's {len(layers)} decoder layers")
            handles.append(layers[k].register_forward_hook(adder(v)))
        yield
    finally:
        for h in handles:
            h.remove()


def _decoder_layers(hf_model: nn.Module) -> nn.ModuleList:
    for path in ("model.layers", "transformer.h", "gpt_neox.layers", "model.decoder.layers"):
        mod: Any = hf_model
        for part in path.split("."):
            mod = getattr(mod, part, None)
            if mod is None:
                break
        if isinstance(mod, nn.ModuleList):
            return mod
    raise ExportError(f"cannot find the decoder layers of {type(hf_model).__name__}")


def relative_error(a: Tensor, b: Tensor) -> float:
    """max |a - b| / max |b| (the exactness measure of the export tests)."""
    scale = float(b.abs().max())
    return float((a - b).abs().max()) / (scale if scale > 0 else 1.0) if a.numel() else 0.0


__all__ = [
    "CONTROL_VECTOR_ARCH",
    "FORMATS",
    "ControlVectorFile",
    "ExportError",
    "SteeringExport",
    "check_architecture",
    "compile_edits",
    "compile_steering",
    "control_vector_hooks",
    "export_form",
    "export_steering",
    "hf_state_dict",
    "output_projection",
    "read_control_vector",
    "relative_error",
    "write_control_vector",
    "write_direction_files",
    "write_edited_model",
    "write_export",
]
