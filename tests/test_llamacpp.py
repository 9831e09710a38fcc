"""A real engine: our GGUF control vector in llama.cpp (llama-cpp-python) moves the bundled model as steer does.

Opt in with STEER_LLAMACPP=1 after ``pip install -e ".[llamacpp]"`` (builds llama.cpp from the sdist; cmake and a
C compiler are needed; see pyproject.toml for the portable CMAKE_ARGS that worked here, where the native build
segfaulted). llama.cpp runs the Q4_1 weights of the bundled GGUF, steer the de-quantized fp32 weights, so
the logits cannot be equal; the test compares what the steering *changes*. For the default positive and negative
sets (layers 1-29, additive, coeff 3), per prompt: the steered-minus-unsteered next-token log-prob shift over the
whole vocabulary correlates > 0.95 between the engines, and greedy continuations move the VADER sentiment the same
way in both. Run with ``-s`` to see the measured numbers. Measured here (llama-cpp-python 0.3.36, steer 0.3.1,
2026-12-07): correlations 0.993-0.995 (positive) and 0.984-0.994 (negative) over 6 prompts; mean VADER of 16-token
greedy continuations +0.380 unsteered in both engines (identical texts), toward positive +0.449 (llama.cpp) / +0.414
(steer), toward negative -0.044 / +0.104.

The control vector is handed to llama.cpp exactly as ``common_control_vector_load_one`` lays it out (direction.k at
offset (k - 1) * n_embd) through ``llama_apply_adapter_cvec`` for layers 1 .. n_layer, since the file loader lives in
llama.cpp's ``common`` library, which llama-cpp-python does not expose.
"""

import ctypes
import os

import numpy as np
import pytest
import torch

from steer import DEFAULT_PROMPT_SET, Intervention, RecordSpec, SteerConfig, Steerer, Worlds, recording
from steer.eval import vader_compound
from steer.export import export_steering, read_control_vector
from steer.weights import bundled_gguf
from steer.neurons import score_units

pytestmark = pytest.mark.skipif(os.environ.get("STEER_LLAMACPP") != "1", reason="opt in with STEER_LLAMACPP=1")

PROMPTS = [
    "The hotel was",
    "I just finished reading the book, and",
    "The weather today is",
    "Our new neighbours are",
    "The meeting this morning",
    "My first day at the new job",
]
NEW = 16


def llama(cv_path=None):
    import llama_cpp

    llm = llama_cpp.Llama(model_path=str(bundled_gguf()), n_ctx=256, logits_all=True, verbose=False, n_threads=2,
                          seed=0)
    if cv_path is not None:
        cv = read_control_vector(cv_path)
        n_embd, top = llm.n_embd(), max(cv.vectors)
        data = np.zeros(n_embd * top, dtype=np.float32)
        for k, v in cv.vectors.items():
            data[(k - 1) * n_embd : k * n_embd] += v.numpy()  # layer 1 at offset 0, as llama.cpp's loader does
        ptr = data.ctypes.data_as(ctypes.POINTER(ctypes.c_float))
        n_layer = llama_cpp.llama_model_n_layer(llm._model.model)
        rc = llama_cpp.llama_set_adapter_cvec(llm.ctx, ptr, data.size, n_embd, 1, n_layer)
        assert rc == 0
        llm._cvec_data = data  # keep the buffer alive
    return llm


def llama_logprobs(llm, ids):
    llm.reset()
    llm.eval(ids)
    return torch.log_softmax(torch.tensor(np.asarray(llm.scores[len(ids) - 1]), dtype=torch.float64), -1)


def llama_greedy(llm, ids):
    llm.reset()
    llm.eval(ids)
    out = []
    for _ in range(NEW):
        nxt = int(np.argmax(llm.scores[llm.n_tokens - 1]))
        if nxt == llm.token_eos():
            break
        out.append(nxt)
        llm.eval([nxt])
    return out


def steer_greedy(model, ids):
    t = torch.tensor([ids])
    new = model.bridge.generate(t, max_new_tokens=NEW, do_sample=False, verbose=False, return_type="tokens")
    return model.tokenizer.decode(new[0, len(ids) :].tolist(), skip_special_tokens=True)


@pytest.fixture(scope="module")
def sets(bundled):
    cfg = SteerConfig()
    w = Worlds.from_file(DEFAULT_PROMPT_SET, template=cfg.template)
    acts = recording(RecordSpec(bundled, w, cfg.site, cfg.reduce, None), progress=False)
    return {
        label: score_units(acts, w.proposition(label=label), cfg.score).restrict(range(1, bundled.n_layers)).top(cfg.k)
        for label in ("positive", "negative")
    }


@pytest.mark.parametrize("label", ["positive", "negative"])
def test_llama_cpp_moves_like_steer(bundled, sets, tmp_path, label):
    ns, coeff = sets[label], SteerConfig().coeff
    path = export_steering(bundled, ns, "control-vector", tmp_path / f"{label}.gguf", Intervention(coeff=coeff))
    plain, steered = llama(), llama(path)
    corrs, texts = [], {k: [] for k in ("llama.cpp unsteered", "llama.cpp steered", "steer unsteered", "steer steered")}
    for prompt in PROMPTS:
        ids = bundled.encode(prompt)
        t = torch.tensor([ids])
        with torch.no_grad():
            base = torch.log_softmax(bundled.bridge(t)[0, -1].double(), -1)
            with Steerer(bundled, ns, Intervention(coeff=coeff)):
                ours = torch.log_softmax(bundled.bridge(t)[0, -1].double(), -1) - base
        theirs = llama_logprobs(steered, ids) - llama_logprobs(plain, ids)
        corrs.append(float(torch.corrcoef(torch.stack([ours, theirs]))[0, 1]))
        texts["llama.cpp unsteered"].append(bundled.tokenizer.decode(llama_greedy(plain, ids)))
        texts["llama.cpp steered"].append(bundled.tokenizer.decode(llama_greedy(steered, ids)))
        texts["steer unsteered"].append(steer_greedy(bundled, ids))
        with Steerer(bundled, ns, Intervention(coeff=coeff)):
            texts["steer steered"].append(steer_greedy(bundled, ids))
    score = {k: float(np.mean(vader_compound(v))) for k, v in texts.items()}
    print(f"\n[{label}] log-prob shift correlation per prompt: {np.round(corrs, 4).tolist()}")
    print(f"[{label}] mean VADER of greedy continuations: " + ", ".join(f"{k} {v:+.3f}" for k, v in score.items()))
    for i, p in enumerate(PROMPTS):
        ours, theirs = texts["steer steered"][i], texts["llama.cpp steered"][i]
        print(f"  {p!r}\n    llama.cpp: {theirs!r}\n    steer:     {ours!r}")
    assert min(corrs) > 0.95
    sign = 1 if label == "positive" else -1
    assert sign * (score["llama.cpp steered"] - score["llama.cpp unsteered"]) > 0
    assert sign * (score["steer steered"] - score["steer unsteered"]) > 0
