"""Steering correctness on a tiny random-weight model: rules, positions, KV cache, batching, hooks, seeds."""

import pytest
import torch

from steer.interventions import LayerPlan, PositionTracker, build_plans, position_mask, rewrite
from steer.neurons import Unit
from steer.record import record
from steer.steering import Steerer, generate_text, steering
from steer.worlds import Worlds
from tests.conftest import CORPUS

PROMPTS = ["the film was", "a quiet morning in the old town by", "great"]


@pytest.fixture(scope="module")
def neurons(tiny_qwen):
    recs = [{"text": t, "label": "positive" if i % 2 else "negative"} for i, t in enumerate(CORPUS * 2)]
    w = Worlds.from_records(recs)
    acts = record(tiny_qwen, w, site="mlp", position="mean", progress=False)
    return acts.strength(w.proposition(label="positive"), normalize="zscore").top(k=6)


def greedy(model, prompts, **kw):
    return generate_text(model, prompts, max_new_tokens=8, do_sample=False, **kw)


def all_hooks_removed(model):
    return all(not hp._forward_hooks for hp in model.bridge.hook_dict.values())


# ------------------------------------------------------------------------------------------------ rules


def plan():
    # unit 0 speaks for A, unit 1 against A
    return LayerPlan(torch.tensor([0, 1]), torch.tensor([1.0, -1.0]), torch.tensor([2.0, -1.0]),
                     torch.tensor([3.0, -2.0]), torch.tensor([1.0, 0.5]), torch.tensor([0.5, 2.0]))


@pytest.mark.parametrize("rule, toward, expected", [
    ("paper", False, [2.0 - 5 * 10, -1.0]),  # pos2neg: for-units m - c*a, against-units m
    ("paper", True, [2.0, -1.0 - 5 * 20]),
    ("scale", True, [5 * 2.0, -1.0]),  # for-units s*m
    ("scale", False, [2.0, 5 * -1.0]),
    ("mean-ablate", True, [2.0, -1.0]),
    ("additive", True, [10 + 5 * 0.5, 20 - 5 * 2.0]),
    ("additive", False, [10 - 5 * 0.5, 20 + 5 * 2.0]),
    ("clamp", True, [3.0 + 5 * 1.0, -2.0 + 5 * -1.0]),  # mean_A + alpha*(mean_A - m)
    ("clamp", False, [1.0 + 5 * -1.0, 0.5 + 5 * 1.5]),  # mean_~A + alpha*(mean_~A - m)
])
def test_rules(rule, toward, expected):
    a = torch.tensor([[10.0, 20.0]])
    torch.testing.assert_close(rewrite(rule, a, plan(), 5.0, toward), torch.tensor([expected]))


@pytest.mark.parametrize("rule", ["paper", "scale", "mean-ablate", "additive", "clamp"])
def test_strength_zero_is_identity(rule):
    a = torch.randn(2, 3, 2)
    assert rewrite(rule, a, plan(), 0.0, True) is a


@pytest.mark.parametrize("rule", ["paper", "scale", "mean-ablate", "additive", "clamp"])
@pytest.mark.parametrize("toward", [True, False])
def test_hook_fast_paths_equal_the_reference_rule(rule, toward):
    from steer.interventions import make_hook

    act = torch.randn(2, 4, 5)
    p = plan()
    want = act.clone()
    want[..., p.index] = rewrite(rule, act[..., p.index], p, 3.0, toward)
    for positions in ("all", "prompt"):  # "prompt" on a prompt pass rewrites every position, the slow way
        got = make_hook("L0", p, rule, 3.0, toward, positions, PositionTracker())(act.clone())
        torch.testing.assert_close(got, want)


def test_plans_group_units_by_layer():
    u = lambda layer, i: Unit(layer, i, 1.0, 0.0, 1.0, 0.5, -0.5)  # noqa: E731
    plans = build_plans([u(3, 7), u(1, 2)], [u(3, 1)])
    assert sorted(plans) == [1, 3]
    assert plans[3].index.tolist() == [1, 7] and plans[3].role.tolist() == [-1.0, 1.0]


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
    with Steerer(tiny_qwen, neurons, rule="additive", strength=200.0):
        steered = greedy(tiny_qwen, PROMPTS)
    assert steered != plain


@pytest.mark.parametrize("rule, strength", [("additive", 50.0), ("clamp", 30.0), ("paper", 5.0)])
def test_kv_cache_does_not_change_steered_output(tiny_qwen, neurons, rule, strength):
    s = Steerer(tiny_qwen, neurons, rule=rule, strength=strength)
    cached = s.generate(PROMPTS, max_new_tokens=8, do_sample=False, use_past_kv_cache=True)
    uncached = s.generate(PROMPTS, max_new_tokens=8, do_sample=False, use_past_kv_cache=False)
    assert cached == uncached


