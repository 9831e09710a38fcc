"""The steering benchmark at matched fluency: its prompts, its knob search, its peer methods, and a run end to end."""

from __future__ import annotations

import json
import math

import pytest
import torch

from steer import Worlds
from steer.resources import PROMPTS_DIR

BENCH = PROMPTS_DIR / "steering_bench"


# ------------------------------------------------------------------------------------------ prompts


def test_bench_prompts_have_the_promised_sizes_splits_and_no_overlap():
    from steer.eval import BenchPrompts

    neutral, opposite = Worlds.from_file(BENCH / "neutral.jsonl"), Worlds.from_file(BENCH / "opposite.jsonl")
    assert len(neutral) >= 240 and len(opposite) >= 120
    assert set(neutral.column("label")) == {"neutral"}
    assert len(set(neutral.column("register"))) >= 6
    for w in (neutral, opposite):
        assert set(w.column("split")) == {"dev", "test"}
    splits = neutral.column("split")
    assert abs(splits.count("dev") - splits.count("test")) <= 2
    texts = neutral.prompts + opposite.prompts
    assert len(set(texts)) == len(texts), "a prompt appears twice"
    others = set()
    for f in ("sentiment.jsonl", "steering_dev.jsonl", "steering_test.jsonl", "steering_opposite.jsonl"):
        others |= set(Worlds.from_file(PROMPTS_DIR / f).prompts)
    assert not set(texts) & others, "the benchmark's prompts must not repeat the other prompt sets"
    dev = BenchPrompts.from_files(BENCH / "neutral.jsonl", BENCH / "opposite.jsonl", "dev")
    test = BenchPrompts.from_files(BENCH / "neutral.jsonl", BENCH / "opposite.jsonl", "test")
    assert not set(dev.neutral) & set(test.neutral)
    # the test split holds 90 positive and 70 negative openings (grown where the Qwen table's intervals were widest)
    assert len(test.against("positive")) == 70 and len(test.against("negative")) == 90
    lab = {p: lab for p, lab in zip(opposite.prompts, opposite.column("label"))}
    assert all(lab[p] == "negative" for p in test.against("positive"))
    some = BenchPrompts.from_files(BENCH / "neutral.jsonl", BENCH / "opposite.jsonl", "test", 10, 6)
    assert len(some.neutral) == 10 and [lab for _, lab in some.opposite].count("positive") == 3


def test_bench_prompts_refuse_an_unknown_split_and_label(tmp_path):
    from steer.eval import BenchPrompts

    with pytest.raises(ValueError, match="split='val'"):
        BenchPrompts.from_files(BENCH / "neutral.jsonl", None, "val")
    bad = tmp_path / "o.jsonl"
    bad.write_text(json.dumps({"text": "Fine.", "label": "meh", "split": "test"}) + "\n")
    with pytest.raises(ValueError, match="label 'meh'"):
        BenchPrompts.from_files(BENCH / "neutral.jsonl", bad, "test")


# ------------------------------------------------------------------------------------------ search


def _counting(f):
    calls = []

    def g(x):
        calls.append(x)
        return f(x)

    return g, calls


@pytest.mark.parametrize("target", [1.25, 1.5, 3.0])
def test_search_knob_finds_the_setting_of_a_monotone_ratio(target):
    from steer.eval.knob_search import search_knob
    from steer.eval.methods import Knob

    f, calls = _counting(lambda x: 1 + 0.08 * x**1.7)
    memo: dict[float, float] = {}
    x = search_knob(f, Knob(3.0, 0.05, 64.0), target, memo, tol=0.03, max_evals=10)
    assert abs(f(x) / target - 1) <= 0.03
    assert len(calls) - 1 <= 8 and len(memo) == len(calls) - 1  # each setting run once (the last call is ours)


def test_search_knob_reuses_the_settings_of_an_earlier_budget():
    from steer.eval.knob_search import search_knob
    from steer.eval.methods import Knob

    f, calls = _counting(lambda x: math.exp(0.1 * x))
    memo: dict[float, float] = {}
    search_knob(f, Knob(3.0, 0.05, 64.0), 1.5, memo, tol=0.02)
    first = len(calls)
    x = search_knob(f, Knob(3.0, 0.05, 64.0), 1.25, memo, tol=0.02)
    assert abs(math.exp(0.1 * x) / 1.25 - 1) <= 0.02
    assert len(calls) - first < first  # the bracket of the first search is reused


