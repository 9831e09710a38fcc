"""Steering correctness on a tiny random-weight model: rules, positions, KV cache, batching, hooks, seeds."""

import pytest
import torch

from steer.generation import generate_text
from steer.interventions import (
    RULES,
    Affine,
    Intervention,
    LayerEdit,
    PositionTracker,
    Rule,
    edit_hook,
    get_rule,
    neuron_edits,
    position_mask,
    register_rule,
    unit_tables,
)
from steer.neuronset import NeuronSet, Unit
from steer.record import record
from steer.steerer import Steerer
from steer.worlds import Worlds
from tests.conftest import labelled_corpus

PROMPTS = ["the film was", "a quiet morning in the old town by", "great"]


@pytest.fixture(scope="module")
def neurons(tiny_qwen):
    recs = labelled_corpus(2)
    w = Worlds.from_records(recs)
    acts = record(tiny_qwen, w, site="mlp", reduce="mean", progress=False)
    return acts.strength(w.proposition(label="positive"), normalize="zscore").top(k=6)


def greedy(model, prompts, **kw):
    return generate_text(model, prompts, max_new_tokens=8, do_sample=False, **kw)


def all_hooks_removed(model):
    return all(not hp._forward_hooks for hp in model.bridge.hook_dict.values())


# ------------------------------------------------------------------------------------------------ rules

# unit 0 speaks for A, unit 1 against A
FOR = Unit(layer=0, index=0, score=1.0, mean=2.0, std=0.5, mean_a=3.0, mean_c=1.0)
AGAINST = Unit(layer=0, index=1, score=-1.0, mean=-1.0, std=2.0, mean_a=-2.0, mean_c=0.5)


def table(direction):
    return unit_tables([FOR], [AGAINST], direction)[0]


def tiny_set(units_for=(FOR,), units_against=(AGAINST,)):
    return NeuronSet(list(units_for), list(units_against), "mlp", "D", 1, False, {"name": "A"}, {"model": {}})


@pytest.mark.parametrize("rule, direction, expected", [
    ("paper", "away", [2.0 - 5 * 10, -1.0]),  # pos2neg: for-units m - c*a, against-units m
    ("paper", "toward", [2.0, -1.0 - 5 * 20]),
    ("scale", "toward", [5 * 2.0, -1.0]),  # for-units s*m
    ("scale", "away", [2.0, 5 * -1.0]),
    ("mean-ablate", "toward", [2.0, -1.0]),
    ("additive", "toward", [10 + 5 * 0.5, 20 - 5 * 2.0]),
    ("additive", "away", [10 - 5 * 0.5, 20 + 5 * 2.0]),
    ("clamp", "toward", [3.0 + 5 * 1.0, -2.0 + 5 * -1.0]),  # mean_A + alpha*(mean_A - m)
    ("clamp", "away", [1.0 + 5 * -1.0, 0.5 + 5 * 1.5]),  # mean_~A + alpha*(mean_~A - m)
])
def test_rules(rule, direction, expected):
    a = torch.tensor([[10.0, 20.0]])
    torch.testing.assert_close(get_rule(rule).rewrite(a, table(direction), 5.0), torch.tensor([expected]))


@pytest.mark.parametrize("rule", ["paper", "scale", "mean-ablate", "additive", "clamp"])
def test_every_built_in_rule_is_affine_and_its_form_is_the_rewrite(rule):
    a = torch.randn(4, 2) * 10
    for direction in ("toward", "away"):
        form = get_rule(rule).affine(table(direction), 3.0)
        assert form is not None
        torch.testing.assert_close(a * form.scale + form.shift, get_rule(rule).rewrite(a, table(direction), 3.0))
    assert get_rule("additive").affine(table("toward"), 3.0).is_shift
    assert get_rule("clamp").affine(table("toward"), 3.0).is_constant


