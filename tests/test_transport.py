"""Transport rules: the per-unit maps fitted from the worlds (steer.transport), stored with the neuron set
(steer.neurons.with_transport) and applied by the rules (steer.rules)."""

import math

import pytest
import torch

from steer import Intervention, Steerer, Worlds
from steer.artifacts import ArtifactMismatchError
from steer.fold import ExportError, export_form
from steer.interventions import RULES, NoTransportStatsError, neuron_edits, unit_tables
from steer.neurons import with_transport
from steer.neuronset import NeuronSet
from steer.record import record
from steer.transport import blend, gaussian_fit, linear_fit, quantile_pairs, side_stats
from tests.conftest import labelled_corpus


def test_linear_fit_recovers_an_affine_map_between_sides():
    g = torch.Generator().manual_seed(0)
    src = torch.randn(200, 3, generator=g)
    w_true, b_true = torch.tensor([2.0, 0.5, -1.0]), torch.tensor([1.0, -3.0, 0.25])
    tgt = src * w_true + b_true  # a monotone map: rank pairing recovers it (sign flips to |w| for w < 0)
    w, b = linear_fit(src, tgt[torch.randperm(200, generator=g)])
    assert torch.allclose(w[:2], w_true[:2].double(), atol=1e-9) and torch.allclose(b[:2], b_true[:2].double())
    # a decreasing map cannot be recovered: pairing by rank (1-D OT) gives an increasing one with the same spread
    assert 0.9 < w[2] < 1.1


def test_quantile_pairs_with_unequal_sizes_match_sorted_means():
    src, tgt = torch.arange(10.0)[:, None], torch.arange(0.0, 20.0, 5.0)[:, None]  # 10 vs 4 values
    ps, pt = quantile_pairs(src, tgt)
    assert ps.shape == pt.shape == (10, 1)
    assert (ps.diff(dim=0) >= 0).all() and (pt.diff(dim=0) >= 0).all()
    w, b = linear_fit(src, tgt)  # least squares through the pairs: the mean of one maps onto the mean of the other
    assert float(w[0] * ps.mean() + b[0]) == pytest.approx(float(pt.mean()))
    assert float(ps.mean()) == pytest.approx(4.5) and float(pt.mean()) == pytest.approx(7.5)


def test_gaussian_fit_and_flat_sides():
    s = side_stats(torch.tensor([[0.0, 1.0], [2.0, 1.0]]))
    t = side_stats(torch.tensor([[10.0, 4.0], [14.0, 6.0]]))
    w, b = gaussian_fit(s, t)
    assert w.tolist() == [2.0, 1.0]  # sigma 2 / 1; a flat source column: w = 1 (a shift)
    assert b.tolist() == [12.0 - 2.0 * 1.0, 5.0 - 1.0]
    flat_w, _ = linear_fit(torch.ones(5, 1), torch.randn(5, 1))
    assert flat_w.item() == 1.0


def test_blend_is_identity_at_zero_and_the_map_at_one():
    w, b = torch.tensor([2.0]), torch.tensor([3.0])
    assert blend(w, b, 0.0) == (torch.tensor([1.0]), torch.tensor([0.0]))
    scale, shift = blend(w, b, 1.0)
    assert scale.item() == 2.0 and shift.item() == 3.0


def test_fit_refuses_shapes_it_cannot_use():
    with pytest.raises(ValueError, match="at least two worlds"):
        linear_fit(torch.zeros(1, 2), torch.zeros(3, 2))
    with pytest.raises(ValueError, match="one k"):
        linear_fit(torch.zeros(3, 2), torch.zeros(3, 3))


@pytest.fixture(scope="module")
def fitted(tiny_qwen):
    w = Worlds.from_records(labelled_corpus(2))
    acts = record(tiny_qwen, w, site="mlp", layers=[1, 2], reduce="mean", progress=False)
    prop = w.proposition(label="positive")
    ns = with_transport(acts.strength(prop, normalize="rank").top(k=4), acts, prop)
    return acts, prop, ns


