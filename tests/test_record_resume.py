"""Resumable recordings and the `steer record` command.

An interrupted recording keeps its finished shards in a work directory beside its target, keyed by everything the
recording depends on; running it again continues from the first unfinished shard and gives exactly the result of an
uninterrupted run. A shard whose file is truncated or whose record is missing is recorded again.
"""

import importlib
import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from steer.activations import Activations
from steer.cli import main
from steer.record import record
from steer.worlds import Worlds
from tests.conftest import labelled_corpus

rec = importlib.import_module("steer.record")  # the module (steer.record is also the function's name)


def stacked(acts):
    return torch.cat(list(acts.iter_shards()))


@pytest.fixture
def worlds():
    return Worlds.from_records(labelled_corpus(6))  # 30 worlds


def counting(monkeypatch, fail_at=None):
    calls = []
    real = rec._record_shard

    def wrapped(*a, **k):
        calls.append(1)
        if fail_at is not None and len(calls) == fail_at:
            raise KeyboardInterrupt
        return real(*a, **k)

    monkeypatch.setattr(rec, "_record_shard", wrapped)
    return calls


def test_an_interrupted_recording_resumes_where_it_stopped(tiny_qwen, worlds, tmp_path, monkeypatch, capsys):
    whole = record(tiny_qwen, worlds, reduce="mean", shard_size=4, out=tmp_path / "whole", progress=False)
    out = tmp_path / "rec"
    calls = counting(monkeypatch, fail_at=4)  # shards 0-2 finish, the 4th is interrupted
    with pytest.raises(KeyboardInterrupt):
        record(tiny_qwen, worlds, reduce="mean", shard_size=4, out=out, progress=False)
    assert not out.exists()
    work = list(tmp_path.glob(".rec.work-*"))
    assert len(work) == 1 and len(list(work[0].glob("shard-*.done.json"))) == 3
    calls = counting(monkeypatch)
    acts = record(tiny_qwen, worlds, reduce="mean", shard_size=4, out=out, progress=False)
    assert len(calls) == 8 - 3  # 30 worlds in 8 shards; 3 were done
    assert "resuming" in capsys.readouterr().err
    assert torch.equal(stacked(acts), stacked(whole))
    assert json.loads((out / "manifest.json").read_text())["shards"] == json.loads(
        (tmp_path / "whole" / "manifest.json").read_text())["shards"]
    assert not list(tmp_path.glob(".rec.work-*")) and not list(out.glob("*.done.json"))


def test_a_damaged_shard_is_recorded_again(tiny_qwen, worlds, tmp_path, monkeypatch):
    out = tmp_path / "rec"
    counting(monkeypatch, fail_at=5)
    with pytest.raises(KeyboardInterrupt):
        record(tiny_qwen, worlds, reduce="last", shard_size=4, out=out, progress=False)
    work = next(tmp_path.glob(".rec.work-*"))
    shard1 = work / "shard-00001.safetensors"
    shard1.write_bytes(shard1.read_bytes()[:-7])  # truncated
    (work / "shard-00002.done.json").unlink()  # its record never written
    calls = counting(monkeypatch)
    acts = record(tiny_qwen, worlds, reduce="last", shard_size=4, out=out, progress=False)
    assert len(calls) == 8 - 2  # shards 0 and 3 reused
    fresh = record(tiny_qwen, worlds, reduce="last", shard_size=4, progress=False)
    assert torch.equal(stacked(acts), stacked(fresh))


def test_other_settings_do_not_reuse_the_work(tiny_qwen, worlds, tmp_path, monkeypatch):
    out = tmp_path / "rec"
    counting(monkeypatch, fail_at=3)
    with pytest.raises(KeyboardInterrupt):
        record(tiny_qwen, worlds, reduce="last", shard_size=4, out=out, progress=False)
    calls = counting(monkeypatch)
    record(tiny_qwen, worlds, reduce="mean", shard_size=4, out=out, progress=False)
    assert len(calls) == 8  # another reduce: nothing reused, and the stale work is cleared at the end
    assert not list(tmp_path.glob(".rec.work-*"))


def test_record_command_killed_then_resumed(tiny_qwen, tmp_path):
    data = tmp_path / "worlds.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in labelled_corpus(120)))  # 600 worlds
    model = tiny_qwen.provenance["model_id"]
    args = [sys.executable, "-m", "steer.cli", "record", "--model", model, "--worlds", str(data), "--batch-size", "1",
            "--shard-size", "10", "--quiet", "--out", str(tmp_path / "rec")]
    env = {**os.environ, "PYTHONPATH": os.getcwd()}
    p = subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.time() + 120
    while time.time() < deadline and p.poll() is None:
        if len(list(tmp_path.glob(".rec.work-*/shard-*.done.json"))) >= 3:
            break
        time.sleep(0.01)
    if p.poll() is not None:
        pytest.fail("the recording finished before it could be killed; give it more worlds")
    p.send_signal(signal.SIGKILL)
    p.wait()
    done = len(list(tmp_path.glob(".rec.work-*/shard-*.done.json")))
    assert done >= 3 and not (tmp_path / "rec").exists()
    out = subprocess.run(args, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert "resuming" in out.stderr and "--recording" in out.stdout
    acts = Activations.load(tmp_path / "rec")
    fresh = record(tiny_qwen, Worlds.from_file(data), reduce="last", batch_size=1, progress=False)
    assert torch.equal(stacked(acts), stacked(fresh))


def test_record_command_prints_where_and_how_to_reuse(tiny_qwen, tmp_path, capsys):
    data = tmp_path / "worlds.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in labelled_corpus(2)))
    model = tiny_qwen.provenance["model_id"]
    assert main(["record", "--model", model, "--worlds", str(data), "--quiet", "--out", str(tmp_path / "r")]) == 0
    text = capsys.readouterr().out
    assert "recorded 10 worlds x 3 layers" in text and "MiB" in text and f"--recording {tmp_path / 'r'}" in text
    assert main(["find", "--model", model, "--worlds", str(data), "--recording", str(tmp_path / "r"),
                 "--proposition", "label=positive", "--k", "2", "--bootstrap", "0", "--quiet"]) == 0