def test_search_knob_integer_knob_and_unreachable_budget():
    from steer.eval.knob_search import search_knob
    from steer.eval.methods import Knob

    memo: dict[float, float] = {}
    x = search_knob(lambda k: 1 + k / 100, Knob(50, 1, 2000, integer=True), 1.5, memo, tol=0.0)
    assert x == 50 and all(float(k).is_integer() for k in memo)
    # a method that never costs the budget stops at its upper bound, and the closest setting is returned
    memo = {}
    x = search_knob(lambda c: 1.1, Knob(3.0, 0.05, 8.0), 1.5, memo, max_evals=10)
    assert max(memo) == 8.0 and len(memo) <= 4
    # a method already over budget at its lower bound stops there
    memo = {}
    x = search_knob(lambda c: 5.0 + c, Knob(3.0, 0.5, 8.0), 1.5, memo, max_evals=10)
    assert x == 0.5 and min(memo) == 0.5
    with pytest.raises(ValueError, match="lo <= start <= hi"):
        Knob(3.0, 4.0, 8.0)


def test_splits_are_stratified_over_every_register_at_every_size():
    from collections import Counter

    from steer.eval import BenchPrompts

    neutral = Worlds.from_file(BENCH / "neutral.jsonl")
    register = dict(zip(neutral.prompts, neutral.column("register")))
    registers = sorted(set(register.values()))
    for split in ("dev", "test"):
        total = Counter(r for p, r in register.items() if p in BenchPrompts.from_files(BENCH / "neutral.jsonl", None, split).neutral)
        for n in range(1, sum(total.values()) + 1):
            got = Counter(register[p] for p in BenchPrompts.from_files(BENCH / "neutral.jsonl", None, split, n).neutral)
            assert sum(got.values()) == n
            for r in registers:  # each register within one opening of its share
                assert abs(got[r] - n * total[r] / sum(total.values())) < 1, (split, n, r, got)
    for n in range(1, 61):
        b = BenchPrompts.from_files(BENCH / "neutral.jsonl", BENCH / "opposite.jsonl", "test", 6, n)
        labels = Counter(lab for _, lab in b.opposite)
        assert sum(labels.values()) == n and abs(labels["positive"] - labels["negative"]) <= 1
    a = BenchPrompts.from_files(BENCH / "neutral.jsonl", None, "test", 24, seed=0).neutral
    assert a == BenchPrompts.from_files(BENCH / "neutral.jsonl", None, "test", 24, seed=0).neutral  # fixed seed
    assert a != BenchPrompts.from_files(BENCH / "neutral.jsonl", None, "test", 24, seed=1).neutral


def test_a_balanced_draw_gives_every_group_an_equal_share():
    from collections import Counter

    from steer.eval.readout import balanced, stratified

    even = ["a"] * 30 + ["b"] * 30
    for n in (1, 7, 48, 59):  # on groups of equal size it is the proportional draw
        assert balanced(even, n, seed=3) == stratified(even, n, seed=3)
    groups = ["a"] * 90 + ["b"] * 30
    for n, want in ((48, (24, 24)), (7, (4, 3)), (80, (50, 30)), (119, (89, 30))):
        got = Counter(groups[i] for i in balanced(groups, n))
        assert (got["a"], got["b"]) == want, (n, got)
    assert balanced(groups, None) == list(range(120)) == balanced(groups, 500)
    assert Counter(groups[i] for i in stratified(groups, 48))["a"] == 36  # proportional: 3 to 1
    with pytest.raises(ValueError, match="at least 1"):
        balanced(groups, 0)


