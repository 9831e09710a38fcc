"""Explaining one unit: which proposition does it speak for, how sure can we be, and is the score sound?

Given a unit's reasons vector x (its activation in every world) and candidate propositions (every non-trivial
``field=value`` of the world set's categorical fields), each candidate A gets:

- D(x, A): the doxastic strength (uniform prior), with a bootstrap percentile interval over the worlds;
- similarity scores of the unit's top-q activation set T (the worlds where x is in its top q share) with A:
  IoU, F1, accuracy, recall, precision; the AUROC of x for A; the correlation of x with the indicator of A.

Finite-sample uniform bounds (docs/method.md section 5): with probability >= 1 - delta, for every candidate at
once, |score_hat - score| <= r, with L = ln(2|C|/delta) over the |C| candidates and

    accuracy            r = sqrt(L / (2N))
    recall              r = sqrt(L / (2|A|))            (the sub-population the score averages over)
    precision           r = sqrt(L / (2|T|))
    IoU, F1             r = sqrt(L / (2 min(|A|, |T|)))  (a conservative sub-population size; a heuristic
                                                          for these ratio scores, checked in simulation)
    AUROC               r = sqrt(L / (2 N rho (1 - rho))), rho = |A| / N

Assumptions: the worlds are an i.i.d. sample of the population of worlds; T's threshold is taken as fixed
(it is estimated from the same sample, a second-order effect). D and the correlation have no such radius
here; they are reported with bootstrap intervals. Corollary: the empirically best candidate's true score is
within 2r of the truly best one's, so "best by a margin larger than 2r" is a finite-sample claim.

The Bootstrap Explanation prediction set over candidates holds a 1 - alpha share of the resamples' winners
(by D). Sanity checks (Oikarinen et al., ICML 2025): a sound score must drop when half of A's members are
removed from A (missing labels) and when as many non-members are added to it (extra labels).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from jaxtyping import Bool, Float
from torch import Tensor

from steer.readers import PromptSetError
from steer.stability import bootstrap_counts, prediction_set
from steer.strength import TrivialPropositionError, doxastic_strength

if TYPE_CHECKING:
    from steer.propositions import Proposition
    from steer.worlds import WorldFields

# How well a unit's reasons vector matches a candidate proposition (not to be confused with the selection
# scores of steer.selection, which rank units for one proposition).
SIMILARITIES = ("D", "iou", "f1", "auroc", "corr", "accuracy", "recall", "precision")
BOUNDED = ("iou", "f1", "auroc", "accuracy", "recall", "precision")


def top_set(x: Float[Tensor, " worlds"], q: float) -> Bool[Tensor, " worlds"]:
    """The worlds where x is among its top q share (at least one world)."""
    n = x.numel()
    m = max(1, round(q * n))
    T = torch.zeros(n, dtype=torch.bool)
    T[torch.topk(x, m).indices] = True
    return T


def auroc(x: Float[Tensor, " worlds"], A: Bool[Tensor, " worlds"]) -> float:
    """P(x on a random member of A > x on a random non-member), ties counted half (Mann-Whitney)."""
    xa, xc = x[A].double()[:, None], x[~A].double()[None, :]
    return float((xa > xc).double().mean() + 0.5 * (xa == xc).double().mean())


def similarities(x: Float[Tensor, " worlds"], A: Bool[Tensor, " worlds"], q: float = 0.1) -> dict[str, float]:
    """Every similarity of x with proposition A (see the module doc)."""
    x = torch.as_tensor(x).double()
    A = torch.as_tensor(A, dtype=torch.bool)
    T = top_set(x, q)
    inter, union = int((T & A).sum()), int((T | A).sum())
    xa = x - x.mean()
    ya = A.double() - A.double().mean()
    denom = float(xa.norm() * ya.norm())
    return {
        "D": float(doxastic_strength(x, A)),
        "iou": inter / union,
        "f1": 2 * inter / (int(T.sum()) + int(A.sum())),
        "auroc": auroc(x, A),
        "corr": float((xa * ya).sum()) / denom if denom > 0 else 0.0,
        "accuracy": float((T == A).double().mean()),
        "recall": inter / int(A.sum()),
        "precision": inter / int(T.sum()),
    }


def radius(score: str, n: int, n_a: int, n_t: int, n_candidates: int, delta: float) -> float:
    """Hoeffding-type uniform radius of a bounded score over ``n_candidates`` candidates (module doc)."""
    L = math.log(2 * n_candidates / delta)
    size = {"accuracy": n, "recall": n_a, "precision": n_t, "iou": min(n_a, n_t), "f1": min(n_a, n_t)}
    if score in size:
        return math.sqrt(L / (2 * size[score]))
    if score == "auroc":
        rho = n_a / n
        return math.sqrt(L / (2 * n * rho * (1 - rho)))
    raise ValueError(f"no finite-sample radius for {score!r}")


def candidate_propositions(
    worlds: WorldFields, max_values: int = 20, skip: tuple[str, ...] = ("text",)
) -> list[Proposition]:
    """Candidate propositions for explaining a unit: ``field=value`` for every non-trivial value of every field
    with 2..max_values distinct values.

    Args:
        worlds: the worlds.
        max_values: fields with more distinct values are skipped (free text, ids), and so are fields missing
            in some worlds or mixing kinds of values.
        skip: fields never used.

    Returns:
        The propositions.
    """
    out = []
    for name in worlds.records[0]:
        if name in skip:
            continue
        try:
            values = worlds.values(name)
        except PromptSetError:  # missing in some worlds or of mixed kinds: no sound candidate
            continue
        if not 2 <= len(values) <= max_values:
            continue
        for v in values:
            with contextlib.suppress(TrivialPropositionError):
                out.append(worlds.proposition(f"{name}={v}"))
    return out


@dataclass
class Explanation:
    """One unit against many candidate propositions."""

    rows: list[dict[str, Any]]  # per candidate: name, size, every similarity, radii, D and corr intervals
    prediction_set: list[tuple[str, float]]  # BE prediction set by D
    best: dict[str, str]  # best candidate per similarity
    margins: dict[str, dict[str, Any]]  # per bounded similarity: best, runner-up, margin, 2r, separated
    params: dict[str, Any] = field(default_factory=dict)

    def sentence(self, unit: str = "unit") -> str:
        b = self.best["D"]
        row = next(r for r in self.rows if r["name"] == b)
        m = self.margins.get("iou", {})
        sep = (
            f"; by IoU {'best by a margin larger than 2r' if m.get('separated') else 'not separated by 2r'}"
            if m
            else ""
        )
        return f"{unit} speaks for {b}: D = {row['D']:.2f} [{row['D_lo']:.2f}, {row['D_hi']:.2f}]{sep}"


def explain_unit(
    x: Float[Tensor, " worlds"],
    candidates: Sequence[Proposition],
    q: float = 0.1,
    delta: float = 0.05,
    resamples: int = 200,
    alpha: float = 0.1,
    seed: int = 0,
) -> Explanation:
    """Rank candidate propositions for one unit's reasons vector.

    Args:
        x: the unit's activation in every world.
        candidates: propositions over the same worlds.
        q: the top share of worlds that binarizes the unit (IoU, F1, accuracy, recall, precision).
        delta: failure probability of the uniform bounds.
        resamples: bootstrap resamples of the worlds (plain, not stratified) for the D and corr intervals.
        alpha: interval and prediction-set level.
        seed: the random seed.

    Returns:
        An :class:`Explanation`.
    """
    x = torch.as_tensor(x).double()
    n = x.numel()
    if not candidates:
        raise ValueError("no candidate propositions")
    masks = torch.stack([torch.as_tensor(np.asarray(c.mask)) for c in candidates], 1)  # [N, C]
    T = top_set(x, q)
    # bootstrap over worlds (plain resampling): D and correlation of every candidate in every resample
    C = bootstrap_counts(n, resamples, seed)
    E = torch.exp(x - x.max())[:, None]
    Mf = masks.double()
    n_a, n_c = C @ Mf, C @ (1 - Mf)
    s_a, s_c = C @ (Mf * E), C @ ((1 - Mf) * E)
    Db = 0.5 * (torch.log(s_a) - torch.log(n_a) - torch.log(s_c) + torch.log(n_c))  # -inf/nan when trivial
    Db = torch.where((n_a > 0) & (n_c > 0), Db, torch.nan)
    w = C / n  # resample weights for the correlation
    mx = (w * x).sum(1, keepdim=True)
    my = w @ Mf
    cov = (w * x) @ Mf - mx * my
    vx = (w * x * x).sum(1, keepdim=True) - mx**2
    vy = my - my**2
    corr_b = cov / torch.sqrt(vx * vy).clamp_min(1e-300)
    qs = torch.tensor([alpha / 2, 1 - alpha / 2], dtype=torch.float64)
    D_lo, D_hi = torch.nanquantile(Db, qs, dim=0)
    c_lo, c_hi = torch.nanquantile(corr_b, qs, dim=0)
    winners = [candidates[int(i)].name for i in torch.nan_to_num(Db, nan=-torch.inf).argmax(1)]

    rows: list[dict[str, Any]] = []
    for j, c in enumerate(candidates):
        A = masks[:, j]
        s = similarities(x, A, q)
        r = {f"r_{m}": radius(m, n, int(A.sum()), int(T.sum()), len(candidates), delta) for m in BOUNDED}
        rows.append(
            {
                "name": c.name,
                "size": int(A.sum()),
                **s,
                **r,
                "D_lo": float(D_lo[j]),
                "D_hi": float(D_hi[j]),
                "corr_lo": float(c_lo[j]),
                "corr_hi": float(c_hi[j]),
            }
        )
    best = {m: max(rows, key=lambda r: r[m])["name"] for m in SIMILARITIES}
    margins = {}
    for m in BOUNDED:
        ranked = sorted(rows, key=lambda r: -r[m])
        if len(ranked) > 1:
            top, second = ranked[0], ranked[1]
            two_r = top[f"r_{m}"] + second[f"r_{m}"]
            margins[m] = {
                "best": top["name"],
                "runner_up": second["name"],
                "margin": top[m] - second[m],
                "2r": two_r,
                "separated": top[m] - second[m] > two_r,
            }
    return Explanation(
        rows,
        prediction_set(winners, alpha),
        best,
        margins,
        {
            "q": q,
            "delta": delta,
            "resamples": resamples,
            "alpha": alpha,
            "seed": seed,
            "n_worlds": n,
            "n_candidates": len(candidates),
        },
    )


# ---------------------------------------------------------------------------------------- sanity checks


def perturb(A: Bool[Tensor, " worlds"], kind: str, seed: int) -> Bool[Tensor, " worlds"]:
    """``missing``: half of A's members removed from A; ``extra``: as many non-members added to A (at most
    half of the non-members, so that the perturbed proposition stays non-trivial)."""
    A = torch.as_tensor(A, dtype=torch.bool).clone()
    g = torch.Generator().manual_seed(seed)
    members, others = A.nonzero()[:, 0], (~A).nonzero()[:, 0]
    half = len(members) // 2
    if kind == "missing":
        A[members[torch.randperm(len(members), generator=g)[:half]]] = False
    elif kind == "extra":
        A[others[torch.randperm(len(others), generator=g)[: min(half, len(others) // 2)]]] = True
    else:
        raise ValueError(f"unknown perturbation {kind!r}")
    return A


def sanity_checks(
    X: Float[Tensor, "worlds units"], A: Bool[Tensor, " worlds"], q: float = 0.1, repeats: int = 5, seed: int = 0
) -> dict[str, dict[str, Any]]:
    """For each similarity, the share of (unit, repeat) cases in which it drops under the missing-labels and the
    extra-labels perturbation of A. A sound one drops (share near 1); ``passes`` asks for >= 0.9 on both.

    Args:
        X: the units' reasons vectors [worlds, units].
        A: the proposition they are checked against.
        q: the top share of worlds that binarizes a unit.
        repeats: perturbations per unit.
        seed: the random seed.

    Returns:
        ``{similarity: {"missing": share, "extra": share, "passes": bool}}``.
    """
    X = torch.as_tensor(X).double().reshape(X.shape[0], -1)
    A = torch.as_tensor(A, dtype=torch.bool)
    drops = {m: {"missing": 0, "extra": 0} for m in SIMILARITIES}
    total = 0
    for u in range(X.shape[1]):
        base = similarities(X[:, u], A, q)
        for r in range(repeats):
            total += 1
            for kind in ("missing", "extra"):
                s = similarities(X[:, u], perturb(A, kind, seed + 1000 * u + r), q)
                for m in SIMILARITIES:
                    drops[m][kind] += s[m] < base[m]
    out = {}
    for m in SIMILARITIES:
        miss, extra = drops[m]["missing"] / total, drops[m]["extra"] / total
        out[m] = {"missing": miss, "extra": extra, "passes": miss >= 0.9 and extra >= 0.9}
    return out


def format_sanity(table: dict[str, dict[str, Any]]) -> str:
    """The sanity-check table as text, one row per similarity."""
    lines = [f"{'similarity':>10} {'missing-labels drop':>20} {'extra-labels drop':>18} {'verdict':>8}"]
    for m, r in table.items():
        lines.append(f"{m:>10} {r['missing']:>20.2f} {r['extra']:>18.2f} {'pass' if r['passes'] else 'FAIL':>8}")
    return "\n".join(lines)
