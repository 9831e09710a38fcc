"""What ``steer view`` shows, gathered from a model, a neuron set and its worlds as one JSON-ready dict.

The page (:mod:`steer.view_html`) is built from this dict alone. For every unit of the set: its row (layer, index,
score, bootstrap interval and top-k frequency when the set has them, mean on A and not A), the worlds that activate
it most and least and samples from quantile bins (from the recording the set was selected on), the histogram of its
activation over the worlds split by A and not A, and the per-unit map of the steering rule. For a language model
also what the unit writes (its W_down column through the final norm's weight and the unembedding: the tokens it
promotes and suppresses; a linear approximation that ignores the norm's scale and later layers), what it reads
(the embedding, RMS-normalised with the block's MLP norm weight, through W_gate and W_up: silu(gate) * up, the
direct path only), the examples' per-token activations (a second, small forward pass over the shown worlds only,
for the ``detail`` strongest units of each side) and a steering panel, all computed by :mod:`steer.view_tokens`.
For a :class:`steer.Network`, examples are the worlds' inputs (images where they are images).
"""

from __future__ import annotations

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
from steer.view_tokens import r3, steering_panel, token_activations, token_directions

if TYPE_CHECKING:
    from steer.activations import Activations
    from steer.models import Model
    from steer.network import Network
    from steer.worlds import WorldFields, Worlds

# Neutral openings of our own for the steering panel.
OPENINGS = ("The hotel was", "My neighbour told me that the new bakery", "After the meeting, the team")
BINS = 24  # histogram bins
QUANTILES = 5  # quantile bins sampled for examples


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
        what = "residual coordinates" if ns.site == "resid" else "not the input of W_down (no column to read)"
        notes.append(f"site {ns.site}: units are {what}; no write/read tokens and no per-token pass")
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
