"""Recording on tiny random-weight Qwen2 and Llama models: equals plain HF with torch hooks, under padding."""

import pytest
import torch

from steer.activations import Activations
from steer.artifacts import ArtifactMismatchError
from steer.record import record
from steer.sites import parse_layers, resolve_layers
from steer.worlds import Worlds

PRE_MODULE = {"mlp_pre": "gate_proj", "mlp_pre_linear": "up_proj"}


def hf_reference(model, prompts, site, layers, reduce, spans=None):
    """One prompt at a time through the plain HF model: down_proj's input (mlp), gate_proj's / up_proj's output
    (mlp_pre / mlp_pre_linear) or the layer output (resid);
    ``mean`` over all tokens, or over each prompt's token span [lo, hi) when ``spans`` is given."""
    hf = model.bridge.original_model
    rows = []
    for i, p in enumerate(prompts):
        lo, hi = spans[i] if spans is not None else (0, None)
        ids = model.tokenizer(p, return_tensors="pt").input_ids
        got, handles = {}, []
        for layer in layers:
            block = hf.model.layers[layer]
            if site == "mlp":
                handles.append(block.mlp.down_proj.register_forward_pre_hook(
                    lambda mod, args, layer=layer: got.__setitem__(layer, args[0])))
            elif site in PRE_MODULE:  # the gate's or the up branch's output, before they are multiplied
                handles.append(getattr(block.mlp, PRE_MODULE[site]).register_forward_hook(
                    lambda mod, args, out, layer=layer: got.__setitem__(layer, out)))
            else:
                handles.append(block.register_forward_hook(
                    lambda mod, args, out, layer=layer: got.__setitem__(layer, out[0] if isinstance(out, tuple) else out)))
        try:
            with torch.no_grad():
                hf(input_ids=ids)
        finally:
            for h in handles:
                h.remove()
        rows.append(torch.stack([got[layer][0, -1] if reduce == "last" else got[layer][0, lo:hi].mean(0)
                                 for layer in layers]))
    return torch.stack(rows).float()


@pytest.mark.parametrize("site", ["mlp", "resid"])
@pytest.mark.parametrize("reduce", ["last", "mean"])
def test_recording_equals_plain_hf_forward(tiny_model, toy_records, site, reduce):
    worlds = Worlds.from_records(toy_records, "plain")
    layers = [0, 2]
    acts = record(tiny_model, worlds, site=site, layers=layers, reduce=reduce, batch_size=4, progress=False)
    ref = hf_reference(tiny_model, worlds.prompts, site, layers, reduce)
    width = tiny_model.d_mlp if site == "mlp" else tiny_model.d_model
    assert acts.X.shape == (len(worlds), len(layers), width)
    torch.testing.assert_close(acts.X, ref, rtol=1e-4, atol=1e-5)


def test_batched_equals_one_by_one_under_padding(tiny_model, toy_records):
    worlds = Worlds.from_records(toy_records, "plain")
    lengths = {len(ids) for ids in tiny_model.tokenizer(worlds.prompts)["input_ids"]}
    assert len(lengths) > 1, "the test needs prompts of different lengths so that padding happens"
    one = record(tiny_model, worlds, site="mlp", batch_size=1, progress=False).X
    for bs in (3, 6):
        torch.testing.assert_close(record(tiny_model, worlds, site="mlp", batch_size=bs, progress=False).X, one,
                                   rtol=1e-4, atol=1e-5)


def test_sharded_recording_on_disk_equals_in_memory(tiny_qwen, toy_records, tmp_path):
    worlds = Worlds.from_records(toy_records, "plain")
    mem = record(tiny_qwen, worlds, site="resid", batch_size=2, progress=False)
    disk = record(tiny_qwen, worlds, site="resid", batch_size=2, shard_size=4, out=tmp_path / "rec", progress=False)
    assert disk.shard_rows == [4, 2] and disk.path == tmp_path / "rec"
    assert sorted(p.name for p in (tmp_path / "rec").iterdir()) == ["manifest.json", "shard-00000.safetensors",
                                                                    "shard-00001.safetensors"]
    torch.testing.assert_close(disk.X, mem.X)
    pos = worlds.proposition(label="positive")
    torch.testing.assert_close(disk.strength(pos).D, mem.strength(pos).D)


