"""`steer find` end to end on the bundled SmolLM2 model, offline."""

import json

import pytest

from steer.activations import Activations
from steer.cli import main
from steer.neuronset import NeuronSet


def test_find_end_to_end_on_bundled_model(bundled, tmp_path, capsys):
    out = tmp_path / "find"
    rc = main(["find", "--model", "bundled", "--template", "classify-2shot", "--n-worlds", "48", "--worlds-seed", "0",
               "--proposition", "label=positive", "--site", "mlp", "--k", "5", "--out", str(out), "--quiet"])
    text = capsys.readouterr().out
    assert rc == 0
    assert "top 5 units FOR 'label=positive'" in text and "score zscore-D (normalize=zscore)" in text
    assert "layer  29:" in text
    for norm in ("none", "zscore", "rank"):
        for name in (f"neurons-{norm}.json", f"strength_by_layer-{norm}.png", f"stability-{norm}.png"):
            assert (out / name).is_file(), name
    for name in ("summary.json", "activations/manifest.json"):
        assert (out / name).is_file(), name
    assert "D interval" in text and "top-k freq" in text and "prediction set for the top unit" in text
    ns = NeuronSet.load(out / "neurons-none.json", model=bundled, site="mlp")
    assert len(ns.units_for) == 5 and len(ns.units_against) == 5
    assert ns.units_for[0].score > 0 > ns.units_against[0].score and ns.score == "D"
    st = ns.extra["stability"]
    assert (st["resamples"], st["seed"], st["alpha"]) == (200, 0, 0.1)
    assert all(0 <= u["freq"] <= 1 and u["lo"] <= u["hi"] for u in st["units_for"] + st["units_against"])
    assert 0 <= st["jaccard_for"] <= 1 and sum(p["share"] for p in st["prediction_set_for"]) >= 0.9
    acts = Activations.load(out / "activations", model=bundled)
    assert acts.X.shape == (48, 30, 1536)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["worlds"]["template"] == "classify-2shot" and len(summary["layer_max_D"]["none"]) == 30

    # reuse the recording for another proposition: no new forward passes
    rc = main(["find", "--model", "bundled", "--template", "classify-2shot", "--n-worlds", "48", "--worlds-seed", "0",
               "--proposition", "label=negative", "--recording", str(out / "activations"), "--k", "3", "--quiet",
               "--bootstrap", "0"])
    assert rc == 0 and "AGAINST 'label=negative'" in capsys.readouterr().out


@pytest.mark.parametrize("args, message", [
    (["--proposition", "label=postive"], "unknown value 'postive'"),
    (["--proposition", "label=positive", "--k", "99999999"], "more than the 46080 units"),
    (["--proposition", "label=positive", "--layers", "40"], "unknown layer 40"),
    (["--proposition", "label=positive", "--template", "{text} {stars}"], "missing from record 0"),
    (["--proposition", "label=positive", "--worlds", "nope.jsonl"], "does not exist"),
])
def test_find_bad_input(bundled, tmp_path, capsys, args, message):
    rc = main(["find", "--model", "bundled", "--n-worlds", "8", "--worlds-seed", "0", "--quiet", "--out", str(tmp_path / "o"), *args])
    assert rc == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "o" / "neurons-none.json").exists()


def test_recording_from_other_worlds_is_refused(bundled, tmp_path, capsys):
    rc = main(["find", "--model", "bundled", "--n-worlds", "8", "--worlds-seed", "0", "--quiet", "--proposition", "label=positive",
               "--layers", "0", "--out", str(tmp_path / "a")])
    assert rc == 0
    rc = main(["find", "--model", "bundled", "--n-worlds", "9", "--worlds-seed", "0", "--quiet", "--proposition", "label=positive",
               "--recording", str(tmp_path / "a" / "activations")])
    assert rc == 2 and "other worlds" in capsys.readouterr().err


def test_stability_command_on_bundled_model(bundled, tmp_path, capsys):
    out = tmp_path / "stab"
    rc = main(["stability", "--model", "bundled", "--n-worlds", "64", "--worlds-seed", "0", "--proposition", "label=positive",
               "--layers", "20-29", "--bootstrap", "50", "--out", str(out), "--quiet"])
    text = capsys.readouterr().out
    assert rc == 0
    assert "stability over 50 bootstrap resamples" in text
    assert "missing-labels drop" in text and "speaks for" in text
    trust = json.loads((out / "trust.json").read_text())
    sanity = trust["rank"]["sanity_for"]
    assert set(sanity) == {"D", "iou", "f1", "auroc", "corr", "accuracy", "recall", "precision"}
    assert trust["rank"]["explanation"]["params"]["n_candidates"] >= 3
    assert (out / "stability-rank.png").is_file()
