"""The steering benchmark at matched fluency: every method is compared at the setting that costs it the same fluency.

Each method's knob (a coefficient, or a count for self-conditioning) means something different, so methods are not
compared at equal knobs but at equal cost, the perplexity of their continuations under the *unsteered* model over
the unsteered continuations' perplexity (1.25x and 1.5x by default). The protocol:

1. **Splits over every register.** Dev and test openings are drawn in the same proportions from every register of
   the neutral openings (:func:`steer.eval.readout.stratified`) and in equal shares from both sentiments of the
   opposite ones (:func:`steer.eval.readout.balanced`).
2. **Knob ranges on dev only.** A bracketed search on dev (:func:`steer.eval.knob_search.search_knob`) finds the
   setting at each budget, per method and target.
3. **Read where it is scored.** On test, each method runs at a short grid of settings bracketing its dev settings
   (``grid`` points, common random numbers: the same seeds at every setting), and its success and perplexity ratio
   are read at exactly the budget from the isotonic test curves (:func:`steer.eval.readout.read_curve`). A method
   whose test curve does not reach the budget is reported as such and gets no verdict. A method without a knob
   (prompting) runs once and is compared with the others read at its own cost.
4. **Honest intervals.** Intervals and verdicts come from a bootstrap over openings (all samples of an opening
   resampled together), paired between methods (same openings, same seeds), with Holm's correction over the
   comparisons of a table (:mod:`steer.eval.matched_report`).

Success from neutral openings is the share of continuations a scorer judges to be of the target sentiment; success
against the opening is the same for openings of clear opposite sentiment.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from steer.eval.knob_search import search_knob
from steer.eval.methods import Knob, Method
from steer.eval.metrics import continuation_nll, distinct_n, perplexity, rate
from steer.eval.quality import TARGETS, sample
from steer.eval.readout import balanced, stratified
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
        seed: int = 0,
    ) -> BenchPrompts:
        """The records of ``split`` (field ``split``) of the two files; ``n_*`` of each (None: all), drawn with
        ``seed`` in the proportions of the neutral openings' ``register`` field and in equal shares of the opposite
        ones' labels (a label with too few gives all it has)."""
        nw = Worlds.from_file(neutral)
        rows = [i for i, s in enumerate(nw.column("split")) if s == split]
        if not rows:
            raise ValueError(f"{neutral}: no records with split={split!r}")
        registers = nw.column("register") if "register" in nw.records[0] else ["all"] * len(nw)
        keep = stratified([str(registers[i]) for i in rows], n_neutral or None, seed)
        texts = [nw.prompts[rows[i]] for i in keep]
        opp: list[tuple[str, str]] = []
        if opposite is not None and n_opposite != 0:
            ow = Worlds.from_file(opposite)
            pairs = []
            for p, s, lab in zip(ow.prompts, ow.column("split"), ow.column("label")):
                if s == split:
                    if lab not in TARGETS:
                        raise ValueError(f"{opposite}: label {lab!r} is not one of {', '.join(TARGETS)}")
                    pairs.append((p, str(lab)))
            opp = [pairs[i] for i in balanced([lab for _, lab in pairs], n_opposite or None, seed)]
        return cls(texts, opp)

    def against(self, target: str) -> list[str]:
        """The openings whose sentiment is the opposite of ``target`` (to be steered toward ``target``)."""
        return [p for p, lab in self.opposite if lab == OPPOSITE[target]]


@dataclass(frozen=True)
class MatchedConfig:
    """How the benchmark searches and evaluates."""

    budgets: tuple[float, ...] = (1.25, 1.5)  # perplexity ratios to the unsteered model
    dev_samples: int = 2  # continuations per dev opening
    samples: int = 3  # continuations per test opening
    seed: int = 0  # seeds every sampled batch (the same at every setting: common random numbers)
    max_new_tokens: int = 20
    tol: float = 0.05  # a setting within this relative distance of the budget ends the search
    max_evals: int = 8  # settings tried per method, target and budget at most
    grid: int = 5  # test settings per method and target (at least 4)
    spread: float = 1.6  # the test grid reaches this factor below the lowest and above the highest dev setting
    resamples: int = 1000  # bootstrap resamples of the openings
    alpha: float = 0.05  # family-wise level of a table's verdicts (Holm)

    def __post_init__(self) -> None:
        if self.grid < 4:
            raise ValueError(f"the test grid needs at least 4 settings, got grid={self.grid}")