def test_with_transport_fits_each_side_from_the_recording(fitted):
    acts, prop, ns = fitted
    assert ns.has_transport and "transport" in ns.extra
    mask = torch.as_tensor(prop.mask)
    u = ns.units_for[0]
    col = acts.X[:, acts.layers.index(u.layer), u.index].double()
    assert u.std_a == pytest.approx(float(col[mask].std(correction=0)), rel=1e-6)
    assert (u.lo_c, u.hi_c) == pytest.approx((float(col[~mask].min()), float(col[~mask].max())), rel=1e-6)
    w_a, b_a = linear_fit(col[~mask][:, None], col[mask][:, None])
    assert (u.w_a, u.b_a) == pytest.approx((float(w_a), float(b_a)), rel=1e-6)
    # toward A: the source is A^c; the mean-transport shift moves A^c's mean onto A's
    table = unit_tables(ns.units_for, ns.units_against, "toward")[u.layer]
    j = table.index.tolist().index(u.index)
    form = RULES["mean-transport"].affine(table, 1.0)
    assert float(form.shift[j]) == pytest.approx(u.mean_a - u.mean_c, rel=1e-5, abs=1e-6)
    away = unit_tables(ns.units_for, ns.units_against, "away")[u.layer]
    form = RULES["linear-transport"].affine(away, 0.5)
    assert float(form.scale[j]) == pytest.approx(0.5 + 0.5 * u.w_c, rel=1e-5)


def test_transport_moves_the_source_side_onto_the_target_side(fitted):
    acts, prop, ns = fitted
    mask = torch.as_tensor(prop.mask)
    for rule in ("mean-transport", "gaussian-transport", "linear-transport"):
        edits = neuron_edits(ns, Intervention(rule, 1.0))
        for layer, e in edits.items():
            X = acts.X[:, acts.layers.index(layer)][:, e.index].float()
            moved = e.rewrite(X[~mask])
            target, before = X[mask].mean(0), X[~mask].mean(0)
            assert (moved.mean(0) - target).abs().max() < 1e-3 + 0.05 * (before - target).abs().max()


def test_saved_set_keeps_its_fits_and_an_edited_fit_is_refused(fitted, tmp_path):
    _, _, ns = fitted
    path = ns.save(tmp_path / "ns.json")
    back = NeuronSet.load(path)
    assert back.units_for == ns.units_for
    text = path.read_text().replace(f'"w_a": {ns.units_for[0].w_a!r}', '"w_a": 1.5', 1)
    assert text != path.read_text()
    path.write_text(text)
    with pytest.raises(ArtifactMismatchError, match="sha256|checksum|changed"):
        NeuronSet.load(path)


def test_partial_or_broken_transport_statistics_are_refused(fitted):
    from dataclasses import replace

    _, _, ns = fitted
    bad = replace(ns.units_for[0], w_c=None)
    with pytest.raises(ArtifactMismatchError, match="only some of its transport"):
        replace(ns, units_for=[bad, *ns.units_for[1:]])
    bad = replace(ns.units_for[0], std_c=-1.0)
    with pytest.raises(ArtifactMismatchError, match="negative std"):
        replace(ns, units_for=[bad, *ns.units_for[1:]])
    bad = replace(ns.units_for[0], b_a=math.nan)
    with pytest.raises(ArtifactMismatchError, match="non-finite transport"):
        replace(ns, units_for=[bad, *ns.units_for[1:]])


def test_a_set_without_fits_names_what_to_do(fitted, tiny_qwen):
    from dataclasses import replace

    _, _, ns = fitted
    plain = replace(
        ns,
        units_for=[replace(u, **dict.fromkeys(("std_a", "std_c", "lo_a", "hi_a", "lo_c", "hi_c", "w_a", "b_a", "w_c",
                                                "b_c"))) for u in ns.units_for],
        units_against=[replace(u, **dict.fromkeys(("std_a", "std_c", "lo_a", "hi_a", "lo_c", "hi_c", "w_a", "b_a",
                                                    "w_c", "b_c"))) for u in ns.units_against],
    )
    assert not plain.has_transport
    with pytest.raises(NoTransportStatsError, match="select the units again"):
        Steerer(tiny_qwen, plain, Intervention("linear-transport", 1.0))
    Steerer(tiny_qwen, plain, Intervention("additive", 1.0))  # the other rules do not need them


def test_support_rule_leaves_values_outside_the_source_range_and_refuses_export(fitted, tiny_qwen):
    _, _, ns = fitted
    edits = neuron_edits(ns, Intervention("linear-transport-support", 1.0))
    full = neuron_edits(ns, Intervention("linear-transport", 1.0))
    layer, e = next(iter(edits.items()))
    table = e.units
    assert e.affine is None and table is not None and table.hi_source is not None
    inside = ((table.lo_source + table.hi_source) / 2).float()[None]
    outside = (table.hi_source + 10.0).float()[None]
    assert torch.allclose(e.rewrite(inside), full[layer].rewrite(inside))
    assert torch.equal(e.rewrite(outside), outside)
    with pytest.raises(ExportError, match="not affine"):
        export_form(tiny_qwen, ns, Intervention("linear-transport-support", 1.0))
