"""Export into the model's own GGUF file, for llama.cpp: the steered layers' W_down columns scaled in a copy of it.

A rule with a scale (the transport rules: a' = s·a + t per unit) changes MLP weights, which a control vector cannot
carry. When the model was loaded from a ``.gguf`` file, the ``gguf`` format writes a folder with

- ``model.gguf``: a copy of that file in which every steered layer's ``blk.{l}.ffn_down.weight`` is de-quantized
  (as ``transformers`` de-quantizes it for ``steer``), its columns scaled, and stored as F32; every other tensor is
  copied byte for byte and every metadata field with its value and type;
- ``control_vector.gguf``: the constant part, as the ``control-vector`` format writes it;
- ``steer_export.json``: the manifest (sha256 of both files and of the source GGUF).

Serve the pair with ``llama-cli -m model.gguf --control-vector control_vector.gguf``. A model loaded from a hub id or
a checkpoint folder has no GGUF to edit: export ``--format model`` and convert it with llama.cpp's
``convert_hf_to_gguf.py``.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from torch import Tensor

from steer.artifacts import atomic_dir, check_replaceable
from steer.cache import file_sha256
from steer.control_vector import check_finite, check_layer0, write_control_vector
from steer.export_manifest import manifest, write_manifest
from steer.fold import ExportError, SteeringExport

if TYPE_CHECKING:
    from steer.models import Model

FFN_DOWN = re.compile(r"^blk\.(\d+)\.ffn_down\.weight$")


def source_gguf(model: Model) -> Path:
    """The GGUF file ``model`` was loaded from, checked against the sha256 it was loaded with."""
    prov = model.provenance
    if prov.get("source") != "gguf":
        raise ExportError(
            f"--format gguf edits the .gguf file the model was loaded from, and {model.name} was not loaded from one: "
            "export --format model and convert it with llama.cpp's convert_hf_to_gguf.py"
        )
    path = Path(str(prov.get("path")))
    if not path.is_file():
        raise ExportError(f"the model's GGUF file {path} is gone; load the model again from its .gguf file")
    if prov.get("sha256") and file_sha256(path) != prov["sha256"]:
        raise ExportError(f"{path} changed since the model was loaded from it (sha256 differs); load it again")
    return path


def edit_gguf(source: Path, column_scales: Mapping[int, tuple[Tensor, Tensor]], out: Path) -> None:
    """Copy ``source`` to ``out`` with the columns ``idx`` of layer l's ffn_down multiplied by ``s`` (F32) for
    every ``l: (idx, s)``; every other tensor and metadata field is copied as it is."""
    from gguf import GGMLQuantizationType, GGUFEndian, GGUFReader, GGUFValueType, GGUFWriter, Keys
    from gguf.quants import dequantize

    reader = GGUFReader(str(source))
    if reader.endianess != GGUFEndian.LITTLE or sys.byteorder != "little":
        raise ExportError(f"{source} is a big-endian GGUF (or this machine is): only little-endian files are edited")
    arch_field = reader.fields[Keys.General.ARCHITECTURE]
    writer = GGUFWriter(str(out), arch=str(arch_field.contents()), endianess=reader.endianess)
    alignment = reader.fields.get(Keys.General.ALIGNMENT)
    if alignment is not None:
        writer.data_alignment = int(alignment.contents())
    for field in reader.fields.values():
        if field.name == Keys.General.ARCHITECTURE or field.name.startswith("GGUF."):
            continue  # virtual fields, and the one GGUFWriter writes itself
        kind = field.types[0]
        sub = field.types[-1] if kind == GGUFValueType.ARRAY else None
        writer.add_key_value(field.name, field.contents(), kind, sub_type=sub)
    edited, found = {}, set()
    for t in reader.tensors:
        m = FFN_DOWN.match(t.name)
        if m and int(m[1]) in column_scales:
            edited[t.name] = column_scales[int(m[1])]
            found.add(int(m[1]))
            shape = tuple(int(n) for n in reversed(t.shape))  # GGUF lists ne0 (d_mlp) first; numpy [d_model, d_mlp]
            writer.add_tensor_info(
                t.name, shape, np.dtype(np.float32), 4 * int(np.prod(shape)), GGMLQuantizationType.F32
            )
        else:
            writer.add_tensor_info(t.name, t.data.shape, t.data.dtype, t.data.nbytes, t.tensor_type)
    missing = sorted(set(column_scales) - found)
    if missing:
        raise ExportError(f"{source} has no blk.N.ffn_down.weight for layer(s) {missing}")
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_ti_data_to_file()
    for t in reader.tensors:  # one edited layer in memory at a time
        if t.name in edited:
            idx, s = edited[t.name]
            w = np.array(dequantize(t.data, t.tensor_type), dtype=np.float32)  # [d_model, d_mlp], as torch has it
            cols = idx.long().numpy()
            w[:, cols] = (w[:, cols] * s.float().numpy()).astype(np.float32)
            writer.write_tensor_data(w)
        else:
            writer.write_tensor_data(t.data)
    writer.close()


def write_edited_gguf(
    model: Model, form: SteeringExport, out: str | os.PathLike[str], drop_layer_0: bool = False
) -> Path:
    """Write ``model.gguf`` (the model's GGUF with the scaled W_down columns) and ``control_vector.gguf`` to the
    folder ``out`` (see the module doc); nothing is left half-written."""
    source = source_gguf(model)
    checked = check_layer0(form, drop_layer_0, "llama.cpp")
    check_replaceable(out, "the export folder")
    check_finite(form)
    out = Path(out)
    with atomic_dir(out) as tmp:
        edit_gguf(source, checked.column_scales, tmp / "model.gguf")
        write_control_vector(checked, tmp / "control_vector.gguf", drop_layer_0=drop_layer_0)
        write_manifest(
            tmp,
            {**manifest(checked, "gguf"), "source_gguf": source.name, "source_sha256": model.provenance.get("sha256")},
        )
    return out
