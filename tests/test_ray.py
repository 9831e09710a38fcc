"""The Ray engine on a local Ray instance (2 CPU workers, the bundled model): the recording and its strengths equal
the single-process ones exactly, and a worker killed mid-run is retried with the same result.

Skips when Ray is not installed (it is the optional extra ``steer[ray]``)."""

import pytest
import torch

ray = pytest.importorskip("ray")

from steer.activations import Activations  # noqa: E402
from steer.distributed import KILL_ENV, record_ray  # noqa: E402
from steer.record import record  # noqa: E402
from steer.stream import WorldStream  # noqa: E402
from steer.worlds import Worlds  # noqa: E402

from .conftest import labelled_corpus  # noqa: E402

TEMPLATE = "Input: {text}\nSentiment:"


@pytest.fixture(scope="module")
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def worlds():
    recs = [{**r, "i": i} for i, r in enumerate(labelled_corpus(40))]  # 200 worlds
    return Worlds.from_records(recs, TEMPLATE)


@pytest.fixture
def one_thread():
    """The workers run one torch thread each (cpus_per_worker=1); float sums can depend on the thread count, so
    the local reference runs with one thread too, and the comparison is exact."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _same_recording(a: Activations, b: Activations) -> None:
    assert a.shard_rows == b.shard_rows
    assert [f["sha256"] for f in a.shard_files] == [f["sha256"] for f in b.shard_files]  # the same bytes
    assert torch.equal(a.X, b.X)
    assert a.model == b.model and a.worlds == b.worlds and a.layers == b.layers


def test_ray_recording_equals_single_process(local_ray, bundled, worlds, tmp_path, one_thread):
    kw = dict(site="mlp", layers=[0, 10, 29], reduce="mean", batch_size=16, shard_size=32)
    local = record(bundled, worlds, out=tmp_path / "local", progress=False, **kw)
    on_ray = record_ray("bundled", worlds, out=tmp_path / "ray", num_workers=2, progress=False, **kw)
    _same_recording(on_ray, local)
    assert on_ray.extra["engine"] == "ray"
    pos = worlds.proposition("label=positive")
    for norm in ("none", "zscore", "rank"):
        assert torch.equal(on_ray.strength(pos, normalize=norm).D, local.strength(pos, normalize=norm).D)


def test_a_killed_worker_is_retried(local_ray, bundled, worlds, tmp_path, monkeypatch, one_thread):
    marker = tmp_path / "killed"
    monkeypatch.setenv(KILL_ENV, f"2:{marker}")
    kw = dict(site="resid", layers=[5, 20], reduce="last", batch_size=16, shard_size=32)
    on_ray = record_ray("bundled", worlds, out=tmp_path / "ray", num_workers=2, progress=False, **kw)
    assert marker.exists(), "a worker died at shard 2"
    local = record(bundled, worlds, out=tmp_path / "local", progress=False, **kw)
    _same_recording(on_ray, local)


def test_ray_records_a_stream(local_ray, bundled, worlds, tmp_path, one_thread):
    path = tmp_path / "w.jsonl"
    import json

    path.write_text("".join(json.dumps(r) + "\n" for r in worlds.records))
    stream = WorldStream.from_file(path, template=TEMPLATE)
    kw = dict(site="mlp", layers=[3], batch_size=16, shard_size=50)
    local = record(bundled, stream, out=tmp_path / "local", progress=False, **kw)
    on_ray = record_ray("bundled", stream, out=tmp_path / "ray", num_workers=2, progress=False, **kw)
    _same_recording(on_ray, local)


def test_steer_record_engine_ray(local_ray, bundled, tmp_path, capsys, one_thread):
    """The CLI: steer record --engine ray writes the same recording as the local engine."""
    from steer.cli import main

    common = ["record", "--model", "bundled", "--n-worlds", "40", "--worlds-seed", "0", "--layers", "0,-1", "--shard-size", "16",
              "--quiet"]
    assert main([*common, "--engine", "ray", "--workers", "2", "--out", str(tmp_path / "ray")]) == 0
    out = capsys.readouterr().out
    assert "on 2 Ray workers" in out and "reuse it: steer find" in out
    assert main([*common, "--out", str(tmp_path / "local")]) == 0
    on_ray, local = Activations.load(tmp_path / "ray"), Activations.load(tmp_path / "local")
    assert on_ray.layers == [0, 29]
    _same_recording(on_ray, local)
