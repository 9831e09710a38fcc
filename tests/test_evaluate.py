"""The evaluation harness: metric code on inputs with known answers, the cached last-token path against a plain
hooked forward, the harness end to end on a tiny random model (complete report, controls present,
reproducible), and on the bundled model a short run whose neuron steering beats the random-unit control."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from steer.eval.metrics import distinct_n, kl_divergence, perplexity, rate, wilson_interval
from steer.selection import average_precision, median_on, standardized_mean_difference

# ---------------------------------------------------------------------------------------------- metrics


@pytest.mark.parametrize("k,n,lo,hi", [(0, 10, 0.0, 0.2775), (5, 10, 0.2366, 0.7634), (8, 10, 0.4902, 0.9433),
                                       (10, 10, 0.7225, 1.0)])
def test_wilson_interval_known_values(k, n, lo, hi):
    a, b = wilson_interval(k, n)
    assert a == pytest.approx(lo, abs=1e-4) and b == pytest.approx(hi, abs=1e-4)


def test_wilson_interval_edge_cases_and_coverage():
    assert wilson_interval(0, 0) == (0.0, 1.0)
    with pytest.raises(ValueError):
        wilson_interval(3, 2)
    assert rate(3, 4)["rate"] == 0.75
    # coverage of the 95% interval for p = 0.3, n = 40 over many simulated samples is close to 95%
    rng = np.random.default_rng(0)
    hits = [(lambda lo_hi: lo_hi[0] <= 0.3 <= lo_hi[1])(wilson_interval(int(k), 40)) for k in rng.binomial(40, 0.3, 2000)]
    assert 0.92 < np.mean(hits) < 0.98


def test_kl_divergence_known_value():
    p = torch.log(torch.tensor([[0.5, 0.5]], dtype=torch.float64))
    q = torch.log(torch.tensor([[0.9, 0.1]], dtype=torch.float64))
    expected = 0.5 * math.log(0.5 / 0.9) + 0.5 * math.log(0.5 / 0.1)
    assert float(kl_divergence(p, q)[0]) == pytest.approx(expected, rel=1e-9)
    assert float(kl_divergence(p, p)[0]) == pytest.approx(0.0, abs=1e-12)


def test_distinct_n_known_values():
    assert distinct_n(["a b a b"], 1) == pytest.approx(2 / 4)
    assert distinct_n(["a b a b"], 2) == pytest.approx(2 / 3)
    assert distinct_n(["a b c", "a b d"], 3) == 1.0
    assert distinct_n([""], 2) == 0.0


class _CharTokenizer:
    """Mimics the HF tokenizer interface steer.Model uses: one id per character."""

    pad_token_id = 0

    def __call__(self, text, add_special_tokens=True):
        return type("E", (), {"input_ids": [1 + (ord(c) % 30) for c in text]})()


V = 37


def _uniform_bridge(ids, attention_mask=None, return_type="logits"):
    """A model whose next-token distribution is uniform over V tokens: perplexity must be exactly V."""
    return torch.zeros(*ids.shape, V)


def test_perplexity_of_a_known_distribution():
    from steer import Model

    m = Model(_uniform_bridge, _CharTokenizer())
    assert perplexity(m, ["ab", "hello"], ["cde", "fg"]) == pytest.approx(V, rel=1e-6)


def test_average_precision_and_median_against_a_naive_loop():
    g = torch.Generator().manual_seed(0)
    X = torch.randn(30, 7, generator=g)
    mask = torch.rand(30, generator=g) < 0.3
    ap = average_precision(X, mask, chunk=3)
    for u in range(7):
        order = torch.argsort(X[:, u], descending=True, stable=True)
        hits, precs = 0, []
        for r, w in enumerate(order.tolist(), 1):
            if mask[w]:
                hits += 1
                precs.append(hits / r)
        assert float(ap[u]) == pytest.approx(np.mean(precs), rel=1e-9)
    perfect = mask.float()[:, None]
    assert float(average_precision(perfect, mask)[0]) == pytest.approx(1.0)
    assert torch.allclose(median_on(X, mask), X[mask].median(0).values)
    smd = standardized_mean_difference(torch.tensor([1.0, 2.0]), torch.tensor([0.0, 2.0]), torch.tensor([0.5, 0.0]))
    assert smd.tolist() == [2.0, 0.0]


# ------------------------------------------------------------------------------------- faithfulness


def _sst2_like(tmp_path, n_train=40, n_val=24):
    from tests.conftest import CORPUS

    pos = ["wonderful film, a lovely day", "great music and a warm crowd", "not bad at all, lovely friends"]
    neg = ["awful service, cold soup", "the food was terrible", "never again, awful and cold"]
    rows = ["sentence\tlabel"]
    for i in range(n_train):
        rows.append(f"{(pos if i % 2 else neg)[i % 3]} {CORPUS[i % 5].split()[i % 4]}\t{i % 2}")
    (tmp_path / "train.tsv").write_text("\n".join(rows) + "\n")
    rows = ["sentence\tlabel"] + [f"{(pos if i % 2 else neg)[(i + 1) % 3]}\t{i % 2}" for i in range(n_val)]
    (tmp_path / "validation.tsv").write_text("\n".join(rows) + "\n")
    (tmp_path / "tmpl.txt").write_text("Input: {text}\nAnswer:")
    return tmp_path


def _tiny_flip_config(d, **kw):
    from steer.eval import FlipConfig, FlipItems, FlipWorlds, UnitChoice
    from steer.templates import Template

    tmpl = Template.from_file(d / "tmpl.txt")
    return FlipConfig(sst2=str(d),
                      worlds=FlipWorlds(n=40, template=tmpl, positive="vader_pos:top6", negative="vader_neg:top6"),
                      items=FlipItems(n=None, template=tmpl, answers=("a", "b")),
                      units=UnitChoice(k=2, random_seeds=(0, 1), sites=("resid", "mlp")), **kw)


def test_cached_last_token_path_equals_a_full_hooked_forward(tiny_qwen, tmp_path):
    """The flip protocol's shortcut (prefix KV cache + one-token forward per condition) gives the same
    log-probabilities as a plain forward over the whole prompt with the rewrite at the last prompt position."""
    from steer import Intervention, Steerer, Worlds, record
    from steer.eval.faithfulness import Condition, answer_logprobs

    worlds = Worlds.from_records([{"text": t} for t in ["a lovely day", "cold soup and awful service never again",
                                                        "the film", "great music and a warm crowd in the evening"]])
    acts = record(tiny_qwen, worlds, site="mlp", layers=None, reduce="last", progress=False)
    ns = acts.strength(worlds.mask([True, False, False, True])).top(3)
    cond = Condition("c", "pos2neg", ns, Intervention("paper", 5.0, "away"))
    answers = [5, 17, 40]
    clean, steered, kl = answer_logprobs(tiny_qwen, worlds.prompts, [cond], answers, batch_size=3, progress=False)
    tok = tiny_qwen.tokenizer
    for i, p in enumerate(worlds.prompts):
        ids = torch.tensor([tok(p).input_ids])
        with torch.inference_mode():
            full = torch.log_softmax(tiny_qwen.bridge(ids)[0, -1].float(), -1)
            with Steerer(tiny_qwen, ns, Intervention("paper", 5.0, direction="away", apply_to="last-prompt")):
                hooked = torch.log_softmax(tiny_qwen.bridge(ids)[0, -1].float(), -1)
        assert torch.allclose(clean[i], full[answers], atol=1e-4)
        assert torch.allclose(steered["c"][i], hooked[answers], atol=1e-4)
        assert not torch.allclose(clean[i], steered["c"][i], atol=1e-3)
        assert float(kl["c"][i]) == pytest.approx(float((full.exp() * (full - hooked)).sum()), rel=1e-3, abs=1e-6)


def test_flip_harness_end_to_end_on_a_tiny_model(tiny_qwen, tmp_path):
    from steer.eval import evaluate_flips, flip_table

    d = _sst2_like(tmp_path)
    r = evaluate_flips(tiny_qwen, _tiny_flip_config(d), out=tmp_path / "rep", progress=False)
    groups = {(c["flip"], c["info"]["site"], c["group"]) for c in r["conditions"]}
    for flip in ("pos2neg", "neg2pos"):
        for site in ("resid", "mlp"):
            for g in ("method", "random", "score:mean-diff", "other-layers"):
                assert (flip, site, g) in groups
    assert r["n_items"] == 24 and 0 <= r["clean_accuracy"]["rate"] <= 1
    for c in r["conditions"]:
        f = c["flip_rate"]
        assert f["n"] == 0 or f["lo"] <= f["rate"] <= f["hi"]
        assert (c["rule"], c["direction"], c["coeff"]) == ("paper", "away", 5.0 if c["flip"] == "pos2neg" else 7.0)
        assert c["n_units"] == 4
    rep = tmp_path / "rep"
    assert {"result.json", "report.md", "flips.png"} <= {p.name for p in rep.iterdir()}
    assert "| pos2neg |" in (rep / "report.md").read_text() and "other-layers" in flip_table(r)
    again = evaluate_flips(tiny_qwen, _tiny_flip_config(d), progress=False)
    assert [c["flip_rate"] for c in again["conditions"]] == [c["flip_rate"] for c in r["conditions"]]


def test_multi_token_answers_are_refused(tiny_qwen):
    from steer.eval.faithfulness import answer_token_ids

    with pytest.raises(ValueError, match="single tokens"):
        answer_token_ids(tiny_qwen.tokenizer, {"positive": " wonderful and lovely", "negative": " b"})


# ------------------------------------------------------------------------------------------ steering


@pytest.fixture(scope="module")
def classifier(tmp_path_factory):
    """The MiniLM classifier fitted on a small SST-2 sample (the harness default uses 8000 sentences)."""
    from pathlib import Path

    from steer.eval.scorers import EncoderClassifier

    data = Path(__file__).resolve().parents[2] / "shared" / "data" / "sst2"
    if not (data / "train.tsv").is_file():
        pytest.skip("../shared/data/sst2 is not available")
    return EncoderClassifier.fit_or_load(train=str(data / "train.tsv"), heldout=str(data / "validation.tsv"),
                                         n_train=600)


def test_classifier_scorer_reports_held_out_accuracy_and_judges(classifier):
    assert classifier.info["n_heldout"] == 872 and classifier.info["heldout_accuracy"] > 0.65
    assert classifier.judge(["A wonderful, moving and beautiful film.", "Dull, ugly and a complete waste of time."]
                            ).tolist() == [1, -1]
    assert classifier.score([""]).tolist() == [0.0]


def test_steering_harness_end_to_end_on_a_tiny_model(tiny_qwen, tmp_path, classifier):
    from steer.eval import SteeringEvalConfig, VaderScorer, evaluate_steering

    prompts = tmp_path / "p.jsonl"
    prompts.write_text("\n".join(json.dumps({"text": t}) for t in ["the film", "a quiet morning", "cold soup"]))
    worlds = tmp_path / "w.jsonl"
    from tests.conftest import labelled_corpus

    worlds.write_text("\n".join(json.dumps(r) for r in labelled_corpus(4)))
    cfg = SteeringEvalConfig(prompts=(str(prompts),), worlds=str(worlds), k=5, coeffs=(1.0, 4.0),
                             caa_coeffs=(2.0,), caa_layer=1, selfcond_k=(3,), seeds=(0,), max_new_tokens=6)
    scorers = [VaderScorer(), classifier]
    r = evaluate_steering(tiny_qwen, cfg, out=tmp_path / "rep", scorers=scorers, progress=False)
    kinds = {m["kind"] for m in r["methods"].values()}
    assert kinds == {"neurons", "control", "baseline"}
    assert len(r["runs"]) == 2 * (2 + 2 + 1 + 1 + 1)  # directions x (neurons, random, CAA, self-cond, prompting)
    for run in r["runs"]:
        assert run["n"] == 3 and set(run["scores"]) == {"vader", "minilm-sst2"} and run["ppl"] > 1
    rep = tmp_path / "rep"
    names = {p.name for p in rep.iterdir()}
    assert {"result.json", "report.md", "tradeoff_vader.png", "scores_minilm-sst2.png"} <= names
    assert "residual vector" in (rep / "report.md").read_text()
    again = evaluate_steering(tiny_qwen, cfg, scorers=scorers, progress=False)
    strip = lambda res: json.dumps([{k: v for k, v in x.items()} for x in res["runs"]], sort_keys=True)  # noqa: E731
    assert strip(again) == strip(r)


def test_neuron_steering_beats_the_random_control_in_the_harness(bundled):
    """Bundled SmolLM2, project defaults (rank D, k=500, additive 3): 12 held-out neutral prompts x 2 seeds,
    20 tokens, VADER. The separation (mean VADER toward positive minus toward negative, halved) of the neuron
    set must exceed the random-unit control's by 0.1; test_steering_bundled measured +0.23 vs -0.03 on 3 seeds."""
    from steer.eval import SteeringEvalConfig, VaderScorer, evaluate_steering, summary_rows

    cfg = SteeringEvalConfig(prompts=("prompts/steering_test.jsonl",), coeffs=(3.0,), caa_coeffs=(),
                             selfcond_k=(), prompting=False, seeds=(0, 1), max_new_tokens=20)
    r = evaluate_steering(bundled, cfg, scorers=[VaderScorer()], progress=False)
    rows = {row["kind"]: row for row in summary_rows(r, "vader")}
    assert rows["neurons"]["sep"] > rows["control"]["sep"] + 0.1, rows