def test_grid(knob: Knob, dev_settings: Sequence[float], points: int, spread: float) -> list[float]:
    """``points`` settings, log-spaced from the lowest dev setting / ``spread`` to the highest x ``spread``, within
    the knob's bounds (integer knobs rounded; duplicates dropped, so an integer grid may be shorter)."""
    lo, hi = knob.clip(min(dev_settings) / spread), knob.clip(max(dev_settings) * spread)
    if hi <= lo:
        lo, hi = knob.clip(lo / spread), knob.clip(hi * spread)
    xs = [knob.clip(math.exp(v)) for v in np.linspace(math.log(lo), math.log(max(hi, lo * 1.0001)), points)]
    return sorted(set(xs))


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
            items = self._items(ps, texts, target)
            trace[x] = {
                "knob": x,
                "ratio": math.exp(sum(items["nll"]) / max(sum(items["count"]), 1)) / self.unsteered_dev_ppl(),
                "success": dict(items["success"]),
            }
        return trace[x]

    def calibrate(self, method: Method, target: str, budget: float) -> dict[str, Any]:
        """The dev-split setting of ``method`` toward ``target`` at perplexity ratio ``budget`` (its dev run)."""
        knob = method.knob_for(target)
        if knob is None:
            return self.dev_run(method, target, 1.0)
        memo = {x: t["ratio"] for x, t in self.traces.get((method.name, target), {}).items()}
        x = search_knob(
            lambda x: self.dev_run(method, target, x)["ratio"], knob, budget, memo, self.cfg.tol, self.cfg.max_evals
        )
        return self.dev_run(method, target, x)

    def _items(self, prompts: Sequence[str], texts: Sequence[str], target: str | None) -> dict[str, Any]:
        """Per continuation: NLL and token count under the unsteered model, and each scorer's verdict (+1 positive,
        -1 negative, 0 neither); ``success``: the share of verdicts toward ``target``, per scorer."""
        nll = continuation_nll(self.model, prompts, texts, batch_size=64)
        out: dict[str, Any] = {
            "nll": [round(a, 4) for a, _ in nll],
            "count": [c for _, c in nll],
            "verdict": {},
            "success": {},
            "distinct_2": distinct_n(texts, 2),
            "examples": [t[:160] for t in texts[:3]],
        }
        for sc in self.scorers:
            v = np.sign(np.asarray(sc.judge(texts))).astype(int)
            out["verdict"][sc.name] = v.tolist()
            if target is not None:
                out["success"][sc.name] = float(np.mean(_success(v, target)))
        return out

    def test_run(self, method: Method | None, target: str | None, x: float) -> dict[str, Any]:
        """Continue the test split (neutral openings; for a target also the openings against it) with the same seeds
        at every setting; per-continuation NLL, token counts and verdicts, in opening-major order."""
        n = self.cfg.samples
        out: dict[str, Any] = {}
        ps, texts = self._sample(method, self.test.neutral, target, x, n)
        out["neutral"] = self._items(ps, texts, target)
        for t in [target] if target is not None else list(TARGETS):
            against = self.test.against(t)
            if against:
                ps, texts = self._sample(method, against, target, x, n)
                out[f"against_{OPPOSITE[t]}"] = self._items(ps, texts, target)
        return out


def _success(verdicts: Any, target: str) -> np.ndarray:
    """1 where a verdict is the target sentiment, else 0."""
    v = np.asarray(verdicts)
    return (v > 0 if target == "positive" else v < 0).astype(int)


def _shaped(values: Any, samples: int) -> list[list[Any]]:
    return np.asarray(values).reshape(-1, samples).tolist()


