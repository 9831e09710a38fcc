"""Steering the bundled SmolLM2 model with the default settings moves the sentiment of continuations of
neutral prompts, and a random-unit control with the same k, rule and coeff does not move it comparably.

Sampling with fixed seeds is deterministic on CPU, so the margins guard against numeric drift, not noise.
Measured by this test (12 test prompts x seeds 0-2, 20 new tokens, mean VADER compound): unsteered +0.159,
toward positive +0.491 (+0.33), toward negative +0.023 (-0.14); the random-unit control (same k, rule and
coeff) +0.135 / +0.193, i.e. a separation of -0.03 against the steered +0.23. The thresholds ask for about
half of each measured effect.
"""

import json

import numpy as np
import pytest

import steer
from steer import DEFAULT_PROMPT_SET, Intervention, RecordSpec, SteerConfig, Steerer, Worlds, recording
from steer.eval import vader_compound
from steer.neurons import score_units
from steer.resources import PROMPTS_DIR

SEEDS = (0, 1, 2)
NEW = 20


@pytest.fixture(scope="module")
def test_prompts():
    return [json.loads(line)["text"] for line in open(PROMPTS_DIR / "steering_test.jsonl")]


def mean_compound(fn, prompts):
    texts = []
    for seed in SEEDS:
        texts += fn(prompts, seed)
    return float(np.mean(vader_compound(texts)))


def test_default_steering_moves_sentiment_beyond_a_random_control(bundled, test_prompts):
    gen = lambda toward: lambda p, seed: steer.generate(p, toward=toward, model=bundled, seed=seed,  # noqa: E731
                                                        max_new_tokens=NEW)
    base = mean_compound(gen(None), test_prompts)
    pos = mean_compound(gen("positive"), test_prompts)
    neg = mean_compound(gen("negative"), test_prompts)

    cfg = SteerConfig()
    worlds = Worlds.from_file(DEFAULT_PROMPT_SET, template=cfg.template)
    acts = recording(RecordSpec(bundled, worlds, cfg.site, cfg.reduce, cfg.layers), progress=False)
    ctrl = {}
    for i, label in enumerate(("positive", "negative")):
        rand = score_units(acts, worlds.proposition(label=label), cfg.score).random(cfg.k, seed=100 + i)
        s = Steerer(bundled, rand, Intervention(cfg.rule, cfg.coeff))
        ctrl[label] = mean_compound(lambda p, seed: s.generate(p, seed=seed, max_new_tokens=NEW), test_prompts)

    sep, ctrl_sep = (pos - neg) / 2, (ctrl["positive"] - ctrl["negative"]) / 2
    report = f"unsteered {base:+.3f}, positive {pos:+.3f}, negative {neg:+.3f}, control {ctrl}"
    assert pos > base + 0.15, report
    assert neg < base - 0.07, report
    assert sep > ctrl_sep + 0.12, report


def test_generate_api_shapes_and_unknown_labels(bundled):
    one = steer.generate("The hotel was", toward="positive", model=bundled, max_new_tokens=5)
    many = steer.generate(["The hotel was", "My day"], toward="negative", model=bundled, max_new_tokens=5)
    assert isinstance(one, str) and isinstance(many, list) and len(many) == 2
    with pytest.raises(steer.PromptSetError, match="unknown value 'happy'"):
        steer.generate("The hotel was", toward="happy", model=bundled, max_new_tokens=5)
