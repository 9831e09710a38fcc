"""Exported steering equals in-process steering: control vectors, direction files, edited checkpoints, compiled path.

For every rule x direction x site that exports, the logits of (a) per-unit hook steering, (b) the compiled form
(W_down bias + scaled columns, no hooks) and (c) the exported files replayed in a fresh plain-transformers model
(the edited checkpoint loaded from disk, the GGUF control vector read back and added to each block's output, as
llama.cpp does) agree to 1e-4 relative in fp32 over whole padded sequences. Measured here: about 3e-7.
"""

import json

import gguf
import numpy as np
import pytest
import torch
from torch import nn

from steer import DEFAULT_PROMPT_SET, Intervention, RecordSpec, SteerConfig, Steerer, Worlds, recording
from steer.artifacts import ArtifactMismatchError
from steer.cli import main
from steer.export import (
    CONTROL_VECTOR_ARCH,
    control_vector_hooks,
    export_steering,
    hf_state_dict,
    read_control_vector,
    relative_error,
    write_control_vector,
)
from steer.fold import ExportError, compile_steering, export_form
from steer.generation import generate_text
from steer.interventions import RULES
from steer.models import check_device
from steer.neurons import score_units, with_transport
from steer.neuronset import NeuronSet
from steer.record import record
from tests.conftest import labelled_corpus

TOL = 1e-4
PROMPTS = ["the film was great and the food", "a quiet morning", "awful service, cold soup"]
COEFF = {"additive": 20.0, "paper": 3.0, "scale": 3.0, "mean-ablate": 1.0, "clamp": 2.0, "mean-transport": 8.0,
         "gaussian-transport": 8.0, "linear-transport": 8.0}
SHIFTS = ("additive", "mean-transport")  # rules that only add a constant: a control vector, no weights edited
NOT_AFFINE = ("linear-transport-support",)
CASES = [("mlp", rule, d) for rule in RULES if rule not in NOT_AFFINE for d in ("toward", "away")] + [
    ("resid", "additive", d) for d in ("toward", "away")
]


@pytest.fixture(scope="module")
def sets(tiny_model):
    """Neuron sets of the tiny model at both sites, from layers 1-2 (llama.cpp cannot steer layer 0)."""
    w = Worlds.from_records(labelled_corpus(2))
    out = {}
    for site in ("mlp", "resid"):
        acts = record(tiny_model, w, site=site, layers=[1, 2], reduce="mean", progress=False)
        prop = w.proposition(label="positive")
        out[site] = with_transport(acts.strength(prop, normalize="zscore").top(k=5), acts, prop)
    return out


def fresh_hf(model):
    """A plain transformers copy of the model (no TransformerLens inside)."""
    from transformers import AutoModelForCausalLM

    hf = AutoModelForCausalLM.from_config(model.bridge.original_model.config, dtype=torch.float32)
    hf.load_state_dict({k: v for k, v in hf_state_dict(model).items() if k in hf.state_dict()})
    return hf.eval()


@torch.no_grad()
def logits(model, ids, mask):
    return model.bridge(ids, attention_mask=mask)


