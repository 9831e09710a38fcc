"""The paper's MNIST and fairness experiments on a small budget: data loading and splits, the metrics they use,
and a full run of each pipeline with its report (the full-size runs are bench/paper_mnist.py and
bench/paper_fairness.py)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from steer.eval import (
    FairnessExperiment,
    MnistExperiment,
    load_mnist,
    mnist_split,
    run_fairness,
    run_mnist,
    write_fairness_report,
    write_mnist_report,
)
from steer.eval.datasets import load_adult
from steer.eval.fairness import reweighing_weights
from steer.eval.metrics import fairness_gaps, pca, silhouette_score

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
needs_data = pytest.mark.skipif(not (SHARED / "mnist").is_dir(), reason="../shared/data is not beside the checkout")


@needs_data
def test_mnist_loads_the_ten_thousand_test_digits():
    x, y = load_mnist(SHARED / "mnist")
    assert x.shape == (10_000, 1, 28, 28) and x.dtype == torch.float32
    assert 0.0 <= float(x.min()) and float(x.max()) == 1.0
    assert torch.bincount(y).tolist()[:3] == [980, 1135, 1032]  # MNIST's test-set class counts


def test_mnist_split_is_fixed_disjoint_and_complete():
    a, b = mnist_split(), mnist_split()
    assert all(np.array_equal(getattr(a, f), getattr(b, f)) for f in ("train", "worlds", "held_out"))
    assert (len(a.train), len(a.worlds), len(a.held_out)) == (8000, 1024, 976)
    everything = np.concatenate([a.train, a.worlds, a.held_out])
    assert sorted(everything.tolist()) == list(range(10_000))
    assert "8,000" in a.describe() and "60,000" in a.describe()
    with pytest.raises(ValueError):
        mnist_split(n_train=9_500)


def test_mnist_loader_refuses_a_wrong_directory(tmp_path):
    with pytest.raises(FileNotFoundError, match="t10k"):
        load_mnist(tmp_path)


def test_silhouette_and_pca_on_constructed_clusters():
    g = torch.Generator().manual_seed(0)
    labels = torch.arange(90) % 3
    centres = torch.tensor([[0.0, 0.0, 0.0], [10.0, 0.0, 0.0], [0.0, 10.0, 0.0]])
    tight = centres[labels] + 0.1 * torch.randn(90, 3, generator=g)
    assert silhouette_score(tight, labels) > 0.95
    assert abs(silhouette_score(torch.randn(90, 3, generator=g), labels)) < 0.1
    coords, share = pca(tight, 2)
    assert coords.shape == (90, 2) and float(share.sum()) > 0.99
    with pytest.raises(ValueError, match="clusters"):
        silhouette_score(tight, torch.zeros(90))


def test_fairness_gaps_and_reweighing_on_a_constructed_population():
    y = torch.tensor([1, 1, 0, 0, 1, 0, 0, 0])
    group = torch.tensor([1, 1, 1, 1, 0, 0, 0, 0])
    pred = torch.tensor([1, 1, 1, 0, 0, 0, 0, 0])
    gaps = fairness_gaps(pred, y, group)
    assert gaps["dp"] == pytest.approx(0.75) and gaps["tpr_gap"] == pytest.approx(1.0)
    assert gaps["fpr_gap"] == pytest.approx(0.5) and gaps["eo"] == pytest.approx(1.0)
    w = reweighing_weights(y, group)
    for g in (0, 1):  # weighted P(y=1 | g) equals P(y=1) in both groups: outcome independent of group
        m = group == g
        assert float((w[m] * y[m]).sum() / w[m].sum()) == pytest.approx(float(y.float().mean()))


@needs_data
def test_adult_loads_with_a_fixed_split():
    a = load_adult(SHARED / "adult" / "adult.data")
    assert len(a.y_train) + len(a.y_test) == 32_561 and len(a.y_test) == 6_512
    assert a.x_train.shape[1] == len(a.feature_names) and torch.isfinite(a.x_train).all()
    assert 0.2 < float(a.y_train.float().mean()) < 0.3 and 0.6 < float(a.group_train.float().mean()) < 0.7
    assert torch.equal(load_adult(SHARED / "adult" / "adult.data").y_test, a.y_test)


@needs_data
def test_the_mnist_pipeline_runs_end_to_end_on_a_small_budget(tmp_path):
    cfg = MnistExperiment(
        str(SHARED / "mnist"),
        trainings=("ce", "doxastic"),
        seeds=(0,),
        epochs=2,
        eps=(0.1,),
        coeffs=(5.0,),
        random_seeds=(0,),
        n_train=2_000,
    )
    r = run_mnist(cfg, progress=False)
    assert [m["training"] for m in r["models"]] == ["ce", "doxastic"]
    ce = r["models"][0]
    assert ce["clean_accuracy"] > 0.5 and set(ce["fgsm"]) == {"0.1"}
    assert ce["fgsm"]["0.1"] < ce["clean_accuracy"]
    assert ce["sanity"]["holds"], ce["sanity"]["output_argmax"]  # output unit d speaks most for label d
    f = ce["faithfulness_at_5"]
    # the selected units flip far more predictions than as many random units of the same layer
    assert f["pos2neg/top-k"]["rate"] > f["pos2neg/random"]["rate"] + 0.2
    assert f["neg2pos/top-k"]["rate"] > f["neg2pos/random"]["rate"] + 0.2
    assert set(ce["silhouette"]) == {"conv1", "conv2", "fc1", "fc2", "output"}
    out = write_mnist_report(r, tmp_path / "mnist")
    for name in ("report.md", "result.json", "fig2_max_strength.png", "fig3_flips.png", "fig4_pca.png",
                 "robustness.png"):
        assert (out / name).stat().st_size > 0, name
    assert "60,000" in (out / "report.md").read_text()
    assert json.loads((out / "result.json").read_text())["models"][1]["training"] == "doxastic"


@needs_data
def test_the_fairness_pipeline_runs_end_to_end_on_a_small_budget(tmp_path):
    cfg = FairnessExperiment(str(SHARED / "adult" / "adult.data"), variants=("ce", "rd (logit, weight 1)"),
                             seeds=(0,), epochs=1)
    r = run_fairness(cfg)
    rows = {row["variant"]: row for row in r["rows"]}
    assert rows["ce"]["accuracy"] > 0.8
    assert rows["rd (logit, weight 1)"]["rd_logit"] < rows["ce"]["rd_logit"]  # the loss lowers what it targets
    out = write_fairness_report(r, tmp_path / "fair")
    assert "| ce | 1 |" in (out / "report.md").read_text() and (out / "fairness.png").stat().st_size > 0
    with pytest.raises(ValueError, match="unknown variant"):
        FairnessExperiment("x", variants=("nope",))
