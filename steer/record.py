"""Recording: worlds x model x site x token reduction -> the activation matrix X[worlds, layers, units].

Data flow: prompt set -> worlds -> **recorded activations** -> strengths -> selected units -> intervention ->
steered generation. This module runs the model over the worlds' prompts and keeps one vector per world and layer;
the result is an :class:`steer.activations.Activations` (its shard files are defined there), the sites and layers
it reads are named in :mod:`steer.sites`. The columns of X are the units' reasons vectors, its rows the worlds'
reasons characters (docs/method.md §2).

Token reduction (``reduce``): ``last`` (the prompt's last token; the paper) or ``mean`` (the mean over the world's
own text: the tokens of the template's ``{text}`` field, never the template's prefix or suffix or special tokens;
see :mod:`steer.positions`). Hooks keep only the reduced vector per world, never the full [batch, pos, units]
tensor; the forward runs without gradients and stops after the deepest requested layer (no unembedding).
Activations are stored as float32 whatever the model dtype.

Shared-prefix reuse (the default): templated worlds share the template's text before ``{text}`` (the paper's
two-shot template puts ~45 tokens there, more than most SST-2 sentences have). Per shard, the token prefix all
its worlds share (cut before every text span) runs once, batch 1, and its KV cache is expanded over each batch;
the batch runs only the worlds' own tokens on top of it, right-padded (causal attention: no real token sees a
pad), sorted by length. Activations equal the full forward's (tested to 1e-5 in fp32). Without a shared
prefix (``{label}: {text}``) the full prompts run, left-padded with an attention mask (without one the bridge
computes wrong activations, see the notes), and it says so once.

With ``out=DIR`` the worlds are processed in shards of ``shard_size`` and each shard is written to disk as it
completes (safetensors), so large N never sits in memory; the directory appears under its final name only
when the whole recording is done. Until then the shards live in a work directory beside it,
``.DIR.work-<key>``, keyed by everything the recording depends on (model identity and dtype, the worlds' hash
and template, site, reduce, layers, batch and shard size). A recording that is interrupted (Ctrl-C, SIGTERM,
a crash, a full disk, SIGKILL) keeps its finished shards there, and running the same recording again continues
from the first unfinished shard, with the same result as an uninterrupted run. A shard counts as finished only
when its file is complete (written to a temporary name, then renamed) and its record (size, sha256, rows),
written after it, matches the file.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import Tensor
from tqdm.auto import tqdm

from steer.activations import Activations, _finished_shard, _write_shard
from steer.artifacts import (
    write_json_atomic,
)
from steer.positions import shared_prefix_length, text_token_spans
from steer.sites import REDUCTIONS, hook_name, resolve_layers, site_width
from steer.stream import WorldStream
from steer.workdir import finish_work, recording_extra, work_dir, work_key

if TYPE_CHECKING:
    from steer.models import Model
    from steer.worlds import Worlds


def record(
    model: Model,
    worlds: Worlds | WorldStream,
    site: str = "mlp",
    layers: int | Sequence[int] | None = None,
    reduce: str = "last",
    batch_size: int = 16,
    out: str | os.PathLike | None = None,
    shard_size: int = 1024,
    progress: bool = True,
    reuse_prefix: bool = True,
    extra: dict[str, Any] | None = None,
) -> Activations:
    """Record the activations of ``worlds`` at ``site`` for ``layers``, one vector per world.

    Args:
        model: a loaded :class:`steer.Model`.
        worlds: the worlds whose prompts are run: :class:`Worlds` in memory, or a :class:`steer.WorldStream` read
            shard by shard (with ``out``, never all in memory).
        site: ``mlp`` (MLP neurons) or ``resid`` (residual stream).
        layers: layer indices (negative count from the end); default all.
        reduce: how a prompt's tokens become one vector: ``last`` (the prompt's last token) or ``mean`` (the mean
            over the world's own text, the tokens of the template's ``{text}`` field).
        batch_size: prompts per forward pass.
        out: a directory to stream the shards to (written atomically); None keeps X in memory.
        shard_size: worlds per shard.
        progress: show a progress bar.
        reuse_prefix: run the token prefix the worlds of a shard share (the template's text before ``{text}``)
            once and reuse its KV cache (same activations, less work); without a shared prefix the full prompts
            run, and it says so once.
        extra: more entries for the manifest's ``extra`` (e.g. the cache key of a cached recording).

    Returns:
        :class:`Activations` (float32), on disk when ``out`` is given.
    """
    from steer.models import Model
    from steer.worlds import Worlds

    if not isinstance(model, Model):
        raise TypeError(f"model must be a steer Model (steer.load_model(...)), got {type(model).__name__}")
    if not isinstance(worlds, (Worlds, WorldStream)):
        raise TypeError(f"worlds must be steer.Worlds or a steer.WorldStream, got {type(worlds).__name__}")
    if not isinstance(site, str) or not isinstance(reduce, str):
        raise TypeError(f"site and reduce must be strings, got {site!r} and {reduce!r}")
    if reduce not in REDUCTIONS:
        raise ValueError(f"unknown reduce {reduce!r}; use one of {', '.join(REDUCTIONS)}")
    hook_name(site, 0)
    for name, v in (("batch_size", batch_size), ("shard_size", shard_size)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ValueError(f"{name} must be a positive integer, got {v!r}")
    if out is not None and (not isinstance(out, (str, os.PathLike)) or not str(out)):
        raise TypeError(f"out must be a folder path or None, got {out!r}")
    layers = resolve_layers(layers, model.n_layers)
    width = site_width(model, site)
    said = False

    def run(tmp_dir: Path | None) -> Activations:
        nonlocal said
        shards, rows, files = [], [], []
        total = worlds.known_length if isinstance(worlds, WorldStream) else len(worlds)
        bar = tqdm(total=total, desc=f"recording {site} x {len(layers)} layers", unit="world", disable=not progress)
        reused = start = 0
        tokens_all = None
        if not isinstance(worlds, WorldStream):  # in memory: the context check before any work
            tokens_all = [model.encode(p) for p in worlds.prompts]
            model.check_lengths([len(t) for t in tokens_all], what="world")
        for s, (prompts, chars) in enumerate(shard_inputs(worlds, shard_size)):
            m = len(prompts)
            done = None if tmp_dir is None else _finished_shard(tmp_dir, s, m)
            if done is not None:
                files.append(done)
                rows.append(m)
                bar.update(m)
                reused += 1
                start += m
                continue
            if reused and s == reused:
                print(
                    f"steer: resuming the recording in {tmp_dir}: {reused} shard(s) were already done", file=sys.stderr
                )
            tokens = None if tokens_all is None else tokens_all[start : start + m]
            X, note = record_prompts(
                model, prompts, chars, site, layers, reduce, batch_size, reuse_prefix, bar, start, tokens
            )
            if note and not said:
                said = True
                print(f"steer: {note}", file=sys.stderr)
            if tmp_dir is None:
                shards.append(X)
            else:
                files.append(_write_shard(tmp_dir, s, X, mark_done=True))
            rows.append(m)
            start += m
        bar.close()
        acts = Activations(
            site,
            reduce,
            layers,
            dict(model.provenance),
            dict(worlds.provenance),
            rows,
            shards if tmp_dir is None else None,
            tmp_dir,
            {**recording_extra(batch_size, reuse_prefix, model.dtype, width), **(extra or {})},
            None if tmp_dir is None else files,
        )
        if tmp_dir is not None:
            write_json_atomic(tmp_dir / "manifest.json", acts.manifest())
        return acts

    if out is None:
        return run(None)
    work = work_dir(
        out, work_key(model.identity, model.dtype, worlds, site, reduce, layers, batch_size, shard_size, reuse_prefix)
    )
    run(work)  # on any exception the finished shards stay in `work` for the next run
    return finish_work(work, Path(out))


# -------------------------------------------------------------------------------- pieces shared with the engines


def shard_inputs(worlds: Worlds | WorldStream, shard_size: int) -> Iterator[tuple[list[str], list[tuple[int, int]]]]:
    """The worlds in shards of ``shard_size``: each shard's prompts and their text spans (character offsets)."""
    if isinstance(worlds, WorldStream):
        for part in worlds.shards(shard_size):
            yield part.prompts, part.text_char_spans()
        return
    chars = worlds.text_char_spans()
    for a in range(0, len(worlds), shard_size):
        yield worlds.prompts[a : a + shard_size], chars[a : a + shard_size]


def record_prompts(
    model: Model,
    prompts: list[str],
    chars: list[tuple[int, int]],
    site: str,
    layers: list[int],
    reduce: str,
    batch_size: int,
    reuse_prefix: bool,
    bar: tqdm[Any] | None = None,
    start: int = 0,
    tokens: list[list[int]] | None = None,
) -> tuple[Tensor, str | None]:
    """X of one shard of prompts (``start``: the index of its first world, for messages), and a note to show once
    when the shard had a template prefix but no token prefix to share."""
    if tokens is None:
        tokens = [model.encode(p) for p in prompts]
        model.check_lengths([len(t) for t in tokens], what="world", offset=start)
    spans = _text_spans(model, prompts, chars, [len(t) for t in tokens])
    prefix, note = 0, None
    if reuse_prefix:
        limit = int(min(spans[:, 0].min(), min(len(t) for t in tokens) - 1))
        prefix = shared_prefix_length(tokens, limit)
        if prefix == 0 and min(a for a, _ in chars) > 0:
            note = "the worlds share no token prefix before their text, so the full prompts run (no prefix reuse)"
    bar = bar if bar is not None else tqdm(disable=True)
    X = _record_shard(model, tokens, spans, site, layers, reduce, batch_size, bar, prefix)
    bad = ~torch.isfinite(X).reshape(len(prompts), -1).all(1)
    if bad.any():
        worst = (start + np.nonzero(bad.numpy())[0][:10]).tolist()
        raise ValueError(f"NaN/inf activations in world(s) {worst} at site {site}")
    return X, note


def _text_spans(model: Model, prompts: list[str], chars: list[tuple[int, int]], lengths: list[int]) -> np.ndarray:
    """Each world's text span [start, end) in token indices; the whole prompt when the tokenizer gives no offsets
    (then ``mean`` covers every token, the prefix is never shared, and it says so)."""
    spans = text_token_spans(model.tokenizer, prompts, chars, lengths)
    if spans is None:
        print(
            "steer: the tokenizer gives no token offsets: reduce='mean' averages over the whole prompt and the "
            "prefix is not reused",
            file=sys.stderr,
        )
        spans = np.stack([np.zeros(len(lengths), dtype=np.int64), np.array(lengths)], 1)
    return spans


class _DeepestLayerDone(Exception):
    """Raised by the hook of the deepest requested layer: nothing after it is needed (no unembedding).

    TransformerLens' own ``stop_at_layer`` stops *before* a block, so it cannot stop after the last block."""


def _stop_hook(act: Tensor, hook: object) -> Tensor:
    raise _DeepestLayerDone


@torch.inference_mode()
def _prefix_cache(model: Model, prefix: list[int], site: str, deepest: int) -> Any:
    """The KV cache of the shared prefix (batch 1), filled up to the deepest requested layer."""
    from transformers import DynamicCache

    cache = DynamicCache()
    ids = torch.tensor([prefix], dtype=torch.long, device=model.device)
    with contextlib.suppress(_DeepestLayerDone):
        model.bridge.run_with_hooks(
            ids,
            fwd_hooks=[(hook_name(site, deepest), _stop_hook)],
            past_key_values=cache,
            use_cache=True,
            return_type=None,
        )
    return cache


def _expand_cache(cache: Any, batch: int) -> Any:
    """A fresh cache holding the prefix for ``batch`` rows (views; the forward appends to copies)."""
    from transformers import DynamicCache

    return DynamicCache(
        ddp_cache_data=[
            (layer.keys.expand(batch, -1, -1, -1), layer.values.expand(batch, -1, -1, -1))
            for layer in cache.layers
            if layer.keys is not None and layer.keys.numel()
        ]
    )


@torch.inference_mode()
def _record_shard(
    model: Model,
    tokens: list[list[int]],
    spans: np.ndarray,
    site: str,
    layers: list[int],
    reduce: str,
    batch_size: int,
    bar: tqdm[Any],
    prefix: int = 0,
) -> Tensor:
    """X of one shard of worlds. ``spans`` are the worlds' text spans [start, end) in token indices.

    With ``prefix`` > 0 (the number of leading tokens every world of the shard shares), the prefix runs once and
    its KV cache is reused: each batch runs only its worlds' own tokens, right-padded, after the cached prefix.
    Else whole prompts run, left-padded with an attention mask."""
    width = site_width(model, site)
    lengths = np.array([len(t) for t in tokens])
    X = torch.empty(len(tokens), len(layers), width, dtype=torch.float32)
    order = np.argsort(lengths, kind="stable")  # similar lengths together: less padding
    cache = _prefix_cache(model, tokens[0][:prefix], site, layers[-1]) if prefix else None
    pad = model.tokenizer.pad_token_id
    for b in range(0, len(tokens), batch_size):
        rows = order[b : b + batch_size]
        own = [tokens[i][prefix:] for i in rows]
        n = np.array([len(t) for t in own])
        width_b = int(n.max())
        kwargs: dict[str, Any] = {}
        if cache is not None:  # right padding after the cached prefix: positions follow on from the prefix
            ids = torch.tensor([t + [pad] * (width_b - len(t)) for t in own], dtype=torch.long)
            mask = torch.tensor([[1] * (prefix + len(t)) + [0] * (width_b - len(t)) for t in own], dtype=torch.long)
            start = np.zeros(len(rows), dtype=np.int64)
            kwargs["past_key_values"] = _expand_cache(cache, len(rows))
        else:
            ids, mask = model.pad(own)
            start = width_b - n  # left padding
        ids, mask = ids.to(model.device), mask.to(model.device)
        last = torch.as_tensor(start + n - 1, device=model.device)
        lo = torch.as_tensor(start + spans[rows, 0] - prefix, device=model.device)
        hi = torch.as_tensor(start + spans[rows, 1] - prefix, device=model.device)
        pos = torch.arange(width_b, device=model.device)
        in_text = ((pos >= lo[:, None]) & (pos < hi[:, None]))[:, :, None]
        count = in_text.sum(1).float()
        got: dict[int, Tensor] = {}

        def keep(
            j: int, got: dict[int, Tensor] = got, in_text: Tensor = in_text, count: Tensor = count, last: Tensor = last
        ) -> Callable[[Tensor, object], Tensor]:
            def fn(act: Tensor, hook: object) -> Tensor:
                if reduce == "last":
                    v = act[torch.arange(act.shape[0], device=act.device), last].float()
                else:  # the mean over the world's text span; padding and template tokens are never in it
                    v = torch.where(in_text, act.float(), 0.0).sum(1) / count
                got[j] = v.cpu()
                if j == len(layers) - 1:
                    raise _DeepestLayerDone
                return act

            return fn

        hooks = [(hook_name(site, layer), keep(j)) for j, layer in enumerate(layers)]
        with contextlib.suppress(_DeepestLayerDone):
            model.bridge.run_with_hooks(ids, fwd_hooks=hooks, attention_mask=mask, return_type=None, **kwargs)
        X[torch.as_tensor(rows)] = torch.stack([got[j] for j in range(len(layers))], 1)
        bar.update(len(rows))
    return X
