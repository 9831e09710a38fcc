"""Neuron sets: top-k for and against, per layer or global, with stats; saved with provenance."""

import pytest
import torch

from steer.artifacts import ArtifactMismatchError
from steer.neuronset import NeuronSet
from steer.record import record
from steer.strength import doxastic_strength
from steer.worlds import Worlds


@pytest.fixture(scope="module")
def acts(tiny_qwen):
    from tests.conftest import labelled_corpus

    recs = labelled_corpus(2)
    return record(tiny_qwen, Worlds.from_records(recs), site="mlp", progress=False), Worlds.from_records(recs)


def test_top_k_global_and_per_layer(acts):
    a, w = acts
    s = a.strength(w.proposition(label="positive"))
    D = doxastic_strength(a.X, torch.as_tensor(w.proposition(label="positive").mask))
    torch.testing.assert_close(s.D, D)
    ns = s.top(k=4)
    got = [u.score for u in ns.units_for]
    assert got == sorted(got, reverse=True) and got[0] == pytest.approx(D.max().item())
    assert ns.units_against[0].score == pytest.approx(D.min().item())
    u = ns.units_for[0]
    X = a.X[:, a.layer_index(u.layer), u.index].double()
    mask = torch.as_tensor(w.proposition(label="positive").mask)
    assert u.mean == pytest.approx(X.mean().item()) and u.mean_a == pytest.approx(X[mask].mean().item())
    assert u.mean_c == pytest.approx(X[~mask].mean().item()) and u.std == pytest.approx(X.std(unbiased=False).item())
    per = s.top(k=2, per_layer=True)
    assert [u.layer for u in per.units_for] == [0, 0, 1, 1, 2, 2]
    for j in range(3):
        assert per.units_for[2 * j].score == pytest.approx(D[j].max().item())


def test_against_is_for_of_the_complement(acts):
    a, w = acts
    pos = w.proposition(label="positive")
    ns, comp = a.strength(pos).top(k=3), a.strength(pos.complement()).top(k=3)
    assert [(u.layer, u.index) for u in ns.units_against] == [(u.layer, u.index) for u in comp.units_for]


def test_k_validation(acts):
    a, w = acts
    s = a.strength(w.proposition(label="positive"))
    with pytest.raises(ValueError, match="larger than the 144 units recorded"):
        s.top(k=145)
    with pytest.raises(ValueError, match="per layer"):
        s.top(k=49, per_layer=True)
    with pytest.raises(ValueError, match="positive integer"):
        s.top(k=0)


def test_save_load_and_mismatch(acts, tiny_qwen, tmp_path):
    a, w = acts
    ns = a.strength(w.proposition(label="positive"), normalize="zscore").top(k=3)
    ns.save(tmp_path / "n.json")
    back = NeuronSet.load(tmp_path / "n.json", model=tiny_qwen, site="mlp")
    assert back.units_for == ns.units_for and back.score == "zscore-D"
    assert back.provenance["worlds"]["prompt_set_sha256"] == w.prompt_set_hash
    assert back.provenance["reduce"] == "last"
    with pytest.raises(ArtifactMismatchError, match="site"):
        NeuronSet.load(tmp_path / "n.json", site="resid")
    other = dict(tiny_qwen.identity, sha256="0" * 64)
    with pytest.raises(ArtifactMismatchError, match="sha256"):
        back.check_compatible(other)
    (tmp_path / "bad.json").write_text('{"kind": "activations"}')
    with pytest.raises(ArtifactMismatchError, match="not 'neuron_set'"):
        NeuronSet.load(tmp_path / "bad.json")