def _curve(runs: list[dict[str, Any]], knobs: Sequence[float], target: str, samples: int) -> dict[str, Any]:
    """The test runs of one method and target over its grid, as arrays [grid, openings, samples]."""
    neu = [r["neutral"] for r in runs]
    curve: dict[str, Any] = {
        "knobs": list(knobs),
        "neutral": {
            "nll": [_shaped(r["nll"], samples) for r in neu],
            "count": [_shaped(r["count"], samples) for r in neu],
            "success": {
                s: [_shaped(_success(r["verdict"][s], target), samples) for r in neu] for s in neu[0]["verdict"]
            },
            "distinct_2": [r["distinct_2"] for r in neu],
        },
    }
    key = f"against_{OPPOSITE[target]}"
    if key in runs[0]:
        ag = [r[key] for r in runs]
        curve["against"] = {
            "success": {s: [_shaped(_success(r["verdict"][s], target), samples) for r in ag] for s in ag[0]["verdict"]}
        }
    return curve


def _unsteered(base: dict[str, Any], samples: int) -> dict[str, Any]:
    """The unsteered test run as arrays [openings, samples] and its shares positive / negative per scorer."""
    neu = base["neutral"]
    shares = {}
    for s, v in neu["verdict"].items():
        arr = np.asarray(v)
        shares[s] = {"positive": rate(int((arr > 0).sum()), arr.size), "negative": rate(int((arr < 0).sum()), arr.size)}
    ppl = math.exp(sum(neu["nll"]) / max(sum(neu["count"]), 1))
    against = {}
    for key, run in base.items():
        if key.startswith("against_"):
            against[key] = {
                s: {
                    "positive": rate(int((np.asarray(v) > 0).sum()), len(v)),
                    "negative": rate(int((np.asarray(v) < 0).sum()), len(v)),
                }
                for s, v in run["verdict"].items()
            }
    return {
        "against": against,
        "nll": _shaped(neu["nll"], samples),
        "count": _shaped(neu["count"], samples),
        "ppl": ppl,
        "distinct_2": neu["distinct_2"],
        "shares": shares,
        "examples": neu["examples"],
    }


def matched_eval(bench: Bench, methods: Sequence[Method], budgets: Sequence[float] | None = None) -> dict[str, Any]:
    """Every method at every budget and target: its dev settings, its test curve and its readings; JSON-ready.

    Args:
        bench: the model, scorers, splits and settings.
        methods: the methods (a method without a knob is run once, at its only setting).
        budgets: the perplexity ratios (default ``bench.cfg.budgets``).

    Returns:
        ``unsteered`` (the unsteered test run), ``curves`` (per "method -> target": the test grid's per-continuation
        arrays), ``rows`` (one per method x budget x target, or per target for a knob-less method: ``reached``,
        ``knob``, ``dev_knob``, ``ratio``, ``success`` with bootstrap intervals, see
        :func:`steer.eval.matched_report.read_rows`), ``comparisons`` and the settings; ``dev[key]["seconds"]``
        is what each method cost toward each target (its dev search and test curve), ``unsteered_seconds`` the
        unsteered test run's.
    """
    from tqdm.auto import tqdm

    t0 = time.time()
    cfg = bench.cfg
    budgets = tuple(budgets or cfg.budgets)
    base = _unsteered(bench.test_run(None, None, 0.0), cfg.samples)
    base_seconds = round(time.time() - t0, 1)
    curves: dict[str, dict[str, Any]] = {}
    dev: dict[str, dict[str, Any]] = {}
    jobs = [(m, t) for m in methods for t in TARGETS]
    for m, t in tqdm(jobs, desc="matched fluency", disable=not bench.progress):
        t1 = time.time()
        knob = m.knob_for(t)
        key = f"{m.name} -> {t}"
        if knob is None:
            dev[key] = {"runs": {"only setting": bench.calibrate(m, t, 1.0)}}
            grid = [1.0]
        else:
            runs = {b: bench.calibrate(m, t, b) for b in budgets}
            dev[key] = {"runs": {str(b): r for b, r in runs.items()}}
            grid = test_grid(knob, [r["knob"] for r in runs.values()], cfg.grid, cfg.spread)
        curves[key] = curve_on_test(bench, m, t, grid)
        dev[key]["seconds"] = round(time.time() - t1, 1)  # the dev search and the test curve of this method
    result = {
        "protocol": "v2: stratified splits, test curves read at the budget (isotonic), paired cluster bootstrap, Holm",
        "config": asdict(cfg),
        "budgets": list(budgets),
        "n_dev": len(bench.dev.neutral),
        "n_test": len(bench.test.neutral),
        "n_test_against": {t: len(bench.test.against(t)) for t in TARGETS},
        "scorers": {sc.name: sc.info for sc in bench.scorers},
        "unsteered": base,
        "unsteered_seconds": base_seconds,
        "unsteered_dev_ppl": bench.unsteered_dev_ppl(),
        "dev": dev,
        "curves": curves,
        "traces": {
            f"{name} -> {t}": sorted(tr.values(), key=lambda r: r["knob"]) for (name, t), tr in bench.traces.items()
        },
    }
    read_table(result)
    result["seconds"] = round(time.time() - t0, 1)
    return result


