"""Trained per-unit maps (steer.trained_maps): the fitted linear-transport maps optimised through the model."""

import pytest
import torch

from steer import Intervention, Steerer, Worlds
from steer.export import relative_error
from steer.neurons import with_transport
from steer.record import record
from steer.trained_maps import TrainConfig, train_maps
from tests.conftest import labelled_corpus


@pytest.fixture(scope="module")
def start(tiny_qwen):
    w = Worlds.from_records(labelled_corpus(2))
    acts = record(tiny_qwen, w, site="mlp", layers=[1, 2], reduce="mean", progress=False)
    prop = w.proposition(label="positive")
    return w, prop, with_transport(acts.strength(prop, normalize="rank").top(k=4), acts, prop)


def test_training_lowers_the_transport_loss_and_keeps_the_set_whole(tiny_qwen, start):
    w, prop, ns = start
    cfg = TrainConfig(steps=12, batch=8, fluency=0.0)
    trained = train_maps(tiny_qwen, ns, w, prop, cfg, progress=False)
    record_ = trained.extra["transport"]["trained"]
    for losses in record_["losses"].values():
        assert len(losses) == cfg.steps and losses[-1] < losses[0]
    assert record_["config"]["steps"] == 12
    assert [(u.layer, u.index) for u in trained.units_for] == [(u.layer, u.index) for u in ns.units_for]
    assert any(a.w_a != b.w_a for a, b in zip(trained.units_for, ns.units_for))
    assert all(a.mean == b.mean and a.std_a == b.std_a for a, b in zip(trained.units_for, ns.units_for))
    # still affine per unit: the compiled (exported) form equals the hooks
    ids, mask = tiny_qwen.tokenize(["a quiet morning", "the film was great"])
    real = mask.bool()
    iv = Intervention("linear-transport", 1.0)
    with torch.no_grad():
        with Steerer(tiny_qwen, trained, iv):
            hooked = tiny_qwen.bridge(ids, attention_mask=mask)
        with Steerer(tiny_qwen, trained, iv, compiled=True):
            compiled = tiny_qwen.bridge(ids, attention_mask=mask)
    assert relative_error(compiled[real], hooked[real]) < 1e-4


def test_training_leaves_the_model_as_it_was(tiny_qwen, start):
    w, prop, ns = start
    before = {k: v.clone() for k, v in tiny_qwen.bridge.state_dict().items()}
    flags = [p.requires_grad for p in tiny_qwen.bridge.parameters()]
    train_maps(tiny_qwen, ns, w, prop, TrainConfig(steps=2, batch=4), progress=False)
    after = tiny_qwen.bridge.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert [p.requires_grad for p in tiny_qwen.bridge.parameters()] == flags


def test_bad_training_input_is_named(tiny_qwen, start):
    w, prop, ns = start
    with pytest.raises(ValueError, match="steps must be a positive integer"):
        TrainConfig(steps=0)
    with pytest.raises(ValueError, match="lr must be > 0"):
        TrainConfig(lr=0.0)
    with pytest.raises(TypeError, match="config must be a steer.TrainConfig"):
        train_maps(tiny_qwen, ns, w, prop, {"steps": 3}, progress=False)
    bare = ns.copy()
    bare.units_for = [type(u)(u.layer, u.index, u.score, u.mean, u.std, u.mean_a, u.mean_c) for u in ns.units_for]
    with pytest.raises(ValueError, match="no transport statistics"):
        train_maps(tiny_qwen, bare, w, prop, progress=False)


def test_one_direction_trains_one_map(tiny_qwen, start):
    w, prop, ns = start
    trained = train_maps(tiny_qwen, ns, w, prop, TrainConfig(steps=3, batch=4), progress=False, directions=("toward",))
    assert all(a.w_c == b.w_c and a.b_c == b.b_c for a, b in zip(trained.units_for, ns.units_for))
    assert list(trained.extra["transport"]["trained"]["losses"]) == ["onto A"]
    with pytest.raises(ValueError, match="directions must be"):
        train_maps(tiny_qwen, ns, w, prop, progress=False, directions=("up",))
