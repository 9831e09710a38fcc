"""What ``steer view`` shows, gathered from a model, a neuron set and its worlds as one JSON-ready dict.

The page (:mod:`steer.view_html`) is built from this dict alone. For every unit of the set: its row (layer, index,
score, bootstrap interval and top-k frequency when the set has them, mean on A and not A), the worlds that activate
it most and least and samples from quantile bins (from the recording the set was selected on), the histogram of its
activation over the worlds split by A and not A, and the per-unit map of the steering rule. For a language model
also what the unit writes (its W_down column through the final norm's weight and the unembedding: the tokens it
promotes and suppresses; a linear approximation that ignores the norm's scale and later layers), what it reads
(the embedding, RMS-normalised with the block's MLP norm weight, through W_gate and W_up: silu(gate) * up, the
direct path only), the examples' per-token activations (a second, small forward pass over the shown worlds only,
for the ``detail`` strongest units of each side) and a steering panel. For a :class:`steer.Network`, examples are
the worlds' inputs (images where they are images).
"""

from __future__ import annotations

import contextlib
import math
import os
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import Tensor

from steer.interventions import Intervention, neuron_edits
from steer.neurons import score_units
from steer.neuronset import NeuronSet
from steer.sites import hook_name

if TYPE_CHECKING:
    from steer.activations import Activations
    from steer.models import Model
    from steer.network import Network
    from steer.worlds import WorldFields, Worlds

# Neutral openings of our own for the steering panel.
OPENINGS = ("The hotel was", "My neighbour told me that the new bakery", "After the meeting, the team")
N_WRITES = 20  # tokens promoted / suppressed / read per unit
BINS = 24  # histogram bins
QUANTILES = 5  # quantile bins sampled for examples


def r3(v: float) -> float | None:
    """A float rounded to 4 significant digits for the page (None for NaN/inf)."""
    v = float(v)
    return None if not math.isfinite(v) else float(f"{v:.4g}")


def unit_id(side: str, rank: int) -> str:
    """The page's id of a unit: ``f3`` is the third unit for A, ``a1`` the first against."""
    return f"{side[0]}{rank}"


def unit_rows(ns: NeuronSet, detail: int) -> list[dict[str, Any]]:
    """One table row per unit of the set (both sides), with the stability figures when the set has them."""
    rows = []
    stab = ns.extra.get("stability", {})
    for side, units in (("for", ns.units_for), ("against", ns.units_against)):
        st = stab.get(f"units_{side}") or []
        for r, u in enumerate(units, 1):
            row: dict[str, Any] = {
                "id": unit_id(side, r),
                "side": side,
                "rank": r,
                "layer": u.layer,
                "index": u.index,
                "score": r3(u.score),
                "mean": r3(u.mean),
                "std": r3(u.std),
                "mean_a": r3(u.mean_a),
                "mean_c": r3(u.mean_c),
                "detail": r <= detail,
            }
            if r <= len(st):
                row |= {"lo": r3(st[r - 1]["lo"]), "hi": r3(st[r - 1]["hi"]), "freq": r3(st[r - 1]["freq"])}
            rows.append(row)
    return rows


def examples(x: np.ndarray, n: int, seed: int = 0) -> dict[str, list[int]]:
    """World indices to show for one unit: the ``n`` with the largest and smallest activation, and one sample
    from each of :data:`QUANTILES` quantile bins (low to high)."""
    order = np.argsort(-x, kind="stable")
    rng = np.random.default_rng(seed)
    bins = np.array_split(order[::-1], QUANTILES)
    samples = [int(rng.choice(b)) for b in bins if len(b)]
    return {"top": [int(i) for i in order[:n]], "bottom": [int(i) for i in order[::-1][:n]], "quantile": samples}


def histogram(x: np.ndarray, mask: np.ndarray) -> dict[str, Any]:
    """The activation histogram over the worlds, split by A and not A."""
    lo, hi = float(x.min()), float(x.max())
    edges = np.linspace(lo, hi if hi > lo else lo + 1.0, BINS + 1)
    a = np.histogram(x[mask], edges)[0]
    c = np.histogram(x[~mask], edges)[0]
    return {"lo": r3(edges[0]), "hi": r3(edges[-1]), "a": a.tolist(), "c": c.tolist()}


def rule_maps(ns: NeuronSet, intervention: Intervention) -> dict[tuple[int, int], dict[str, list[float | None]]]:
    """Per unit the rule's affine map a -> scale * a + shift, toward and away (empty for a non-affine rule)."""
    out: dict[tuple[int, int], dict[str, list[float | None]]] = {}
    for direction in ("toward", "away"):
        edits = neuron_edits(ns, Intervention(intervention.rule, intervention.coeff, direction))
        for layer, e in edits.items():
            if e.affine is None:
                return {}
            for i, s, t in zip(e.index.tolist(), e.affine.scale.tolist(), e.affine.shift.tolist()):
                out.setdefault((layer, i), {})[direction] = [r3(s), r3(t)]
    return out


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


