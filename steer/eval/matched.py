"""The steering benchmark at matched fluency: every method is compared at the setting that costs it the same fluency.

Each method's knob (a coefficient, or a count for self-conditioning) means something different, so methods are not
compared at equal knobs but at equal cost: on the **dev** split, a short bracketed search finds, per method and per
target, the setting whose continuations have a perplexity under the *unsteered* model of ``budget`` x the
unsteered continuations' perplexity (1.25x and 1.5x by default). At that setting the method then continues the
**test** split's prompts (several samples per prompt), and the report gives, per scorer, its success rate with a
Wilson 95% interval, its test perplexity ratio (to show the match holds on unseen prompts) and distinct-n:

- success from neutral openings: the share of continuations the scorer judges to be of the target sentiment;
- success against the opening: openings of clear sentiment steered to the opposite one.

The search is :func:`steer.eval.knob_search.search_knob`. A method with no knob (prompting) is run as it is, and its
ratio is reported.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from steer.eval.knob_search import search_knob
from steer.eval.methods import Method
from steer.eval.metrics import format_rate, perplexity, rate
from steer.eval.quality import TARGETS, sample, score_run
from steer.generation import GenerationConfig
from steer.worlds import Worlds

if TYPE_CHECKING:
    from steer.eval.scorers import Scorer
    from steer.models import Model

OPPOSITE = {"positive": "negative", "negative": "positive"}


@dataclass(frozen=True)
class BenchPrompts:
    """One split of the benchmark's prompts: neutral openings, and openings of clear sentiment with their label."""

    neutral: list[str]
    opposite: list[tuple[str, str]] = field(default_factory=list)

    @classmethod
    def from_files(
        cls,
        neutral: str | Path,
        opposite: str | Path | None,
        split: str,
        n_neutral: int | None = None,
        n_opposite: int | None = None,
    ) -> BenchPrompts:
        """The records of ``split`` (field ``split``) of the two files, the first ``n_*`` of each (None: all).

        Opposite openings are taken alternately by label so that a prefix keeps both sentiments."""
        nw = Worlds.from_file(neutral)
        texts = [p for p, s in zip(nw.prompts, nw.column("split")) if s == split]
        if not texts:
            raise ValueError(f"{neutral}: no records with split={split!r}")
        opp: list[tuple[str, str]] = []
        if opposite is not None and n_opposite != 0:
            ow = Worlds.from_file(opposite)
            by: dict[str, list[str]] = {t: [] for t in TARGETS}
            for p, s, lab in zip(ow.prompts, ow.column("split"), ow.column("label")):
                if s == split:
                    if lab not in by:
                        raise ValueError(f"{opposite}: label {lab!r} is not one of {', '.join(TARGETS)}")
                    by[str(lab)].append(p)
            for pair in zip(*by.values()):
                opp += [(p, t) for p, t in zip(pair, by)]
        return cls(texts[:n_neutral] if n_neutral else texts, opp[:n_opposite] if n_opposite else opp)

    def against(self, target: str) -> list[str]:
        """The openings whose sentiment is the opposite of ``target`` (to be steered toward ``target``)."""
        return [p for p, lab in self.opposite if lab == OPPOSITE[target]]


@dataclass(frozen=True)
class MatchedConfig:
    """How the benchmark searches and evaluates."""

    budgets: tuple[float, ...] = (1.25, 1.5)  # perplexity ratios to the unsteered model
    dev_samples: int = 1  # continuations per dev opening
    samples: int = 3  # continuations per test opening
    seed: int = 0  # seeds every sampled batch
    max_new_tokens: int = 20
    tol: float = 0.05  # a setting within this relative distance of the budget ends the search
    max_evals: int = 8  # settings tried per method, target and budget at most


# ------------------------------------------------------------------------------------------------ runs