def test_isotonic_reading_at_the_budget():
    from steer.eval.readout import isotonic, read_at_budget, value_at

    assert isotonic([1, 3, 2, 4]).tolist() == [1, 2.5, 2.5, 4]
    assert isotonic([3, 2, 1], increasing=False).tolist() == [3, 2, 1]
    knobs = [1.0, 2.0, 4.0, 8.0]
    r = read_at_budget(knobs, [1.1, 1.3, 1.7, 2.5], {"s": [0.2, 0.4, 0.6, 0.9]}, 1.5)
    assert r["reached"] and r["knob"] == pytest.approx(3.0) and r["success"]["s"] == pytest.approx(0.5)
    # a noisy (non-monotone) ratio curve is read on its isotonic fit
    r = read_at_budget(knobs, [1.1, 1.6, 1.4, 2.5], {"s": [0.2, 0.5, 0.4, 0.9]}, 1.5)
    assert r["reached"] and 2.0 <= r["knob"] <= 4.0
    assert read_at_budget(knobs, [1.0, 1.1, 1.2, 1.3], {}, 1.5) == {"reached": False, "min_ratio": 1.0, "max_ratio": 1.3}
    assert not read_at_budget(knobs, [1.6, 1.7, 1.8, 1.9], {}, 1.5)["reached"]
    assert value_at(knobs, [0.0, 1.0, 0.5, 1.0], 3.0) == pytest.approx(0.75)
    with pytest.raises(ValueError, match="ascending"):
        read_at_budget([2.0, 1.0], [1.0, 2.0], {}, 1.5)


def test_paired_bootstrap_and_holm():
    import numpy as np

    from steer.eval.readout import holm, interval, paired_difference, resample_index, verdict

    assert holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    assert holm([0.5]) == [0.5]
    same = paired_difference([0.5] * 100, [0.5] * 100)
    assert same["diff"] == 0 and same["p"] == 1.0 and verdict(same["diff"], same["p"]) == "tie"
    better = paired_difference(list(np.linspace(0.6, 0.8, 200)), [0.5] * 200)
    assert better["p"] == 0 and better["lo"] > 0 and verdict(better["diff"], 0.0) == "win"
    assert verdict(-0.2, 0.001) == "lose" and verdict(None, None) == "n/a"
    assert paired_difference([None, 0.5], [0.4, None])["n"] == 0
    idx = resample_index(10, 50, seed=3)
    assert idx.shape == (50, 10) and (idx == resample_index(10, 50, seed=3)).all() and idx.max() < 10
    assert interval([0.0, 1.0, float("nan")]) == pytest.approx((0.025, 0.975))


def test_clustered_samples_widen_the_interval():
    """Samples of one opening are not independent: when they agree perfectly, resampling openings gives the width of
    n_openings trials, not n_openings x samples."""
    import numpy as np

    from steer.eval.readout import interval, read_curve, resample_index

    rng = np.random.default_rng(0)
    per_opening = (rng.random(40) < 0.5).astype(int)  # 40 openings, 3 identical samples each
    success = np.repeat(per_opening[:, None], 3, 1)
    nll, count = np.ones((40, 3)), np.ones((40, 3))
    curve = {"knobs": [1.0, 2.0], "neutral": {"nll": [nll * 1.0, nll * 2.0], "count": [count, count],
                                              "success": {"s": [success, success]}}}
    base = {"nll": nll, "count": count}
    reads = [read_curve(curve, base, 1.5, i)["success"]["neutral:s"] for i in resample_index(40, 500, 0)]
    lo, hi = interval(reads)
    p = per_opening.mean()
    independent = 2 * 1.96 * np.sqrt(p * (1 - p) / 120)  # what 120 independent trials would claim
    assert hi - lo > 1.4 * independent


# ------------------------------------------------------------------------------------------ peers


def test_pca_directions_recover_the_contrast_axis_and_its_sign():
    from steer.eval.methods import pca_directions

    g = torch.Generator().manual_seed(0)
    pairs, layers, d = 64, 3, 16
    axis = torch.nn.functional.normalize(torch.randn(layers, d, generator=g), dim=-1)
    base = torch.randn(pairs, layers, d, generator=g)
    size = 1 + torch.rand(pairs, 1, 1, generator=g) * 3  # the pairs differ by various amounts along the axis
    pos = base + size * axis + 0.05 * torch.randn(pairs, layers, d, generator=g)
    neg = base - size * axis + 0.05 * torch.randn(pairs, layers, d, generator=g)
    v = pca_directions(pos, neg)
    assert v.shape == (layers, d)
    cos = (v * axis).sum(-1)
    assert torch.all(cos > 0.99), cos  # the axis, pointing toward the positive members
    assert torch.allclose(v.norm(dim=-1), torch.ones(layers), atol=1e-5)
    flipped = pca_directions(neg, pos)
    assert torch.all((flipped * axis).sum(-1) < -0.99)
    with pytest.raises(ValueError, match="pairs>=2"):
        pca_directions(pos[:1], neg[:1])


