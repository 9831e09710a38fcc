"""Streaming worlds: files and datasets read shard by shard; recordings and strengths equal the in-memory ones;
rank normalisation in blocks of units equals the whole-matrix one."""

import json

import numpy as np
import pytest
import torch

from steer.readers import PromptSetError
from steer.record import record
from steer.stream import WorldStream
from steer.strength import normal_scores, strength_from_shards
from steer.worlds import Worlds

from .conftest import labelled_corpus


@pytest.fixture
def corpus_files(tmp_path):
    recs = [{"sentence": r["text"], "label": r["label"], "i": i} for i, r in enumerate(labelled_corpus(3))]
    jl = tmp_path / "c.jsonl"
    jl.write_text("".join(json.dumps(r) + "\n" for r in recs))
    tsv = tmp_path / "c.tsv"
    tsv.write_text("sentence\tlabel\ti\n" + "".join(f"{r['sentence']}\t{r['label']}\t{r['i']}\n" for r in recs))
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.Table.from_pylist(recs), tmp_path / "c.parquet", row_group_size=4)
    return recs, {"jsonl": jl, "tsv": tsv, "parquet": tmp_path / "c.parquet"}


@pytest.mark.parametrize("kind", ["jsonl", "tsv", "parquet"])
def test_stream_from_file_equals_worlds(corpus_files, kind):
    recs, files = corpus_files
    stream = WorldStream.from_file(files[kind], template="Input: {text}\nAnswer:", text_field="sentence")
    whole = Worlds.from_file(files[kind] if kind != "parquet" else files["jsonl"], template="Input: {text}\nAnswer:",
                             text_field="sentence")
    shards = list(stream.shards(4))
    assert [len(s) for s in shards] == [4, 4, 4, 3]
    assert [p for s in shards for p in s.prompts] == whole.prompts
    if kind == "jsonl":  # the same records (TSV gives strings): the same hash, interchangeable provenance
        assert stream.content_hash == whole.prompt_set_hash
    assert len(stream) == len(recs)
    assert stream.proposition("label=positive").mask.tolist() == whole.proposition("label=positive").mask.tolist()


def test_stream_n_and_errors(corpus_files, tmp_path):
    _, files = corpus_files
    s = WorldStream.from_file(files["jsonl"], text_field="sentence", n=5)
    assert len(s) == 5 and s.source.endswith("[n=5]")
    with pytest.raises(PromptSetError, match="has 15 records"):
        len(WorldStream.from_file(files["jsonl"], text_field="sentence", n=99))
    with pytest.raises(PromptSetError, match="no field 'nope'"):
        list(WorldStream.from_file(files["jsonl"], text_field="nope").shards(4))
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "a"}\n{"text": \n')
    with pytest.raises(PromptSetError, match="bad.jsonl:2: not valid JSON"):
        list(WorldStream.from_file(bad).shards(4))
    (tmp_path / "x.xlsx").write_text("")
    with pytest.raises(PromptSetError, match="unsupported"):
        WorldStream.from_file(tmp_path / "x.xlsx")
    with pytest.raises(PromptSetError, match="unknown field"):
        WorldStream.from_file(files["jsonl"], text_field="sentence").proposition("colour=red")


def test_stream_from_datasets_including_iterable(corpus_files):
    import datasets

    recs, _ = corpus_files
    ds = datasets.Dataset.from_list(recs)
    for d in (ds, ds.to_iterable_dataset(num_shards=3)):
        stream = WorldStream.from_dataset(d, template="plain", text_field="sentence")
        assert [p for s in stream.shards(4) for p in s.prompts] == [r["sentence"] for r in recs]
        assert stream.proposition("label=negative").size == sum(r["label"] == "negative" for r in recs)


def test_recording_a_stream_equals_recording_in_memory(tiny_qwen, corpus_files, tmp_path):
    recs, files = corpus_files
    template = "Input: {text}\nAnswer:"
    stream = WorldStream.from_file(files["jsonl"], template=template, text_field="sentence")
    whole = Worlds.from_file(files["jsonl"], template=template, text_field="sentence")
    mem = record(tiny_qwen, whole, layers=[0, 2], reduce="mean", shard_size=4, progress=False)
    disk = record(tiny_qwen, stream, layers=[0, 2], reduce="mean", shard_size=4, out=tmp_path / "r", progress=False)
    assert disk.shard_rows == [4, 4, 4, 3]
    torch.testing.assert_close(disk.X, mem.X)
    assert disk.worlds["prompt_set_sha256"] == whole.prompt_set_hash and disk.worlds["n_worlds"] == len(recs)
    pos = stream.proposition("label=positive")
    for norm in ("none", "zscore", "rank"):
        torch.testing.assert_close(disk.strength(pos, normalize=norm).D, mem.strength(pos, normalize=norm).D)


def test_rank_strength_in_unit_blocks_equals_whole_matrix():
    torch.manual_seed(0)
    X = torch.randn(300, 3, 7)
    X[:, 0, :2] = X[:, 0, :2].round()  # ties
    X[:, 1, 3] = 1.0  # a constant unit
    A = torch.zeros(300, dtype=torch.bool)
    A[::7] = True
    prior = torch.rand(300)
    whole, _ = strength_from_shards(lambda: [X[:100], X[100:]], A, prior, "rank")
    flat = X.reshape(300, -1)
    for width in (1, 4, 21, 50):
        blocks = lambda w: (flat[:, a:a + w] for a in range(0, flat.shape[1], w))  # noqa: E731
        got, _ = strength_from_shards(lambda: [X[:100], X[100:]], A, prior, "rank", unit_blocks=blocks,
                                      max_bytes=width * 300 * 96)
        torch.testing.assert_close(got, whole, rtol=0, atol=1e-12)


def test_disk_recording_reads_unit_blocks_that_span_layers(tiny_qwen, tmp_path):
    worlds = Worlds.from_records(labelled_corpus(2), "plain")
    acts = record(tiny_qwen, worlds, layers=[0, 1, 2], shard_size=3, out=tmp_path / "r", progress=False)
    X = acts.X.reshape(len(worlds), -1)
    for width in (5, 48, 70, 1000):
        got = torch.cat(list(acts.iter_unit_blocks(width)), 1)
        torch.testing.assert_close(got, X, rtol=0, atol=0)


def test_normal_scores_ties_and_order():
    x = torch.tensor([[3.0], [1.0], [3.0], [2.0], [3.0]])
    ranks = torch.tensor([3.0, 0.0, 3.0, 1.0, 3.0])  # the three 3.0s share ranks 2, 3, 4
    expected = torch.special.ndtri((ranks.double() + 0.5) / 5)[:, None]
    torch.testing.assert_close(normal_scores(x), expected)
    y = torch.randn(50, 4)
    perm = torch.randperm(50)
    torch.testing.assert_close(normal_scores(y)[perm], normal_scores(y[perm]))
    assert np.allclose(normal_scores(y).sum(0).numpy(), 0, atol=1e-9)  # scores are symmetric around 0
