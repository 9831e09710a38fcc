"""Steering quality in generation: does a method move sentiment, and what does it cost in fluency?

Every method (see :mod:`steer.methods`) generates continuations of the same prompts with the same seeds and
decoding, toward each direction, at each strength of its sweep; the unsteered model is the reference. Each
run reports, per scorer, the mean sentiment score and the success rate (share of continuations whose verdict
is the target direction) with a Wilson 95% interval; fluency as the perplexity of the continuations under the
*unsteered* model given the original prompt (so prompting is not credited for its instruction); and
distinct-1/2/3. Runs are reproducible: generation is seeded per (prompt batch, seed).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from steer.methods import Method
from steer.metrics import distinct_n, perplexity, rate
from steer.scorers import Scorer

DIRECTIONS = ("positive", "negative")
SIGN = {"positive": 1, "negative": -1}


def score_run(model: Any, prompts: Sequence[str], texts: Sequence[str], scorers: Sequence[Scorer],
              toward: str | None) -> dict[str, Any]:
    """Scores of one run's continuations (``prompts`` repeated once per seed, aligned with ``texts``)."""
    out: dict[str, Any] = {"n": len(texts), "ppl": perplexity(model, prompts, texts),
                           **{f"distinct_{n}": distinct_n(texts, n) for n in (1, 2, 3)}, "scores": {}}
    for sc in scorers:
        s, verdict = sc.score(texts), sc.judge(texts)
        entry = {"mean": float(np.mean(s)), "values": [round(float(v), 4) for v in s],
                 "positive": rate(int((verdict > 0).sum()), len(texts)),
                 "negative": rate(int((verdict < 0).sum()), len(texts))}
        if toward is not None:
            entry["success"] = entry[toward]
        out["scores"][sc.name] = entry
    out["examples"] = [t[:160] for t in texts[:3]]
    return out


def run_method(model: Any, method: Method | None, prompts: Sequence[str], toward: str | None, strength: float,
               seeds: Sequence[int], gen_kwargs: dict[str, Any]) -> tuple[list[str], list[str]]:
    """(prompts, continuations), one per prompt per seed, generated under the method's context."""
    from steer.steering import generate_text

    shown = list(prompts) if method is None else method.prompts(prompts, toward, strength)
    texts: list[str] = []
    for seed in seeds:
        if method is None:
            texts += generate_text(model, shown, seed=seed, **gen_kwargs)
        else:
            with method.context(model, toward, strength):
                texts += generate_text(model, shown, seed=seed, **gen_kwargs)
    return list(prompts) * len(seeds), texts


def quality_eval(model: Any, prompts: Sequence[str], methods: Sequence[Method], scorers: Sequence[Scorer],
                 seeds: Sequence[int] = (0, 1), max_new_tokens: int = 30, temperature: float = 1.0,
                 top_p: float | None = 0.9, progress: bool = True) -> dict[str, Any]:
    """The unsteered reference and every method x direction x strength; a JSON-ready dict."""
    from tqdm.auto import tqdm

    if not prompts:
        raise ValueError("no prompts to steer")
    gen = dict(max_new_tokens=max_new_tokens, do_sample=True, temperature=temperature, top_p=top_p)
    jobs = [(m, d, s) for m in methods for d in DIRECTIONS for s in m.strengths]
    bar = tqdm(total=len(jobs) + 1, desc="steering runs", disable=not progress)
    ps, texts = run_method(model, None, prompts, None, 0.0, seeds, gen)
    unsteered = score_run(model, ps, texts, scorers, None)
    bar.update()
    runs = []
    for m, d, s in jobs:
        ps, texts = run_method(model, m, prompts, d, s, seeds, gen)
        runs.append({"method": m.name, "kind": m.kind, "toward": d, "strength": s,
                     **score_run(model, ps, texts, scorers, d)})
        bar.update()
    bar.close()
    return {"n_prompts": len(prompts), "seeds": list(seeds), "generation": gen,
            "scorers": {sc.name: sc.info for sc in scorers},
            "methods": {m.name: {"kind": m.kind, "strengths": m.strengths, **m.info} for m in methods},
            "unsteered": unsteered, "runs": runs}


def summary_rows(result: dict[str, Any], scorer: str) -> list[dict[str, Any]]:
    """One row per method x strength: success toward each direction (and their mean) and the pooled perplexity
    (geometric mean of the two directions' perplexities)."""
    by: dict[tuple[str, float], dict[str, Any]] = {}
    for r in result["runs"]:
        by.setdefault((r["method"], r["strength"]), {})[r["toward"]] = r
    rows = []
    for (name, strength), d in by.items():
        if set(d) != set(DIRECTIONS):
            continue
        pos, neg = d["positive"]["scores"][scorer], d["negative"]["scores"][scorer]
        rows.append({"method": name, "kind": d["positive"]["kind"], "strength": strength,
                     "success_pos": pos["success"], "success_neg": neg["success"],
                     "success": (pos["success"]["rate"] + neg["success"]["rate"]) / 2,
                     "sep": (pos["mean"] - neg["mean"]) / 2,
                     "ppl": float(np.sqrt(d["positive"]["ppl"] * d["negative"]["ppl"])),
                     "distinct_2": (d["positive"]["distinct_2"] + d["negative"]["distinct_2"]) / 2})
    return rows


def best_at_fluency(rows: Sequence[dict[str, Any]], max_ppl: float) -> dict[str, dict[str, Any]]:
    """Per method, its row with the highest mean success among those with perplexity <= max_ppl."""
    best: dict[str, dict[str, Any]] = {}
    for r in rows:
        if r["ppl"] <= max_ppl and (r["method"] not in best or r["success"] > best[r["method"]]["success"]):
            best[r["method"]] = r
    return best