def test_contrast_pairs_share_their_suffix_and_differ_in_persona():
    from steer.eval.methods import contrast_pairs

    pairs = contrast_pairs(["The soup was rich.", "A long queue at noon."], n=5, seed=1)
    assert len(pairs) == 5 and pairs == contrast_pairs(["The soup was rich.", "A long queue at noon."], 5, 1)
    for p, n in pairs:
        assert p != n and p.split(". ", 1)[1] == n.split(". ", 1)[1]
    with pytest.raises(ValueError, match="some text"):
        contrast_pairs(["  "])


def test_residual_vector_at_several_layers_adds_its_vector_at_each(tiny_qwen):
    from steer.eval import ResidualVector

    d, layers = tiny_qwen.d_model, (0, 1)
    v = torch.randn(2, d)
    m = ResidualVector("caa", [], vectors={"positive": v, "negative": -v}, layers=layers)
    ctx = m.context(tiny_qwen, "negative", 0.5)
    assert ctx.site == "resid" and set(ctx.edits) == set(layers)
    for i, layer in enumerate(layers):
        assert torch.allclose(ctx.edits[layer].affine.shift, -0.5 * v[i])
        assert torch.equal(ctx.edits[layer].affine.scale, torch.ones(d))
    ids, mask = tiny_qwen.tokenize(["the film was"])
    plain = tiny_qwen.bridge(ids, attention_mask=mask)
    with ctx:
        steered = tiny_qwen.bridge(ids, attention_mask=mask)
    assert not torch.allclose(steered, plain)
    assert torch.allclose(tiny_qwen.bridge(ids, attention_mask=mask), plain)
    one = ResidualVector("caa1", [], vectors={"positive": v[0], "negative": -v[0]}, layers=(1,))
    assert set(one.context(tiny_qwen, "positive", 1.0).edits) == {1}


def test_combined_steering_stacks_its_parts_and_removes_them(tiny_qwen):
    from steer import Steerer
    from steer.eval import CombinedSteering, NeuronSteering
    from steer.interventions import Affine, LayerEdit

    def edit(value):
        return {0: LayerEdit(torch.tensor([0, 1]), Affine(torch.ones(2), torch.full((2,), value)))}

    class Fixed(NeuronSteering):
        def context(self, model, target, coeff):
            return Steerer.from_edits(model, "mlp", edit(coeff if target == "positive" else -coeff))

    a, b = Fixed("a", []), Fixed("b", [])
    both = CombinedSteering("both", [], parts={"positive": [(a, "positive"), (b, "positive")]})
    ids, mask = tiny_qwen.tokenize(["the film was"])
    plain = tiny_qwen.bridge(ids, attention_mask=mask)
    with a.context(tiny_qwen, "positive", 2.0):
        one = tiny_qwen.bridge(ids, attention_mask=mask)
    with a.context(tiny_qwen, "positive", 4.0):
        double = tiny_qwen.bridge(ids, attention_mask=mask)
    with both.context(tiny_qwen, "positive", 2.0):
        stacked = tiny_qwen.bridge(ids, attention_mask=mask)
    assert not torch.allclose(one, plain)
    assert torch.allclose(stacked, double, atol=1e-5)  # two +2 edits of the same units = one +4 edit
    assert torch.allclose(tiny_qwen.bridge(ids, attention_mask=mask), plain)


def test_per_target_runs_each_targets_own_method_and_knob(tiny_qwen):
    from steer.eval import Method, PerTarget, PromptPrefix
    from steer.eval.methods import Knob

    class Marked(Method):
        def prompts(self, prompts, target, coeff):
            return [f"{self.name}:{p}" for p in prompts]

    up, down = Marked("up", [], knob=Knob(3.0, 0.1, 9.0)), PromptPrefix("prefix", [], knob=None)
    m = PerTarget("per target", [], parts={"positive": up, "negative": down})
    assert m.knob_for("positive") == Knob(3.0, 0.1, 9.0) and m.knob_for("negative") is None
    assert m.prompts(["x"], "positive", 1.0) == ["up:x"]
    assert m.prompts(["x"], "negative", 1.0) == down.prompts(["x"], "negative", 1.0) != ["x"]


