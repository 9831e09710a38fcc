"""Incremental transport fits (steer.incremental): each layer refitted with the earlier layers' maps active."""

import pytest

from steer import Worlds
from steer.incremental import incremental_transport
from steer.neurons import with_transport
from steer.record import record
from tests.conftest import labelled_corpus


def test_the_first_layer_keeps_its_fit_and_later_layers_see_the_earlier_maps(tiny_qwen):
    w = Worlds.from_records(labelled_corpus(2))
    acts = record(tiny_qwen, w, site="mlp", layers=[1, 2], reduce="mean", progress=False)
    prop = w.proposition(label="positive")
    ns = with_transport(acts.strength(prop, normalize="rank").top(k=6), acts, prop)
    inc = incremental_transport(tiny_qwen, ns, w, prop, progress=False)
    assert inc.extra["transport"]["incremental"] == ["toward", "away"]
    first = min(u.layer for u in ns.units_for + ns.units_against)
    pairs = list(zip(ns.units_for + ns.units_against, inc.units_for + inc.units_against))
    for a, b in pairs:
        assert (a.layer, a.index, a.mean, a.std_a) == (b.layer, b.index, b.mean, b.std_a)
        if a.layer == first:  # nothing steers before the first layer: the same fit as from the plain recording
            assert (b.w_a, b.b_a, b.w_c, b.b_c) == pytest.approx((a.w_a, a.b_a, a.w_c, a.b_c), rel=1e-3, abs=1e-6)
    later = [(a, b) for a, b in pairs if a.layer > first]
    assert later and any(abs(a.w_a - b.w_a) > 1e-6 or abs(a.b_a - b.b_a) > 1e-9 for a, b in later)
    one = incremental_transport(tiny_qwen, ns, w, prop, directions=("away",), progress=False)
    assert all((a.w_a, a.b_a) == (b.w_a, b.b_a) for a, b in zip(ns.units_for, one.units_for))
    with pytest.raises(ValueError, match="directions must be"):
        incremental_transport(tiny_qwen, ns, w, prop, directions=(), progress=False)
