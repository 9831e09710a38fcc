"""Model specs: offline failures are fast and clear; the bundled GGUF is de-quantized once and cached."""

import time

import pytest

import steer.weights as weights
from steer.models import ModelLoadError, load_model


def test_hub_id_offline_fails_fast_naming_alternatives(cache_env):
    t = time.time()
    with pytest.raises(ModelLoadError, match="hub is unreachable.*'bundled'.*\\.gguf"):
        load_model("Qwen/Qwen2.5-0.5B-Instruct")
    assert time.time() - t < 10


@pytest.mark.parametrize("spec, match", [
    ("./no/such/dir", "does not exist"),
    ("missing.gguf", "does not exist"),
])
def test_bad_paths(spec, match):
    with pytest.raises(ModelLoadError, match=match):
        load_model(spec)


def test_non_model_file_and_dir(tmp_path):
    (tmp_path / "x.txt").write_text("hi")
    with pytest.raises(ModelLoadError, match="not a .gguf"):
        load_model(tmp_path / "x.txt")
    with pytest.raises(ModelLoadError, match="without config.json"):
        load_model(tmp_path)
    with pytest.raises(ValueError, match="unknown dtype"):
        load_model("bundled", dtype="float8")


def test_bundled_model(bundled):
    p = bundled.provenance
    assert p["source"] == "gguf" and len(p["sha256"]) == 64 and p["architecture"] == "LlamaForCausalLM"
    assert (bundled.n_layers, bundled.d_mlp, bundled.d_model) == (30, 1536, 576)
    assert bundled.tokenizer.padding_side == "left"
    ids, mask = bundled.tokenize(["Hello world", "Hi"])
    # no BOS is prepended: the same ids HF gives for a single prompt, left padded
    assert ids[0].tolist() == bundled.tokenizer("Hello world").input_ids
    assert mask[1].tolist()[0] == 0 and ids[1, -1].item() == bundled.tokenizer("Hi").input_ids[-1]


def test_gguf_is_dequantized_once(bundled, monkeypatch):
    def refuse(*a, **k):
        raise AssertionError("de-quantized a second time")

    monkeypatch.setattr(weights, "_dequantize_gguf", refuse)
    t = time.time()
    again = load_model("bundled")
    assert again.provenance["sha256"] == bundled.provenance["sha256"]
    assert time.time() - t < 30


def test_default_offline_falls_back_to_bundled(bundled, capsys):
    m = load_model("default")
    assert m.provenance["sha256"] == bundled.provenance["sha256"]
    assert "bundled SmolLM2-135M-Instruct" in capsys.readouterr().err
