"""--format gguf: the model's own GGUF with the steered layers' ffn_down columns scaled, and the control vector beside
it. On the bundled model (a Q4_1 GGUF): every other tensor is copied byte for byte and every metadata field with its type, the edited
tensors are the de-quantized weights with their columns scaled, and the edited file, loaded back through
transformers with its control vector, steers exactly as the hooks do."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from gguf import GGMLQuantizationType, GGUFReader
from gguf.quants import dequantize

from steer import Intervention, Steerer, Worlds, record
from steer.cli import main
from steer.export import control_vector_hooks, export_steering, read_control_vector, relative_error, verify_export
from steer.fold import ExportError, export_form
from steer.models import load_model
from tests.conftest import labelled_corpus
from tests.test_export import TOL, bundled_sets, logits  # noqa: F401 (bundled_sets is a fixture)

RULE = Intervention("linear-transport", 1.5)


def test_the_edited_gguf_copies_everything_but_the_scaled_columns(bundled, bundled_sets, tmp_path):  # noqa: F811
    ns = bundled_sets.head(100)
    out = export_steering(bundled, ns, "gguf", tmp_path / "edited", RULE)
    body = verify_export(out)
    assert body["format"] == "gguf" and body["source_sha256"] == bundled.provenance["sha256"]
    form = export_form(bundled, ns, RULE)
    assert form.column_scales and set(body["scaled_columns"]) == {str(k) for k in form.column_scales}
    before = GGUFReader(bundled.provenance["path"])
    after = GGUFReader(str(out / "model.gguf"))
    def fields(reader):
        return {f.name: (f.types, f.contents()) for f in reader.fields.values() if not f.name.startswith("GGUF.")}

    assert fields(after) == fields(before)
    edited = {f"blk.{k}.ffn_down.weight": v for k, v in form.column_scales.items()}
    assert [t.name for t in after.tensors] == [t.name for t in before.tensors]
    for a, b in zip(before.tensors, after.tensors):
        if a.name not in edited:
            assert b.tensor_type == a.tensor_type and np.array_equal(np.asarray(b.data), np.asarray(a.data)), a.name
            continue
        idx, s = edited[a.name]
        want = np.array(dequantize(a.data, a.tensor_type), dtype=np.float32)
        want[:, idx.numpy()] *= s.numpy()
        assert b.tensor_type == GGMLQuantizationType.F32 and np.array_equal(np.asarray(b.data), want), a.name


def test_the_edited_gguf_with_its_control_vector_steers_as_the_hooks_do(bundled, bundled_sets, tmp_path, capsys):  # noqa: F811
    ns = bundled_sets.head(100)
    path = ns.save(tmp_path / "positive.json")
    out = tmp_path / "edited"
    rc = main(["export", str(path), "--model", "bundled", "--rule", "linear-transport", "--coeff", "1.5", "--format",
               "gguf", "--out", str(out)])
    assert rc == 0, capsys.readouterr().err
    assert "model.gguf --control-vector" in capsys.readouterr().out
    edited = load_model(str(out / "model.gguf"))
    assert edited.provenance["sha256"] != bundled.provenance["sha256"]
    cv = read_control_vector(out / "control_vector.gguf")
    ids, mask = bundled.tokenize(["The weather today is", "Our new neighbours are"])
    real = mask.bool()
    with Steerer(bundled, ns, RULE):
        hooked = logits(bundled, ids, mask)
    with torch.no_grad(), control_vector_hooks(edited.bridge.original_model, cv.vectors):
        replayed = edited.bridge.original_model(ids, attention_mask=mask).logits
    assert relative_error(replayed[real], hooked[real]) < TOL
    assert relative_error(hooked[real], logits(bundled, ids, mask)[real]) > 1e-3  # it steers
    assert json.loads((out / "steer_export.json").read_text())["provenance"]["rule"] == "linear-transport"


def test_a_model_not_loaded_from_a_gguf_is_refused(tiny_model, tmp_path):
    w = Worlds.from_records(labelled_corpus(2))
    ns = record(tiny_model, w, site="mlp", reduce="mean", progress=False).strength(w.proposition("positive")).top(4)
    with pytest.raises(ExportError, match="not loaded from one: export --format model"):
        export_steering(tiny_model, ns, "gguf", tmp_path / "x", Intervention("additive", 1.0))
    assert not (tmp_path / "x").exists()
