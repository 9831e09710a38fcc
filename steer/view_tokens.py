"""What a language model's units do to tokens, for ``steer view``: what each unit writes and reads through the
embeddings, its activation at every token of the shown worlds, and a steering panel (continuations steered toward
and away, each token with its change in log p). Model passes only; :mod:`steer.view_data` gathers the page's dict.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from steer.interventions import Intervention
from steer.neuronset import NeuronSet
from steer.sites import hook_name

if TYPE_CHECKING:
    from steer.models import Model

N_WRITES = 20  # tokens promoted / suppressed / read per unit


def r3(v: float) -> float | None:
    """A float rounded to 4 significant digits for the page (None for NaN/inf)."""
    v = float(v)
    return None if not math.isfinite(v) else float(f"{v:.4g}")


def _top_tokens(scores: Tensor, n: int) -> tuple[list[list[Any]], list[list[Any]]]:
    """[k, vocab] scores -> per row the n largest and n smallest as [token id, value] pairs."""
    n = min(n, scores.shape[1])
    hi = torch.topk(scores, n, dim=1)
    lo = torch.topk(-scores, n, dim=1)
    up = [[[int(t), r3(v)] for t, v in zip(i.tolist(), s.tolist())] for i, s in zip(hi.indices, hi.values)]
    dn = [[[int(t), r3(-v)] for t, v in zip(i.tolist(), s.tolist())] for i, s in zip(lo.indices, lo.values)]
    return up, dn


@torch.inference_mode()
def token_directions(model: Model, units: Sequence[tuple[int, int]]) -> dict[tuple[int, int], dict[str, Any]]:
    """What each MLP unit writes (tokens its W_down column promotes and suppresses, through the final norm's weight
    and the unembedding) and reads (tokens whose normalised embedding drives silu(gate) * up, or the pre-activation
    W_in for an ungated MLP), as [token id, value] lists."""
    hf = model.bridge.original_model
    inner = getattr(hf, "model", hf)
    final_w = getattr(getattr(inner, "norm", None), "weight", None)
    unembed = hf.get_output_embeddings().weight.float()
    embed = hf.get_input_embeddings().weight.float()
    emb_n = embed / embed.pow(2).mean(1, keepdim=True).add(1e-6).sqrt()
    by_layer: dict[int, list[int]] = {}
    for layer, i in units:
        by_layer.setdefault(layer, []).append(i)
    out: dict[tuple[int, int], dict[str, Any]] = {}
    for layer, idx in sorted(by_layer.items()):
        mlp = model.bridge.blocks[layer].mlp
        w = mlp.W_out.float()[idx]  # [k, d_model]
        if final_w is not None:
            w = w * final_w.float()
        promotes, suppresses = _top_tokens(w @ unembed.T, N_WRITES)
        layers = getattr(inner, "layers", None)
        ln2 = getattr(layers[layer], "post_attention_layernorm", None) if layers is not None else None
        x = emb_n * ln2.weight.float() if ln2 is not None else emb_n
        pre = x @ mlp.W_in.float()[:, idx]
        gate = getattr(mlp, "W_gate", None)
        act = torch.nn.functional.silu(x @ gate.float()[:, idx]) * pre if gate is not None else pre
        reads, reads_neg = _top_tokens(act.T.contiguous(), N_WRITES)
        for j, i in enumerate(idx):
            out[(layer, i)] = {"promotes": promotes[j], "suppresses": suppresses[j], "reads": reads[j],
                               "reads_neg": reads_neg[j]}  # fmt: skip
    return out


@torch.inference_mode()
def token_activations(
    model: Model, prompts: Sequence[str], units: Sequence[tuple[int, int]], batch_size: int = 16
) -> tuple[list[list[int]], dict[tuple[int, int], list[list[float | None]]]]:
    """The token ids of each prompt and, per unit, its activation at every token (a forward pass that keeps only
    these units' columns at their ``mlp`` hook)."""
    by_layer: dict[int, list[int]] = {}
    for layer, i in units:
        by_layer.setdefault(layer, []).append(i)
    toks = [model.encode(p) for p in prompts]
    vals: dict[tuple[int, int], list[list[float | None]]] = {u: [[] for _ in toks] for u in units}
    order = sorted(range(len(toks)), key=lambda k: len(toks[k]))  # similar lengths together: little padding
    deepest = max(by_layer)
    for lo in range(0, len(order), batch_size):
        rows = order[lo : lo + batch_size]
        ids, mask = model.pad([toks[k] for k in rows])
        got: dict[int, Tensor] = {}

        def keep(layer: int, got: dict[int, Tensor] = got) -> Any:
            def fn(act: Tensor, hook: object) -> Tensor:
                got[layer] = act[:, :, by_layer[layer]].float().cpu()
                if layer == deepest:
                    raise _Done  # nothing after the deepest layer is needed
                return act

            return fn

        hooks = [(hook_name("mlp", layer), keep(layer)) for layer in by_layer]
        with contextlib.suppress(_Done):
            model.bridge.run_with_hooks(ids, fwd_hooks=hooks, attention_mask=mask, return_type=None)
        width = ids.shape[1]
        for layer, idx in by_layer.items():
            for row, k in enumerate(rows):
                a = got[layer][row, width - len(toks[k]) :]  # left padding
                for j, i in enumerate(idx):
                    vals[(layer, i)][k] = [r3(v) for v in a[:, j].tolist()]
    return toks, vals


class _Done(Exception):
    """Raised by the hook of the deepest layer a pass needs."""


@torch.inference_mode()
def logprob_change(model: Model, prompt: str, continuation: str, ns: NeuronSet, iv: Intervention) -> list[list[Any]]:
    """The continuation's tokens, each with log p(token) steered minus unsteered (teacher-forced)."""
    from steer.steerer import Steerer

    p = model.encode(prompt)
    c = model.encode(continuation, add_special_tokens=False)
    if not c:
        return []
    ids = torch.tensor([p + c], device=model.device)

    def lp() -> Tensor:
        logits = model.bridge(ids).float()[0, len(p) - 1 : -1]
        return torch.log_softmax(logits, -1).gather(1, ids[0, len(p) :, None])[:, 0]

    plain = lp()
    with Steerer(model, ns, iv):
        steered = lp()
    return [[int(t), r3(d)] for t, d in zip(c, (steered - plain).tolist())]


def steering_panel(
    model: Model, ns: NeuronSet, iv: Intervention, prompts: Sequence[str], max_new_tokens: int, seed: int
) -> dict[str, Any]:
    """A few prompts continued unsteered, steered toward and away, the steered tokens with their change in log p."""
    from dataclasses import replace

    from steer.generation import GenerationConfig
    from steer.steerer import Steerer

    gen = GenerationConfig(max_new_tokens=max_new_tokens, seed=seed)
    plain = Steerer(model, None).generate(list(prompts), gen)  # one batch per condition
    rows: list[dict[str, Any]] = [{"prompt": p, "unsteered": t} for p, t in zip(prompts, plain)]
    for direction in ("toward", "away"):
        d_iv = replace(iv, direction=direction)
        for row, text in zip(rows, Steerer(model, ns, d_iv).generate(list(prompts), gen)):
            row[direction] = logprob_change(model, row["prompt"], text, ns, d_iv)
    return {"rule": iv.rule_obj.name, "coeff": iv.value, "apply_to": iv.apply_to, "prompts": rows,
            "max_new_tokens": max_new_tokens, "seed": seed}  # fmt: skip
