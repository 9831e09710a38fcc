"""Reasons on a plain PyTorch network: recording through forward hooks, the same downstream types as the LLM path
(strengths, neuron sets, stability, explanations, find_units), interventions, identity and bad input."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from steer import (
    Activations,
    ArtifactMismatchError,
    Intervention,
    Network,
    NeuronSet,
    PromptSetError,
    TensorWorlds,
    bootstrap_neurons,
    explain_unit,
    find_units,
)
from steer.explain import candidate_propositions
from steer.strength import doxastic_strength


class Tiny(nn.Module):
    """conv -> relu -> flatten -> fc1 -> act1 (ReLU module) -> fc2 (4 classes); fc1 has a functional sibling."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 2, 3)  # 1x6x6 -> 2x4x4 = 32 units
        self.relu = nn.ReLU()
        self.flatten = nn.Flatten()
        self.fc1 = nn.Linear(32, 16)
        self.act1 = nn.ReLU()
        self.fc2 = nn.Linear(16, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act1(self.fc1(self.flatten(self.relu(self.conv(x))))))


@pytest.fixture
def net_and_worlds():
    torch.manual_seed(0)
    module = Tiny()
    x = torch.randn(60, 1, 6, 6)
    with torch.no_grad():
        pred = module(x).argmax(1)
    label = torch.bucketize(x.sum((1, 2, 3)), x.sum((1, 2, 3)).quantile(torch.tensor([0.25, 0.5, 0.75])))
    worlds = TensorWorlds.from_tensors(x, source="random", label=label, pred=pred, idx=list(range(60)))
    return Network(module, "tiny"), worlds


def _manual(module: Tiny, x: torch.Tensor) -> dict[str, torch.Tensor]:
    with torch.no_grad():
        conv = module.conv(x)
        fc1 = module.fc1(module.flatten(module.relu(conv)))
        return {"conv": conv.reshape(len(x), -1), "fc1": fc1, "act1": torch.relu(fc1), "fc2": module.fc2(torch.relu(fc1))}


def test_recording_equals_the_forward_pass_at_every_site(net_and_worlds):
    net, worlds = net_and_worlds
    got = net.record(worlds, ["conv", "fc1", "fc1:relu", "act1", "fc2"], batch_size=7)
    want = _manual(net.module, worlds.inputs)
    assert isinstance(got, dict) and set(got) == {"conv", "fc1", "fc1:relu", "act1", "fc2"}
    for site, w in (("conv", want["conv"]), ("fc1", want["fc1"]), ("fc1:relu", want["act1"]), ("act1", want["act1"])):
        acts = got[site]
        assert acts.X.shape == (60, 1, w.shape[1]) and acts.layers == [0] and acts.site == site
        torch.testing.assert_close(acts.X[:, 0], w, rtol=1e-6, atol=1e-6)
    single = net.record(worlds, "fc2")
    assert isinstance(single, Activations)
    torch.testing.assert_close(single.X[:, 0], want["fc2"], rtol=1e-6, atol=1e-6)


def test_strengths_and_neuron_sets_are_the_shared_types(net_and_worlds, tmp_path):
    net, worlds = net_and_worlds
    acts = net.record(worlds, "fc2")
    d = int(torch.tensor(worlds.column("pred")).mode().values)
    prop = worlds.proposition(f"pred={d}")
    s = acts.strength(prop)
    torch.testing.assert_close(s.D[0], doxastic_strength(acts.X[:, 0], torch.as_tensor(prop.mask)))
    ns = s.top(1)
    assert isinstance(ns, NeuronSet) and ns.units_for[0].index == int(s.D[0].argmax()) and ns.site == "fc2"
    assert ns.provenance["model"]["model_id"] == "tiny" and ns.provenance["worlds"]["worlds_sha256"]
    saved = acts.save(tmp_path / "rec")
    back = Activations.load(saved, site="fc2")
    torch.testing.assert_close(back.X, acts.X)
    assert back.manifest()["hooks"] == ["forward hook on module fc2"]
    loaded = NeuronSet.load(ns.save(tmp_path / "ns.json"), model=net, site="fc2")
    assert loaded.units_for == ns.units_for


def test_stability_explanations_and_find_run_unchanged(net_and_worlds):
    net, worlds = net_and_worlds
    acts = net.record(worlds, "act1")
    prop = worlds.proposition("label=1")
    ns = acts.strength(prop).top(2)
    boot = bootstrap_neurons(acts, prop, ns, resamples=20)
    assert len(boot["units_for"]) == 2
    cands = candidate_propositions(worlds, skip=("idx", "pred"))
    assert {c.name for c in cands} >= {"label=0", "label=1"}
    ex = explain_unit(acts.X[:, 0, ns.units_for[0].index], cands, resamples=20)
    assert len(ex.rows) == len(cands) and ex.best["D"] in {c.name for c in cands}
    found = find_units(acts, worlds, "label=1", k=2)
    assert found.neurons["none"].units_for == ns.units_for
    other = TensorWorlds.from_tensors(worlds.inputs + 1, source="other", label=worlds.column("label"), pred=worlds.column("pred"))
    with pytest.raises(ArtifactMismatchError, match="other worlds"):
        find_units(acts, other, "label=1", k=2)


