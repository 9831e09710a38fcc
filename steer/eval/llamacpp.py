"""A real engine: an exported GGUF control vector run in llama.cpp (the ``llamacpp`` extra, llama-cpp-python) next
to ``steer``'s own steering of the same model.

llama.cpp runs a GGUF's quantized weights and ``steer`` the de-quantized fp32 weights, so the logits cannot be equal;
:func:`compare_with_llamacpp` compares what the steering *changes*: per prompt, the correlation over the whole
vocabulary of the steered-minus-unsteered next-token log-probability shifts of the two engines, and the mean VADER
compound of greedy continuations in each engine, steered and unsteered. ``tests/test_llamacpp.py`` asserts on it and
``bench/llamacpp.py`` stores a run.

The control vector is handed to llama.cpp exactly as ``common_control_vector_load_one`` lays it out (direction.k at
offset (k - 1) * n_embd) through ``llama_set_adapter_cvec`` for layers 1 .. n_layer, since the file loader lives in
llama.cpp's ``common`` library, which llama-cpp-python does not expose.
"""

from __future__ import annotations

import ctypes
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from steer.configs import SteerConfig
from steer.control_vector import read_control_vector
from steer.eval.metrics import vader_compound
from steer.export import export_steering
from steer.export_gguf import edit_gguf
from steer.fold import export_form
from steer.interventions import Intervention
from steer.neurons import score_units, with_transport
from steer.select import RecordSpec, recording
from steer.steerer import Steerer

if TYPE_CHECKING:
    from steer.models import Model
    from steer.neuronset import NeuronSet

PROMPTS = (
    "The hotel was",
    "I just finished reading the book, and",
    "The weather today is",
    "Our new neighbours are",
    "The meeting this morning",
    "My first day at the new job",
)


def default_sets(model: Model, labels: Sequence[str] = ("positive", "negative")) -> dict[str, NeuronSet]:
    """``steer.generate``'s default neuron sets (SteerConfig) toward each label, on layers 1 and up: a control
    vector file numbers its directions from layer 1, so block 0's output cannot be steered in llama.cpp."""
    cfg = SteerConfig()
    w = cfg.worlds()
    acts = recording(RecordSpec(model, w, cfg.site, cfg.reduce, None), progress=False)
    out = {}
    for label in labels:
        prop = w.proposition(label=label)
        top = score_units(acts, prop, cfg.score).restrict(range(1, model.n_layers)).top(cfg.k)
        out[label] = with_transport(top, acts, prop)  # the transport rules' fits, as steer.select_units adds them
    return out


def load_llama(gguf: Path, control_vector: Path | None = None, threads: int = 2) -> Any:
    """A llama.cpp model of ``gguf`` (all logits kept), with the control vector file applied when given."""
    try:
        import llama_cpp
    except ImportError as e:
        raise ImportError('the llama.cpp check needs the llamacpp extra: pip install -e ".[llamacpp]"') from e
    llm = llama_cpp.Llama(model_path=str(gguf), n_ctx=256, logits_all=True, verbose=False, n_threads=threads, seed=0)
    if control_vector is not None:
        cv = read_control_vector(control_vector)
        n_embd, top = llm.n_embd(), max(cv.vectors)
        data = np.zeros(n_embd * top, dtype=np.float32)
        for k, v in cv.vectors.items():
            data[(k - 1) * n_embd : k * n_embd] += v.numpy()  # layer 1 at offset 0, as llama.cpp's loader does
        ptr = data.ctypes.data_as(ctypes.POINTER(ctypes.c_float))
        n_layer = llama_cpp.llama_model_n_layer(llm._model.model)
        if llama_cpp.llama_set_adapter_cvec(llm.ctx, ptr, data.size, n_embd, 1, n_layer) != 0:
            raise RuntimeError(f"llama.cpp refused the control vector {control_vector}")
        setattr(llm, "_cvec_data", data)  # noqa: B010 (keep the buffer alive as long as the model)
    return llm


def llama_logprobs(llm: Any, ids: list[int]) -> torch.Tensor:
    """llama.cpp's next-token log-probabilities after ``ids`` (float64)."""
    llm.reset()
    llm.eval(ids)
    return torch.log_softmax(torch.tensor(np.asarray(llm.scores[len(ids) - 1]), dtype=torch.float64), -1)


