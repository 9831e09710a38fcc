"""Export: neuron steering as a control vector, as direction files and as an edited checkpoint, exactly.

Data flow: prompt set -> worlds -> recorded activations -> strengths -> selected units -> intervention ->
**steered generation** (outside this process). This module writes the exported form of a neuron set's steering
(:class:`steer.fold.SteeringExport`: per layer a vector added after the block and scaled W_down columns; the math
is in :mod:`steer.fold`) in files other engines read, and replays one in plain
transformers (:func:`control_vector_hooks`).

**Formats** (:data:`FORMATS`):

- ``control-vector``: a GGUF file as llama.cpp reads it (``--control-vector``) and as repeng and EasySteer write and
  read it; the format, its reader and writer are in :mod:`steer.control_vector` (re-exported here). Steering at
  layer 0 is refused unless dropped on purpose (llama.cpp never applies it).
- ``pt``: a directory for EasySteer (vLLM) and anything that reads plain tensors: ``layer_{k}.pt`` (one 1-D float32
  tensor each, EasySteer's ``.pt`` form: one file per target layer), ``directions.safetensors`` (``direction.{k}``
  for every steered layer, layer 0 included), ``easysteer.json`` (the multi-vector request: path, scale 1,
  ``target_layers`` [k]) and ``steer_export.json``.
- ``gguf`` (a model loaded from a ``.gguf`` file): the same pair for llama.cpp directly, ``model.gguf`` (a copy of
  the model's GGUF with the scaled columns of each steered layer's ffn_down, as F32) and ``control_vector.gguf``;
  see :mod:`steer.export_gguf`.
- ``model``: an edited Hugging Face checkpoint (safetensors + config + tokenizer, loadable by plain ``transformers``)
  with the columns scaled, and the constant part beside it as ``control_vector.gguf``. Serve the pair: the checkpoint
  with llama.cpp (after ``convert_hf_to_gguf.py``) and ``--control-vector control_vector.gguf``, or with transformers
  and :func:`control_vector_hooks`.

:func:`steer.fold.compile_steering` applies the same exported form in-process (a bias on each steered layer's W_down,
equal to a vector at ``hook_resid_post``, and the scaled columns) with no hook at all: ``Steerer(..., compiled=True)``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn

from steer.artifacts import atomic_dir, check_replaceable
from steer.control_vector import (
    CONTROL_VECTOR_ARCH,
    ControlVectorFile,
    check_finite,
    check_layer0,
    flat_metadata,
    read_control_vector,
    write_control_vector,
)
from steer.export_manifest import manifest as _manifest
from steer.export_manifest import verify_export, write_manifest  # noqa: F401 - verify_export is public here too
from steer.fold import ExportError, SteeringExport, export_form, output_projection
from steer.names import EXPORT_FORMATS as FORMATS

if TYPE_CHECKING:
    from steer.interventions import Intervention
    from steer.models import Model
    from steer.neuronset import NeuronSet


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
    check_replaceable(out, "the export folder")
    check_finite(form)
    with atomic_dir(out) as tmp:
        requests = []
        for k, v in sorted(form.vectors.items()):
            torch.save(v.clone(), tmp / f"layer_{k}.pt")
            requests.append({"path": f"layer_{k}.pt", "scale": 1.0, "target_layers": [k], "algorithm": "direct"})
        tensors = {f"direction.{k}": v.contiguous() for k, v in sorted(form.vectors.items())}
        save_file(tensors, str(tmp / "directions.safetensors"), metadata=flat_metadata(form.metadata))
        (tmp / "easysteer.json").write_text(json.dumps({"vectors": requests}, indent=1) + "\n")
        write_manifest(tmp, _manifest(form, "pt"))
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

    checked = check_layer0(form, drop_layer_0, "llama.cpp")
    check_replaceable(out, "the export folder")
    check_finite(form)
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
        write_manifest(tmp, _manifest(checked, "model"))
    return out


def export_steering(
    model: Model,
    neurons: NeuronSet,
    fmt: str,
    out: str | os.PathLike[str],
    intervention: Intervention | None = None,
    *,
    drop_layer_0: bool = False,
) -> Path:
    """Export a neuron set's steering to ``out`` in format ``fmt`` (see the module doc).

    Args:
        model: the model the neuron set was found in.
        neurons: the neuron set.
        fmt: ``control-vector`` (a .gguf file), ``pt``, ``model`` or ``gguf`` (a directory).
        out: where to write.
        intervention: how the units are rewritten (default ``Intervention()``; ``apply_to`` must be ``all``).
        drop_layer_0: export although layer 0 is steered (inexact; see :func:`write_control_vector`).

    Returns:
        The path written.
    """
    from steer.models import Model
    from steer.neuronset import NeuronSet

    if not isinstance(model, Model):
        raise TypeError(f"model must be a steer Model (steer.load_model(...)), got {type(model).__name__}")
    if not isinstance(neurons, NeuronSet):
        raise TypeError(f"neurons must be a steer.NeuronSet, got {type(neurons).__name__}")
    _check_target(fmt, out)
    return write_export(model, export_form(model, neurons, intervention), fmt, out, drop_layer_0)


def _check_target(fmt: Any, out: Any) -> None:
    if not isinstance(fmt, str) or fmt not in FORMATS:
        raise ExportError(f"unknown format {fmt!r}; use one of {', '.join(FORMATS)}")
    if not isinstance(out, (str, os.PathLike)) or not str(out):
        raise TypeError(f"out must be a path, got {out!r}")
    check_replaceable(
        out, "the control vector" if fmt == "control-vector" else "the export folder", folder=fmt != "control-vector"
    )


def write_export(
    model: Model, form: SteeringExport, fmt: str, out: str | os.PathLike[str], drop_layer_0: bool = False
) -> Path:
    """Write an exported form (from :func:`steer.fold.export_form`) to ``out`` in format ``fmt``; see
    :func:`export_steering`."""
    _check_target(fmt, out)
    if fmt == "control-vector":
        if form.changes_weights:
            raise ExportError(
                f"rule {form.metadata.get('rule')!r} scales MLP weights, which a control vector cannot do: export "
                "--format model or gguf (the edited weights with their control vector), or use the additive rule"
            )
        return write_control_vector(form, out, drop_layer_0)
    if fmt == "pt":
        return write_direction_files(form, out)
    if fmt == "gguf":
        from steer.export_gguf import write_edited_gguf

        return write_edited_gguf(model, form, out, drop_layer_0)
    return write_edited_model(model, form, out, drop_layer_0)


# --------------------------------------------------------------------------------- replay in transformers


@contextmanager
def control_vector_hooks(hf_model: nn.Module, vectors: Mapping[int, Tensor]) -> Iterator[None]:
    """Add ``vectors[k]`` to the output of decoder layer k of a plain transformers model (what llama.cpp does with
    a control vector), and remove the hooks on exit."""
    layers = _decoder_layers(hf_model)
    handles = []
    for k, v in vectors.items():
        if not isinstance(v, Tensor) or v.ndim != 1 or not bool(torch.isfinite(v).all()):
            raise ExportError(f"the vector for layer {k} must be a finite 1-D tensor")

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
    "control_vector_hooks",
    "export_steering",
    "hf_state_dict",
    "read_control_vector",
    "relative_error",
    "write_control_vector",
    "write_direction_files",
    "write_edited_model",
    "write_export",
]