def test_intervention_rewrites_the_units_exactly_and_always_unhooks(net_and_worlds):
    net, worlds = net_and_worlds
    x = worlds.inputs
    acts = net.record(worlds, "act1")
    ns = acts.strength(worlds.proposition("label=1")).top(3)
    before = net.predict(x)
    with net.intervene(ns, Intervention("paper", 5.0, "away")):
        steered = net.predict(x)
    # by hand: units for label=1 -> m - 5a, units against -> m, then fc2
    h = _manual(net.module, x)["act1"].clone()
    for u in ns.units_for:
        h[:, u.index] = u.mean - 5.0 * h[:, u.index]
    for u in ns.units_against:
        h[:, u.index] = u.mean
    with torch.no_grad():
        torch.testing.assert_close(steered, net.module.fc2(h), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(net.predict(x), before)  # hook gone
    with net.intervene(ns, Intervention("additive", 0.0)):
        torch.testing.assert_close(net.predict(x), before)  # coeff 0 is the identity
    with pytest.raises(RuntimeError, match="boom"), net.intervene(ns, Intervention("paper")):
        raise RuntimeError("boom")
    assert not any(m._forward_hooks for m in net.module.modules())


def test_gradients_flow_through_an_intervention(net_and_worlds):
    net, worlds = net_and_worlds
    ns = net.record(worlds, "act1").strength(worlds.proposition("label=1")).top(2)
    x = worlds.inputs[:4].clone().requires_grad_(True)
    with net.intervene(ns, Intervention("additive", 2.0)):
        net(x).sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()


def test_identity_is_the_weights(net_and_worlds, tmp_path):
    net, worlds = net_and_worlds
    ns = net.record(worlds, "act1").strength(worlds.proposition("label=1")).top(2)
    path = ns.save(tmp_path / "ns.json")
    with torch.no_grad():
        net.module.fc2.bias += 0.1  # one more training step, as far as the identity is concerned
    with pytest.raises(ArtifactMismatchError, match="sha256"):
        NeuronSet.load(path, model=net)
    with pytest.raises(ArtifactMismatchError), net.intervene(ns, Intervention("paper")):
        pass
    assert Network(Tiny()).identity["model_id"] == "torch:Tiny"


def test_bad_sites_and_interventions_are_refused(net_and_worlds):
    net, worlds = net_and_worlds
    with pytest.raises(ValueError, match="no module 'fc9'.*fc1"):
        net.record(worlds, "fc9")
    with pytest.raises(ValueError, match="unknown activation"):
        net.record(worlds, "fc1:swish")
    with pytest.raises(ValueError, match="no sites"):
        net.record(worlds, [])
    acts = net.record(worlds, "fc1:relu")
    ns = acts.strength(worlds.proposition("label=1")).top(2)
    with pytest.raises(ValueError, match=r"nn\.ReLU"), net.intervene(ns, Intervention("paper")):
        pass
    ns_act = net.record(worlds, "act1").strength(worlds.proposition("label=1")).top(2)
    with pytest.raises(ValueError, match="positions"), net.intervene(ns_act, Intervention("paper", apply_to="prompt")):
        pass
    with pytest.raises(TypeError, match="torch.nn.Module"):
        Network("not a module")  # type: ignore[arg-type]


def test_recording_keeps_the_module_mode_and_refuses_nan(net_and_worlds):
    net, worlds = net_and_worlds
    net.module.train()
    net.record(worlds, "fc1")
    assert net.module.training
    bad = worlds.inputs.clone()
    bad[3, 0, 0, 0] = float("nan")
    with pytest.raises(PromptSetError, match=r"world\(s\) \[3\]"):
        TensorWorlds.from_tensors(bad, label=worlds.column("label"))


def test_tensor_worlds_validate_and_hash_their_content():
    x = torch.arange(12.0).reshape(6, 2)
    w = TensorWorlds.from_tensors(x, label=[0, 1, 0, 1, 0, 1])
    assert w.proposition("label=1").size == 3
    assert w.content_hash != TensorWorlds.from_tensors(x + 1, label=[0, 1, 0, 1, 0, 1]).content_hash
    assert w.content_hash != TensorWorlds.from_tensors(x, label=[1, 1, 0, 1, 0, 1]).content_hash
    assert w.subset([1, 3]).inputs.tolist() == [[2.0, 3.0], [6.0, 7.0]]
    with pytest.raises(PromptSetError, match="3 values for 6 worlds"):
        TensorWorlds.from_tensors(x, label=[0, 1, 0])
    with pytest.raises(PromptSetError, match="unknown value '7'"):
        w.proposition("label=7")
