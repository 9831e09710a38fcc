"""Scores of generated text: sentiment (VADER, independent of the model under test), fluency (perplexity of a
continuation under the *unsteered* model) and diversity (distinct-n)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from functools import lru_cache
from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:
    from steer.models import Model


@lru_cache(maxsize=1)
def _vader() -> Any:
    from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

    return SentimentIntensityAnalyzer()


def vader_compound(texts: Sequence[str]) -> list[float]:
    """VADER compound score in [-1, 1] of each text (0 for empty text)."""
    return [_vader().polarity_scores(t)["compound"] if t.strip() else 0.0 for t in texts]


def distinct_n(texts: Sequence[str], n: int) -> float:
    """Share of distinct word n-grams among all word n-grams of the texts (0 when there are none)."""
    grams = [tuple(ws[i : i + n]) for t in texts for ws in [t.split()] for i in range(len(ws) - n + 1)]
    return len(set(grams)) / len(grams) if grams else 0.0


@torch.inference_mode()
def continuation_nll(
    model: Model, prompts: Sequence[str], continuations: Sequence[str], batch_size: int = 16
) -> list[tuple[float, int]]:
    """(summed negative log-likelihood, token count) of each continuation given its prompt, under the model as
    it is (call it outside any steering context to score fluency under the unsteered model)."""
    out = []
    for b in range(0, len(prompts), batch_size):
        ps, cs = prompts[b : b + batch_size], continuations[b : b + batch_size]
        p_ids = [model.encode(p) for p in ps]
        c_ids = [model.encode(c, add_special_tokens=False) for c in cs]
        ids, mask = model.pad([p + c for p, c in zip(p_ids, c_ids)])
        width = ids.shape[1]
        logits = model.bridge(ids, attention_mask=mask, return_type="logits").float()
        logp = torch.log_softmax(logits[:, :-1], -1).gather(-1, ids[:, 1:, None])[..., 0]
        for r, c in enumerate(c_ids):
            if not c:
                out.append((0.0, 0))
                continue
            end = width - 1
            out.append((float(-logp[r, end - len(c) : end].sum()), len(c)))
    return out


def perplexity(model: Model, prompts: Sequence[str], continuations: Sequence[str]) -> float:
    """Token-weighted perplexity of continuations under the model as it is (call it outside any steering).

    Args:
        model: the model.
        prompts: the prompts the continuations follow.
        continuations: the generated texts, aligned with ``prompts``.

    Returns:
        exp(mean negative log-likelihood per continuation token); inf when there are no tokens.
    """
    pairs = continuation_nll(model, prompts, continuations, batch_size=64)
    nll, count = sum(p[0] for p in pairs), sum(p[1] for p in pairs)
    return math.exp(nll / count) if count else float("inf")


def wilson_interval(successes: int, n: int, z: float = 1.959964) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion.

    Args:
        successes: the count of successes.
        n: the count of trials.
        z: the normal quantile (default: 95%).

    Returns:
        (lo, hi), always containing successes / n; (0, 1) when n = 0.
    """
    if n < 0 or not 0 <= successes <= max(n, 0):
        raise ValueError(f"need 0 <= successes <= n, got {successes} of {n}")
    if n == 0:
        return 0.0, 1.0
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    # the interval always contains p; min/max guard against rounding at p = 0 or 1
    return max(0.0, min(p, centre - half)), min(1.0, max(p, centre + half))


def rate(successes: int, n: int) -> dict[str, Any]:
    """A proportion with its Wilson 95% interval, as a JSON-ready dict (rate None when n = 0)."""
    lo, hi = wilson_interval(successes, n)
    return {"k": int(successes), "n": int(n), "rate": successes / n if n else None, "lo": lo, "hi": hi}


def format_rate(r: dict[str, Any]) -> str:
    """A rate from :func:`rate` as ``61.8% [57.5%, 66.0%]``."""
    if not r["n"]:
        return "n/a (no items)"
    return f"{r['rate']:.1%} [{r['lo']:.1%}, {r['hi']:.1%}]"


def kl_divergence(p_logits: torch.Tensor, q_logits: torch.Tensor) -> torch.Tensor:
    """KL(P || Q) in nats per row, for distributions given as logits over the last axis."""
    lp, lq = torch.log_softmax(p_logits.double(), -1), torch.log_softmax(q_logits.double(), -1)
    return (lp.exp() * (lp - lq)).sum(-1)


def silhouette_score(X: torch.Tensor, labels: torch.Tensor) -> float:
    """Mean silhouette (Euclidean) of points X [n, d] clustered by ``labels`` [n]: for each point
    (b - a) / max(a, b), a = mean distance to its own cluster's other points, b = the smallest mean distance to
    another cluster; a point alone in its cluster scores 0. In [-1, 1]; higher = tighter, better separated.
    """
    X = torch.as_tensor(X, dtype=torch.float64).reshape(len(X), -1)
    labels = torch.as_tensor(labels)
    classes = labels.unique()
    if len(classes) < 2 or len(classes) >= len(X):
        raise ValueError(f"silhouette needs 2 <= clusters < points, got {len(classes)} for {len(X)} points")
    dist = torch.cdist(X, X)
    onehot = (labels[:, None] == classes[None, :]).to(torch.float64)  # [n, c]
    sizes = onehot.sum(0)
    sums = dist @ onehot  # summed distance of every point to every cluster
    own = onehot.argmax(1)
    own_size = sizes[own]
    a = sums[torch.arange(len(X)), own] / (own_size - 1).clamp_min(1)
    mean_other = sums / sizes[None, :]
    mean_other[torch.arange(len(X)), own] = torch.inf
    b = mean_other.min(1).values
    s = torch.where(own_size > 1, (b - a) / torch.maximum(a, b).clamp_min(1e-300), torch.zeros_like(a))
    return float(s.mean())


def pca(X: torch.Tensor, n_components: int = 2) -> tuple[torch.Tensor, torch.Tensor]:
    """Principal components of the rows of X [n, d]: (coordinates [n, n_components], explained variance share
    of each component)."""
    X = torch.as_tensor(X, dtype=torch.float64).reshape(len(X), -1)
    Xc = X - X.mean(0)
    U, S, _ = torch.linalg.svd(Xc, full_matrices=False)
    k = min(n_components, S.numel())
    var = S**2
    return U[:, :k] * S[:k], var[:k] / var.sum().clamp_min(1e-300)


def fairness_gaps(pred: torch.Tensor, y: torch.Tensor, group: torch.Tensor) -> dict[str, float]:
    """Group fairness of binary predictions: ``dp`` (demographic-parity difference, |P(pred=1 | g=1) -
    P(pred=1 | g=0)|), ``eo`` (equalised-odds difference, the larger of the true- and false-positive-rate gaps)
    and the rates behind them."""
    pred, y, group = (torch.as_tensor(t).bool() for t in (pred, y, group))

    def share(mask: torch.Tensor) -> float:
        if not mask.any():
            raise ValueError("a group has no items of a needed kind (positive or negative outcome)")
        return float(pred[mask].float().mean())

    pos = {g: share(group == g) for g in (True, False)}
    tpr = {g: share((group == g) & y) for g in (True, False)}
    fpr = {g: share((group == g) & ~y) for g in (True, False)}
    return {
        "dp": abs(pos[True] - pos[False]),
        "eo": max(abs(tpr[True] - tpr[False]), abs(fpr[True] - fpr[False])),
        "positive_rate_privileged": pos[True],
        "positive_rate_unprivileged": pos[False],
        "tpr_gap": abs(tpr[True] - tpr[False]),
        "fpr_gap": abs(fpr[True] - fpr[False]),
    }
