"""Scores of generated text: sentiment (VADER, independent of the model under test), fluency (perplexity of a
continuation under the *unsteered* model) and diversity (distinct-n)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from functools import lru_cache
from typing import Any

import torch


@lru_cache(maxsize=1)
def _vader():
    from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

    return SentimentIntensityAnalyzer()


def vader_compound(texts: Sequence[str]) -> list[float]:
    """VADER compound score in [-1, 1] of each text (0 for empty text)."""
    return [_vader().polarity_scores(t)["compound"] if t.strip() else 0.0 for t in texts]


def distinct_n(texts: Sequence[str], n: int) -> float:
    """Share of distinct word n-grams among all word n-grams of the texts (0 when there are none)."""
    grams = [tuple(ws[i:i + n]) for t in texts for ws in [t.split()] for i in range(len(ws) - n + 1)]
    return len(set(grams)) / len(grams) if grams else 0.0


@torch.inference_mode()
def continuation_nll(model: Any, prompts: Sequence[str], continuations: Sequence[str],
                     batch_size: int = 16) -> list[tuple[float, int]]:
    """(summed negative log-likelihood, token count) of each continuation given its prompt, under the model as
    it is (call it outside any steering context to score fluency under the unsteered model)."""
    tok = model.tokenizer
    out = []
    for b in range(0, len(prompts), batch_size):
        ps, cs = prompts[b:b + batch_size], continuations[b:b + batch_size]
        p_ids = [tok(p).input_ids for p in ps]
        c_ids = [tok(c, add_special_tokens=False).input_ids for c in cs]
        seqs = [p + c for p, c in zip(p_ids, c_ids)]
        width = max(len(s) for s in seqs)
        pad = tok.pad_token_id
        ids = torch.tensor([[pad] * (width - len(s)) + s for s in seqs])
        mask = torch.tensor([[0] * (width - len(s)) + [1] * len(s) for s in seqs])
        logits = model.bridge(ids, attention_mask=mask, return_type="logits").float()
        logp = torch.log_softmax(logits[:, :-1], -1).gather(-1, ids[:, 1:, None])[..., 0]
        for r, (p, c) in enumerate(zip(p_ids, c_ids)):
            if not c:
                out.append((0.0, 0))
                continue
            end = width - 1
            out.append((float(-logp[r, end - len(c):end].sum()), len(c)))
    return out


def perplexity(model: Any, prompts: Sequence[str], continuations: Sequence[str]) -> float:
    """Token-weighted perplexity of the continuations given their prompts (inf when there are no tokens)."""
    pairs = continuation_nll(model, prompts, continuations)
    nll, count = sum(p[0] for p in pairs), sum(p[1] for p in pairs)
    return math.exp(nll / count) if count else float("inf")