@dataclass
class Bench:
    """A model, its scorers and the benchmark's two splits; runs and caches every (method, target, knob) run."""

    model: Model
    scorers: Sequence[Scorer]
    dev: BenchPrompts
    test: BenchPrompts
    cfg: MatchedConfig = field(default_factory=MatchedConfig)
    progress: bool = True
    _base: dict[str, float] = field(default_factory=dict)
    traces: dict[tuple[str, str], dict[float, dict[str, Any]]] = field(default_factory=dict)

    @property
    def generation(self) -> GenerationConfig:
        return GenerationConfig(max_new_tokens=self.cfg.max_new_tokens)

    def _sample(
        self, method: Method | None, prompts: Sequence[str], target: str | None, x: float, n: int
    ) -> tuple[list[str], list[str]]:
        return sample(self.model, method, prompts, target, x, n, self.cfg.seed, self.generation)

    def unsteered_dev_ppl(self) -> float:
        """Perplexity of the unsteered model's continuations of the dev split (the search's reference)."""
        if "dev" not in self._base:
            ps, texts = self._sample(None, self.dev.neutral, None, 0.0, self.cfg.dev_samples)
            self._base["dev"] = perplexity(self.model, ps, texts)
        return self._base["dev"]

    def dev_run(self, method: Method, target: str, x: float) -> dict[str, Any]:
        """Continue the dev split toward ``target`` at setting ``x``: its perplexity ratio and success per scorer."""
        trace = self.traces.setdefault((method.name, target), {})
        if x not in trace:
            ps, texts = self._sample(method, self.dev.neutral, target, x, self.cfg.dev_samples)
            run = score_run(self.model, ps, texts, self.scorers, target)
            trace[x] = {
                "knob": x,
                "ratio": run["ppl"] / self.unsteered_dev_ppl(),
                "success": {name: s["success"]["rate"] for name, s in run["scores"].items()},
            }
        return trace[x]

    def calibrate(self, method: Method, target: str, budget: float) -> dict[str, Any]:
        """The dev-split setting of ``method`` toward ``target`` at perplexity ratio ``budget`` (its dev run)."""
        knob = method.knob_for(target)
        if knob is None:
            return self.dev_run(method, target, 1.0)
        memo = {x: t["ratio"] for x, t in self.traces.get((method.name, target), {}).items()}
        x = search_knob(
            lambda x: self.dev_run(method, target, x)["ratio"],
            knob,
            budget,
            memo,
            self.cfg.tol,
            self.cfg.max_evals,
        )
        return self.dev_run(method, target, x)

    def dev_success(self, method: Method, budget: float, targets: Sequence[str] = TARGETS) -> float:
        """Mean dev success over ``targets`` and scorers at the method's setting for ``budget`` (for choices on
        dev)."""
        runs = [self.calibrate(method, t, budget) for t in targets]
        return float(np.mean([v for r in runs for v in r["success"].values()]))

    def test_run(self, method: Method | None, target: str | None, x: float) -> dict[str, Any]:
        """Continue the test split (neutral openings; for a target also the openings against it), scored."""
        n = self.cfg.samples
        out: dict[str, Any] = {}
        ps, texts = self._sample(method, self.test.neutral, target, x, n)
        out["neutral"] = score_run(self.model, ps, texts, self.scorers, target)
        if self.test.opposite:
            targets = [target] if target is not None else list(TARGETS)
            for t in targets:
                against = self.test.against(t)
                if against:
                    ps, texts = self._sample(method, against, target, x, n)
                    out[f"against_{OPPOSITE[t]}"] = score_run(self.model, ps, texts, self.scorers, target)
        for run in out.values():
            for s in run["scores"].values():
                s.pop("values", None)
        return out


def matched_eval(bench: Bench, methods: Sequence[Method], budgets: Sequence[float] | None = None) -> dict[str, Any]:
    """Every method at every budget and target: its dev setting and its test results; JSON-ready.

    Args:
        bench: the model, scorers, splits and settings.
        methods: the methods (a method without a knob is run once, at its only setting).
        budgets: the perplexity ratios (default ``bench.cfg.budgets``).

    Returns:
        ``unsteered`` (test runs of the unsteered model), ``rows`` (one per method x budget x target, with
        ``knob``, ``dev``, ``test``, ``ratio``: the test perplexity over the unsteered test perplexity) and the
        settings.
    """
    from tqdm.auto import tqdm

    t0 = time.time()
    budgets = tuple(budgets or bench.cfg.budgets)
    base = bench.test_run(None, None, 0.0)
    jobs: list[tuple[Method, float | None, str]] = []
    for m in methods:  # a target whose knob is None runs once, at its only setting
        searched = [t for t in TARGETS if m.knob_for(t) is not None]
        jobs += [(m, b, t) for b in budgets for t in searched] + [(m, None, t) for t in TARGETS if t not in searched]
    rows = []
    for m, b, t in tqdm(jobs, desc="matched fluency", disable=not bench.progress):
        dev = bench.calibrate(m, t, b if b is not None else 1.0)
        test = bench.test_run(m, t, dev["knob"])
        against = f"against_{OPPOSITE[t]}"
        rows.append(
            {
                "method": m.name,
                "kind": m.kind,
                "info": m.info,
                "budget": b,
                "toward": t,
                "knob": dev["knob"],
                "dev": dev,
                "test": test,
                "ratio": test["neutral"]["ppl"] / base["neutral"]["ppl"],
                "ratio_against": (
                    test[against]["ppl"] / base[against]["ppl"] if against in test and against in base else None
                ),
            }
        )
    return {
        "config": asdict(bench.cfg),
        "budgets": list(budgets),
        "n_dev": len(bench.dev.neutral),
        "n_test": len(bench.test.neutral),
        "n_test_against": {t: len(bench.test.against(t)) for t in TARGETS},
        "scorers": {sc.name: sc.info for sc in bench.scorers},
        "unsteered": base,
        "unsteered_dev_ppl": bench.unsteered_dev_ppl(),
        "rows": rows,
        "traces": {
            f"{name} -> {t}": sorted(tr.values(), key=lambda r: r["knob"]) for (name, t), tr in bench.traces.items()
        },
        "seconds": round(time.time() - t0, 1),
    }