def test_eval_cli_on_a_tiny_model(tmp_path, capsys, cache_env):
    """``steer eval steer`` writes its report; ``steer eval flip`` names the problem when the answer letters are
    not single tokens of the model's tokenizer (the tiny BPE splits " a"), and writes no report."""
    from steer.cli import main
    from tests.conftest import build_tiny_model, labelled_corpus

    model_dir = build_tiny_model(tmp_path / "tiny", "qwen2")
    worlds = tmp_path / "w.jsonl"
    worlds.write_text("\n".join(json.dumps(r) for r in labelled_corpus(4)))
    prompts = tmp_path / "p.jsonl"
    prompts.write_text(json.dumps({"text": "the film"}) + "\n" + json.dumps({"text": "cold soup"}) + "\n")
    out = tmp_path / "steer-report"
    rc = main(["eval", "steer", "--model", str(model_dir), "--prompt-files", str(prompts), "--worlds", str(worlds),
               "--k", "4", "--coeffs", "2", "--caa-coeffs", "2", "--caa-layer", "1", "--selfcond-k", "3",
               "--scorers", "vader", "--seeds", "0", "--max-new-tokens", "5", "--out", str(out), "--quiet"])
    text = capsys.readouterr().out
    assert rc == 0 and "== scorer vader" in text and "random units (k=4)" in text
    assert (out / "report.md").is_file() and (out / "tradeoff_vader.png").is_file()

    d = _sst2_like(tmp_path)
    out = tmp_path / "flip-report"
    rc = main(["eval", "flip", "--model", str(model_dir), "--sst2", str(d), "--n-worlds", "40", "--n-eval", "10",
               "--out", str(out), "--quiet"])
    assert rc == 2 and "answers must be single tokens" in capsys.readouterr().err
    assert not out.exists()


def test_score_units_reuses_raw_strengths_without_changing_them(tiny_qwen):
    from steer import Strengths, Worlds, record
    from steer.neurons import score_units

    worlds = Worlds.from_records([{"text": t} for t in ["a lovely day", "cold soup", "the film", "great music",
                                                        "awful service", "a quiet morning"]])
    acts = record(tiny_qwen, worlds, site="mlp", layers=None, reduce="last", progress=False)
    prop = worlds.mask([True, False, False, True, False, True])
    raw = Strengths.compute(acts, prop)
    for score in ("D", "mean-diff", "smd", "ap", "rank-D"):
        assert torch.equal(score_units(acts, prop, score, raw=raw).values, score_units(acts, prop, score).values), score
        assert score_units(acts, prop, score).score == score
    with pytest.raises(ValueError, match="un-normalized"):
        score_units(acts, prop, "smd", raw=acts.strength(prop, normalize="rank"))
    with pytest.raises(ValueError, match="unknown selection score"):
        score_units(acts, prop, "auroc")