def llama_greedy(llm: Any, ids: list[int], new: int) -> list[int]:
    """llama.cpp's greedy continuation of ``ids``: at most ``new`` tokens, stopping at end of sequence."""
    llm.reset()
    llm.eval(ids)
    out: list[int] = []
    for _ in range(new):
        nxt = int(np.argmax(llm.scores[llm.n_tokens - 1]))
        if nxt == llm.token_eos():
            break
        out.append(nxt)
        llm.eval([nxt])
    return out


def steer_greedy(model: Model, ids: list[int], new: int) -> str:
    """``steer``'s greedy continuation of ``ids`` (whatever steering is active on ``model``)."""
    t = torch.tensor([ids])
    out = model.bridge.generate(t, max_new_tokens=new, do_sample=False, verbose=False, return_type="tokens")
    return model.tokenizer.decode(out[0, len(ids) :].tolist(), skip_special_tokens=True)


def compare_with_llamacpp(
    model: Model,
    ns: NeuronSet,
    coeff: float,
    gguf: Path,
    workdir: Path,
    prompts: Sequence[str] = PROMPTS,
    new: int = 16,
    rule: str = "additive",
) -> dict[str, Any]:
    """Export ``ns`` under ``rule`` at ``coeff``, run it in llama.cpp on ``gguf`` (the model's own weights) and with
    :class:`~steer.Steerer` on ``model``; returns per-prompt correlations of the log-prob shifts, the mean VADER of
    greedy continuations per engine and condition, the spread (std over the vocabulary) of each engine's shift and of
    the unsteered engines' difference, and the continuations. A rule that only shifts is exported as a
    control vector for ``gguf``; a rule that scales (the transport rules) as ``--format gguf``, the edited copy of
    ``gguf`` with its control vector (:mod:`steer.export_gguf`), and the unsteered llama.cpp reference is then a copy
    with the same layers' ffn_down de-quantized to F32 but unscaled, so both sides of the shift run the same weight
    types."""
    it = Intervention(rule, coeff)
    form = export_form(model, ns, it)
    if form.changes_weights:
        if Path(gguf).resolve() != Path(str(model.provenance.get("path"))).resolve():
            raise ValueError(f"{gguf} is not the file the model was loaded from; the edited copy would not match it")
        folder = export_steering(model, ns, "gguf", Path(workdir) / "edited", it)
        steered = load_llama(folder / "model.gguf", folder / "control_vector.gguf")
        # the unsteered reference holds the same layers de-quantized to F32, unscaled, so that the shift measures the
        # steering and not the change of weight type
        unscaled = Path(workdir) / "reference.gguf"
        edit_gguf(Path(gguf), {k: (idx, torch.ones_like(sc)) for k, (idx, sc) in form.column_scales.items()}, unscaled)
        plain = load_llama(unscaled)
    else:
        plain = load_llama(gguf)
        steered = load_llama(gguf, export_steering(model, ns, "control-vector", Path(workdir) / "control.gguf", it))
    conditions = ("llama.cpp unsteered", "llama.cpp steered", "steer unsteered", "steer steered")
    corrs: list[float] = []
    sizes: list[dict[str, float]] = []
    texts: dict[str, list[str]] = {k: [] for k in conditions}
    for prompt in prompts:
        ids = model.encode(prompt)
        t = torch.tensor([ids])
        with torch.no_grad():
            base = torch.log_softmax(model.bridge(t)[0, -1].double(), -1)
            with Steerer(model, ns, it):
                ours = torch.log_softmax(model.bridge(t)[0, -1].double(), -1) - base
        reference = llama_logprobs(plain, ids)
        theirs = llama_logprobs(steered, ids) - reference
        corrs.append(float(torch.corrcoef(torch.stack([ours, theirs]))[0, 1]))
        # how large the steering's shift is next to how far the two engines disagree unsteered (the noise floor)
        sizes.append(
            {
                "shift_std_steer": float(ours.std()),
                "shift_std_llama_cpp": float(theirs.std()),
                "unsteered_gap_std": float((reference - base).std()),
            }
        )
        texts["llama.cpp unsteered"].append(model.tokenizer.decode(llama_greedy(plain, ids, new)))
        texts["llama.cpp steered"].append(model.tokenizer.decode(llama_greedy(steered, ids, new)))
        texts["steer unsteered"].append(steer_greedy(model, ids, new))
        with Steerer(model, ns, it):
            texts["steer steered"].append(steer_greedy(model, ids, new))
    vader = {k: float(np.mean(vader_compound(v))) for k, v in texts.items()}
    return {
        "prompts": list(prompts),
        "rule": rule,
        "coeff": coeff,
        "new_tokens": new,
        "correlations": corrs,
        "shift_sizes": sizes,
        "vader": vader,
        "texts": texts,
    }
