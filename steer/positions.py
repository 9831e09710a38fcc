"""Token positions: which tokens of a prompt are the world's own text, and which tokens all prompts share.

A world's prompt is a template around its text (``Input: {text}\\nClassify ...:``). Two facts about its tokens
drive recording (:mod:`steer.record`):

- the *text span*: the tokens that overlap the characters of the ``{text}`` field (token offsets from the
  tokenizer). ``reduce="mean"`` averages over these tokens only; the template's prefix and suffix, and special
  tokens the tokenizer adds, are never in the mean.
- the *shared prefix*: the longest run of leading tokens every prompt of a group has in common, cut so that it
  ends before every world's text span and before every prompt's last token. Its activations (and KV cache) are
  the same in every prompt, so they are computed once and each prompt runs only its own tokens on top of them.

Pure tokenization logic: no model code here.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def text_token_spans(
    tokenizer: object, prompts: Sequence[str], char_spans: Sequence[tuple[int, int]], lengths: Sequence[int]
) -> np.ndarray | None:
    """The [start, end) token indices of each prompt's text span, as an int array [N, 2].

    Args:
        tokenizer: a fast Hugging Face tokenizer (one that returns offsets).
        prompts: the prompts, tokenized with the tokenizer's special tokens (as :meth:`steer.Model.encode` does).
        char_spans: each prompt's text span as character offsets [start, end).
        lengths: each prompt's token count (checked against the offsets' count).

    Returns:
        The spans, or None when the tokenizer gives no offsets (a slow tokenizer).
    """
    spans = np.zeros((len(prompts), 2), dtype=np.int64)
    for lo in range(0, len(prompts), 512):
        chunk = list(prompts[lo : lo + 512])
        try:
            offsets = tokenizer(chunk, return_offsets_mapping=True)["offset_mapping"]  # type: ignore[operator]
        except (NotImplementedError, TypeError, KeyError):
            return None
        for j, offs in enumerate(offsets):
            i = lo + j
            if len(offs) != lengths[i]:
                return None
            a, b = char_spans[i]
            # a token belongs to the text when it covers one of its characters; special tokens cover none
            inside = [t for t, (s, e) in enumerate(offs) if e > s and s < b and e > a]
            if not inside:
                raise ValueError(f"world {i}: no token of its prompt covers its text (characters {a}..{b})")
            spans[i] = inside[0], inside[-1] + 1
    return spans


def shared_prefix_length(tokens: Sequence[Sequence[int]], limit: int) -> int:
    """The number of leading tokens all sequences share, at most ``limit``."""
    first = tokens[0]
    n = min(limit, *(len(t) for t in tokens))
    for t in tokens[1:]:
        m = 0
        while m < n and t[m] == first[m]:
            m += 1
        n = m
        if n == 0:
            break
    return max(n, 0)