def bench_curve(result: dict[str, Any], target: str) -> dict[str, Any] | None:
    """From a steering-benchmark result: each neuron method's dev trace toward ``target`` (perplexity ratio,
    success per scorer) and its matched points; None when the file has none."""
    table = result.get("table", result)
    traces = table.get("traces") or result.get("dev_traces") or {}
    curves = {
        name.rsplit(" -> ", 1)[0]: [{"ratio": r3(p["ratio"]), **{k: r3(v) for k, v in p["success"].items()}}
                                    for p in pts]
        for name, pts in traces.items()
        if name.startswith("neurons") and name.endswith(f"-> {target}")
    }  # fmt: skip
    rows = [r for r in table.get("rows", []) if r.get("kind") == "neurons" and r.get("toward") == target]
    matched = [  # the first protocol's rows carry their dev run; the second's, the reading on test at the budget
        {"method": r["method"], "budget": r.get("budget"), "split": "dev", "ratio": r3(r["dev"]["ratio"]),
         **{k: r3(v) for k, v in r["dev"]["success"].items()}} if "dev" in r else
        {"method": r["method"], "budget": r.get("budget"), "split": "test", "ratio": r3(r["ratio"]),
         **{k: r3(v["rate"]) for k, v in r["success"]["neutral"].items()}}
        for r in rows if "dev" in r or (r.get("reached") and r.get("success", {}).get("neutral"))
    ]  # fmt: skip
    if not curves:
        return None
    scorers = sorted({k for pts in curves.values() for p in pts for k in p if k != "ratio"})
    return {"target": target, "curves": curves, "matched": matched, "scorers": scorers}


def world_record(worlds: WorldFields, i: int, mask: np.ndarray) -> dict[str, Any]:
    """One shown world: its prompt (or None for a tensor input), whether it is in A, its label-like fields."""
    rec = worlds.records[i]
    fields = {k: str(v)[:80] for k, v in rec.items() if k != "text" and isinstance(v, (str, int, float, bool))}
    prompts = getattr(worlds, "prompts", None)
    return {"text": prompts[i] if prompts is not None else None, "a": bool(mask[i]), "fields": fields}


def image_of(x: Tensor) -> dict[str, Any] | None:
    """A world's input as a small grayscale image (uint8 rows, min-max scaled) when it is one: [H, W] or [1, H, W]."""
    if x.ndim == 3 and x.shape[0] == 1:
        x = x[0]
    if x.ndim != 2 or max(x.shape) > 64:
        return None
    x = x.float()
    x = (x - x.min()) / (x.max() - x.min()).clamp_min(1e-9) * 255
    return {"h": int(x.shape[0]), "w": int(x.shape[1]), "pixels": x.round().to(torch.uint8).reshape(-1).tolist()}


