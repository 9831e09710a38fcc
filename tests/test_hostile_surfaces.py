"""Hostile input on the newer surfaces (record, export, caches, compiled steering, Ray, the API), one group per class:
1. data loss, 2. forged or planted work, 3. integrity, 4. values that make no sense, 5. compiled steering state,
6. hangs, 7. errors that say what is wrong. Through the API and the CLI; the CLI's errors are one line, exit 2."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import steer
from steer import ArtifactMismatchError, Intervention, NeuronSet, Steerer, Worlds, record
from steer.artifacts import sealed
from steer.cli import main
from steer.export import ExportError, export_steering, read_control_vector, write_control_vector
from steer.fold import export_form
from steer.generation import generate_text
from tests.conftest import labelled_corpus

ROOT = Path(__file__).resolve().parents[1]
IS_ROOT = os.geteuid() == 0


def cli(capsys, *argv):
    try:
        rc = main(list(argv))
    except SystemExit as e:
        rc = e.code
    return rc, capsys.readouterr().err


def one_line(err: str) -> str:
    lines = [ln for ln in err.strip().splitlines() if "error" in ln]
    assert lines and "Traceback" not in err, err
    return lines[-1]


@pytest.fixture(scope="module")
def worlds():
    return Worlds.from_records(labelled_corpus(2))


@pytest.fixture(scope="module")
def acts(tiny_qwen, worlds):
    return record(tiny_qwen, worlds, site="mlp", progress=False)


@pytest.fixture(scope="module")
def ns(acts, worlds):
    return acts.strength(worlds.proposition("label=positive")).top(3)


@pytest.fixture
def tiny_dir(tmp_path_factory, cache_env):
    from tests.conftest import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("tiny-cli"), "qwen2")


@pytest.fixture
def jsonl(tmp_path):
    p = tmp_path / "w.jsonl"
    p.write_text("\n".join(json.dumps(r) for r in labelled_corpus(2)) + "\n")
    return p


def users_folder(path: Path) -> Path:
    path.mkdir()
    (path / "thesis.tex").write_text("precious")
    return path


# ------------------------------------------------------------------------------------------------ 1. data loss


def test_record_never_replaces_a_users_folder_api_and_cli(tiny_qwen, worlds, tiny_dir, jsonl, tmp_path, capsys):
    folder = users_folder(tmp_path / "mine")
    with pytest.raises(FileExistsError, match="not a steer result"):
        record(tiny_qwen, worlds, out=folder, progress=False)
    rc, err = cli(capsys, "record", "--model", str(tiny_dir), "--worlds", str(jsonl), "--out", str(folder), "--quiet")
    assert rc == 2 and "not a steer result" in one_line(err)
    assert (folder / "thesis.tex").read_text() == "precious" and sorted(os.listdir(folder)) == ["thesis.tex"]
    assert not list(tmp_path.glob(".mine.*"))  # no work directory was even made
    # a previous recording (steer's own) is replaced
    record(tiny_qwen, worlds, out=tmp_path / "rec", progress=False)
    again = record(tiny_qwen, worlds, out=tmp_path / "rec", site="resid", progress=False)
    assert again.site == "resid"


def test_export_never_replaces_a_users_folder_or_file_api_and_cli(tiny_qwen, ns, tiny_dir, tmp_path, capsys):
    folder = users_folder(tmp_path / "mine")
    with pytest.raises(FileExistsError, match="not a steer result"):
        export_steering(tiny_qwen, ns, "pt", folder)
    with pytest.raises(FileExistsError, match="not a steer result"):
        export_steering(tiny_qwen, ns, "model", folder)
    notes = tmp_path / "notes.txt"
    notes.write_text("my notes")
    with pytest.raises(FileExistsError, match="not a steer result"):
        export_steering(tiny_qwen, ns, "control-vector", notes)
    with pytest.raises(FileExistsError, match="not a steer result"):
        write_control_vector(export_form(tiny_qwen, ns), notes, drop_layer_0=True)
    path = ns.save(tmp_path / "set.json")
    for fmt, out in (("pt", folder), ("control-vector", notes)):
        rc, err = cli(capsys, "export", str(path), "--model", str(tiny_dir), "--format", fmt, "--out", str(out))
        assert rc == 2 and "not a steer result" in one_line(err), err
    assert notes.read_text() == "my notes" and (folder / "thesis.tex").read_text() == "precious"
    # steer's own earlier exports are replaced
    export_steering(tiny_qwen, ns, "pt", tmp_path / "pt")
    export_steering(tiny_qwen, ns, "pt", tmp_path / "pt")
    cv = export_steering(tiny_qwen, ns, "control-vector", tmp_path / "cv.gguf", drop_layer_0=True)
    export_steering(tiny_qwen, ns, "control-vector", cv, drop_layer_0=True)


def test_other_writers_never_replace_what_steer_did_not_write(acts, ns, tmp_path):
    mine = tmp_path / "mine.json"
    mine.write_text('{"my": "data"}')
    with pytest.raises(FileExistsError, match="not a steer result"):
        ns.save(mine)
    with pytest.raises(FileExistsError, match="not a steer result"):
        acts.save(users_folder(tmp_path / "folder"))
    assert mine.read_text() == '{"my": "data"}'
    ns.save(tmp_path / "set.json")
    ns.save(tmp_path / "set.json")  # its own file: replaced


def test_an_output_that_is_a_symlink_is_refused(tiny_qwen, worlds, ns, tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (tmp_path / "link").symlink_to(elsewhere)
    with pytest.raises(FileExistsError, match="symbolic link"):
        record(tiny_qwen, worlds, out=tmp_path / "link", progress=False)
    with pytest.raises(FileExistsError, match="symbolic link"):
        export_steering(tiny_qwen, ns, "pt", tmp_path / "link")
    assert list(elsewhere.iterdir()) == []


# --------------------------------------------------------------------------------------- 2. forged or planted work


def _work(tiny_qwen, worlds, out: Path, **kw) -> Path:
    from steer.artifacts import content_key
    from steer.workdir import work_key

    key = work_key(
        tiny_qwen.identity,
        tiny_qwen.dtype,
        worlds,
        kw.get("site", "mlp"),
        "last",
        list(range(tiny_qwen.n_layers)),
        16,
        1024,
        True,
    )
    return out.parent / f".{out.name}.work-{content_key(key)}"


def test_a_planted_work_folder_with_a_matching_shard_record_is_not_taken_as_work(
    tiny_qwen, worlds, acts, tmp_path, capsys
):
    from steer.activations import _write_shard

    out = tmp_path / "rec"
    work = _work(tiny_qwen, worlds, out)
    work.mkdir(mode=0o700)
    _write_shard(work, 0, torch.full_like(acts.X, 7.0), mark_done=True)  # forged, with a matching size/sha256 record
    got = record(tiny_qwen, worlds, out=out, progress=False)
    torch.testing.assert_close(got.X, acts.X)
    assert "starting it afresh" in capsys.readouterr().err


@pytest.mark.parametrize("how", ["world-writable", "symlink"] + (["other-user"] if IS_ROOT else []))
def test_a_work_folder_planted_by_someone_else_is_refused_and_untouched(tiny_qwen, worlds, tmp_path, how):
    out = tmp_path / "rec"
    work = _work(tiny_qwen, worlds, out)
    victim = tmp_path / "victim"
    victim.mkdir()
    if how == "symlink":
        work.symlink_to(victim)
    else:
        work.mkdir()
        (work / "theirs").write_text("x")
        if how == "world-writable":
            os.chmod(work, 0o777)
        else:
            os.chown(work, 65534, 65534)
    with pytest.raises(FileExistsError, match="steer did not make it"):
        record(tiny_qwen, worlds, out=out, progress=False)
    assert list(victim.iterdir()) == [] and not out.exists()
    assert how == "symlink" or (work / "theirs").read_text() == "x"


def test_a_shard_record_copied_from_other_work_is_not_trusted(acts, tmp_path):
    from steer.activations import _finished_shard, _write_shard

    a, b = tmp_path / ".r.work-aaaa", tmp_path / ".r.work-bbbb"
    a.mkdir()
    b.mkdir()
    _write_shard(a, 0, acts.X, mark_done=True)
    assert _finished_shard(a, 0, acts.n_worlds) is not None
    for name in ("shard-00000.safetensors", "shard-00000.done.json"):
        shutil.copy(a / name, b / name)
    assert _finished_shard(b, 0, acts.n_worlds) is None


def test_work_folders_are_private_and_the_recording_is_not(tiny_qwen, worlds, tmp_path, monkeypatch):
    from steer.workdir import work_dir

    w = work_dir(tmp_path / "rec", {"k": 1})
    assert (w.stat().st_mode & 0o777) == 0o700 and (w / "work.json").is_file()
    rec = record(tiny_qwen, worlds, out=tmp_path / "rec2", progress=False)
    assert rec.path.stat().st_mode & 0o077 and not (rec.path / "work.json").exists()


@pytest.mark.parametrize("how", ["world-writable", "symlink"] + (["other-user"] if IS_ROOT else []))
def test_a_planted_fallback_cache_is_not_adopted(monkeypatch, tmp_path, capsys, how):
    import tempfile

    import steer.cache as cache

    tmp = tmp_path / "tmp"
    tmp.mkdir()
    monkeypatch.setattr(tempfile, "gettempdir", lambda: str(tmp))
    (tmp_path / "file").write_text("x")
    monkeypatch.setenv("STEER_CACHE", str(tmp_path / "file" / "cache"))
    planted = tmp / f"steer-cache-{os.geteuid()}"
    theirs = tmp_path / "theirs"
    (theirs / "models").mkdir(parents=True)
    if how == "symlink":
        planted.symlink_to(theirs)
    else:
        shutil.copytree(theirs, planted)
        os.chmod(planted, 0o777) if how == "world-writable" else os.chown(planted, 65534, 65534)
    try:
        d = cache.cache_dir()
        assert d != planted and d.resolve() != theirs.resolve()
        assert (d.stat().st_mode & 0o777) == 0o700 and d.stat().st_uid == os.geteuid()
        assert "not used" in capsys.readouterr().err
    finally:
        cache._FALLBACK.clear()


def test_a_cache_everyone_may_write_is_refused_and_a_new_one_is_private(monkeypatch, tmp_path):
    import steer.cache as cache

    shared = tmp_path / "shared"
    shared.mkdir()
    os.chmod(shared, 0o777)
    monkeypatch.setenv("STEER_CACHE", str(shared))
    with pytest.raises(ValueError, match="writable by every user"):
        cache.cache_dir()
    monkeypatch.setenv("STEER_CACHE", str(tmp_path / "new" / "cache"))
    d = cache.cache_dir()
    assert d == tmp_path / "new" / "cache" and (d.stat().st_mode & 0o077) == 0


def test_the_fallback_cache_is_created_private(monkeypatch, tmp_path):
    import tempfile

    import steer.cache as cache

    monkeypatch.setattr(tempfile, "gettempdir", lambda: str(tmp_path))
    (tmp_path / "file").write_text("x")
    monkeypatch.setenv("STEER_CACHE", str(tmp_path / "file" / "cache"))
    try:
        d = cache.cache_dir()
        assert d == tmp_path / f"steer-cache-{os.geteuid()}" and (d.stat().st_mode & 0o777) == 0o700
    finally:
        cache._FALLBACK.clear()


# ---------------------------------------------------------------------------------------------- 3. integrity


def _edit_keeping_size_and_mtime(path: Path, offset: int) -> None:
    st = path.stat()
    data = bytearray(path.read_bytes())
    data[offset] ^= 0xFF
    path.write_bytes(bytes(data))
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert path.stat().st_size == st.st_size and path.stat().st_mtime_ns == st.st_mtime_ns


def test_an_edit_that_keeps_size_and_mtime_is_detected_in_cached_weights(tmp_path):
    from steer.cache import file_sha256, hash_file
    from steer.weights import _cached_weights_problem

    d = tmp_path / "gguf-x"
    d.mkdir()
    (d / "model.safetensors").write_bytes(b"weights" * 1000)
    files = {f.name: {"bytes": f.stat().st_size, "sha256": file_sha256(f)} for f in d.iterdir()}
    (d / "steer_source.json").write_text(json.dumps({"gguf": "x", "files": files}))
    assert _cached_weights_problem(d) is None
    _edit_keeping_size_and_mtime(d / "model.safetensors", 3000)
    assert file_sha256(d / "model.safetensors") == hash_file(d / "model.safetensors")
    assert "changed" in _cached_weights_problem(d)


def test_a_model_folders_identity_covers_every_byte(tmp_path):
    from steer.weights import dir_fingerprint as _dir_fingerprint

    (tmp_path / "config.json").write_text("{}")
    (tmp_path / "model.safetensors").write_bytes(os.urandom(3 << 20))
    (tmp_path / "tokenizer.json").write_text('{"v": 1}')
    before = _dir_fingerprint(tmp_path)
    _edit_keeping_size_and_mtime(tmp_path / "model.safetensors", (5 << 20) // 2)  # deep in the file
    after = _dir_fingerprint(tmp_path)
    assert after != before
    (tmp_path / "tokenizer.json").write_text('{"v": 2}')
    assert _dir_fingerprint(tmp_path) != after


def test_a_neuron_set_copied_over_another_cache_key_is_not_used(tiny_qwen, worlds, capsys):
    from steer import select

    cfg = steer.SteerConfig(k=3, site="resid", reduce="last")
    pos = cfg.select_spec(tiny_qwen, worlds, worlds.proposition("positive"))
    neg = cfg.select_spec(tiny_qwen, worlds, worlds.proposition("negative"))
    a, b = select.select_units(pos, progress=False), select.select_units(neg, progress=False)
    from steer.artifacts import content_key
    from steer.cache import cache_dir

    path = cache_dir() / "neurons"
    shutil.copy(path / f"{content_key(neg.key)}.json", path / f"{content_key(pos.key)}.json")
    select._SELECTED.clear()
    again = select.select_units(pos, progress=False)
    assert "unusable" in capsys.readouterr().err
    assert [(u.layer, u.index) for u in again.units_for] == [(u.layer, u.index) for u in a.units_for]
    assert again.proposition["name"] == a.proposition["name"] != b.proposition["name"]


@pytest.mark.parametrize(
    "change",
    [
        lambda d: d["units_for"][0].update(index=d["units_for"][0]["index"] + 1),
        lambda d: d["proposition"].update(name="label=negative"),
        lambda d: d["units_for"][0].update(mean=d["units_for"][0]["mean"] + 1),
    ],
)
def test_a_neuron_set_edited_by_hand_is_refused(ns, tmp_path, change):
    p = ns.save(tmp_path / "ns.json")
    d = json.loads(p.read_text())
    change(d)
    p.write_text(json.dumps(d))
    with pytest.raises(ArtifactMismatchError, match="checksum"):
        NeuronSet.load(p)
    d.pop("sha256")
    p.write_text(json.dumps(d))
    with pytest.raises(ArtifactMismatchError, match="no checksum"):
        NeuronSet.load(p)


def test_a_cached_recording_copied_over_another_key_is_rebuilt(tiny_qwen, worlds, capsys):
    from steer.select import RecordSpec, recording

    a = recording(RecordSpec(tiny_qwen, worlds, "resid", "last", (0,)), progress=False)
    b = recording(RecordSpec(tiny_qwen, worlds, "resid", "last", (1,)), progress=False)
    shutil.rmtree(b.path)
    shutil.copytree(a.path, b.path)
    again = recording(RecordSpec(tiny_qwen, worlds, "resid", "last", (1,)), progress=False)
    assert "unusable" in capsys.readouterr().err and again.layers == [1]


# --------------------------------------------------------------------------------------- 4. values that make no sense


def test_a_negative_std_is_refused_on_load_by_the_steerer_and_by_export(tiny_qwen, acts, worlds, ns, tmp_path):
    from dataclasses import replace

    d = ns.to_dict()
    d["units_for"][0]["std"] = -1.0
    p = tmp_path / "neg.json"
    p.write_text(json.dumps(sealed(d)))
    with pytest.raises(ArtifactMismatchError, match="negative std"):
        NeuronSet.load(p)
    bad = ns.copy()
    bad.units_for[0] = replace(bad.units_for[0], std=-1.0)
    with pytest.raises(ArtifactMismatchError, match="negative std"):
        Steerer(tiny_qwen, bad)
    with pytest.raises(ArtifactMismatchError, match="negative std"):
        export_steering(tiny_qwen, bad, "pt", tmp_path / "pt")
    assert not (tmp_path / "pt").exists()


@pytest.mark.parametrize(
    "kw, message",
    [
        ({"temperature": 0}, "temperature"),
        ({"temperature": -1.0}, "temperature"),
        ({"temperature": float("nan")}, "temperature"),
        ({"top_p": 0}, "top_p"),
        ({"top_p": 1.5}, "top_p"),
        ({"seed": -1}, "seed"),
        ({"seed": 1.5}, "seed"),
        ({"do_sample": "yes"}, "do_sample"),
        ({"max_new_tokens": True}, "max_new_tokens"),
    ],
)
def test_decoding_values_that_make_no_sense_are_refused(tiny_qwen, kw, message):
    with pytest.raises(ValueError, match=message):
        steer.GenerationConfig(**kw)
    with pytest.raises(ValueError, match=message):
        generate_text(tiny_qwen, "The hotel was", **kw)


@pytest.mark.parametrize(
    "flag, message",
    [
        ("--temperature=0", "--temperature"),
        ("--temperature=-2", "--temperature"),
        ("--top-p=0", "--top-p"),
        ("--top-p=1.5", "--top-p"),
        ("--seed=-1", "--seed"),
    ],
)
def test_cli_decoding_values_are_refused(capsys, flag, message):
    rc, err = cli(capsys, "generate", "The hotel was", "--model", "./no/such/model", flag)
    assert rc == 2 and message in err


def test_cli_edge_values_that_make_sense_are_accepted():
    from steer.cli import build_parser

    args = build_parser().parse_args(["generate", "x", "--top-p", "1", "--temperature", "0.5"])
    assert args.top_p == 1.0 and args.temperature == 0.5
    with pytest.raises(SystemExit):
        build_parser().parse_args(["record", "--out", "x", "--worlds-seed", "-1"])
    with pytest.raises(SystemExit):
        build_parser().parse_args(["record", "--out", "x", "--num-gpus-per-worker", "-1"])


def _control_vector_with(tmp_path, value: float) -> Path:
    import gguf
    import numpy as np

    p = tmp_path / "cv.gguf"
    w = gguf.GGUFWriter(str(p), "controlvector")
    w.add_string("controlvector.model_hint", "qwen2")
    w.add_uint32("controlvector.layer_count", 1)
    w.add_tensor("direction.1", np.full(8, value, dtype=np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return p


def test_a_control_vector_full_of_nan_is_refused(tiny_qwen, tmp_path):
    from steer.export import control_vector_hooks

    with pytest.raises(ExportError, match="NaN"):
        read_control_vector(_control_vector_with(tmp_path, float("nan")))
    nan = {1: torch.full((32,), float("nan"))}
    with pytest.raises(ExportError, match="finite"), control_vector_hooks(tiny_qwen.bridge.original_model, nan):
        pass
    (tmp_path / "junk.gguf").write_bytes(b"not a gguf at all")
    with pytest.raises(ExportError, match="not a readable GGUF"):
        read_control_vector(tmp_path / "junk.gguf")


def test_an_empty_steer_cache_is_refused(monkeypatch, tiny_dir, capsys, tmp_path):
    import steer.cache as cache

    monkeypatch.setenv("STEER_CACHE", "")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ValueError, match="STEER_CACHE"):
        cache.cache_dir()
    rc, err = cli(capsys, "find", "--model", str(tiny_dir), "--proposition", "label=positive", "--quiet")
    assert rc == 2 and "STEER_CACHE" in one_line(err)
    assert list(tmp_path.iterdir()) == []


# -------------------------------------------------------------------------------------- 5. compiled steering state


def _weights(model):
    return {k: v.detach().clone() for k, v in model.bridge.original_model.state_dict().items()}


def _same(a, b):
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=0, msg=k)


@pytest.mark.parametrize("order", ["in-order", "out-of-order"])
def test_nested_compiled_steerers_restore_the_weights_whatever_the_exit_order(tiny_qwen, ns, order):
    original = _weights(tiny_qwen)
    s1 = Steerer(tiny_qwen, ns, Intervention("paper", 2.0), compiled=True)
    s2 = Steerer(tiny_qwen, ns, Intervention("additive", 3.0, "away"), compiled=True)
    with Steerer(tiny_qwen, ns, Intervention("additive", 3.0, "away"), compiled=True):
        only_s2 = _weights(tiny_qwen)
    _same(_weights(tiny_qwen), original)
    h1 = s1.apply()
    h2 = s2.apply()
    if order == "in-order":
        h2.remove()
        h1.remove()
    else:
        h1.remove()
        _same(_weights(tiny_qwen), only_s2)  # what is left in force is s2 alone
        h2.remove()
    _same(_weights(tiny_qwen), original)  # the state dict's keys too: no bias is left behind


# ------------------------------------------------------------------------------------------------------ 6. hangs


def _run(code_or_argv, timeout=120, **kw):
    argv = (
        [sys.executable, "-c", code_or_argv]
        if isinstance(code_or_argv, str)
        else [sys.executable, "-m", "steer.cli", *code_or_argv]
    )
    try:
        return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, cwd=ROOT, **kw)
    except subprocess.TimeoutExpired:
        pytest.fail(f"{code_or_argv} hung (killed after {timeout} s)")


def test_a_fifo_as_template_or_prompt_file_fails_at_once(tmp_path, jsonl):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    fifo_jsonl = tmp_path / "fifo.jsonl"
    os.mkfifo(fifo_jsonl)
    env = {**os.environ, "STEER_CACHE": str(tmp_path / "cache")}
    r = _run(["record", "--worlds", str(jsonl), "--template-file", str(fifo), "--out", str(tmp_path / "o")], env=env)
    assert r.returncode == 2 and "not a regular file" in r.stderr, r.stderr
    r = _run(["record", "--worlds", str(fifo_jsonl), "--out", str(tmp_path / "o")], env=env)
    assert r.returncode == 2 and "not a regular file" in r.stderr, r.stderr
    r = _run(f"from steer.templates import Template; Template.from_file({str(fifo)!r})")
    assert r.returncode == 1 and "not a regular file" in r.stderr
    with pytest.raises((FileNotFoundError, ValueError)):
        NeuronSet.load(fifo)
    with pytest.raises(ExportError, match="not a regular file"):
        read_control_vector(fifo)
    with pytest.raises(ValueError, match="not a regular file"):
        steer.artifacts.read_regular(fifo)


class _Ref:
    def __init__(self, value):
        self.value = value


class FakeRay:
    """Just enough of Ray to drive record_ray in-process: actors are local objects, tasks run at once."""

    def __init__(self, resources):
        self.resources = resources

    def is_initialized(self):
        return True

    def cluster_resources(self):
        return self.resources

    def remote(self, cls):
        ray = self

        class ActorClass:
            def options(self, **kw):
                ray.options = kw
                return self

            def remote(self, *args):
                obj = cls(*args)

                class Actor:
                    def __getattr__(self, name):
                        method = getattr(obj, name)
                        return type("M", (), {"remote": staticmethod(lambda *a: _Ref(method(*a)))})

                return Actor()

        return ActorClass()

    def get(self, ref):
        return ref.value

    def wait(self, refs, num_returns=1):
        return refs[:num_returns], refs[num_returns:]

    def kill(self, actor):
        pass


def test_ray_checks_resources_before_waiting_on_them(monkeypatch, tiny_dir, jsonl, tmp_path, capsys):
    import steer.distributed as dist

    monkeypatch.setattr(dist, "_ray", lambda: FakeRay({"CPU": 4.0}))
    rc, err = cli(
        capsys,
        "record",
        "--engine",
        "ray",
        "--num-gpus-per-worker",
        "1",
        "--model",
        str(tiny_dir),
        "--worlds",
        str(jsonl),
        "--out",
        str(tmp_path / "r"),
        "--quiet",
    )
    assert rc == 2 and "GPUs" in one_line(err)
    with pytest.raises(ValueError, match="CPUs"):
        dist.check_resources({"CPU": 2.0}, 1, 8, 0)


def test_ray_worker_errors_name_the_real_cause(monkeypatch, tiny_dir, jsonl, tmp_path, capsys, tiny_qwen):
    import steer.distributed as dist

    monkeypatch.setattr(dist, "_ray", lambda: FakeRay({"CPU": 4.0}))
    rc, err = cli(
        capsys,
        "record",
        "--engine",
        "ray",
        "--layers",
        "30",
        "--model",
        str(tiny_dir),
        "--worlds",
        str(jsonl),
        "--out",
        str(tmp_path / "r"),
        "--quiet",
    )
    assert rc == 2 and "could not start" in one_line(err) and "30" in one_line(err)
    # and with good settings the fake pool records what a local run records
    w = Worlds.from_file(jsonl)
    got = dist.record_ray(str(tiny_dir), w, out=tmp_path / "ok", shard_size=4, progress=False)
    local = record(steer.load_model(str(tiny_dir)), w, shard_size=4, progress=False)
    torch.testing.assert_close(got.X, local.X)


# ------------------------------------------------------------------------------- 7. errors that say what is wrong


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda m, w: steer.generate(123, model=m), "prompts"),
        (lambda m, w: steer.generate("x", toward=5, model=m), "toward"),
        (lambda m, w: steer.generate("x", model=3.5), "model"),
        (lambda m, w: record(m, ["a", "b"]), "worlds"),
        (lambda m, w: record("bundled", w), "model"),
        (lambda m, w: record(m, w, batch_size="8"), "batch_size"),
        (lambda m, w: record(m, w, layers="0-2"), "layers"),
        (lambda m, w: Steerer("bundled", None), "model"),
        (lambda m, w: Steerer(m, {"units": []}), "neurons"),
        (lambda m, w: export_steering(m, None, "pt", "x"), "neurons"),
        (lambda m, w: Worlds.from_records("abc"), "records"),
        (lambda m, w: Worlds.from_records([1, 2]), "record 0"),
        (lambda m, w: Worlds.from_file(42), "path"),
        (lambda m, w: steer.SteerConfig(k="5"), "k"),
        (lambda m, w: steer.SteerConfig(layers="0-2"), "layers"),
        (lambda m, w: steer.load_model(3), "spec"),
        (lambda m, w: generate_text("model", "x"), "model"),
    ],
)
def test_wrong_argument_types_name_the_argument(tiny_qwen, worlds, call, message):
    with pytest.raises((TypeError, ValueError)) as e:
        call(tiny_qwen, worlds)
    assert message in str(e.value) and "\n" not in str(e.value), str(e.value)


def test_a_truncated_gguf_is_one_clear_line(tmp_path, capsys):
    from steer.models import ModelLoadError
    from steer.weights import bundled_gguf

    try:
        src = bundled_gguf()
    except ModelLoadError:
        pytest.skip("the bundled model is not installed")
    cut = tmp_path / "cut.gguf"
    with open(src, "rb") as f:
        cut.write_bytes(f.read(1 << 20))
    with pytest.raises(ModelLoadError, match="not a complete GGUF"):
        steer.load_model(str(cut))
    (tmp_path / "fake.gguf").write_bytes(b"PK\x03\x04 not gguf")
    rc, err = cli(capsys, "generate", "x", "--model", str(tmp_path / "fake.gguf"))
    assert rc == 2 and "not a GGUF file" in one_line(err)


def test_a_figure_never_replaces_a_file_steer_did_not_write(tmp_path):
    from matplotlib.figure import Figure

    from steer.plots import save_figure, steer_png

    fig = Figure()
    fig.add_subplot().plot([0, 1])
    mine = save_figure(fig, tmp_path / "mine.png")
    assert steer_png(mine) and save_figure(fig, mine) == mine  # its own picture is replaced
    for name, make in (("notes.png", lambda p: p.write_text("my notes")), ("photo.png", None), ("dir.png", "dir")):
        p = tmp_path / name
        if make == "dir":
            p.mkdir()
        elif make is None:
            fig.savefig(p, format="png")  # a PNG, but not steer's (no steer Software text)
        else:
            make(p)
        before = p.read_bytes() if p.is_file() else None
        with pytest.raises(FileExistsError, match="steer never replaces it"):
            save_figure(fig, p)
        assert (p.read_bytes() if p.is_file() else None) == before
    link = tmp_path / "link.png"
    link.symlink_to(mine)
    with pytest.raises(FileExistsError, match="symbolic link"):
        save_figure(fig, link)


def test_unit_scoring_names_a_wrong_argument(tiny_qwen):
    from steer.activations import Activations
    from steer.neurons import score_units

    w = steer.Worlds.from_records([{"text": t, "label": lab} for t, lab in
                                   (("good day", "positive"), ("bad day", "negative"), ("fine food", "positive"),
                                    ("cold soup", "negative"))])
    acts = steer.record(tiny_qwen, w, site="mlp", layers=[1], progress=False)
    prop = w.proposition("positive")
    with pytest.raises(TypeError, match="acts must be a recording"):
        score_units(acts.X, prop)
    with pytest.raises(TypeError, match="proposition must be a steer.Proposition"):
        score_units(acts, "positive")
    with pytest.raises(ValueError, match="unknown selection score"):
        score_units(acts, prop, "best")
    scores = score_units(acts, prop)
    with pytest.raises(TypeError, match="per_layer must be True or False"):
        scores.top(2, per_layer="yes")
    with pytest.raises(ValueError, match="seed must be an integer"):
        scores.random(2, seed=-1)
    with pytest.raises(TypeError, match="path must be a folder path"):
        Activations.load(3)
