"""The GGUF control vector: one added vector per block, as llama.cpp, repeng and EasySteer read and write it.

``general.architecture = "controlvector"``, ``controlvector.model_hint`` (the HF ``model_type``),
``controlvector.layer_count`` (the number of direction tensors), and one F32 1-D tensor ``direction.{k}`` of length
n_embd for every block k = 1 .. n_layers - 1, added to the output of 0-based block k at every position (llama.cpp:
``common_control_vector_load_one`` in ``common/common.cpp``, ``llama_adapter_cvec`` in ``src/llama-adapter.cpp``).
llama.cpp rejects the whole file when it holds ``direction.0``, so steering at layer 0 is refused unless dropped on
purpose. Our provenance rides along as ``steer.*`` keys. :mod:`steer.export` writes the other formats.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from jaxtyping import Float
from torch import Tensor

from steer.artifacts import atomic_file, check_replaceable
from steer.fold import ExportError, SteeringExport

CONTROL_VECTOR_ARCH = "controlvector"


def check_layer0(form: SteeringExport, drop_layer_0: bool, what: str) -> SteeringExport:
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


def flat_metadata(metadata: Mapping[str, Any]) -> dict[str, str]:
    out = {}
    for k, v in metadata.items():
        if isinstance(v, Mapping):
            out.update({f"{k}.{kk}": vv for kk, vv in flat_metadata(v).items()})
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

    form = check_layer0(form, drop_layer_0, "llama.cpp")
    path = Path(path)
    check_replaceable(path, "the control vector", folder=False)
    check_finite(form)
    layers = list(range(1, form.n_layers))
    dense = form.dense()
    with atomic_file(path) as tmp:
        writer = gguf.GGUFWriter(str(tmp), CONTROL_VECTOR_ARCH)
        writer.add_string(f"{CONTROL_VECTOR_ARCH}.model_hint", form.model_hint)
        writer.add_uint32(f"{CONTROL_VECTOR_ARCH}.layer_count", len(layers))
        for key, value in sorted(flat_metadata(form.metadata).items()):
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
        ExportError: not a control vector, a tensor that is not F32 and 1-D, unequal lengths, ``direction.0``, or
            NaN or infinite values.
    """
    import gguf

    from steer.artifacts import read_regular_bytes

    try:
        read_regular_bytes(path, "control vector", limit=4)  # a FIFO or a folder fails here, never blocks
    except ValueError as e:
        raise ExportError(str(e)) from None
    try:
        reader = gguf.GGUFReader(str(path))
    except Exception as e:  # gguf raises ValueError, struct.error, numpy errors... on a file that is not GGUF
        raise ExportError(f"{path} is not a readable GGUF control vector ({type(e).__name__}: {e})") from None

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
        if not bool(torch.isfinite(vectors[k]).all()):
            raise ExportError(f"{path}: {t.name} holds NaN or infinite values; it would break every generation")
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


def check_finite(form: SteeringExport) -> None:
    """Refuse an exported form with a NaN or infinite vector or column scale (nothing is written)."""
    for k, v in form.vectors.items():
        if not bool(torch.isfinite(v).all()):
            raise ExportError(f"the steering vector of layer {k} holds NaN or infinite values; nothing was written")
    for k, (_, s) in form.column_scales.items():
        if not bool(torch.isfinite(s).all()):
            raise ExportError(f"the column scales of layer {k} hold NaN or infinite values; nothing was written")