@pytest.mark.parametrize("rule", ["paper", "scale", "mean-ablate", "additive", "clamp"])
def test_coeff_zero_is_identity(rule):
    assert neuron_edits(tiny_set(), Intervention(rule, 0.0)) == {}
    assert neuron_edits(tiny_set(), Intervention(rule, 1.0)) != {}


@pytest.mark.parametrize("rule", ["paper", "scale", "mean-ablate", "additive", "clamp"])
@pytest.mark.parametrize("direction", ["toward", "away"])
def test_hook_fast_paths_equal_the_reference_rule(rule, direction):
    act = torch.randn(2, 4, 5)
    t = table(direction)
    want = act.clone()
    want[..., t.index] = get_rule(rule).rewrite(act[..., t.index], t, 3.0)
    edit = neuron_edits(tiny_set(), Intervention(rule, 3.0, direction))[0]
    for apply_to in ("all", "prompt"):  # "prompt" on a prompt pass rewrites every position, the slow way
        got = edit_hook("L0", edit, apply_to, PositionTracker())(act.clone())
        torch.testing.assert_close(got, want)


def test_unit_tables_group_units_by_layer():
    u = lambda layer, i: Unit(layer, i, 1.0, 0.0, 1.0, 0.5, -0.5)  # noqa: E731
    tables = unit_tables([u(3, 7), u(1, 2)], [u(3, 1)], "toward")
    assert sorted(tables) == [1, 3]
    assert tables[3].index.tolist() == [1, 7] and tables[3].sign.tolist() == [-1.0, 1.0]
    assert unit_tables([u(3, 7)], [u(3, 1)], "away")[3].sign.tolist() == [1.0, -1.0]


def test_a_registered_rule_is_usable_by_name(tiny_qwen, neurons):
    class Double(Rule):
        name = "test-double"
        default_coeff = 2.0

        def affine(self, units, coeff):
            return Affine(torch.full_like(units.mean, coeff), torch.zeros_like(units.mean))

    register_rule(Double())
    try:
        assert "test-double" in RULES and Intervention("test-double").value == 2.0
        with pytest.raises(ValueError, match="already registered"):
            register_rule(Double())
        out = Steerer(tiny_qwen, neurons, Intervention("test-double", 50.0)).generate(PROMPTS, max_new_tokens=8,
                                                                                   do_sample=False)
        assert out != greedy(tiny_qwen, PROMPTS)
    finally:
        RULES.pop("test-double")


def test_a_rule_that_is_not_affine_goes_through_its_rewrite():
    class Clip(Rule):
        name = "clip"

        def rewrite(self, a, units, coeff):
            return a.clamp(max=coeff)

    t = table("toward")
    edit = LayerEdit(t.index, None, Clip(), t, 1.0)
    act = torch.full((1, 2, 3), 5.0)
    got = edit_hook("L0", edit, "all", PositionTracker())(act)
    assert got[..., :2].eq(1.0).all() and got[..., 2].eq(5.0).all()


def test_interventions_validate_their_arguments():
    with pytest.raises(ValueError, match="unknown rule"):
        Intervention("flip")
    with pytest.raises(ValueError, match="unknown direction"):
        Intervention("additive", 1.0, "up")
    with pytest.raises(ValueError, match="unknown apply_to"):
        Intervention("additive", 1.0, "toward", "middle")
    with pytest.raises(ValueError, match="finite"):
        Intervention("additive", float("nan"))
    assert Intervention("paper").value == 5.0 and Intervention("paper", 7.0, "away").describe() == {
        "rule": "paper", "coeff": 7.0, "direction": "away", "apply_to": "all"}


def test_positions():
    t = PositionTracker()
    assert t.positions("L0", 5) == (0, 5)  # prompt
    assert t.positions("L0", 1) == (5, 5)  # first new token with a KV cache
    assert t.positions("L0", 1) == (6, 5)
    t.reset()
    t.positions("L0", 3)
    assert t.positions("L0", 4) == (0, 3)  # no cache: the whole sequence again
    assert position_mask("prompt", 0, 4, 3).tolist() == [True, True, True, False]
    assert position_mask("generated", 0, 4, 3).tolist() == [False, False, False, True]
    assert position_mask("last-prompt", 0, 4, 3).tolist() == [False, False, True, False]
    assert position_mask("generated", 5, 1, 5).tolist() == [True]


