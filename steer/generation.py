"""Decoding: :class:`GenerationConfig` (how continuations are sampled) and :func:`generate_text`, which continues
prompts under whatever hooks are on the model.

Generation goes through TransformerBridge.generate on left-padded token ids with their attention mask (the
bridge derives position ids from it), so a batch gives the same rows as one prompt at a time.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, overload

import torch

from steer.configs import GenerationConfig, with_overrides

if TYPE_CHECKING:
    from steer.models import Model


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