@pytest.mark.parametrize("positions", ["generated", "prompt", "last-prompt"])
def test_kv_cache_invariance_holds_for_every_position_choice(tiny_qwen, neurons, positions):
    s = Steerer(tiny_qwen, neurons, rule="additive", strength=80.0, positions=positions)
    assert (s.generate(PROMPTS[:1], max_new_tokens=6, do_sample=False, use_past_kv_cache=True)
            == s.generate(PROMPTS[:1], max_new_tokens=6, do_sample=False, use_past_kv_cache=False))


def test_hook_fires_once_per_step_at_the_new_position(tiny_qwen, neurons):
    calls = []
    s = Steerer(tiny_qwen, neurons, rule="additive", strength=5.0, on_call=lambda key, start, n: calls.append((key, start, n)))
    ids = tiny_qwen.tokenizer(PROMPTS[0]).input_ids
    s.generate(PROMPTS[0], max_new_tokens=5, do_sample=False)
    layer_key = calls[0][0]
    mine = [(start, n) for key, start, n in calls if key == layer_key]
    assert mine[0] == (0, len(ids))
    assert mine[1:] == [(len(ids) + i, 1) for i in range(len(mine) - 1)]
    assert len(mine) >= 5  # the prompt step then one per new token (the last token needs no forward)


def test_batched_equals_single_prompt_runs(tiny_qwen, neurons):
    s = Steerer(tiny_qwen, neurons, rule="additive", strength=50.0)
    batched = s.generate(PROMPTS, max_new_tokens=8, do_sample=False)
    assert batched == [s.generate(p, max_new_tokens=8, do_sample=False) for p in PROMPTS]


def test_strength_zero_and_empty_set_give_unsteered_output(tiny_qwen, neurons):
    plain = greedy(tiny_qwen, PROMPTS)
    assert Steerer(tiny_qwen, neurons, rule="paper", strength=0).generate(PROMPTS, max_new_tokens=8, do_sample=False) == plain
    assert Steerer(tiny_qwen, None).generate(PROMPTS, max_new_tokens=8, do_sample=False) == plain
    empty = type(neurons)([], [], neurons.site, neurons.normalize, neurons.k, False, neurons.proposition, neurons.provenance)
    assert Steerer(tiny_qwen, empty).generate(PROMPTS, max_new_tokens=8, do_sample=False) == plain


def test_no_state_leaks_between_calls(tiny_qwen, neurons):
    plain = greedy(tiny_qwen, PROMPTS)
    a = Steerer(tiny_qwen, neurons, rule="additive", strength=100.0).generate(PROMPTS, max_new_tokens=8, do_sample=False)
    b = Steerer(tiny_qwen, neurons, rule="clamp", strength=20.0, toward=False).generate(PROMPTS, max_new_tokens=8, do_sample=False)
    assert greedy(tiny_qwen, PROMPTS) == plain
    assert Steerer(tiny_qwen, neurons, rule="additive", strength=100.0).generate(PROMPTS, max_new_tokens=8, do_sample=False) == a
    assert b != a
    assert all_hooks_removed(tiny_qwen)


def test_hooks_are_removed_after_an_exception(tiny_qwen, neurons):
    with pytest.raises(RuntimeError, match="inside"):
        with steering(tiny_qwen, neurons, rule="additive", strength=10.0):
            assert not all_hooks_removed(tiny_qwen)
            raise RuntimeError("inside")
    assert all_hooks_removed(tiny_qwen)


def test_seeds_make_sampling_reproducible(tiny_qwen, neurons):
    s = Steerer(tiny_qwen, neurons, rule="additive", strength=20.0)
    a = s.generate(PROMPTS, max_new_tokens=8, do_sample=True, seed=3)
    assert a == s.generate(PROMPTS, max_new_tokens=8, do_sample=True, seed=3)
    others = [s.generate(PROMPTS, max_new_tokens=8, do_sample=True, seed=sd) for sd in (4, 5, 6)]
    assert any(o != a for o in others)


def test_bad_arguments(tiny_qwen, neurons, tiny_model):
    with pytest.raises(ValueError, match="unknown rule"):
        Steerer(tiny_qwen, neurons, rule="flip")
    with pytest.raises(ValueError, match="unknown positions"):
        Steerer(tiny_qwen, neurons, positions="middle")
    if tiny_model.identity != tiny_qwen.identity:
        from steer.artifacts import ArtifactMismatchError

        with pytest.raises(ArtifactMismatchError):
            Steerer(tiny_model, neurons)


def test_steer_config_resolves_overrides_and_rule_strengths():
    from steer.interventions import DEFAULT_STRENGTH
    from steer.steering import SteerConfig

    cfg = SteerConfig()
    assert cfg.resolve() == cfg and cfg.resolve(k=None, rule=None) == cfg
    assert cfg.resolve(k=50).k == 50 and cfg.resolve(k=50).strength == cfg.strength
    assert cfg.resolve(rule="clamp").strength == DEFAULT_STRENGTH["clamp"]  # not the additive default
    assert cfg.resolve(rule="clamp", strength=2.0).strength == 2.0