# ------------------------------------------------------------------------------------------------ reading


def row_success(row: dict[str, Any], scorer: str, part: str = "neutral") -> dict[str, Any] | None:
    """A row's success rate (with interval) for a scorer on ``neutral`` or ``against`` openings."""
    if part == "against":
        part = f"against_{OPPOSITE[row['toward']]}"
    run = row["test"].get(part)
    return None if run is None else dict(run["scores"][scorer]["success"])


def rows_at(result: dict[str, Any], budget: float) -> list[dict[str, Any]]:
    """The rows at ``budget``, with the rows of knob-less methods (their only setting)."""
    return [r for r in result["rows"] if r["budget"] in (budget, None)]


def verdict(a: dict[str, Any], b: dict[str, Any]) -> str:
    """``win`` when a's interval lies above b's, ``lose`` when below, else ``tie``."""
    if a["lo"] > b["hi"]:
        return "win"
    if a["hi"] < b["lo"]:
        return "lose"
    return "tie"


def verdicts(result: dict[str, Any], method: str, budget: float) -> list[dict[str, Any]]:
    """``method`` against every other method at ``budget``, per target, scorer and opening kind."""
    rows = rows_at(result, budget)
    mine = {r["toward"]: r for r in rows if r["method"] == method}
    out = []
    for r in rows:
        if r["method"] == method or r["toward"] not in mine:
            continue
        for scorer in result["scorers"]:
            for part in ("neutral", "against"):
                a, b = row_success(mine[r["toward"]], scorer, part), row_success(r, scorer, part)
                if a is not None and b is not None:
                    out.append(
                        {
                            "peer": r["method"],
                            "toward": r["toward"],
                            "scorer": scorer,
                            "part": part,
                            "verdict": verdict(a, b),
                            "ours": a["rate"],
                            "theirs": b["rate"],
                        }
                    )
    return out


def matched_table(result: dict[str, Any], budget: float) -> str:
    """Markdown: one row per method at ``budget``, success toward each target per scorer, perplexity ratio and
    distinct-2 (knob-less methods at their only setting, with their own ratio)."""
    scorers = list(result["scorers"])
    head = ["method", "knob (+ / -)"]
    for t in TARGETS:
        head += [f"→ {t}, neutral: {s}" for s in scorers] + [f"→ {t}, against: {s}" for s in scorers]
    head += ["ppl × (+ / -)", "distinct-2"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    by: dict[str, dict[str, dict[str, Any]]] = {}
    for r in rows_at(result, budget):
        by.setdefault(r["method"], {})[r["toward"]] = r
    for name, d in by.items():
        if set(d) != set(TARGETS):
            continue
        cells = [name, " / ".join(f"{d[t]['knob']:.3g}" for t in TARGETS)]
        for t in TARGETS:
            for part in ("neutral", "against"):
                for s in scorers:
                    rt = row_success(d[t], s, part)
                    cells.append("n/a" if rt is None else format_rate(rt))
        cells.append(" / ".join(f"{d[t]['ratio']:.2f}" for t in TARGETS))
        cells.append(f"{np.mean([d[t]['test']['neutral']['distinct_2'] for t in TARGETS]):.2f}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def unsteered_line(result: dict[str, Any]) -> str:
    """One line on the unsteered model's test continuations: share positive/negative per scorer, perplexity."""
    u = result["unsteered"]["neutral"]
    parts = [
        f"{s}: positive {format_rate(v['positive'])}, negative {format_rate(v['negative'])}"
        for s, v in u["scores"].items()
    ]
    return (
        f"Unsteered, {result['n_test']} neutral test openings x {result['config']['samples']} samples: "
        + "; ".join(parts)
        + f"; perplexity {u['ppl']:.1f}, distinct-2 {u['distinct_2']:.2f}."
    )


def pooled_rate(rows: Sequence[dict[str, Any]], scorer: str, part: str = "neutral") -> dict[str, Any]:
    """The success of several rows pooled into one rate (e.g. a method's two targets)."""
    rs = [r for r in (row_success(row, scorer, part) for row in rows) if r is not None]
    return rate(sum(r["k"] for r in rs), sum(r["n"] for r in rs))
