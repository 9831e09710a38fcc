"""Hostile input and faults: every bad input gets a clear error, nothing is silently wrong, nothing half-written is
ever read. One group per class of the hostile-input probe: silently wrong results, tracebacks, unclear errors, no
limits, faults and leftovers, security. Each case checks the message names the problem (and, through the CLI, that
it is one line with exit code 2)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import steer
from steer import ArtifactMismatchError, Intervention, NeuronSet, PromptSetError, Steerer, Worlds, record
from steer.cli import main
from steer.generation import generate_text
from steer.sites import parse_layers
from steer.templates import Template
from tests.conftest import labelled_corpus

ROOT = Path(__file__).resolve().parents[1]


def cli(capsys, *argv):
    """Run the CLI; return (exit code, stderr). argparse errors exit through SystemExit(2)."""
    try:
        rc = main(list(argv))
    except SystemExit as e:
        rc = e.code
    err = capsys.readouterr().err
    return rc, err


def one_line_error(err: str) -> str:
    lines = [ln for ln in err.strip().splitlines() if "error" in ln]
    assert lines, err
    assert "Traceback" not in err, err
    return lines[-1]


@pytest.fixture(scope="module")
def worlds():
    return Worlds.from_records(labelled_corpus(2))


@pytest.fixture(scope="module")
def acts(tiny_qwen, worlds):
    return record(tiny_qwen, worlds, site="mlp", progress=False)


@pytest.fixture
def tiny_dir(tmp_path_factory, cache_env):
    from tests.conftest import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("tiny-cli"), "qwen2")


@pytest.fixture
def prompt_file(tmp_path):
    def write(lines, name="w.jsonl", raw: bytes | None = None):
        p = tmp_path / name
        if raw is not None:
            p.write_bytes(raw)
        else:
            p.write_text("\n".join(json.dumps(r) for r in lines) + "\n")
        return p

    return write


# ------------------------------------------------------------------------------------ 1. silently wrong


@pytest.mark.parametrize(
    "records, spec, message",
    [
        ([{"text": "a", "score": 0.9}, {"text": "b", "score": float("nan")}, {"text": "c", "score": 0.1}],
         "score>0.5", "missing"),
        ([{"text": "a", "score": 0.9}, {"text": "b", "score": None}, {"text": "c", "score": 0.1}],
         "score<=0.5", "missing"),
        ([{"text": "a", "label": "x"}, {"text": "b", "label": None}, {"text": "c", "label": "y"}],
         "label!=x", "missing"),
        ([{"text": "a", "label": "x"}, {"text": "b", "label": 1}, {"text": "c", "label": "y"}], "label=x", "mixes"),
        ([{"text": "a", "score": "0.9"}, {"text": "b", "score": "high"}, {"text": "c", "score": "0.1"}],
         "score>0.5", "not numeric"),
        ([{"text": "a", "score": 1}, {"text": "b", "score": float("inf")}, {"text": "c", "score": 0}],
         "score:top1", "infinite"),
    ],
)
def test_propositions_over_missing_or_mixed_fields_are_refused(records, spec, message):
    with pytest.raises(PromptSetError, match=message):
        Worlds.from_records(records).proposition(spec)


@pytest.mark.parametrize("text, message", [(None, "null"), (5, "number"), ("   ", "empty"), (["a"], "list")])
def test_prompts_from_null_numeric_or_empty_text_are_refused(text, message):
    with pytest.raises(PromptSetError, match=message):
        Worlds.from_records([{"text": text}, {"text": "fine"}])


def test_identical_texts_with_contradictory_labels_give_no_top_units(tiny_qwen):
    recs = [{"text": t, "label": lab} for t in ("the film", "cold soup") for lab in ("positive", "negative")]
    w = Worlds.from_records(recs)
    a = record(tiny_qwen, w, site="mlp", progress=False)
    for normalize in ("none", "zscore", "rank"):
        with pytest.raises(ValueError, match="same prompts"):
            a.strength(w.proposition("label=positive"), normalize=normalize).top(3)


def test_k_so_large_that_units_are_both_for_and_against_is_refused(acts, worlds):
    s = acts.strength(worlds.proposition("label=positive"))
    with pytest.raises(ValueError, match="both"):
        s.top(73)  # 144 units: 73 for and 73 against would overlap
    assert len(s.top(72).units_for) == 72


@pytest.mark.parametrize("coeff", [float("inf"), float("nan"), -1e30, -1.0, 1e30])
def test_non_finite_negative_or_absurd_coefficients_are_refused(tiny_qwen, acts, worlds, coeff):
    ns = acts.strength(worlds.proposition("label=positive")).top(3)
    with pytest.raises(ValueError, match="finite|>= 0|absurd"):
        Steerer(tiny_qwen, ns, Intervention("additive", coeff))


@pytest.mark.parametrize("coeff, message", [("inf", "finite"), ("nan", "finite"), ("-1", ">= 0"), ("1e30", "absurd")])
def test_cli_refuses_bad_coefficients_before_loading_anything(capsys, coeff, message):
    rc, err = cli(capsys, "generate", "The hotel was", "--model", "./no/such/model", f"--coeff={coeff}")
    assert rc == 2 and message in err


def _neuron_set(acts, worlds, tmp_path, change, seal=True):
    """A neuron set file changed by ``change`` and (``seal``) re-sealed, as a careful forger would."""
    from steer.artifacts import sealed

    ns = acts.strength(worlds.proposition("label=positive")).top(3)
    d = ns.to_dict()
    change(d)
    p = tmp_path / "ns.json"
    p.write_text(json.dumps(sealed(d) if seal else d))
    return p


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda d: d["units_for"][0].update(mean=float("nan")), "non-finite"),
        (lambda d: d.update(units_against=[]), "empty"),
        (lambda d: d.update(format=99), "format 99"),
        (lambda d: d.update(format=1), "format 1"),
        (lambda d: d["provenance"].pop("model"), "not a complete neuron set"),
        (lambda d: d["units_for"][0].pop("score"), "not a complete neuron set"),
        (lambda d: d["units_for"][0].update(index=-3), "integers"),
    ],
)
def test_malformed_neuron_sets_are_refused_when_loaded(acts, worlds, tmp_path, change, message):
    with pytest.raises(ArtifactMismatchError, match=message):
        NeuronSet.load(_neuron_set(acts, worlds, tmp_path, change))


def test_units_outside_the_model_are_refused_before_generation(tiny_qwen, acts, worlds, tmp_path):
    p = _neuron_set(acts, worlds, tmp_path, lambda d: d["units_for"][0].update(index=10_000))
    ns = NeuronSet.load(p)
    with pytest.raises(ArtifactMismatchError, match="outside the model"):
        Steerer(tiny_qwen, ns)
    with pytest.raises(ArtifactMismatchError, match="outside the model"):
        NeuronSet.load(p, model=tiny_qwen)


@pytest.mark.parametrize("spec", ["-2-3", "5-3", "1,,2", "1-", "x", "2 - 4", ""])
def test_layer_specs_are_parsed_strictly(spec):
    with pytest.raises(ValueError, match="layer"):
        parse_layers(spec, 30)


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--bootstrap", "-5"], "must be 0 or more"),
        (["--k", "0"], "must be at least 1"),
        (["--alpha", "0"], "between 0 and 1"),
        (["--alpha", "1.5"], "between 0 and 1"),
        (["--n-worlds", "-3"], "must be at least 1"),
        (["--batch-size", "0"], "must be at least 1"),
    ],
)
def test_cli_options_with_meaningless_values_are_refused(capsys, argv, message):
    rc, err = cli(capsys, "find", "--proposition", "label=positive", *argv)
    assert rc == 2 and message in err


@pytest.mark.parametrize("argv", [["--q", "0"], ["--delta", "2"], ["--bootstrap", "0"]])
def test_stability_options_are_checked(capsys, argv):
    rc, err = cli(capsys, "stability", "--proposition", "label=positive", *argv)
    assert rc == 2 and "argument" in err


@pytest.mark.parametrize("template", ["Hello", "no fields at all", "{{text}}"])
def test_templates_without_fields_are_refused(template):
    with pytest.raises(PromptSetError, match="no field|unknown template"):
        Worlds.from_records([{"text": "a"}, {"text": "b"}], template=template)


def test_a_template_that_makes_every_prompt_the_same_is_refused():
    with pytest.raises(PromptSetError, match="same prompt"):
        Worlds.from_records([{"text": "a", "k": "x"}, {"text": "b", "k": "x"}], template="Label: {k}")


def test_recording_options_that_contradict_the_recording_are_refused(bundled, tmp_path, capsys):
    rc = main(["find", "--model", "bundled", "--n-worlds", "8", "--worlds-seed", "0", "--quiet", "--proposition", "label=positive",
               "--layers", "0", "--bootstrap", "0", "--out", str(tmp_path / "a")])
    assert rc == 0
    capsys.readouterr()
    base = ["find", "--model", "bundled", "--n-worlds", "8", "--worlds-seed", "0", "--quiet", "--proposition", "label=positive",
            "--bootstrap", "0", "--recording", str(tmp_path / "a" / "activations")]
    rc, err = cli(capsys, *base, "--layers", "1")
    assert rc == 2 and "--layers 1 differs from the recording's ([0])" in err
    rc, err = cli(capsys, *base, "--reduce", "mean")
    assert rc == 2 and "--reduce mean differs from the recording's (last)" in err
    rc, err = cli(capsys, *base, "--layers", "0", "--reduce", "last")
    assert rc == 0, err


def test_a_recording_shard_of_the_wrong_shape_or_size_is_refused(acts, tmp_path):
    acts.save(tmp_path / "rec")
    man = json.loads((tmp_path / "rec" / "manifest.json").read_text())
    man["width"] = 99
    (tmp_path / "rec" / "manifest.json").write_text(json.dumps(man))
    with pytest.raises(ArtifactMismatchError, match="checksum"):
        steer.Activations.load(tmp_path / "rec")
    from steer.artifacts import sealed

    (tmp_path / "rec" / "manifest.json").write_text(json.dumps(sealed(man)))
    with pytest.raises(ArtifactMismatchError, match="shape"):
        steer.Activations.load(tmp_path / "rec")
    acts.save(tmp_path / "rec2")
    shard = tmp_path / "rec2" / "shard-00000.safetensors"
    shard.write_bytes(shard.read_bytes()[:-100])
    with pytest.raises(ArtifactMismatchError, match="truncated"):
        steer.Activations.load(tmp_path / "rec2")
    acts.save(tmp_path / "rec3")
    shard = tmp_path / "rec3" / "shard-00000.safetensors"
    data = bytearray(shard.read_bytes())
    data[-4:] = b"\x00\x00\xc0\x7f"  # same size, one value changed
    shard.write_bytes(bytes(data))
    loaded = steer.Activations.load(tmp_path / "rec3")
    with pytest.raises(ArtifactMismatchError, match="checksum"):
        loaded.X  # noqa: B018


# ------------------------------------------------------------------------------ 2. tracebacks -> one line


def test_an_output_path_that_is_a_file_is_one_clear_line(tiny_dir, tmp_path, capsys):
    (tmp_path / "taken").write_text("x")
    rc, err = cli(capsys, "find", "--model", str(tiny_dir), "--proposition", "label=positive", "--quiet",
                  "--out", str(tmp_path / "taken"))
    assert rc == 2 and "is a file" in one_line_error(err)


def test_an_output_folder_that_is_not_a_steer_result_is_never_replaced(tiny_dir, tmp_path, capsys):
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "thesis.tex").write_text("precious")
    rc, err = cli(capsys, "find", "--model", str(tiny_dir), "--proposition", "label=positive", "--quiet",
                  "--out", str(folder))
    assert rc == 2 and "not a steer result folder" in one_line_error(err)
    assert (folder / "thesis.tex").read_text() == "precious"


def test_an_output_under_a_file_is_one_clear_line(tiny_dir, tmp_path, capsys):
    (tmp_path / "f").write_text("x")
    rc, err = cli(capsys, "find", "--model", str(tiny_dir), "--proposition", "label=positive", "--quiet",
                  "--bootstrap", "0", "--out", str(tmp_path / "f" / "out"))
    assert rc == 2
    line = one_line_error(err)
    assert "Not a directory" in line or "File exists" in line or "not a directory" in line.lower(), line


def test_huge_csv_fields_are_one_clear_line_with_file_and_line(tmp_path):
    p = tmp_path / "big.csv"
    p.write_text('text,label\n"' + "x" * 200_000 + '",positive\nok,negative\n')
    with pytest.raises(PromptSetError, match=r"big.csv:\d+: .*field larger"):
        Worlds.from_file(p)


def test_unexpected_errors_name_their_type_and_debug_shows_the_traceback(monkeypatch, capsys):
    import steer.cli as c

    def boom(args):
        raise ZeroDivisionError("division by zero")

    monkeypatch.setitem(c.COMMANDS, "find", boom)
    rc, err = cli(capsys, "find", "--proposition", "x=y")
    assert rc == 2 and "ZeroDivisionError: division by zero (unexpected; rerun with --debug" in err
    with pytest.raises(ZeroDivisionError):
        main(["--debug", "find", "--proposition", "x=y"])


def test_a_missing_model_is_one_clear_line(capsys):
    rc, err = cli(capsys, "generate", "hi", "--model", "./no/such/dir")
    assert rc == 2 and "does not exist" in one_line_error(err)


# -------------------------------------------------------------------------------------- 3. unclear errors


def test_decoding_errors_name_the_file_and_line(prompt_file):
    p = prompt_file(None, raw=b'{"text": "fine"}\n{"text": "caf\xe9"}\n')
    with pytest.raises(PromptSetError, match=r"w.jsonl:2: not UTF-8"):
        Worlds.from_file(p)
    csvp = prompt_file(None, name="w.csv", raw=b"text,label\nok,a\nbad \xff,b\n")
    with pytest.raises(PromptSetError, match=r"w.csv:3: not UTF-8"):
        Worlds.from_file(csvp)


def test_a_byte_order_mark_in_the_header_is_ignored(prompt_file):
    p = prompt_file(None, name="bom.tsv", raw="\ufefftext\tlabel\ngood film\tpositive\nbad film\tnegative\n".encode())
    w = Worlds.from_file(p)
    assert w.records[0]["text"] == "good film" and w.proposition("label=positive").size == 1


def test_empty_prompts_and_non_positive_token_counts(tiny_qwen, capsys):
    with pytest.raises(ValueError, match="empty"):
        generate_text(tiny_qwen, ["the film", "  "])
    for n in (0, -5):
        with pytest.raises(ValueError, match="max_new_tokens"):
            generate_text(tiny_qwen, "the film", max_new_tokens=n)
    rc, err = cli(capsys, "generate", "hi", "--max-new-tokens", "0")
    assert rc == 2 and "must be at least 1" in err


def test_toward_a_predicate_works_as_documented(tiny_qwen):
    w = Worlds.from_records(labelled_corpus(2))
    out = steer.generate("the film", toward="vader_pos:top3", model=tiny_qwen, worlds=w, k=4, max_new_tokens=3)
    assert isinstance(out, str)


# ------------------------------------------------------------------------------------------- 4. limits


def test_prompts_longer_than_the_context_fail_before_any_forward(tiny_qwen):
    long = " ".join(["the film was wonderful"] * 100)  # well over the tiny model's 128 positions
    w = Worlds.from_records([{"text": "a short one"}, {"text": long}])
    t = time.time()
    with pytest.raises(ValueError, match="do not fit the model's context of 128 tokens"):
        record(tiny_qwen, w, progress=False)
    with pytest.raises(ValueError, match="do not fit"):
        generate_text(tiny_qwen, "the film", max_new_tokens=10**9)
    assert time.time() - t < 5


def test_huge_lines_and_format_widths_fail_fast():
    t = time.time()
    with pytest.raises(PromptSetError, match="longer than"):
        Worlds.from_records([{"text": "x " * 1_000_000}, {"text": "b"}])
    for template in ("{text:>100000000}", "{text!r}", "{text.__class__.__mro__}", "{text[0]}"):
        with pytest.raises(PromptSetError, match="plain field"):
            Worlds.from_records([{"text": "a"}, {"text": "b"}], template=template)
    assert time.time() - t < 5


# ------------------------------------------------------------------------------ 5. faults and leftovers


def _start_find(tiny_dir, worlds_file, out):
    cmd = [sys.executable, "-m", "steer.cli", "find", "--model", str(tiny_dir), "--worlds", str(worlds_file),
           "--proposition", "label=positive", "--batch-size", "1", "--bootstrap", "0", "--quiet", "--out", str(out)]
    return subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})


def _wait_for_recording(out: Path, proc, timeout=120):
    t = time.time()
    while time.time() - t < timeout:
        if list(out.parent.glob(f".{out.name}.partial-*/.activations.work-*")):  # the recording's work directory
            return
        if proc.poll() is not None:
            raise AssertionError(f"finished before it could be interrupted: {proc.communicate()}")
        time.sleep(0.02)
    raise AssertionError("recording never started")


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL])
def test_a_killed_recording_leaves_nothing_that_is_read_and_a_rerun_succeeds(tiny_dir, tmp_path, sig):
    words = ["film", "soup", "crowd", "morning", "service", "music", "friends", "day", "town", "sea"]
    recs = [{"text": f"the {a} and the {b} {i}", "label": ["positive", "negative"][i % 2]}
            for i, (a, b) in enumerate((a, b) for a in words for b in words)] * 3
    wf = tmp_path / "w.jsonl"
    wf.write_text("\n".join(json.dumps(r) for r in recs))
    out = tmp_path / "result"
    proc = _start_find(tiny_dir, wf, out)
    _wait_for_recording(out, proc)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    assert not out.exists(), "a result folder appeared from an interrupted run"
    leftovers = list(tmp_path.glob(".result.partial-*"))
    if sig == signal.SIGTERM:
        assert proc.returncode == 143 and "terminated" in err and leftovers == [], (proc.returncode, err, leftovers)
    else:
        assert proc.returncode == -signal.SIGKILL and leftovers  # nothing could clean up ...
    rerun = _start_find(tiny_dir, wf, out)
    so, se = rerun.communicate(timeout=300)
    assert rerun.returncode == 0, se
    assert (out / "steer-run.json").is_file() and (out / "activations" / "manifest.json").is_file()
    assert list(tmp_path.glob(".result.partial-*")) == []  # ... and the rerun removed the dead run's leftovers
    assert steer.Activations.load(out / "activations").X.shape[0] == len(recs)


def test_a_failed_rerun_into_an_existing_result_leaves_the_old_result_whole(tiny_dir, tmp_path, capsys, monkeypatch):
    out = tmp_path / "res"
    base = ["find", "--model", str(tiny_dir), "--proposition", "label=positive", "--quiet", "--bootstrap", "0",
            "--out", str(out)]
    assert cli(capsys, *base)[0] == 0
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    def fail(*a, **k):
        raise RuntimeError("disk full")

    monkeypatch.setattr(sys.modules["steer.find"], "find_units", fail)
    rc, err = cli(capsys, *base, "--k", "3")
    assert rc == 2 and "disk full" in err
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()} == before
    assert json.loads((out / "steer-run.json").read_text())["complete"] is True
    assert list(tmp_path.glob(".res.partial-*")) == []


def test_a_corrupted_cached_recording_is_rebuilt(tiny_qwen, worlds, capsys):
    from steer.select import RecordSpec, recording

    a = recording(RecordSpec(tiny_qwen, worlds, "resid", "last", [0, 1]), progress=False)
    shard = a.path / "shard-00000.safetensors"
    data = bytearray(shard.read_bytes())
    data[-8:] = bytes(8)
    shard.write_bytes(bytes(data))
    again = recording(RecordSpec(tiny_qwen, worlds, "resid", "last", [0, 1]), progress=False)
    assert "unusable" in capsys.readouterr().err
    torch.testing.assert_close(again.X, record(tiny_qwen, worlds, site="resid", layers=[0, 1], progress=False).X)


def test_changed_cached_weights_are_detected(tmp_path):
    from steer.cache import file_sha256
    from steer.weights import _cached_weights_problem

    d = tmp_path / "gguf-x"
    d.mkdir()
    (d / "model.safetensors").write_bytes(b"weights" * 100)
    (d / "config.json").write_text("{}")
    files = {f.name: {"bytes": f.stat().st_size, "sha256": file_sha256(f)} for f in d.iterdir()}
    (d / "steer_source.json").write_text(json.dumps({"files": files}))
    assert _cached_weights_problem(d) is None
    (d / "model.safetensors").write_bytes(b"weights" * 99)
    assert "truncated" in _cached_weights_problem(d)
    (d / "model.safetensors").write_bytes(b"WEIGHTS" * 100)  # same size, other content
    assert "changed" in _cached_weights_problem(d)
    (d / "steer_source.json").write_text("{not json")
    assert "no valid record" in _cached_weights_problem(d)
    assert _cached_weights_problem(tmp_path / "absent") == "are missing"


def test_a_truncated_cached_model_is_rebuilt(bundled, monkeypatch, tmp_path, capsys):
    import shutil

    import steer.weights as steer_weights
    from steer.cache import cache_dir

    src = cache_dir() / "models" / f"gguf-{bundled.provenance['sha256'][:20]}"
    cache = tmp_path / "cache"
    shutil.copytree(src, cache / "models" / src.name)
    weights = next((cache / "models" / src.name).glob("*.safetensors"))
    weights.write_bytes(weights.read_bytes()[: 1 << 20])
    monkeypatch.setenv("STEER_CACHE", str(cache))
    calls = []

    def rebuild(path, sha, target):
        calls.append(target)
        shutil.rmtree(target)
        shutil.copytree(src, target)

    monkeypatch.setattr(steer_weights, "_dequantize_gguf", rebuild)
    m = steer.load_model("bundled")
    assert calls and "truncated" in capsys.readouterr().err and m.n_layers == 30


def test_an_unwritable_cache_directory_falls_back(monkeypatch, tmp_path, capsys):
    import steer.cache as cache

    (tmp_path / "file").write_text("x")
    monkeypatch.setenv("STEER_CACHE", str(tmp_path / "file" / "cache"))
    d = cache.cache_dir()
    assert d.is_dir() and os.access(d, os.W_OK) and "not writable" in capsys.readouterr().err
    cache._FALLBACK.clear()


# ------------------------------------------------------------------------------------------- 6. security


@pytest.mark.parametrize("name", ["../../etc/passwd", "/etc/passwd", "..", "templates/plain", "plain.txt"])
def test_template_names_resolve_only_inside_the_templates_directory(name):
    with pytest.raises(PromptSetError, match="unknown template"):
        Worlds.from_records([{"text": "a"}, {"text": "b"}], template=name)


def test_explicit_template_files_need_the_explicit_flag(tmp_path, capsys):
    p = tmp_path / "t.txt"
    p.write_text("Review: {text}\n")
    w = Worlds.from_records([{"text": "a"}, {"text": "b"}], template=Template.from_file(p))
    assert w.prompts == ["Review: a", "Review: b"]
    rc, err = cli(capsys, "find", "--model", "./nope", "--proposition", "label=x", "--template", str(p))
    assert rc == 2
    rc, err = cli(capsys, "find", "--template", "plain", "--template-file", str(p), "--proposition", "label=x")
    assert rc == 2 and "not allowed with argument" in err


def test_temp_files_never_follow_a_planted_symlink(tmp_path):
    from steer.artifacts import write_json_atomic

    victim = tmp_path / "victim.txt"
    victim.write_text("untouched")
    target = tmp_path / "out.json"
    for guess in (f".{target.name}.tmp-{os.getpid()}", f".{target.name}.tmp"):  # the names 0.1 used
        (tmp_path / guess).symlink_to(victim)
    write_json_atomic(target, {"a": 1})
    assert victim.read_text() == "untouched" and json.loads(target.read_text()) == {"a": 1}


def test_format_strings_cannot_reach_python_objects():
    with pytest.raises(PromptSetError, match="plain field"):
        Worlds.from_records([{"text": "a"}, {"text": "b"}], template="{text.__class__.__init__.__globals__}")


def test_candidate_propositions_skip_fields_missing_in_some_worlds():
    from steer.explain import candidate_propositions

    w = Worlds.from_records([{"text": "a", "label": "x", "note": "n1"}, {"text": "b", "label": "y", "note": None},
                             {"text": "c", "label": "x", "note": "n2"}])
    assert {c.name for c in candidate_propositions(w)} == {"label=x", "label=y"}
