"""Decoding: :class:`GenerationConfig` (how continuations are sampled) and :func:`generate_text`, which continues
prompts under whatever hooks are on the model.

Generation goes through TransformerBridge.generate on left-padded token ids with their attention mask (the
bridge derives position ids from it), so a batch gives the same rows as one prompt at a time.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields, replace
from typing import TYPE_CHECKING, Any, overload

import torch

from steer.options import option

if TYPE_CHECKING:
    from steer.models import Model


@dataclass(frozen=True)
class GenerationConfig:
    """How continuations are decoded.

    ``seed`` makes sampling reproducible (``torch.manual_seed`` before generating); ``do_sample=False`` is greedy;
    ``chat=True`` wraps each prompt in the model's chat template as a user turn.
    """

    max_new_tokens: int = option(40, "new tokens per continuation")
    seed: int | None = option(0, "sampling seed (torch.manual_seed before generating)")
    do_sample: bool = option(
        True, "sample (False: greedy decoding)", flag="--greedy", switch_help="greedy decoding instead of sampling"
    )
    temperature: float = option(1.0, "sampling temperature")
    top_p: float | None = option(0.9, "nucleus sampling: keep the smallest set of tokens with this probability")
    chat: bool = option(False, "wrap each prompt in the model's chat template as a user turn")
    use_past_kv_cache: bool = option(True, "reuse keys and values across generation steps")

    def __post_init__(self) -> None:
        def is_int(v: object) -> bool:
            return isinstance(v, int) and not isinstance(v, bool)

        if not is_int(self.max_new_tokens) or self.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be a positive integer, got {self.max_new_tokens!r}")
        if self.seed is not None and (not is_int(self.seed) or not 0 <= self.seed < 2**63):
            raise ValueError(f"seed must be an integer from 0 to 2**63 - 1 or None, got {self.seed!r}")
        for name in ("do_sample", "chat", "use_past_kv_cache"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name} must be True or False, got {getattr(self, name)!r}")
        t = self.temperature
        if isinstance(t, bool) or not isinstance(t, (int, float)) or not math.isfinite(t) or not 0 < t <= 100:
            raise ValueError(f"temperature must be a number above 0 and at most 100, got {t!r}")
        p = self.top_p
        if p is not None and (isinstance(p, bool) or not isinstance(p, (int, float)) or not 0 < p <= 1):
            raise ValueError(f"top_p must be a number in (0, 1] or None, got {p!r}")


def with_overrides(config: Any, overrides: Mapping[str, Any], what: str) -> Any:
    names = {f.name for f in fields(config)}
    unknown = sorted(set(overrides) - names)
    if unknown:
        raise TypeError(f"unknown {what} option(s) {unknown}; known: {', '.join(sorted(names))}")
    return replace(config, **overrides)


def format_prompts(model: Model, prompts: Sequence[str], chat: bool) -> list[str]:
    """The prompts as the model sees them: as they are, or wrapped in its chat template as user turns."""
    if not chat:
        return list(prompts)
    tok = model.tokenizer
    if not getattr(tok, "chat_template", None):
        raise ValueError(f"model {model.name} has no chat template; call without chat=True")
    return [
        tok.apply_chat_template([{"role": "user", "content": p}], add_generation_prompt=True, tokenize=False)
        for p in prompts
    ]


@overload
def generate_text(model: Model, prompts: str, config: GenerationConfig | None = None, **overrides: Any) -> str: ...


@overload
def generate_text(
    model: Model, prompts: Sequence[str], config: GenerationConfig | None = None, **overrides: Any
) -> list[str]: ...


@torch.inference_mode()
def generate_text(
    model: Model, prompts: str | Sequence[str], config: GenerationConfig | None = None, **overrides: Any
) -> str | list[str]:
    """Continuations of ``prompts`` (the new text only), batched with left padding, under whatever hooks are on.

    Args:
        model: the model.
        prompts: one prompt (returns one string) or several (returns a list).
        config: decoding settings (default :class:`GenerationConfig`).
        **overrides: fields of :class:`GenerationConfig` to change (``max_new_tokens=30, seed=1``...).

    Returns:
        The continuations.
    """
    from steer.models import Model

    if not isinstance(model, Model):
        raise TypeError(f"model must be a steer Model (steer.load_model(...)), got {type(model).__name__}")
    if config is not None and not isinstance(config, GenerationConfig):
        raise TypeError(f"config must be a steer.GenerationConfig, got {type(config).__name__}")
    if not isinstance(prompts, (str, list, tuple)):
        raise TypeError(f"prompts must be a string or a list of strings, got {type(prompts).__name__}")
    cfg = with_overrides(config or GenerationConfig(), overrides, "generation")
    single = isinstance(prompts, str)
    given = [prompts] if isinstance(prompts, str) else list(prompts)
    empty = [i for i, p in enumerate(given) if not isinstance(p, str) or not p.strip()]
    if empty:
        raise ValueError(f"prompt {empty[0]} is empty or not a string ({given[empty[0]]!r}); give text to continue")
    texts = format_prompts(model, given, cfg.chat)
    if not texts:
        return []
    ids, mask = model.tokenize(texts, add_special_tokens=not cfg.chat)
    model.check_lengths(mask.sum(1).tolist(), extra=cfg.max_new_tokens)
    if cfg.seed is not None:
        torch.manual_seed(cfg.seed)
    out = model.bridge.generate(
        ids,
        attention_mask=mask,
        max_new_tokens=cfg.max_new_tokens,
        do_sample=cfg.do_sample,
        temperature=cfg.temperature,
        top_p=cfg.top_p if cfg.do_sample else None,
        use_past_kv_cache=cfg.use_past_kv_cache,
        verbose=False,
        return_type="tokens",
        stop_at_eos=True,
    )
    new = out[:, ids.shape[1] :]
    eos = model.tokenizer.eos_token_id
    result = []
    for row in new.tolist():
        if eos is not None and eos in row:
            row = row[: row.index(eos)]
        result.append(model.tokenizer.decode(row, skip_special_tokens=True))
    return result[0] if single else result
