"""Reading a matched-fluency result (:func:`steer.eval.matched.matched_eval`): each row read at its budget with
bootstrap intervals, paired comparisons with Holm's correction, and the Markdown table.

A row's interval is the 95% percentile interval of its success over resamples of the test openings (all samples of an
opening together). A comparison of two methods is the paired bootstrap of their difference (the same resampled
openings and the same seeds for both); its p-value is adjusted by Holm over every comparison of the table at that
budget, and the verdict is ``win`` / ``lose`` when the adjusted p is below ``alpha``. A method whose test curve does
not reach a budget has no reading there and no verdict; a method without a knob (prompting) is compared with each
other method read at the prompting's own perplexity ratio.

Results of the first protocol (rows with a ``test`` entry and Wilson intervals) are still read by
:func:`row_success` and :func:`matched_table`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from steer.eval.metrics import format_rate, rate
from steer.eval.quality import TARGETS
from steer.eval.readout import holm, interval, paired_difference, read_curve, resample_index, verdict

OPPOSITE = {"positive": "negative", "negative": "positive"}
PARTS = ("neutral", "against")


def _indices(result: dict[str, Any], target: str) -> tuple[np.ndarray, np.ndarray | None]:
    """The shared resample indices of the neutral openings and of the openings against ``target``."""
    cfg = result["config"]
    n = len(result["unsteered"]["nll"])
    idx = resample_index(n, cfg["resamples"], cfg["seed"])
    m = result["n_test_against"].get(target, 0)
    ida = resample_index(m, cfg["resamples"], cfg["seed"] + 1) if m else None
    return idx, ida


Reads = dict[tuple[str, float], list[dict[str, Any]]]


def _reads(result: dict[str, Any], key: str, budget: float, memo: Reads | None = None) -> list[dict[str, Any]]:
    """A curve read at ``budget`` in every resample (the same resamples for every method: paired); kept in ``memo``
    so the rows and the comparisons of one result bootstrap each curve once."""
    if memo is not None and (key, budget) in memo:
        return memo[(key, budget)]
    target = key.rsplit(" -> ", 1)[1]
    idx, ida = _indices(result, target)
    curve = result["curves"][key]
    reads = [
        read_curve(curve, result["unsteered"], budget, i, None if ida is None else ida[r]) for r, i in enumerate(idx)
    ]
    if memo is not None:
        memo[(key, budget)] = reads
    return reads


def _knobless_ratio(result: dict[str, Any], key: str) -> float:
    from steer.eval.readout import perplexity_ratio

    c = result["curves"][key]["neutral"]
    u = result["unsteered"]
    r = perplexity_ratio(
        np.asarray(c["nll"], float),
        np.asarray(c["count"], float),
        np.asarray(u["nll"], float),
        np.asarray(u["count"], float),
    )
    return float(r[0])


def _knobless_success(
    result: dict[str, Any], key: str, idx: np.ndarray | None, ida: np.ndarray | None
) -> dict[str, float]:
    curve = result["curves"][key]
    out = {}
    for part in PARTS:
        block = curve.get(part if part == "neutral" else "against")
        if not block:
            continue
        for s, v in block["success"].items():
            arr = np.asarray(v, float)[0]
            sel = idx if part == "neutral" else ida
            out[f"{part}:{s}"] = float(arr.mean() if sel is None else arr[sel].mean())
    return out


def read_rows(result: dict[str, Any], memo: Reads | None = None) -> list[dict[str, Any]]:
    """One row per method x budget x target (a knob-less method: per target, at its only setting), with its reading
    at the budget and a bootstrap interval per scorer and opening kind."""
    rows = []
    for key, curve in result["curves"].items():
        name, target = key.rsplit(" -> ", 1)
        common = {"method": name, "kind": curve["kind"], "info": curve["info"], "toward": target}
        dev = result["dev"][key]["runs"]
        if len(curve["knobs"]) == 1:  # no knob: its own cost
            idx, ida = _indices(result, target)
            own = _knobless_success(result, key, None, None)
            boot = [_knobless_success(result, key, i, None if ida is None else ida[r]) for r, i in enumerate(idx)]
            rows.append(
                {
                    **common,
                    "budget": None,
                    "reached": True,
                    "knob": None,
                    "dev_knob": None,
                    "ratio": _knobless_ratio(result, key),
                    "success": _success_table(own, boot, curve),
                }
            )
            continue
        for b in result["budgets"]:
            point = read_curve(curve, result["unsteered"], b)
            row: dict[str, Any] = {
                **common,
                "budget": b,
                "reached": point["reached"],
                "dev_knob": dev[str(b)]["knob"],
                "dev_ratio": dev[str(b)]["ratio"],
            }
            if point["reached"]:
                boot = [r["success"] if r["reached"] else {} for r in _reads(result, key, b, memo)]
                row.update(knob=point["knob"], ratio=b, success=_success_table(point["success"], boot, curve))
            else:
                row.update(
                    knob=None, ratio=None, min_ratio=point["min_ratio"], max_ratio=point["max_ratio"], success={}
                )
            rows.append(row)
    return rows


def _success_table(point: dict[str, float], boot: Sequence[dict[str, float]], curve: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, dict[str, Any]] = {}
    for k, v in point.items():
        part, scorer = k.split(":", 1)
        lo, hi = interval([b.get(k, math.nan) for b in boot])
        n = np.asarray(curve["neutral" if part == "neutral" else "against"]["success"][scorer][0]).size
        reached = sum(1 for b in boot if k in b)
        out.setdefault(part, {})[scorer] = {"rate": v, "lo": lo, "hi": hi, "n": int(n), "resamples_reached": reached}
    return out


def compare_all(result: dict[str, Any], memo: Reads | None = None) -> dict[str, list[dict[str, Any]]]:
    """Every pair of methods at every budget, per target, scorer and opening kind: the paired bootstrap difference,
    its p-value adjusted by Holm over the comparisons at that budget, and a verdict (``first`` against ``second``)."""
    names = list(dict.fromkeys(c["method"] for c in result["curves"].values()))
    knobless = {n for n in names if any(len(c["knobs"]) == 1 for c in result["curves"].values() if c["method"] == n)}
    out: dict[str, list[dict[str, Any]]] = {}
    for b in result["budgets"]:
        comps = []
        for target in TARGETS:
            idx, ida = _indices(result, target)
            reads: dict[str, list[dict[str, float]]] = {}
            for n in names:
                key = f"{n} -> {target}"
                if key not in result["curves"]:
                    continue
                if n in knobless:
                    reads[n] = [
                        _knobless_success(result, key, i, None if ida is None else ida[r]) for r, i in enumerate(idx)
                    ]
                elif read_curve(result["curves"][key], result["unsteered"], b)["reached"]:
                    reads[n] = [r["success"] if r["reached"] else {} for r in _reads(result, key, b, memo)]
            for i, first in enumerate(names):
                for second in names[i + 1 :]:
                    if first not in reads or second not in reads or (first in knobless and second in knobless):
                        continue
                    xs, ys = reads[first], reads[second]
                    if first in knobless or second in knobless:  # read the knob method at the prompt's own cost
                        kl, other = (first, second) if first in knobless else (second, first)
                        cost = _knobless_ratio(result, f"{kl} -> {target}")
                        curve = result["curves"][f"{other} -> {target}"]
                        if not read_curve(curve, result["unsteered"], cost)["reached"]:
                            continue
                        at_cost = [
                            r["success"] if r["reached"] else {}
                            for r in _reads(result, f"{other} -> {target}", cost, memo)
                        ]
                        xs, ys = (reads[kl], at_cost) if first == kl else (at_cost, reads[kl])
                    for k in sorted(set(xs[0]) | set(ys[0])):
                        d = paired_difference([x.get(k) for x in xs], [y.get(k) for y in ys])
                        part, scorer = k.split(":", 1)
                        comps.append(
                            {"first": first, "second": second, "toward": target, "part": part, "scorer": scorer, **d}
                        )
        ps = [c["p"] for c in comps if c["p"] is not None]
        adjusted = iter(holm(ps)) if ps else iter(())
        for c in comps:
            c["p_holm"] = next(adjusted) if c["p"] is not None else None
            c["verdict"] = verdict(c["diff"], c["p_holm"], result["config"].get("alpha", 0.05))
        out[f"{b:g}"] = comps
    return out


def verdicts(result: dict[str, Any], method: str, budget: float) -> list[dict[str, Any]]:
    """``method`` against every other method at ``budget`` (its side of each comparison), per target, scorer and
    opening kind: ``peer``, ``verdict`` (win / tie / lose from ``method``'s side), ``diff`` and its interval."""
    out = []
    for c in result.get("comparisons", {}).get(f"{budget:g}", []):
        if method not in (c["first"], c["second"]):
            continue
        flip = c["second"] == method
        v = {"win": "lose", "lose": "win"}.get(c["verdict"], c["verdict"]) if flip else c["verdict"]
        sign = -1 if flip else 1
        out.append(
            {
                "peer": c["first"] if flip else c["second"],
                "toward": c["toward"],
                "scorer": c["scorer"],
                "part": c["part"],
                "verdict": v,
                "diff": None if c["diff"] is None else sign * c["diff"],
                "lo": None if c["lo"] is None else (sign * (c["hi"] if flip else c["lo"])),
                "hi": None if c["hi"] is None else (sign * (c["lo"] if flip else c["hi"])),
                "p_holm": c["p_holm"],
            }
        )
    return out


# ------------------------------------------------------------------------------------------------ tables


def row_success(row: dict[str, Any], scorer: str, part: str = "neutral") -> dict[str, Any] | None:
    """A row's success (rate, lo, hi, n) for a scorer on ``neutral`` or ``against`` openings (None without one)."""
    if "success" in row and "test" not in row:
        s = row["success"].get(part, {}).get(scorer)
        return None if s is None else dict(s)
    key = part if part == "neutral" else f"against_{OPPOSITE[row['toward']]}"  # the first protocol's rows
    run = row["test"].get(key)
    return None if run is None else dict(run["scores"][scorer]["success"])


def rows_at(result: dict[str, Any], budget: float) -> list[dict[str, Any]]:
    """The rows at ``budget``, with the rows of knob-less methods (their only setting)."""
    return [r for r in result["rows"] if r["budget"] in (budget, None)]


def _cell(s: dict[str, Any] | None) -> str:
    if s is None:
        return "n/a"
    if "k" in s:  # a Wilson rate of the first protocol
        return format_rate(s)
    return f"{s['rate']:.1%} [{s['lo']:.1%}, {s['hi']:.1%}]"


def matched_table(result: dict[str, Any], budget: float) -> str:
    """Markdown: one row per method at ``budget``, success toward each target per scorer and opening kind (with its
    bootstrap interval), the knob read on test and the perplexity ratio; a method whose test curve does not reach
    the budget says so (with the highest ratio it reached); knob-less methods at their own ratio."""
    scorers = list(result["scorers"])
    head = ["method", "knob (+ / -)"]
    for t in TARGETS:
        head += [f"→ {t}, neutral: {s}" for s in scorers] + [f"→ {t}, against: {s}" for s in scorers]
    head += ["ppl × (+ / -)"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    by: dict[str, dict[str, dict[str, Any]]] = {}
    for r in rows_at(result, budget):
        by.setdefault(r["method"], {})[r["toward"]] = r
    for name, d in by.items():
        if set(d) != set(TARGETS):
            continue
        cells = [name, " / ".join("–" if d[t].get("knob") is None else f"{d[t]['knob']:.3g}" for t in TARGETS)]
        for t in TARGETS:
            for part in PARTS:
                for s in scorers:
                    if d[t].get("reached", True) is False:
                        cells.append(unreached(d[t], budget))
                    else:
                        cells.append(_cell(row_success(d[t], s, part)))
        cells.append(" / ".join("–" if d[t].get("ratio") is None else f"{d[t]['ratio']:.2f}" for t in TARGETS))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def unreached(row: dict[str, Any], budget: float) -> str:
    """Why a row has no reading: its test curve stays below the budget, or above it at every setting."""
    lo = row.get("min_ratio")
    if lo is not None and lo > budget:
        return f"above {budget:g}x at every setting (min {lo:.2f})"
    return f"does not reach {budget:g}x (max {row['max_ratio']:.2f})"


def unsteered_line(result: dict[str, Any]) -> str:
    """One line on the unsteered model's test continuations: share positive/negative per scorer, perplexity."""
    u = result["unsteered"]
    if "shares" not in u:  # the first protocol
        u = u["neutral"]
        shares = dict(u["scores"])
    else:
        shares = u["shares"]
    parts = [f"{s}: positive {_cell(v['positive'])}, negative {_cell(v['negative'])}" for s, v in shares.items()]
    return (
        f"Unsteered, {result['n_test']} neutral test openings x {result['config']['samples']} samples: "
        + "; ".join(parts)
        + f"; perplexity {u['ppl']:.1f}, distinct-2 {u['distinct_2']:.2f}."
    )


def verdict_counts(result: dict[str, Any], method: str, budget: float) -> dict[str, dict[str, int]]:
    """{peer: {win, tie, lose}} of ``method`` at ``budget``."""
    counts: dict[str, dict[str, int]] = {}
    for v in verdicts(result, method, budget):
        if v["verdict"] in ("win", "tie", "lose"):
            counts.setdefault(v["peer"], {"win": 0, "tie": 0, "lose": 0})[v["verdict"]] += 1
    return counts


def pooled_rate(rows: Sequence[dict[str, Any]], scorer: str, part: str = "neutral") -> dict[str, Any]:
    """The success of several rows of the first protocol pooled into one rate (e.g. a method's two targets)."""
    rs = [r for r in (row_success(row, scorer, part) for row in rows) if r is not None and "k" in r]
    return rate(sum(r["k"] for r in rs), sum(r["n"] for r in rs))