def test_save_load_roundtrip_and_provenance(tiny_qwen, toy_records, tmp_path):
    worlds = Worlds.from_records(toy_records, "plain")
    acts = record(tiny_qwen, worlds, site="mlp", layers=[1], reduce="mean", progress=False)
    acts.save(tmp_path / "a")
    back = Activations.load(tmp_path / "a", model=tiny_qwen, site="mlp")
    torch.testing.assert_close(back.X, acts.X)
    assert back.reduce == "mean" and back.layers == [1]
    assert back.worlds["prompt_set_sha256"] == worlds.prompt_set_hash
    assert back.model["sha256"] == tiny_qwen.provenance["sha256"]
    man = back.manifest()
    assert man["hooks"] == ["blocks.1.mlp.hook_post"] and man["worlds"]["template"] == "plain"
    with pytest.raises(ArtifactMismatchError, match="site"):
        Activations.load(tmp_path / "a", site="resid")


def test_loading_against_another_model_is_an_error(tiny_model, tiny_qwen, toy_records, tmp_path):
    worlds = Worlds.from_records(toy_records, "plain")
    record(tiny_qwen, worlds, layers=[0], progress=False).save(tmp_path / "q")
    if tiny_model.provenance["sha256"] == tiny_qwen.provenance["sha256"]:
        pytest.skip("same model")
    with pytest.raises(ArtifactMismatchError, match="another model"):
        Activations.load(tmp_path / "q", model=tiny_model)


def test_bad_arguments(tiny_qwen, toy_records):
    worlds = Worlds.from_records(toy_records, "plain")
    with pytest.raises(ValueError, match="unknown site"):
        record(tiny_qwen, worlds, site="attn", progress=False)
    with pytest.raises(ValueError, match="unknown layer"):
        record(tiny_qwen, worlds, layers=[7], progress=False)
    with pytest.raises(ValueError, match="unknown reduce"):
        record(tiny_qwen, worlds, reduce="first", progress=False)


def test_nan_activations_are_refused(tiny_qwen, toy_records):
    worlds = Worlds.from_records(toy_records, "plain")

    def poison(act, hook):
        act[0, -1, 0] = float("nan")
        return act

    with tiny_qwen.bridge.hooks(fwd_hooks=[("blocks.0.hook_resid_post", poison)]):
        with pytest.raises(ValueError, match="NaN"):
            record(tiny_qwen, worlds, site="resid", layers=[1], progress=False)


def test_interrupted_recording_keeps_only_finished_shards(tiny_qwen, toy_records, tmp_path):
    """Nothing appears under the final name; the hidden work directory holds complete shards only (each with the
    record that lets a rerun reuse it; see tests/test_record_resume.py)."""
    worlds = Worlds.from_records(toy_records, "plain")
    calls = {"n": 0}

    def boom(act, hook):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return act

    with tiny_qwen.bridge.hooks(fwd_hooks=[("blocks.0.hook_resid_post", boom)]):
        with pytest.raises(KeyboardInterrupt):
            record(tiny_qwen, worlds, batch_size=2, shard_size=2, out=tmp_path / "rec", progress=False)
    [work] = list(tmp_path.iterdir())
    assert work.name.startswith(".rec.work-")
    assert sorted(p.name for p in work.iterdir()) == ["shard-00000.done.json", "shard-00000.safetensors", "work.json"]


def test_layer_parsing():
    assert resolve_layers(None, 4) == [0, 1, 2, 3]
    assert resolve_layers([-1, 0, 0], 4) == [0, 3]
    assert parse_layers("1-3", 24) == [1, 2, 3]
    assert parse_layers("0,5,-1", 24) == [0, 5, 23]
    with pytest.raises(ValueError):
        parse_layers("x", 24)
    with pytest.raises(ValueError):
        resolve_layers([24], 24)
