"""bench/steering_bench.py end to end on a tiny random-weight model (both stages), so that a crash in the benchmark
is caught here and not an hour into a run."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

from tests.conftest import build_tiny_model, labelled_corpus

BENCH = Path(__file__).resolve().parents[1] / "bench" / "steering_bench.py"


def _bench():
    spec = importlib.util.spec_from_file_location("steering_bench", BENCH)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_the_benchmark_runs_both_stages_on_a_tiny_model(tmp_path, cache_env):
    model = build_tiny_model(tmp_path / "tiny", "qwen2")
    worlds = tmp_path / "worlds.jsonl"
    worlds.write_text("".join(json.dumps(r) + "\n" for r in labelled_corpus(4)))
    out = tmp_path / "out"
    result = _bench().main(["--model", str(model), "--size", "tiny", "--scorers", "vader", "--worlds", str(worlds),
                            "--max-new-tokens", "4", "--search-spread", "1", "--out", str(out)])
    saved = json.loads((out / "result.json").read_text())
    assert saved["command"].endswith(f"--out {out}") and saved["versions"]["torch"] and saved["date"]
    table = saved["table"]
    names = {r["method"] for r in table["rows"]}
    assert {"prompting: instruction", "CAA, all layers"} <= names and any(n.startswith("neurons") for n in names)
    assert sum(n.startswith("neurons by what they write") for n in names) == 2
    assert all(d["seconds"] > 0 for d in table["dev"].values()) and table["unsteered_seconds"] > 0
    assert table["n_test"] == 6 and sum(table["n_test_against"].values()) == 4
    assert set(table["comparisons"]) == {"1.25", "1.5"}
    assert all(len(c["knobs"]) >= 2 for c in table["curves"].values() if c["kind"] != "baseline" or c["knobs"] != [1.0])
    assert saved["search_spread"]["settings"] and result["k_curve"]["rows"]
    report = (out / "report.md").read_text()
    assert "## At 1.5x unsteered perplexity" in report and "How many neurons" in report


def test_a_second_run_adds_methods_to_a_stored_table(tmp_path, cache_env):
    """--merge: the trained maps run alone, added to a stored run of the same bench and compared afresh with it."""
    model = build_tiny_model(tmp_path / "tiny", "llama")
    worlds = tmp_path / "worlds.jsonl"
    worlds.write_text("".join(json.dumps(r) + "\n" for r in labelled_corpus(4)))
    common = ["--model", str(model), "--size", "tiny", "--scorers", "vader", "--worlds", str(worlds),
              "--max-new-tokens", "4", "--stage", "table", "--budgets", "1.5"]
    bench = _bench()
    first = bench.main([*common, "--methods", "neurons,caa-all", "--out", str(tmp_path / "a")])["table"]
    second = bench.main([*common, "--methods", "trained,transport", "--merge", str(tmp_path / "a" / "result.json"),
                         "--out", str(tmp_path / "b")])
    table = second["table"]
    names = {r["method"] for r in table["rows"]}
    assert {r["method"] for r in first["rows"]} < names and any(n.startswith("trained transport") for n in names)
    assert second["extra"]["training"]["losses"] and second["merged_with"]["command"]
    assert set(table["curves"]) == set(first["curves"]) | {k for k in table["curves"] if "transport" in k}
    assert "1.5" in table["comparisons"] and table["merged"][0] == first["seconds"]
    third = bench.main([*common, "--methods", "pca", "--merge", str(tmp_path / "b" / "result.json"),
                        "--out", str(tmp_path / "c")])
    assert "--methods trained,transport" in third["merged_with"]["command"]  # the chain of merges is kept whole
    assert "--methods neurons,caa-all" in third["merged_with"]["merged_with"]["command"]
    bad = {**first, "unsteered": {**first["unsteered"], "nll": [[0.0]]}}
    import pytest

    from steer.eval.matched import merge_tables

    with pytest.raises(ValueError, match="unsteered test runs differ"):
        merge_tables(bad, table)


def test_a_stored_table_grows_by_new_test_openings_at_its_settings(tmp_path, cache_env, monkeypatch):
    """--extend: the stored run's methods on new test openings only, at its test grids (no dev search), joined
    opening by opening; its own openings' figures are kept as they were."""
    import pytest

    from steer.eval.matched import Bench, BenchPrompts

    model = build_tiny_model(tmp_path / "tiny", "qwen2")
    worlds = tmp_path / "worlds.jsonl"
    worlds.write_text("".join(json.dumps(r) + "\n" for r in labelled_corpus(4)))
    common = ["--model", str(model), "--size", "tiny", "--scorers", "vader", "--worlds", str(worlds),
              "--max-new-tokens", "4", "--stage", "table", "--budgets", "1.5", "--methods", "neurons,caa-all"]
    bench = _bench()
    first = bench.main([*common, "--out", str(tmp_path / "a")])
    stored = str(tmp_path / "a" / "result.json")

    def no_search(*args, **kwargs):
        raise AssertionError("an extension searched on dev")

    monkeypatch.setattr(Bench, "calibrate", no_search)
    grown = bench.main([*common, "--extend", stored, "--n-test", "12", "--n-opposite", "8",
                        "--out", str(tmp_path / "b")])
    a, t = first["table"], grown["table"]
    assert t["n_test"] == 12 and sum(t["n_test_against"].values()) == 8 and a["n_test"] == 6
    assert [p["n_test"] for p in t["parts"]] == [6, 6] and [p["seed"] for p in t["parts"]] == [0, 1]
    assert grown["extended_from"]["n_test"] == 6 and grown["test_openings_sha256"] != first["test_openings_sha256"]
    kept, now = first["test_openings"], grown["test_openings"]  # in the table's order: the stored part first
    assert now["neutral"][:6] == kept["neutral"] and len(now["neutral"]) == 12 and len(now["opposite"]) == 8
    assert now["opposite"][:4] == kept["opposite"]
    for key, c in t["curves"].items():
        assert [g[:6] for g in c["neutral"]["nll"]] == a["curves"][key]["neutral"]["nll"]
        assert all(len(g) == 12 for g in c["neutral"]["nll"])
        assert all(len(g) == 8 // 2 for g in c["against"]["success"]["vader"])
    samples = a["config"]["samples"]
    assert all(r["success"]["neutral"]["vader"]["n"] == 12 * samples for r in t["rows"] if r["reached"])
    assert len(t["unsteered"]["nll"]) == 12 and "1.5" in t["comparisons"]

    # a method merged into the grown table runs as its parts ran (dev search once, each part with its seed): the
    # unsteered runs of the two agree opening by opening (merge_tables refuses otherwise), the stored rows are kept
    monkeypatch.undo()
    merged = bench.main([*common[:-1], "pca", "--merge", str(tmp_path / "b" / "result.json"),
                         "--out", str(tmp_path / "m")])["table"]
    assert merged["parts"] == t["parts"] and merged["n_test"] == 12
    assert {k: c["neutral"]["nll"] for k, c in merged["curves"].items() if k in t["curves"]} == {
        k: c["neutral"]["nll"] for k, c in t["curves"].items()}
    pca = [c for k, c in merged["curves"].items() if k.startswith("PCA")]
    assert len(pca) == 2 and all(len(g) == 12 for c in pca for g in c["neutral"]["nll"])
    grown_result = json.loads((tmp_path / "b" / "result.json").read_text())
    grown_result["table"]["parts"][1]["seed"] = 5
    (tmp_path / "bad.json").write_text(json.dumps(grown_result))
    with pytest.raises(SystemExit, match="cannot be repeated"):
        bench.main([*common[:-1], "pca", "--merge", str(tmp_path / "bad.json"), "--out", str(tmp_path / "m2")])

    # the new openings are the larger draw's, none of them the stored run's
    draw = BenchPrompts.from_files(bench.BENCH / "neutral.jsonl", bench.BENCH / "opposite.jsonl", "test", 12, 8)
    added = bench.added_openings(json.loads(Path(stored).read_text()), draw)
    old = BenchPrompts.from_files(bench.BENCH / "neutral.jsonl", bench.BENCH / "opposite.jsonl", "test", 6, 4)
    assert len(added.neutral) == 6 and not set(added.neutral) & set(old.neutral)
    assert len(added.opposite) == 4 and not set(added.opposite) & set(old.opposite)

    # only neutral openings added: the openings against each target stay the stored run's
    neutral_only = bench.main([*common, "--extend", stored, "--n-test", "12", "--out", str(tmp_path / "c")])["table"]
    assert neutral_only["n_test"] == 12 and neutral_only["n_test_against"] == a["n_test_against"]
    assert all(len(g) == 2 for c in neutral_only["curves"].values() for g in c["against"]["success"]["vader"])

    with pytest.raises(ValueError, match="every method of the stored table"):
        bench.main([*common[:-1], "neurons", "--extend", stored, "--n-test", "12", "--out", str(tmp_path / "d")])
    with pytest.raises(SystemExit, match="no new test openings"):
        bench.main([*common, "--extend", stored, "--out", str(tmp_path / "e")])
    with pytest.raises(SystemExit, match="--stage table"):
        bench.main([*common[:-6], "--stage", "all", "--extend", stored, "--n-test", "12", "--out", str(tmp_path / "f")])


def test_a_stored_run_keeps_its_openings_when_a_prompt_file_grows(tmp_path, monkeypatch):
    """A run that holds its openings can be extended after openings are appended to a prompt file (the file is then
    drawn whole); a run stored with only their hash cannot, since today's draw at its sizes is no longer its own."""
    import pytest

    from steer.eval.matched import BenchPrompts

    bench = _bench()
    files = tmp_path / "prompts"
    files.mkdir()
    for name in ("neutral.jsonl", "opposite.jsonl"):
        (files / name).write_text((bench.BENCH / name).read_text())
    monkeypatch.setattr(bench, "BENCH", files)
    before = BenchPrompts.from_files(files / "neutral.jsonl", files / "opposite.jsonl", "test", 6, 4)
    table = {"n_test": 6, "n_test_against": {"positive": 2, "negative": 2}}
    hashed = {"table": table, "split_seed": 0, "test_openings_sha256": bench.sha256_of(before.neutral, before.opposite)}
    listed = {**hashed, "test_openings": {"neutral": before.neutral, "opposite": [list(p) for p in before.opposite]}}
    assert bench.stored_openings(hashed) == bench.stored_openings(listed) == before

    new = [f"A wonderful new opening number {i}, and" for i in range(40)]
    with open(files / "opposite.jsonl", "a") as f:
        f.writelines(json.dumps({"text": t, "label": "positive", "split": "test"}) + "\n" for t in new)
    whole = BenchPrompts.from_files(files / "neutral.jsonl", files / "opposite.jsonl", "test", 12, None)
    added = bench.added_openings(listed, whole)
    assert len(added.neutral) == 6 and not set(added.neutral) & set(before.neutral)
    assert {p for p, _ in added.opposite} >= set(new) and not set(added.opposite) & set(before.opposite)
    with pytest.raises(SystemExit, match="the files changed"):
        bench.added_openings(hashed, whole)
    with pytest.raises(SystemExit, match="do not match its table's sizes"):
        bench.stored_openings({**listed, "table": {**table, "n_test": 7}})


def test_the_spread_stage_searches_dev_twice_and_runs_no_test(tmp_path, cache_env):
    model = build_tiny_model(tmp_path / "tiny", "llama")
    worlds = tmp_path / "worlds.jsonl"
    worlds.write_text("".join(json.dumps(r) + "\n" for r in labelled_corpus(4)))
    result = _bench().main(["--model", str(model), "--size", "tiny", "--scorers", "vader", "--worlds", str(worlds),
                            "--max-new-tokens", "4", "--stage", "spread", "--methods", "neurons,caa-all,prompting",
                            "--out", str(tmp_path / "out")])
    sp = result["search_spread"]
    assert "table" not in result and sp["seed"] == 1 and sp["budget"] == 1.5
    assert len(sp["settings"]) == 4  # prompting has no knob to search
    assert {k.split(" (")[0].split(",")[0] for k in sp["settings"]} == {"neurons", "CAA"}
    assert all(v["knob"] > 0 and v["knob_other_seed"] > 0 for v in sp["settings"].values()) and sp["median_factor"] >= 1
    assert "How far the dev search moves" in (tmp_path / "out" / "report.md").read_text()


def test_layer_doses_make_each_layer_write_a_fixed_share_of_its_residual_norm(tiny_model):
    """The bench's ``neurons-dosed``: per layer, the additive shift rescaled so that the vector it writes after the
    block has a norm proportional to the layer's residual norm, the total over layers unchanged."""
    import pytest
    import torch

    from steer import Intervention, Steerer, Worlds, record
    from steer.eval.methods import LayerDosedNeurons
    from steer.fold import output_projection

    bench = _bench()
    w = Worlds.from_records(labelled_corpus(2))
    acts = record(tiny_model, w, site="mlp", reduce="mean", progress=False)
    ns = acts.strength(w.proposition("positive"), normalize="rank").top(k=6)
    resid_norm = torch.arange(1, tiny_model.n_layers + 1).float()
    doses = bench.layer_doses(tiny_model, ns, resid_norm)
    method = LayerDosedNeurons(
        "dosed", [], sets={"positive": ns}, intervention=Intervention("additive"), doses={"positive": doses}
    )

    def written(edits):
        return {
            layer: float((output_projection(tiny_model, layer).weight.float()[:, e.index] @ e.affine.shift).norm())
            for layer, e in edits.items()
        }

    dosed = written(method.context(tiny_model, "positive", 2.0).edits)
    plain = written(Steerer(tiny_model, ns, Intervention("additive", 2.0)).edits)
    assert len(dosed) >= 2 and set(dosed) == set(plain)
    share = [dosed[layer] / float(resid_norm[layer]) for layer in dosed]
    assert max(share) - min(share) < 1e-4 * max(share)
    assert sum(dosed.values()) == pytest.approx(sum(plain.values()), rel=1e-5)
    clamp = LayerDosedNeurons(
        "dosed", [], sets={"positive": ns}, intervention=Intervention("clamp"), doses={"positive": doses}
    )
    with pytest.raises(ValueError, match="not a shift rule"):
        clamp.context(tiny_model, "positive", 1.0)