@pytest.mark.parametrize("site, rule, direction", CASES)
def test_exported_forms_equal_hook_steering(tiny_model, sets, tmp_path, site, rule, direction):
    from transformers import AutoModelForCausalLM

    ns, coeff = sets[site], COEFF[rule]
    ids, mask = tiny_model.tokenize(PROMPTS)
    real = mask.bool()
    base = logits(tiny_model, ids, mask)
    with Steerer(tiny_model, ns, Intervention(rule, coeff, direction=direction)):
        hooked = logits(tiny_model, ids, mask)
    assert relative_error(hooked[real], base[real]) > 1e-3  # the steering does something
    form = export_form(tiny_model, ns, Intervention(rule, coeff, direction=direction))
    assert form.changes_weights == (rule not in SHIFTS)
    with compile_steering(tiny_model, form):
        compiled = logits(tiny_model, ids, mask)
    assert relative_error(compiled[real], hooked[real]) < TOL
    assert torch.equal(logits(tiny_model, ids, mask), base)  # weights restored exactly

    out = export_steering(tiny_model, ns, "model", tmp_path / "edited", Intervention(rule, coeff, direction=direction))
    hf = AutoModelForCausalLM.from_pretrained(out, dtype=torch.float32).eval()
    cv = read_control_vector(out / "control_vector.gguf")
    with torch.no_grad(), control_vector_hooks(hf, cv.vectors):
        replayed = hf(ids, attention_mask=mask).logits
    assert relative_error(replayed[real], hooked[real]) < TOL
    manifest = json.loads((out / "steer_export.json").read_text())
    assert manifest["provenance"]["rule"] == rule and manifest["provenance"]["direction"] == direction

    if rule == "additive":  # a pure control vector: the unedited model plus the GGUF file
        path = export_steering(tiny_model, ns, "control-vector", tmp_path / "cv.gguf", Intervention(coeff=coeff, direction=direction))
        cv2 = read_control_vector(path)
        hf2 = fresh_hf(tiny_model)
        with torch.no_grad(), control_vector_hooks(hf2, cv2.vectors):
            replayed2 = hf2(ids, attention_mask=mask).logits
        assert relative_error(replayed2[real], hooked[real]) < TOL


def test_gguf_file_is_what_llama_cpp_reads(tiny_model, sets, tmp_path):
    ns = sets["mlp"]
    form = export_form(tiny_model, ns, Intervention("additive", 4.0))
    path = write_control_vector(form, tmp_path / "v.gguf")
    reader = gguf.GGUFReader(str(path))

    def text(key):
        return str(bytes(reader.get_field(key).parts[-1]), encoding="utf-8")

    assert text("general.architecture") == CONTROL_VECTOR_ARCH
    assert text("controlvector.model_hint") == tiny_model.bridge.original_model.config.model_type
    n = tiny_model.n_layers
    assert int(reader.get_field("controlvector.layer_count").parts[-1][0]) == n - 1
    names = [t.name for t in reader.tensors]
    assert names == [f"direction.{k}" for k in range(1, n)]  # block k's output, never direction.0, never k+1
    for t in reader.tensors:
        assert t.tensor_type == gguf.GGMLQuantizationType.F32
        assert list(t.shape) == [tiny_model.d_model]
        k = int(t.name.split(".")[1])
        assert np.array_equal(np.asarray(t.data), form.dense()[k].numpy())
    assert text("steer.neuron_set_sha256") == form.metadata["neuron_set_sha256"]
    assert text("steer.rule") == "additive" and text("steer.direction") == "toward"
    # the round trip through our reader gives the same vectors
    back = read_control_vector(path)
    assert back.layer_count == n - 1 and back.model_hint == form.model_hint
    for k, v in form.vectors.items():
        assert torch.equal(back.vectors[k], v)


def test_direction_files_for_easysteer(tiny_model, sets, tmp_path):
    from safetensors.torch import load_file

    ns = sets["mlp"]
    form = export_form(tiny_model, ns, Intervention("additive", 4.0, direction="away"))
    out = export_steering(tiny_model, ns, "pt", tmp_path / "pt", Intervention(coeff=4.0, direction="away"))
    req = json.loads((out / "easysteer.json").read_text())["vectors"]
    assert [r["target_layers"] for r in req] == [[k] for k in sorted(form.vectors)]
    tensors = load_file(out / "directions.safetensors")
    for k, v in form.vectors.items():
        assert torch.equal(torch.load(out / f"layer_{k}.pt"), v)
        assert torch.equal(tensors[f"direction.{k}"], v)