# ------------------------------------------------------------------------------------------ end to end


def test_matched_eval_end_to_end_on_a_tiny_model(tiny_qwen, tmp_path):
    from steer.eval import (
        Bench,
        BenchPrompts,
        MatchedConfig,
        NeuronSteering,
        PerTarget,
        PromptPrefix,
        VaderScorer,
        matched_eval,
        matched_table,
    )
    from steer.eval.matched_report import verdicts
    from steer.eval.plots import plot_matched
    from steer.neurons import score_units
    from tests.conftest import labelled_corpus

    worlds = Worlds.from_records(labelled_corpus(4))
    acts = __import__("steer").record(tiny_qwen, worlds, site="mlp", progress=False)
    scores = {t: score_units(acts, worlds.proposition(f"label={t}"), "rank-D") for t in ("positive", "negative")}
    neurons = NeuronSteering("neurons", [], "neurons", sets={t: s.top(5) for t, s in scores.items()})
    prefix = PromptPrefix("prefix", [], "baseline")
    dev = BenchPrompts(["the film", "a quiet morning"])
    test = BenchPrompts(["cold soup", "the train"], [("what a lovely day", "positive"), ("awful", "negative")])
    cfg = MatchedConfig(budgets=(1.25, 1.5), samples=2, dev_samples=1, max_new_tokens=5, max_evals=3, grid=4,
                        resamples=50)
    bench = Bench(tiny_qwen, [VaderScorer()], dev, test, cfg, progress=False)
    r = matched_eval(bench, [neurons, prefix])
    assert len(r["rows"]) == 2 * 2 + 2  # neurons: budgets x targets; prefix: targets at its only setting
    for key in ("neurons -> positive", "neurons -> negative"):
        c = r["curves"][key]
        assert 2 <= len(c["knobs"]) <= 4 and c["knobs"] == sorted(c["knobs"])
        assert len(c["neutral"]["nll"]) == len(c["knobs"]) and len(c["neutral"]["nll"][0]) == 2  # [grid, openings, samples]
        assert len(c["against"]["success"]["vader"][0]) == 1
    for row in r["rows"]:
        assert row["method"] != "prefix" or (row["budget"] is None and row["ratio"] > 0)
        if row["reached"]:
            s = row["success"]["neutral"]["vader"]
            assert 0 <= s["lo"] <= s["rate"] <= s["hi"] <= 1 or s["lo"] != s["lo"]
            assert row["budget"] is None or row["ratio"] == row["budget"]
        else:
            assert row["max_ratio"] < row["budget"] or row["min_ratio"] > row["budget"]
    tr = r["traces"]["neurons -> positive"]
    assert 1 <= len(tr) <= 2 * 3 and all(t["ratio"] > 0 for t in tr)
    table = matched_table(r, 1.5)
    assert "| neurons |" in table and "| prefix |" in table
    comps = r["comparisons"]["1.5"]
    assert all(c["verdict"] in ("win", "tie", "lose", "n/a") for c in comps)
    assert all(c["p_holm"] is None or c["p_holm"] >= c["p"] for c in comps)
    assert {v["peer"] for v in verdicts(r, "neurons", 1.5)} <= {"prefix"}
    assert plot_matched(r, 1.5, tmp_path / "m.png").stat().st_size > 1000
    json.dumps(r)  # JSON-ready
    mixed = PerTarget("mixed", [], parts={"positive": neurons, "negative": prefix})  # searched / one setting
    rm = matched_eval(bench, [mixed])
    assert [(x["budget"], x["toward"]) for x in rm["rows"]] == [(1.25, "positive"), (1.5, "positive"), (None, "negative")]
    again = matched_eval(Bench(tiny_qwen, [VaderScorer()], dev, test, cfg, progress=False), [neurons, prefix])
    assert [x["knob"] for x in again["rows"]] == [x["knob"] for x in r["rows"]]  # seeded: reproducible
    assert again["curves"] == r["curves"]
