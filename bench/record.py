"""Benchmark: steer.record time over a plain HF forward of the same batches and layers; peak extra memory.

The baseline is the fastest plain-PyTorch way to get the same numbers: the HF model (no TransformerLens),
torch forward hooks on the same layers that keep only the read position, the same length-sorted left-padded
batches, and the forward stopped after the deepest requested layer (an exception raised in its hook).
Both run under inference mode on the same worlds; each is timed ``--repeats`` times, alternating, and the
best time is kept. Peak extra memory is the peak resident set size above the level before the run, sampled
every 5 ms. Prints ratios measured in this one run.

    python bench/record.py                                  # the bundled SmolLM2-135M-Instruct
    python bench/record.py --model "$(../shared/tools/get-qwen-gguf)" --n 256
"""

from __future__ import annotations

import argparse
import gc
import os
import time

import numpy as np
import torch

from common import PeakRSS

from steer import DEFAULT_PROMPT_SET, Worlds, load_model, parse_layers, record


class _Stop(Exception):
    pass


@torch.inference_mode()
def plain_hf(model, prompts, layers, site, batch_size):
    """The baseline: plain HF forward with torch hooks, last token, early stop after the deepest layer."""
    hf = model.bridge.original_model
    lengths = np.array([len(i) for i in model.tokenizer(prompts)["input_ids"]])
    order = np.argsort(lengths, kind="stable")
    out = torch.empty(len(prompts), len(layers), model.d_mlp if site == "mlp" else model.d_model)
    got = {}
    handles = []
    for j, layer in enumerate(layers):
        block = hf.model.layers[layer]
        last = layer == layers[-1]
        if site == "mlp":
            def pre(mod, args, j=j, last=last):
                got[j] = args[0][:, -1].float()
            handles.append(block.mlp.down_proj.register_forward_pre_hook(pre))
            if last:
                def stop(mod, args, out):
                    raise _Stop
                handles.append(block.mlp.register_forward_hook(stop))
        else:
            def post(mod, args, o, j=j, last=last):
                got[j] = (o[0] if isinstance(o, tuple) else o)[:, -1].float()
                if last:
                    raise _Stop
            handles.append(block.register_forward_hook(post))
    try:
        for b in range(0, len(prompts), batch_size):
            rows = order[b:b + batch_size]
            ids, mask = model.tokenize([prompts[i] for i in rows])
            try:
                hf.model(input_ids=ids, attention_mask=mask)
            except _Stop:
                pass
            out[torch.as_tensor(rows)] = torch.stack([got[j] for j in range(len(layers))], 1)
    finally:
        for h in handles:
            h.remove()
    return out


def timed(fn):
    gc.collect()
    with PeakRSS() as mem:
        t = time.perf_counter()
        result = fn()
        dt = time.perf_counter() - t
    return dt, mem.extra_mb, result


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="bundled")
    ap.add_argument("--worlds", default=str(DEFAULT_PROMPT_SET))
    ap.add_argument("--text-field", default=None)
    ap.add_argument("--template", default="classify-2shot")
    ap.add_argument("--n", type=int, default=256)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--site", default="mlp", choices=["mlp", "resid"])
    ap.add_argument("--layers", default="all")
    ap.add_argument("--dtypes", default="float32,bfloat16")
    ap.add_argument("--repeats", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(os.cpu_count() or 1)

    worlds = Worlds.from_file(args.worlds, template=args.template, text_field=args.text_field, n=args.n, seed=0)
    rows = []
    for dtype in args.dtypes.split(","):
        model = load_model(args.model, dtype=dtype)
        layers = parse_layers(args.layers, model.n_layers)
        ntok = sum(len(i) for i in model.tokenizer(worlds.prompts)["input_ids"])
        # warm-up (allocator, kernels)
        record(model, Worlds.from_records(worlds.records[:args.batch_size], worlds.template), site=args.site,
               layers=layers, batch_size=args.batch_size, progress=False)
        best = {"hf": (1e9, 0.0), "steer": (1e9, 0.0)}
        for _ in range(args.repeats):
            t, m, ref = timed(lambda: plain_hf(model, worlds.prompts, layers, args.site, args.batch_size))
            best["hf"] = min(best["hf"], (t, m))
            t, m, acts = timed(lambda: record(model, worlds, site=args.site, layers=layers,
                                               batch_size=args.batch_size, progress=False))
            best["steer"] = min(best["steer"], (t, m))
        err = ((acts.X - ref).abs().max() / ref.abs().max()).item()
        rows.append((dtype, model.name, len(layers), ntok, *best["hf"], *best["steer"], err))
        del model
        gc.collect()

    print(f"\nrecording benchmark: {args.n} worlds ({args.template}), site {args.site}, layers {args.layers}, "
          f"batch {args.batch_size}, {torch.get_num_threads()} threads, best of {args.repeats}")
    print(f"{'dtype':>9} {'layers':>6} {'tokens':>7} {'HF s':>7} {'steer s':>8} {'ratio':>6} "
          f"{'HF +MB':>7} {'steer +MB':>9} {'steer tok/s':>11} {'max rel diff':>12}")
    for dtype, name, nl, ntok, th, mh, ts, ms, err in rows:
        print(f"{dtype:>9} {nl:>6} {ntok:>7} {th:>7.2f} {ts:>8.2f} {ts / th:>6.3f} {mh:>7.0f} {ms:>9.0f} "
              f"{ntok / ts:>11.0f} {err:>12.2e}")
    print(f"model: {rows[0][1]}; ratio = steer.record time / plain HF time (target <= 1.05)")


if __name__ == "__main__":
    main()