def test_layer_0_is_refused_with_its_share_or_dropped_knowingly(tiny_model, tmp_path):
    w = Worlds.from_records(labelled_corpus(2))
    ns = record(tiny_model, w, site="mlp", layers=[0, 1, 2], reduce="mean", progress=False).strength(
        w.proposition(label="positive"), normalize="zscore"
    ).top(k=20)
    assert any(u.layer == 0 for u in ns.units_for + ns.units_against)
    form = export_form(tiny_model, ns, Intervention("additive", 3.0))
    share = form.layer0_share()
    assert 0 < share < 1
    with pytest.raises(ExportError, match=rf"{share:.1%}.*layer 0.*--skip-layer-0"):
        export_steering(tiny_model, ns, "control-vector", tmp_path / "v.gguf")
    assert not (tmp_path / "v.gguf").exists()
    path = export_steering(tiny_model, ns, "control-vector", tmp_path / "v.gguf", drop_layer_0=True)
    back = read_control_vector(path)
    assert 0 not in back.vectors and float(back.metadata["layer0_dropped_share"]) == pytest.approx(share)


def test_refusals(tiny_model, sets, tmp_path):
    ns = sets["mlp"]
    with pytest.raises(ExportError, match="apply_to='all'"):
        export_form(tiny_model, ns, Intervention("additive", 3.0, apply_to="prompt"))
    with pytest.raises(ExportError, match="only additive"):
        export_form(tiny_model, sets["resid"], Intervention("paper", 3.0))
    with pytest.raises(ExportError, match="--format model"):
        export_steering(tiny_model, ns, "control-vector", tmp_path / "v.gguf", Intervention("paper"))
    with pytest.raises(ExportError, match="--format model"):
        export_steering(tiny_model, ns, "pt", tmp_path / "pt", Intervention("clamp"))
    with pytest.raises(ExportError, match="unknown format"):
        export_steering(tiny_model, ns, "onnx", tmp_path / "x")
    other = NeuronSet(ns.units_for, ns.units_against, "mlp", ns.score, ns.k, False, ns.proposition,
                      {"model": {**ns.provenance["model"], "model_id": "someone/else"}})
    with pytest.raises(ArtifactMismatchError):
        export_form(tiny_model, other)
    assert not list(tmp_path.iterdir())  # nothing half-written


def test_post_mlp_norm_architectures_are_refused(tiny_model, sets):
    layer = tiny_model.bridge.original_model.model.layers[1]
    layer.add_module("post_feedforward_layernorm", nn.Identity())  # what Gemma-2/3 have
    try:
        with pytest.raises(ExportError, match="post_feedforward_layernorm"):
            export_form(tiny_model, sets["mlp"], Intervention("additive", 3.0))
    finally:
        delattr(layer, "post_feedforward_layernorm")