def curve_on_test(bench: Bench, method: Method, target: str, grid: Sequence[float]) -> dict[str, Any]:
    """``method`` toward ``target`` on the test split at every setting of ``grid`` (the same seeds at each): the
    curve's per-continuation arrays, with the method's name, kind and info."""
    runs = [bench.test_run(method, target, x) for x in grid]
    curve = _curve(runs, grid, target, bench.cfg.samples)
    return {**curve, "method": method.name, "kind": method.kind, "info": method.info}


def read_table(table: dict[str, Any]) -> dict[str, Any]:
    """``table`` with its ``rows`` and ``comparisons`` read (again) from its curves and unsteered run, each curve
    bootstrapped once for both (:mod:`steer.eval.matched_report`)."""
    from steer.eval.matched_report import compare_all, read_rows

    memo: dict[tuple[str, float], list[dict[str, Any]]] = {}
    table["rows"] = read_rows(table, memo)
    table["comparisons"] = compare_all(table, memo)
    return table


def search_spread(bench: Bench, methods: Sequence[Method], budget: float, seed: int) -> dict[str, Any]:
    """How much the dev search's setting moves with the sampling seed: each method's setting toward each target at
    ``budget`` found again with ``seed`` (new dev samples), against the one ``bench`` found."""
    other = Bench(bench.model, bench.scorers, bench.dev, bench.test, replace_seed(bench.cfg, seed), progress=False)
    out = {}
    for m in methods:
        for t in TARGETS:
            if m.knob_for(t) is None:
                continue
            a, b = bench.calibrate(m, t, budget)["knob"], other.calibrate(m, t, budget)["knob"]
            out[f"{m.name} -> {t}"] = {"knob": a, "knob_other_seed": b, "log_ratio": abs(math.log(b / a))}
    spreads = [v["log_ratio"] for v in out.values()]
    return {
        "budget": budget,
        "seed": seed,
        "settings": out,
        "median_factor": math.exp(float(np.median(spreads))) if spreads else None,
    }


def replace_seed(cfg: MatchedConfig, seed: int) -> MatchedConfig:
    """``cfg`` with another sampling seed."""
    from dataclasses import replace

    return replace(cfg, seed=seed)


def merge_tables(first: dict[str, Any], second: dict[str, Any]) -> dict[str, Any]:
    """One table from two runs of :func:`matched_eval` on the same bench (same model, splits, settings and seeds:
    the unsteered test runs must be identical, which common random numbers make them), with every row read again
    and every comparison (Holm over the whole merged table) computed again. Methods of ``second`` replace those of
    ``first`` with the same name."""
    import json

    first, second = json.loads(json.dumps(first)), json.loads(json.dumps(second))  # as stored (tuples as lists)
    for key in ("config", "budgets", "n_dev", "n_test", "n_test_against"):
        if first[key] != second[key]:
            raise ValueError(f"the two tables differ in {key} ({first[key]!r} vs {second[key]!r}): not one bench")
    a, b = first["unsteered"], second["unsteered"]
    if a["nll"] != b["nll"] or a["count"] != b["count"]:
        raise ValueError("the two tables' unsteered test runs differ (another model, prompts or seeds): not one bench")
    merged = {**first}
    for part in ("dev", "curves", "traces"):
        merged[part] = {**first[part], **second[part]}
    merged["seconds"] = round(first["seconds"] + second["seconds"], 1)
    merged["merged"] = [first.get("seconds"), second.get("seconds")]
    return read_table(merged)
