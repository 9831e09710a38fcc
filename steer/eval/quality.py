"""Steering quality in generation: does a method move sentiment, and what does it cost in fluency?

Every method (see :mod:`steer.eval.methods`) generates continuations of the same prompts with the same seeds and
decoding, toward each target sentiment, at each coefficient of its sweep; the unsteered model is the reference. Each
run reports, per scorer, the mean sentiment score and the success rate (share of continuations whose verdict
is the target direction) with a Wilson 95% interval; fluency as the perplexity of the continuations under the
*unsteered* model given the original prompt (so prompting is not credited for its instruction); and
distinct-1/2/3. Runs are reproducible: generation is seeded per (prompt batch, seed).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from steer.eval.methods import Method
from steer.eval.metrics import distinct_n, perplexity, rate
from steer.eval.scorers import Scorer
from steer.generation import GenerationConfig, generate_text

if TYPE_CHECKING:
    from steer.models import Model

TARGETS = ("positive", "negative")


def score_run(
    model: Model, prompts: Sequence[str], texts: Sequence[str], scorers: Sequence[Scorer], target: str | None
) -> dict[str, Any]:
    """Scores of one run's continuations (``prompts`` repeated once per seed, aligned with ``texts``)."""
    out: dict[str, Any] = {
        "n": len(texts),
        "ppl": perplexity(model, prompts, texts),
        **{f"distinct_{n}": distinct_n(texts, n) for n in (1, 2, 3)},
        "scores": {},
    }
    for sc in scorers:
        s, verdict = sc.score(texts), sc.judge(texts)
        entry = {
            "mean": float(np.mean(s)),
            "values": [round(float(v), 4) for v in s],
            "positive": rate(int((verdict > 0).sum()), len(texts)),
            "negative": rate(int((verdict < 0).sum()), len(texts)),
        }
        if target is not None:
            entry["success"] = entry[target]
        out["scores"][sc.name] = entry
    out["examples"] = [t[:160] for t in texts[:3]]
    return out


def sample(
    model: Model,
    method: Method | None,
    prompts: Sequence[str],
    target: str | None,
    x: float,
    samples: int,
    seed: int,
    generation: GenerationConfig,
) -> tuple[list[str], list[str]]:
    """(prompts, continuations): ``samples`` sampled continuations of every prompt, drawn in one seeded batch (a
    batch of all of them runs several times faster than one batch per seed on a CPU)."""
    repeated = [p for p in prompts for _ in range(samples)]
    if method is None or target is None:
        return repeated, generate_text(model, repeated, generation, seed=seed)
    shown = method.prompts(repeated, target, x)
    with method.context(model, target, x):
        texts = generate_text(model, shown, generation, seed=seed)
    return repeated, texts


def run_method(
    model: Model,
    method: Method | None,
    prompts: Sequence[str],
    target: str | None,
    coeff: float,
    seeds: Sequence[int],
    generation: GenerationConfig,
) -> tuple[list[str], list[str]]:
    """(prompts, continuations), one per prompt per seed, generated under the method's context."""
    ps: list[str] = []
    texts: list[str] = []
    for seed in seeds:
        p, t = sample(model, method, prompts, target, coeff, 1, seed, generation)
        ps += p
        texts += t
    return ps, texts


def quality_eval(
    model: Model,
    prompts: Sequence[str],
    methods: Sequence[Method],
    scorers: Sequence[Scorer],
    seeds: Sequence[int] = (0, 1),
    generation: GenerationConfig | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """The unsteered reference and every method x target x coeff; a JSON-ready dict.

    Args:
        model: the model.
        prompts: the prompts to continue.
        methods: the methods, each with its coefficient sweep.
        scorers: sentiment scorers independent of the model.
        seeds: sampling seeds (every prompt is continued once per seed).
        generation: decoding (default: 30 sampled tokens, temperature 1, top-p 0.9).
        progress: show a progress bar.

    Returns:
        The result, JSON-ready.
    """
    from tqdm.auto import tqdm

    if not prompts:
        raise ValueError("no prompts to steer")
    gen = generation or GenerationConfig(max_new_tokens=30)
    jobs = [(m, t, c) for m in methods for t in TARGETS for c in m.coeffs]
    bar = tqdm(total=len(jobs) + 1, desc="steering runs", disable=not progress)
    ps, texts = run_method(model, None, prompts, None, 0.0, seeds, gen)
    unsteered = score_run(model, ps, texts, scorers, None)
    bar.update()
    runs = []
    for m, t, c in jobs:
        ps, texts = run_method(model, m, prompts, t, c, seeds, gen)
        runs.append(
            {"method": m.name, "kind": m.kind, "toward": t, "coeff": c, **score_run(model, ps, texts, scorers, t)}
        )
        bar.update()
    bar.close()
    gen_info = {
        "max_new_tokens": gen.max_new_tokens,
        "do_sample": gen.do_sample,
        "temperature": gen.temperature,
        "top_p": gen.top_p,
    }
    return {
        "n_prompts": len(prompts),
        "seeds": list(seeds),
        "generation": gen_info,
        "scorers": {sc.name: sc.info for sc in scorers},
        "methods": {m.name: {"kind": m.kind, "coeffs": m.coeffs, **m.info} for m in methods},
        "unsteered": unsteered,
        "runs": runs,
    }


def summary_rows(result: dict[str, Any], scorer: str) -> list[dict[str, Any]]:
    """One row per method x coeff: success toward each target (and their mean) and the pooled perplexity
    (geometric mean of the two targets' perplexities)."""
    by: dict[tuple[str, float], dict[str, Any]] = {}
    for r in result["runs"]:
        by.setdefault((r["method"], r["coeff"]), {})[r["toward"]] = r
    rows = []
    for (name, coeff), d in by.items():
        if set(d) != set(TARGETS):
            continue
        pos, neg = d["positive"]["scores"][scorer], d["negative"]["scores"][scorer]
        rows.append(
            {
                "method": name,
                "kind": d["positive"]["kind"],
                "coeff": coeff,
                "success_pos": pos["success"],
                "success_neg": neg["success"],
                "success": (pos["success"]["rate"] + neg["success"]["rate"]) / 2,
                "sep": (pos["mean"] - neg["mean"]) / 2,
                "ppl": float(np.sqrt(d["positive"]["ppl"] * d["negative"]["ppl"])),
                "distinct_2": (d["positive"]["distinct_2"] + d["negative"]["distinct_2"]) / 2,
            }
        )
    return rows


def best_at_fluency(rows: Sequence[dict[str, Any]], max_ppl: float) -> dict[str, dict[str, Any]]:
    """Per method, its row with the highest mean success among those with perplexity <= max_ppl."""
    best: dict[str, dict[str, Any]] = {}
    for r in rows:
        if r["ppl"] <= max_ppl and (r["method"] not in best or r["success"] > best[r["method"]]["success"]):
            best[r["method"]] = r
    return best
