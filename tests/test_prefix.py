"""Shared-prefix reuse: a template's prefix runs once per shard, its KV cache is reused, and the activations at the
worlds' own positions equal the full forward's; ``reduce="mean"`` averages over the world's text span only."""

import importlib

import numpy as np
import pytest
import torch

from steer.positions import shared_prefix_length, text_token_spans
from steer.record import record
from steer.templates import Template
from steer.worlds import Worlds

from .test_record import hf_reference

PREFIX_TEMPLATE = "Input:\n{text}\nAnswer:"


def pieces_spans(model, worlds):
    """Text spans found independently of the offsets: tokenize the template's pieces separately (valid when the
    pieces' tokens concatenate to the prompt's tokens, which the test asserts)."""
    pre, post = worlds.template.text.split("{text}")
    spans = []
    for rec, p in zip(worlds.records, worlds.prompts):
        a, t, b = (model.encode(x) for x in (pre, rec["text"], post))
        assert a + t + b == model.encode(p), "the test template must tokenize piecewise"
        spans.append((len(a), len(a) + len(t)))
    return spans


@pytest.mark.parametrize("site", ["mlp", "resid"])
@pytest.mark.parametrize("reduce", ["last", "mean"])
def test_prefix_reuse_equals_the_full_forward(tiny_model, toy_records, site, reduce, capsys):
    worlds = Worlds.from_records(toy_records, PREFIX_TEMPLATE)
    lengths = {len(tiny_model.encode(p)) for p in worlds.prompts}
    assert len(lengths) > 1, "prompts of different lengths, so that batches pad"
    layers = [0, 2]
    reused = record(tiny_model, worlds, site=site, layers=layers, reduce=reduce, batch_size=4, progress=False)
    full = record(tiny_model, worlds, site=site, layers=layers, reduce=reduce, batch_size=4, progress=False,
                  reuse_prefix=False)
    ref = hf_reference(tiny_model, worlds.prompts, site, layers, reduce, pieces_spans(tiny_model, worlds))
    torch.testing.assert_close(reused.X, ref, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(full.X, ref, rtol=1e-5, atol=1e-6)
    assert reused.extra["reuse_prefix"] and "no prefix reuse" not in capsys.readouterr().err


def test_the_prefix_really_is_reused(tiny_qwen, toy_records, monkeypatch):
    """The worlds' own tokens are all the batched forward sees after the prefix ran once."""
    rec = importlib.import_module("steer.record")
    worlds = Worlds.from_records(toy_records, PREFIX_TEMPLATE)
    widths, prefixes = [], []
    real = rec._prefix_cache

    def spy(model, prefix, site, deepest):
        prefixes.append(list(prefix))
        return real(model, prefix, site, deepest)

    monkeypatch.setattr(rec, "_prefix_cache", spy)
    handle = tiny_qwen.bridge.original_model.model.layers[0].register_forward_pre_hook(
        lambda mod, args, kwargs: widths.append((args[0] if args else kwargs["hidden_states"]).shape[1]),
        with_kwargs=True)
    try:
        record(tiny_qwen, worlds, layers=[1], batch_size=6, progress=False)
    finally:
        handle.remove()
    pre = tiny_qwen.encode("Input:\n")
    assert prefixes == [pre]
    longest = max(len(tiny_qwen.encode(p)) for p in worlds.prompts)
    assert widths == [len(pre), longest - len(pre)]


def test_mean_is_over_the_text_span_only(tiny_qwen, toy_records):
    worlds = Worlds.from_records(toy_records, PREFIX_TEMPLATE)
    spans = pieces_spans(tiny_qwen, worlds)
    got = text_token_spans(tiny_qwen.tokenizer, worlds.prompts, worlds.text_char_spans(),
                           [len(tiny_qwen.encode(p)) for p in worlds.prompts])
    assert got.tolist() == [list(s) for s in spans]
    acts = record(tiny_qwen, worlds, layers=[2], reduce="mean", progress=False)
    whole = [(0, len(tiny_qwen.encode(p))) for p in worlds.prompts]
    ref_whole = hf_reference(tiny_qwen, worlds.prompts, "mlp", [2], "mean", whole)
    assert not torch.allclose(acts.X, ref_whole, rtol=1e-3), "the template's tokens are not in the mean"


def test_a_template_without_a_fixed_prefix_falls_back_and_says_so_once(tiny_qwen, toy_records, capsys):
    worlds = Worlds.from_records(toy_records, "{domain} said:\n{text}\nAnswer:")
    acts = record(tiny_qwen, worlds, layers=[0, 1], reduce="mean", batch_size=2, shard_size=2, progress=False)
    err = capsys.readouterr().err
    assert err.count("no prefix reuse") == 1
    full = record(tiny_qwen, worlds, layers=[0, 1], reduce="mean", batch_size=2, shard_size=2, progress=False,
                  reuse_prefix=False)
    torch.testing.assert_close(acts.X, full.X, rtol=1e-5, atol=1e-6)
    # a template that starts with the text has no prefix to share: nothing to say
    record(tiny_qwen, Worlds.from_records(toy_records, "plain"), layers=[0], progress=False)
    assert "no prefix reuse" not in capsys.readouterr().err


def test_bundled_model_prefix_reuse_equals_full_forward(bundled):
    """The real tokenizer and model (SmolLM2, fp32): the paper's two-shot template, padded batches, both sites."""
    texts = ["a gorgeous, witty film", "the plot is thin and the jokes fall flat", "it is a movie",
             "one of the most tedious evenings I have spent in a cinema this year", "wonderful", "bad"]
    worlds = Worlds.from_records([{"text": t} for t in texts], "classify-2shot")
    for site in ("mlp", "resid"):
        for reduce in ("last", "mean"):
            kw = dict(site=site, layers=[0, 14, 29], reduce=reduce, batch_size=4, progress=False)
            a = record(bundled, worlds, **kw).X
            b = record(bundled, worlds, reuse_prefix=False, **kw).X
            rel = ((a - b).abs().max() / b.abs().max()).item()
            assert rel < 1e-5, (site, reduce, rel)


def test_text_spans_skip_special_tokens(bundled):
    tok = bundled.tokenizer
    worlds = Worlds.from_records([{"text": "a fine day"}, {"text": "rain again"}], "Note: {text}.")
    lengths = [len(bundled.encode(p)) for p in worlds.prompts]
    spans = text_token_spans(tok, worlds.prompts, worlds.text_char_spans(), lengths)
    for (lo, hi), rec, p in zip(spans, worlds.records, worlds.prompts):
        assert tok.decode(bundled.encode(p)[lo:hi]).strip() == rec["text"]


def test_template_text_span():
    t = Template("t", "{label} | {text} ({label})")
    rec = {"label": "pos", "text": "so good"}
    a, b = t.text_span(rec)
    assert t.render(rec)[a:b] == "so good"
    assert Template("u", "Q: {sentence}?").text_field == "sentence"


def test_shared_prefix_length():
    assert shared_prefix_length([[1, 2, 3, 4], [1, 2, 5], [1, 2, 3]], limit=10) == 2
    assert shared_prefix_length([[1, 2, 3, 4], [1, 2, 3, 4]], limit=3) == 3
    assert shared_prefix_length([[7, 2], [1, 2]], limit=5) == 0
    assert shared_prefix_length([[1, 2]], limit=1) == 1
    assert shared_prefix_length([[1, 2, 3]], limit=0) == 0


def test_world_order_and_shards_do_not_matter(tiny_qwen, toy_records):
    worlds = Worlds.from_records(toy_records, PREFIX_TEMPLATE)
    one = record(tiny_qwen, worlds, layers=[1], batch_size=1, progress=False).X
    for bs, shard in ((3, 2), (6, 4), (2, 6)):
        X = record(tiny_qwen, worlds, layers=[1], batch_size=bs, shard_size=shard, progress=False).X
        torch.testing.assert_close(X, one, rtol=1e-5, atol=1e-6)
    assert np.isfinite(one.numpy()).all()
