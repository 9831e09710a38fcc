"""Growing a stored benchmark table with more test openings, at the settings it already chose.

A table's intervals narrow with the number of test openings, but a run that is large enough can take longer than one
sitting. :func:`extend_eval` runs every method of a stored table (:func:`steer.eval.matched.matched_eval`) again,
on *new* test openings only, at the test grid the stored run chose on dev (no new search: the settings were fixed
before any test opening was seen, so adding openings changes no choice). :func:`concat_tables` joins the two runs
opening by opening (every per-continuation array, the unsteered run's included) and reads every row and every
comparison again, Holm over the whole table. Within each part all methods share openings and seeds, so every
comparison stays paired. Each part samples with its own seed (the stored seed plus the part's number), so the new
openings do not reuse the random stream of the stored ones. The joined distinct-2 is the opening-weighted mean of the
parts' (not the distinct-2 of the pooled texts). :func:`eval_in_parts` runs new methods on a grown table's parts as
they were run (same openings, same seeds), so that they merge into it paired.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Sequence
from dataclasses import asdict, replace
from typing import Any

import numpy as np

from steer.eval.matched import (
    TARGETS,
    Bench,
    BenchPrompts,
    _unsteered,
    curve_on_test,
    matched_eval,
    read_table,
    replace_seed,
)
from steer.eval.methods import Method
from steer.eval.metrics import rate


def part_seed(seed: int, part: int) -> int:
    """The sampling seed of part ``part`` (0: the first run) of a table whose first run sampled with ``seed``."""
    return seed + part


def extend_eval(bench: Bench, methods: Sequence[Method], stored: dict[str, Any]) -> dict[str, Any]:
    """Run ``methods`` on ``bench.test`` (the new openings only) at the test grids of ``stored`` (a table of
    :func:`steer.eval.matched.matched_eval` on the same model and settings); the same shape of table, with no dev
    search and no rows (join it to ``stored`` with :func:`concat_tables`).

    Raises:
        ValueError: the settings differ from the stored table's, or the methods are not exactly its methods.
    """
    from tqdm.auto import tqdm

    t0 = time.time()
    cfg = json.loads(json.dumps(asdict(bench.cfg)))
    if cfg != stored["config"]:
        diff = sorted(k for k in cfg if cfg[k] != stored["config"].get(k))
        raise ValueError(f"the bench's settings differ from the stored table's in {', '.join(diff)}: not one bench")
    scorers = json.loads(json.dumps({sc.name: sc.info for sc in bench.scorers}, default=str))
    if scorers != stored["scorers"]:
        raise ValueError(
            f"the scorers differ from the stored table's ({sorted(scorers)} vs {sorted(stored['scorers'])}, or their "
            "training data): not one bench"
        )
    stored_methods = {c["method"]: c["info"] for c in stored["curves"].values()}
    names, before = {m.name for m in methods}, set(stored_methods)
    if names != before:
        raise ValueError(
            "extend every method of the stored table and no other: missing "
            f"{sorted(before - names) or 'none'}, not in it {sorted(names - before) or 'none'}"
        )
    for m in methods:
        if json.loads(json.dumps(m.info, default=str)) != stored_methods[m.name]:
            raise ValueError(f"{m.name}: built with {m.info}, the stored table's with {stored_methods[m.name]}")
    part = len(stored.get("parts") or [None])  # the stored table's parts; this one samples with a seed of its own
    cfg_part = replace_seed(bench.cfg, part_seed(bench.cfg.seed, part))
    bench = Bench(bench.model, bench.scorers, bench.dev, bench.test, cfg_part, bench.progress)  # fresh caches
    base = _unsteered(bench.test_run(None, None, 0.0), bench.cfg.samples)
    curves: dict[str, dict[str, Any]] = {}
    jobs = [(m, t) for m in methods for t in TARGETS]
    for m, t in tqdm(jobs, desc="extending", disable=not bench.progress):
        key = f"{m.name} -> {t}"
        curves[key] = curve_on_test(bench, m, t, stored["curves"][key]["knobs"])
    return {
        "config": cfg,
        "budgets": stored["budgets"],
        "n_test": len(bench.test.neutral),
        "n_test_against": {t: len(bench.test.against(t)) for t in TARGETS},
        "unsteered": base,
        "curves": curves,
        "seed": bench.cfg.seed,
        "seconds": round(time.time() - t0, 1),
    }


def _join(a: list[Any], b: list[Any]) -> list[Any]:
    """[grid, openings, samples] + [grid, openings', samples] -> [grid, openings + openings', samples]."""
    if len(a) != len(b):
        raise ValueError(f"the two runs have test grids of {len(a)} and {len(b)} settings: not one table")
    return [x + y for x, y in zip(a, b)]


def _weighted(a: float, n_a: int, b: float, n_b: int) -> float:
    return (a * n_a + b * n_b) / max(n_a + n_b, 1)


def _join_rates(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    """Nested {..: rate} dicts of the two parts as one rate per leaf (counts added; a key of one part only is kept)."""
    if "k" in a and "n" in a:
        return rate(a["k"] + b["k"], a["n"] + b["n"])
    return {key: _join_rates(a[key], b[key]) if key in a and key in b else a.get(key, b.get(key)) for key in {**a, **b}}


def _join_unsteered(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    na, nb = len(a["nll"]), len(b["nll"])
    nll, count = a["nll"] + b["nll"], a["count"] + b["count"]
    return {
        **a,
        "nll": nll,
        "count": count,
        "ppl": math.exp(float(np.sum(nll)) / max(float(np.sum(count)), 1.0)),
        "distinct_2": _weighted(a["distinct_2"], na, b["distinct_2"], nb),
        "shares": _join_rates(a["shares"], b["shares"]),
        "against": _join_rates(a["against"], b["against"]),
    }


def concat_tables(stored: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    """``stored`` with the openings of ``extra`` (from :func:`extend_eval`) added, every row read again and every
    comparison computed again (Holm over the whole table); ``parts`` records each part's size and seconds."""
    stored, extra = json.loads(json.dumps(stored)), json.loads(json.dumps(extra))
    if stored["config"] != extra["config"] or stored["budgets"] != extra["budgets"]:
        raise ValueError("the two runs differ in their settings or budgets: not one table")
    if set(stored["curves"]) != set(extra["curves"]):
        raise ValueError("the two runs hold different methods: extend every method of the stored table")
    n_a, n_b = stored["n_test"], extra["n_test"]
    out = {**stored}
    out["unsteered"] = _join_unsteered(stored["unsteered"], extra["unsteered"])
    out["curves"] = {}
    for key, a in stored["curves"].items():
        b = extra["curves"][key]
        if a["knobs"] != b["knobs"]:
            raise ValueError(f"{key}: the two runs used different test grids: not one table")
        c = json.loads(json.dumps(a))
        for field in ("nll", "count"):
            c["neutral"][field] = _join(a["neutral"][field], b["neutral"][field])
        c["neutral"]["success"] = {s: _join(v, b["neutral"]["success"][s]) for s, v in a["neutral"]["success"].items()}
        c["neutral"]["distinct_2"] = [
            _weighted(x, n_a, y, n_b) for x, y in zip(a["neutral"]["distinct_2"], b["neutral"]["distinct_2"])
        ]
        if "against" in a and "against" in b:
            c["against"]["success"] = {
                s: _join(v, b["against"]["success"][s]) for s, v in a["against"]["success"].items()
            }
        elif "against" in b:  # the stored part had no openings against this target
            c["against"] = b["against"]
        out["curves"][key] = c
    out["n_test"] = n_a + n_b
    out["n_test_against"] = {t: stored["n_test_against"][t] + extra["n_test_against"][t] for t in TARGETS}
    parts = stored.get("parts") or [{"n_test": n_a, "n_test_against": stored["n_test_against"],
                                     "seed": stored["config"]["seed"], "seconds": stored["seconds"]}]  # fmt: skip
    out["parts"] = [*parts, {"n_test": n_b, "n_test_against": extra["n_test_against"], "seed": extra["seed"],
                             "seconds": extra["seconds"]}]  # fmt: skip
    out["seconds"] = round(stored["seconds"] + extra["seconds"], 1)
    return read_table(out)


def eval_in_parts(bench: Bench, methods: Sequence[Method], parts: Sequence[BenchPrompts]) -> dict[str, Any]:
    """``methods`` on a grown table's test openings part by part, as the parts were run: the dev search and the test
    grids on the first part (:func:`steer.eval.matched.matched_eval`, with ``bench``'s seed), each later part at those
    grids with its own seed (:func:`extend_eval`), joined (:func:`concat_tables`). Every opening then has the seeds it
    had in the stored table, so the result merges into it (:func:`steer.eval.matched.merge_tables`) paired."""
    if not parts:
        raise ValueError("no parts to run")

    # the same dev split throughout, so its unsteered reference and traces are shared
    table = json.loads(json.dumps(matched_eval(replace(bench, test=parts[0]), methods)))  # as stored (lists)
    for test in parts[1:]:
        table = concat_tables(table, extend_eval(replace(bench, test=test), methods, table))
    return table