def gather(
    model: Model | Network,
    ns: NeuronSet,
    worlds: Worlds | WorldFields,
    acts: Activations,
    *,
    intervention: Intervention | None = None,
    detail: int = 50,
    n_examples: int = 5,
    prompts: Sequence[str] | None = None,
    bench: dict[str, Any] | None = None,
    explain: int = 5,
    max_new_tokens: int = 20,
    seed: int = 0,
) -> dict[str, Any]:
    """Everything the page shows, as a JSON-ready dict (``heatmap`` holds the full score matrix)."""
    from steer.explain import candidate_propositions, explain_unit
    from steer.network import Network
    from steer.version import __version__

    t0 = time.time()
    iv = intervention or Intervention()
    is_lm = not isinstance(model, Network)
    prop = worlds.proposition(ns.proposition["name"])
    mask = np.asarray(prop.mask, dtype=bool)
    timings: dict[str, float] = {}
    lap = [time.time()]

    def mark(name: str) -> None:
        timings[name] = round(time.time() - lap[0], 1)
        lap[0] = time.time()

    scores = score_units(acts, prop, ns.score)
    X = acts.X
    mark("scores")
    rows = unit_rows(ns, detail)
    maps = rule_maps(ns, iv)
    cands = [c for c in candidate_propositions(worlds) if 0 < c.size < len(worlds)] if explain else []
    notes: list[str] = []
    shown: dict[int, int] = {}  # world index -> position in data["worlds"]
    details: dict[str, Any] = {}
    for row in rows:
        j = acts.layers.index(row["layer"])
        x = X[:, j, row["index"]].numpy()
        ex = examples(x, n_examples, seed)
        for i in {i for v in ex.values() for i in v}:
            shown.setdefault(i, len(shown))
        d: dict[str, Any] = {k: [[shown[i], r3(x[i])] for i in v] for k, v in ex.items()}
        d |= {"hist": histogram(x, mask), "range": [r3(x.min()), r3(x.max())]}
        if (row["layer"], row["index"]) in maps:
            d["map"] = maps[(row["layer"], row["index"])]
        if cands and row["rank"] <= explain:
            e = explain_unit(torch.as_tensor(x), cands, seed=seed)
            d["explain"] = [{k: r3(r[k]) if isinstance(r[k], float) else r[k] for k in ("name", "D", "D_lo", "D_hi")
                             if k in r} for r in sorted(e.rows, key=lambda r: -r["D"])[:5]]  # fmt: skip
        details[row["id"]] = d
    mark("examples, histograms, explanations")
    order = sorted(shown, key=lambda i: shown[i])
    world_list = [world_record(worlds, i, mask) for i in order]
    vocab: dict[int, str] = {}
    steering = None
    lm = None if isinstance(model, Network) else model
    if lm is not None and ns.site == "mlp":
        units = [(r["layer"], r["index"]) for r in rows]
        dirs = token_directions(lm, units)
        for row in rows:
            details[row["id"]] |= dirs[(row["layer"], row["index"])]
        mark("written and read tokens")
        deep = [r for r in rows if r["detail"]]
        pool = sorted({i for r in deep for k in ("top", "bottom", "quantile") for i, _ in details[r["id"]][k]})
        texts = [str(world_list[i]["text"]) for i in pool]
        toks, vals = token_activations(lm, texts, [(r["layer"], r["index"]) for r in deep])
        for i, t in zip(pool, toks):
            world_list[i]["tokens"] = t
        where = {w: n for n, w in enumerate(pool)}
        for r in deep:
            v = vals[(r["layer"], r["index"])]
            details[r["id"]]["tokens"] = {str(w): v[where[w]] for w in pool if _shows(details[r["id"]], w)}
        mark(f"per-token pass ({len(pool)} worlds)")
        steering = steering_panel(lm, ns, iv, list(prompts or OPENINGS), max_new_tokens, seed)
        mark("steering panel")
    elif lm is not None:
        notes.append(f"site {ns.site}: units are residual coordinates; no write/read tokens and no per-token pass")
    else:
        inputs = getattr(worlds, "inputs")  # noqa: B009 (TensorWorlds)
        for i, w in zip(order, world_list):
            w["image"] = image_of(inputs[i])
        notes.append("a network's units: examples are its input worlds; no tokens and no steering panel")
    if lm is not None:
        tok = lm.tokenizer
        ids = {
            t
            for d in details.values()
            for k in ("promotes", "suppresses", "reads", "reads_neg")
            for t, _ in d.get(k, [])
        }
        ids |= {t for w in world_list for t in w.get("tokens", [])}
        for p in (steering or {}).get("prompts", []):
            ids |= {t for k in ("toward", "away") for t, _ in p[k]}
        vocab = {t: tok.decode([t]) for t in sorted(ids)}
        mark("vocabulary")
    ident = model.identity
    meta = {
        "proposition": ns.proposition, "model": ident.get("model_id"), "identity": ident, "site": ns.site,
        "score": ns.score, "k": ns.k, "reduce": acts.reduce, "worlds": ns.provenance.get("worlds", {}),
        "n_worlds": len(worlds), "n_a": int(mask.sum()), "intervention": iv.describe(),
        "kind": "lm" if is_lm else "network",
        "steer": __version__, "created": time.strftime("%Y-%m-%d %H:%M:%S"), "detail": detail, "notes": notes,
        "has_stability": bool(ns.extra.get("stability")), "seconds": round(time.time() - t0, 1), "timings": timings,
    }  # fmt: skip
    return {
        "meta": meta,
        "heatmap": {"layers": list(acts.layers), "values": scores.values.numpy()},
        "units": rows,
        "details": details,
        "worlds": world_list,
        "vocab": {str(k): v for k, v in vocab.items()},
        "steering": steering,
        "bench": bench_curve(bench, "positive" if "positive" in ns.proposition["name"] else "negative")
        if bench
        else None,
    }


def _shows(d: dict[str, Any], w: int) -> bool:
    return any(i == w for k in ("top", "bottom", "quantile") for i, _ in d[k])


def read_bench(path: str | os.PathLike[str] | None) -> dict[str, Any] | None:
    """A steering-benchmark ``result.json`` (None for no path)."""
    if path is None:
        return None
    import json

    with open(path, encoding="utf-8") as f:
        data = json.load(f)
    if not isinstance(data, dict):
        raise ValueError(f"{path}: not a steering-benchmark result (a JSON object with 'table' and 'traces')")
    return data