# ------------------------------------------------------------------------------------------- generation


def test_steering_changes_greedy_output(tiny_qwen, neurons):
    plain = greedy(tiny_qwen, PROMPTS)
    with Steerer(tiny_qwen, neurons, Intervention("additive", 200.0)):
        steered = greedy(tiny_qwen, PROMPTS)
    assert steered != plain


@pytest.mark.parametrize("rule, coeff", [("additive", 50.0), ("clamp", 30.0), ("paper", 5.0)])
def test_kv_cache_does_not_change_steered_output(tiny_qwen, neurons, rule, coeff):
    s = Steerer(tiny_qwen, neurons, Intervention(rule, coeff))
    cached = s.generate(PROMPTS, max_new_tokens=8, do_sample=False, use_past_kv_cache=True)
    uncached = s.generate(PROMPTS, max_new_tokens=8, do_sample=False, use_past_kv_cache=False)
    assert cached == uncached


@pytest.mark.parametrize("positions", ["generated", "prompt", "last-prompt"])
def test_kv_cache_invariance_holds_for_every_position_choice(tiny_qwen, neurons, positions):
    s = Steerer(tiny_qwen, neurons, Intervention("additive", 80.0, apply_to=positions))
    assert (s.generate(PROMPTS[:1], max_new_tokens=6, do_sample=False, use_past_kv_cache=True)
            == s.generate(PROMPTS[:1], max_new_tokens=6, do_sample=False, use_past_kv_cache=False))


def test_hook_fires_once_per_step_at_the_new_position(tiny_qwen, neurons):
    calls = []
    s = Steerer(tiny_qwen, neurons, Intervention("additive", 5.0), on_call=lambda key, start, n: calls.append((key, start, n)))
    ids = tiny_qwen.tokenizer(PROMPTS[0]).input_ids
    s.generate(PROMPTS[0], max_new_tokens=5, do_sample=False)
    layer_key = calls[0][0]
    mine = [(start, n) for key, start, n in calls if key == layer_key]
    assert mine[0] == (0, len(ids))
    assert mine[1:] == [(len(ids) + i, 1) for i in range(len(mine) - 1)]
    assert len(mine) >= 5  # the prompt step then one per new token (the last token needs no forward)


def test_batched_equals_single_prompt_runs(tiny_qwen, neurons):
    s = Steerer(tiny_qwen, neurons, Intervention("additive", 50.0))
    batched = s.generate(PROMPTS, max_new_tokens=8, do_sample=False)
    assert batched == [s.generate(p, max_new_tokens=8, do_sample=False) for p in PROMPTS]


def test_coeff_zero_and_empty_set_give_unsteered_output(tiny_qwen, neurons):
    plain = greedy(tiny_qwen, PROMPTS)
    assert Steerer(tiny_qwen, neurons, Intervention("paper", 0)).generate(PROMPTS, max_new_tokens=8, do_sample=False) == plain
    assert Steerer(tiny_qwen, None).generate(PROMPTS, max_new_tokens=8, do_sample=False) == plain
    from steer import ArtifactMismatchError

    with pytest.raises(ArtifactMismatchError, match="a side is empty"):
        type(neurons)([], [], neurons.site, neurons.score, neurons.k, False, neurons.proposition, neurons.provenance)


