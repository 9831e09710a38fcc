"""A real engine: our GGUF control vector in llama.cpp (llama-cpp-python) moves the bundled model as steer does.

Opt in with STEER_LLAMACPP=1 after ``pip install -e ".[llamacpp]"`` (builds llama.cpp from the sdist; cmake and a
C compiler are needed; see pyproject.toml for the portable CMAKE_ARGS that worked here, where the native build
segfaulted). The comparison itself is ``steer.eval.llamacpp.compare_with_llamacpp``: for the default positive and
negative sets (layers 1-29, additive, the default coeff), per prompt, the steered-minus-unsteered next-token log-prob
shift over the whole vocabulary correlates > 0.95 between the engines, and greedy continuations move the VADER
sentiment the same way in both. Run with ``-s`` to see the numbers; ``bench/llamacpp.py`` stores a run in
``docs/results/llamacpp/result.json``.
"""

import os

import pytest

from steer import SteerConfig
from steer.weights import bundled_gguf

TRANSPORT_COEFF = 3.0  # lambda of the linear-transport maps, about the benchmark's 1.5x setting

pytestmark = pytest.mark.skipif(os.environ.get("STEER_LLAMACPP") != "1", reason="opt in with STEER_LLAMACPP=1")


@pytest.fixture(scope="module")
def sets(bundled):
    from steer.eval.llamacpp import default_sets

    return default_sets(bundled)


@pytest.mark.parametrize("label", ["positive", "negative"])
def test_llama_cpp_moves_like_steer(bundled, sets, tmp_path, label):
    from steer.eval.llamacpp import compare_with_llamacpp

    run = compare_with_llamacpp(bundled, sets[label], SteerConfig().coeff, bundled_gguf(), tmp_path)
    corrs, score = run["correlations"], run["vader"]
    print(f"\n[{label}] log-prob shift correlation per prompt: {[round(c, 4) for c in corrs]}")
    print(f"[{label}] mean VADER of greedy continuations: " + ", ".join(f"{k} {v:+.3f}" for k, v in score.items()))
    assert min(corrs) > 0.95
    sign = 1 if label == "positive" else -1
    assert sign * (score["llama.cpp steered"] - score["llama.cpp unsteered"]) > 0
    assert sign * (score["steer steered"] - score["steer unsteered"]) > 0


@pytest.mark.parametrize("label", ["positive", "negative"])
def test_llama_cpp_runs_a_transport_rule_as_an_edited_gguf(bundled, sets, tmp_path, label):
    """linear-transport scales units, so it goes to llama.cpp as --format gguf (the bundled GGUF with the scaled
    ffn_down columns, plus its control vector), not as a control vector alone."""
    from steer.eval.llamacpp import compare_with_llamacpp

    run = compare_with_llamacpp(bundled, sets[label], TRANSPORT_COEFF, bundled_gguf(), tmp_path,
                                rule="linear-transport")
    corrs = run["correlations"]
    print(f"\n[{label}, linear-transport] log-prob shift correlation per prompt: {[round(c, 4) for c in corrs]}")
    assert (tmp_path / "edited" / "model.gguf").is_file() and min(corrs) > 0.95