def test_reader_refuses_what_llama_cpp_refuses(tmp_path):
    from steer.weights import bundled_gguf

    with pytest.raises(ExportError, match="not a control vector"):
        read_control_vector(bundled_gguf())
    w = gguf.GGUFWriter(str(tmp_path / "zero.gguf"), CONTROL_VECTOR_ARCH)
    w.add_string("controlvector.model_hint", "llama")
    w.add_tensor("direction.0", np.zeros(4, dtype=np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    with pytest.raises(ExportError, match=r"direction\.0"):
        read_control_vector(tmp_path / "zero.gguf")


@pytest.mark.parametrize("rule", ["additive", "paper"])
def test_compiled_generation_equals_hook_generation(tiny_model, sets, rule):
    ns = sets["mlp"]
    hooked = Steerer(tiny_model, ns, Intervention(rule, COEFF[rule])).generate(PROMPTS, max_new_tokens=8,
                                                                           do_sample=False)
    with Steerer(tiny_model, ns, Intervention(rule, COEFF[rule]), compiled=True) as compiled:
        assert not any(hp._forward_hooks for hp in tiny_model.bridge.hook_dict.values())  # no hook at all
        assert compiled.generate(PROMPTS, max_new_tokens=8, do_sample=False) == hooked
        assert generate_text(tiny_model, PROMPTS, max_new_tokens=8, do_sample=False) == hooked


def test_compiled_restores_weights_after_an_error_and_when_nested(tiny_model, sets):
    ns = sets["mlp"]
    before = {k: v.clone() for k, v in tiny_model.bridge.original_model.state_dict().items()}
    with pytest.raises(RuntimeError, match="boom"), Steerer(tiny_model, ns, Intervention("paper", 3.0), compiled=True):
        raise RuntimeError("boom")
    with Steerer(tiny_model, ns, Intervention("paper"), compiled=True), Steerer(tiny_model, ns, Intervention(coeff=5.0), compiled=True):
        pass
    after = tiny_model.bridge.original_model.state_dict()
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)
    with pytest.raises(ExportError, match="apply_to"):
        Steerer(tiny_model, ns, Intervention(apply_to="generated"), compiled=True)


def test_device_is_checked():
    assert check_device("cpu") == "cpu"
    with pytest.raises(ValueError, match=r"not available here|unsupported|unknown"):
        check_device("cuda:7" if not torch.cuda.is_available() else "cuda:999")
    with pytest.raises(ValueError, match=r"unknown device|unsupported"):
        check_device("tpu")


# ------------------------------------------------------------------------------------------ bundled model


@pytest.fixture(scope="module")
def bundled_sets(bundled):
    """The default positive set of the bundled model (SteerConfig: rank-D, k 500, mean over the sentence) selected
    from layers 1-29, from the all-layer recording the default steering caches anyway."""
    cfg = SteerConfig()
    w = Worlds.from_file(DEFAULT_PROMPT_SET, template=cfg.template)
    acts = recording(RecordSpec(bundled, w, cfg.site, cfg.reduce, None), progress=False)
    prop = w.proposition(label="positive")
    scores = score_units(acts, prop, cfg.score).restrict(range(1, bundled.n_layers))
    return with_transport(scores.top(cfg.k), acts, prop)


def test_bundled_default_set_exports_exactly(bundled, bundled_sets, tmp_path, capsys):
    ns = bundled_sets
    ns_path = ns.save(tmp_path / "positive.json")
    out = tmp_path / "positive.gguf"
    assert main(["export", str(ns_path), "--model", "bundled", "--out", str(out)]) == 0
    assert "llama-cli" in capsys.readouterr().out
    cv = read_control_vector(out)
    assert sorted(cv.vectors) == list(range(1, bundled.n_layers)) and cv.model_hint == "llama"
    ids, mask = bundled.tokenize(["The hotel was", "I just finished reading the book, and it"])
    real = mask.bool()
    with Steerer(bundled, ns, Intervention(coeff=SteerConfig().coeff)):
        hooked = logits(bundled, ids, mask)
    with Steerer(bundled, ns, Intervention(coeff=SteerConfig().coeff), compiled=True):
        compiled = logits(bundled, ids, mask)
    hf = fresh_hf(bundled)
    with torch.no_grad(), control_vector_hooks(hf, cv.vectors):
        replayed = hf(ids, attention_mask=mask).logits
    assert relative_error(compiled[real], hooked[real]) < TOL
    assert relative_error(replayed[real], hooked[real]) < TOL


def test_bundled_weight_rule_exports_as_edited_checkpoint(bundled, bundled_sets, tmp_path):
    from transformers import AutoModelForCausalLM

    ns = bundled_sets.head(50)
    out = export_steering(bundled, ns, "model", tmp_path / "edited", Intervention("paper", 5.0, direction="away"))
    hf = AutoModelForCausalLM.from_pretrained(out, dtype=torch.float32).eval()
    cv = read_control_vector(out / "control_vector.gguf")
    ids, mask = bundled.tokenize(["The weather today is"])
    with Steerer(bundled, ns, Intervention("paper", 5.0, direction="away")):
        hooked = logits(bundled, ids, mask)
    with torch.no_grad(), control_vector_hooks(hf, cv.vectors):
        replayed = hf(ids, attention_mask=mask).logits
    assert relative_error(replayed, hooked) < TOL


def test_bundled_transport_exports_from_the_cli_as_edited_checkpoint(bundled, bundled_sets, tmp_path, capsys):
    """steer export --rule linear-transport --format model: scaled W_down columns + control vector, replayed in plain
    transformers, equal the hooks on the bundled model."""
    from transformers import AutoModelForCausalLM

    ns = bundled_sets.head(100)
    path = ns.save(tmp_path / "positive.json")
    out = tmp_path / "edited"
    rc = main(["export", str(path), "--model", "bundled", "--rule", "linear-transport", "--coeff", "1.5", "--format",
               "model", "--out", str(out)])
    assert rc == 0, capsys.readouterr().err
    manifest = json.loads((out / "steer_export.json").read_text())
    assert manifest["provenance"]["rule"] == "linear-transport" and manifest["scaled_columns"]
    hf = AutoModelForCausalLM.from_pretrained(out, dtype=torch.float32).eval()
    cv = read_control_vector(out / "control_vector.gguf")
    ids, mask = bundled.tokenize(["The weather today is", "Our new neighbours are"])
    real = mask.bool()
    with Steerer(bundled, ns, Intervention("linear-transport", 1.5)):
        hooked = logits(bundled, ids, mask)
    with torch.no_grad(), control_vector_hooks(hf, cv.vectors):
        replayed = hf(ids, attention_mask=mask).logits
    assert relative_error(replayed[real], hooked[real]) < TOL
    assert relative_error(hooked[real], logits(bundled, ids, mask)[real]) > 1e-3  # it steers


def test_export_cli_errors(tiny_model, sets, tmp_path, capsys):
    path = sets["mlp"].save(tmp_path / "set.json")
    model = tiny_model.provenance["model_id"]
    rc = main(["export", str(path), "--model", model, "--toward", "label=negative", "--out", str(tmp_path / "a.gguf")])
    assert rc == 2 and "not this neuron set's proposition" in capsys.readouterr().err
    rc = main(["export", str(path), "--model", model, "--skip-layer-0", "--out", str(tmp_path / "a.gguf")])
    assert rc == 2 and "saved neuron set has its own units" in capsys.readouterr().err
    rc = main(["export", str(path), "--model", model, "--rule", "paper", "--out", str(tmp_path / "a.gguf")])
    assert rc == 2 and "--format model" in capsys.readouterr().err
    rc = main(["export", str(path), "--model", model, "--format", "pt", "--away", "--out", str(tmp_path / "pt")])
    assert rc == 0 and (tmp_path / "pt" / "easysteer.json").is_file()
    rc = main(["export", str(path), "--model", model, "--device", "cuda:99", "--out", str(tmp_path / "b.gguf")])
    assert rc == 2 and "cuda:99" in capsys.readouterr().err


def test_repeng_reads_our_file(tiny_model, sets, tmp_path):
    """repeng's own reader, where it imports (repeng 0.4.0 does not with NumPy 2: it uses np.float_)."""
    try:
        from repeng import ControlVector
    except Exception as e:  # not installed, or broken by its pins (transformers < 5, NumPy 1)
        pytest.skip(f"repeng does not import here ({type(e).__name__}: {e})")
    form = export_form(tiny_model, sets["mlp"], Intervention("additive", 4.0))
    path = write_control_vector(form, tmp_path / "v.gguf")
    cv = ControlVector.import_gguf(str(path))
    assert cv.model_type == form.model_hint
    assert sorted(cv.directions) == list(range(1, tiny_model.n_layers))
    for k in cv.directions:
        assert np.array_equal(np.asarray(cv.directions[k]), form.dense()[k].numpy())


def test_an_export_folder_carries_the_sha256_of_its_files(tiny_model, sets, tmp_path):
    from steer.export import verify_export

    out = export_steering(tiny_model, sets["mlp"], "pt", tmp_path / "cv", Intervention("additive", 3.0))
    manifest = verify_export(out)
    assert set(manifest["files"]) == {p.name for p in out.iterdir()} - {"steer_export.json"}
    (out / "directions.safetensors").write_bytes((out / "directions.safetensors").read_bytes()[:-1] + b"\0")
    with pytest.raises(ArtifactMismatchError, match="directions.safetensors does not match"):
        verify_export(out)
    text = (out / "steer_export.json").read_text()
    (out / "steer_export.json").write_text(text.replace('"format": "pt"', '"format": "model"'))
    with pytest.raises(ArtifactMismatchError):
        verify_export(out)