def test_no_state_leaks_between_calls(tiny_qwen, neurons):
    plain = greedy(tiny_qwen, PROMPTS)
    a = Steerer(tiny_qwen, neurons, Intervention("additive", 100.0)).generate(PROMPTS, max_new_tokens=8, do_sample=False)
    b = Steerer(tiny_qwen, neurons, Intervention("clamp", 20.0, direction="away")).generate(PROMPTS, max_new_tokens=8, do_sample=False)
    assert greedy(tiny_qwen, PROMPTS) == plain
    assert Steerer(tiny_qwen, neurons, Intervention("additive", 100.0)).generate(PROMPTS, max_new_tokens=8, do_sample=False) == a
    assert b != a
    assert all_hooks_removed(tiny_qwen)


def test_hooks_are_removed_after_an_exception(tiny_qwen, neurons):
    with pytest.raises(RuntimeError, match="inside"):
        with Steerer(tiny_qwen, neurons, Intervention("additive", 10.0)):
            assert not all_hooks_removed(tiny_qwen)
            raise RuntimeError("inside")
    assert all_hooks_removed(tiny_qwen)


def test_seeds_make_sampling_reproducible(tiny_qwen, neurons):
    s = Steerer(tiny_qwen, neurons, Intervention("additive", 20.0))
    a = s.generate(PROMPTS, max_new_tokens=8, do_sample=True, seed=3)
    assert a == s.generate(PROMPTS, max_new_tokens=8, do_sample=True, seed=3)
    others = [s.generate(PROMPTS, max_new_tokens=8, do_sample=True, seed=sd) for sd in (4, 5, 6)]
    assert any(o != a for o in others)


def test_bad_arguments(tiny_qwen, neurons, tiny_model):
    with pytest.raises(ValueError, match="unknown rule"):
        Steerer(tiny_qwen, neurons, Intervention("flip"))
    with pytest.raises(ValueError, match="unknown apply_to"):
        Steerer(tiny_qwen, neurons, Intervention(apply_to="middle"))
    if tiny_model.identity != tiny_qwen.identity:
        from steer.artifacts import ArtifactMismatchError

        with pytest.raises(ArtifactMismatchError):
            Steerer(tiny_model, neurons)


def test_steer_config_resolves_overrides_and_rule_coeffs():
    from steer.steering import SteerConfig

    cfg = SteerConfig()
    assert cfg.resolve() == cfg and cfg.resolve(k=None, rule=None) == cfg
    assert cfg.resolve(k=50).k == 50 and cfg.resolve(k=50).coeff == cfg.coeff
    assert cfg.resolve(rule="clamp").coeff == get_rule("clamp").default_coeff  # not the additive default
    assert cfg.resolve(rule="clamp", coeff=2.0).coeff == 2.0
    assert cfg.resolve(layers=[3, 4]).layers == (3, 4)
    with pytest.raises(TypeError, match="unknown steering option"):
        cfg.resolve(strength=3.0)
    with pytest.raises(ValueError, match="unknown rule"):
        SteerConfig(rule="flip")


def test_generation_overrides_are_checked(tiny_qwen):
    with pytest.raises(TypeError, match="unknown generation option"):
        generate_text(tiny_qwen, "the film", max_tokens=3)
    with pytest.raises(ValueError, match="max_new_tokens"):
        generate_text(tiny_qwen, "the film", max_new_tokens=0)


def test_steering_methods_share_the_edit_machinery(tiny_qwen):
    """A residual vector as a LayerEdit of every unit equals adding the vector in a plain hook."""
    v = torch.randn(tiny_qwen.d_model) * 5
    edit = LayerEdit(torch.arange(v.numel()), Affine(torch.ones_like(v), 2.0 * v))
    with Steerer.from_edits(tiny_qwen, "resid", {1: edit}):
        ours = greedy(tiny_qwen, PROMPTS)
    with tiny_qwen.bridge.hooks(fwd_hooks=[("blocks.1.hook_resid_post", lambda act, hook: act + 2.0 * v)]):
        plain = greedy(tiny_qwen, PROMPTS)
    assert ours == plain and ours != greedy(tiny_qwen, PROMPTS)
    assert all_hooks_removed(tiny_qwen)
