"""Benchmark: recording time against a plain HF forward of the same full prompts; shared-prefix reuse.

The baseline is the fastest plain-PyTorch way to get the same numbers from full prompts: the HF model (no
TransformerLens), torch forward hooks on the same layers that keep only the last position, the same
length-sorted left-padded batches, and the forward stopped after the deepest requested layer (an exception
raised in its hook). Against it: ``steer.record`` on the full prompts (``reuse_prefix=False``) and with
shared-prefix reuse (the default: the template's prefix runs once per shard, each batch runs only the worlds' own
tokens on its KV cache). All run under inference mode on the same worlds; each is timed ``--repeats`` times,
alternating, and the best time is kept. Peak extra memory is the peak resident set size above the level before
the run, sampled every 5 ms. Prints ratios measured in this one run.

Default: the paper's protocol (SST-2 train sentences in the two-shot classification template, last token, all
layers, both sites) on the bundled SmolLM2-135M-Instruct.

    python bench/record.py                                   # 1,024 worlds, bundled model, mlp and resid
    python bench/record.py --model "$(../shared/tools/get-qwen-gguf)" --n 256
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
import time

import numpy as np
import torch
from common import PeakRSS, write_result

from steer import Worlds, load_model, record
from steer.sites import parse_layers


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


SST2_TRAIN = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data", "sst2", "train.tsv")


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
    ap.add_argument("--worlds", default=SST2_TRAIN)
    ap.add_argument("--text-field", default="sentence")
    ap.add_argument("--template", default="classify-2shot")
    ap.add_argument("--n", type=int, default=1024)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--sites", default="mlp,resid")
    ap.add_argument("--layers", default="all")
    ap.add_argument("--dtypes", default="float32")
    ap.add_argument("--repeats", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(os.cpu_count() or 1)

    worlds = Worlds.from_file(args.worlds, template=args.template, text_field=args.text_field, n=args.n, seed=0)
    rows = []
    for dtype in args.dtypes.split(","):
        model = load_model(args.model, dtype=dtype)
        layers = parse_layers(args.layers, model.n_layers)
        ntok = sum(len(i) for i in model.tokenizer(worlds.prompts)["input_ids"])
        for site in args.sites.split(","):
            if site not in ("mlp", "resid"):
                sys.exit(f"record bench: the plain-HF baseline reads sites mlp and resid only, not {site!r}")
            warm = Worlds.from_records(worlds.records[: args.batch_size], worlds.template)
            for reuse in (False, True):  # warm-up (allocator, kernels)
                record(model, warm, site=site, layers=layers, batch_size=args.batch_size, progress=False,
                       reuse_prefix=reuse)
            best = {k: (1e9, 0.0) for k in ("hf", "full", "prefix")}
            for _ in range(args.repeats):
                t, m, ref = timed(lambda: plain_hf(model, worlds.prompts, layers, site, args.batch_size))
                best["hf"] = min(best["hf"], (t, m))
                for key, reuse in (("full", False), ("prefix", True)):
                    t, m, acts = timed(lambda: record(model, worlds, site=site, layers=layers,
                                                      batch_size=args.batch_size, progress=False, reuse_prefix=reuse))
                    best[key] = min(best[key], (t, m))
            err = ((acts.X - ref).abs().max() / ref.abs().max()).item()  # the prefix path against plain HF
            rows.append((dtype, site, model.name, len(layers), ntok, best, err))
        del model
        gc.collect()

    print(f"\nrecording benchmark: {args.n} worlds ({args.template}), layers {args.layers}, "
          f"batch {args.batch_size}, {torch.get_num_threads()} threads, best of {args.repeats}")
    print(f"{'dtype':>9} {'site':>5} {'layers':>6} {'tokens':>7} {'HF s':>7} {'full s':>7} {'prefix s':>8} "
          f"{'full/HF':>7} {'HF/prefix':>9} {'HF +MB':>7} {'prefix +MB':>10} {'max rel diff':>12}")
    for dtype, site, name, nl, ntok, best, err in rows:
        (th, mh), (tf, _), (tp, mp) = best["hf"], best["full"], best["prefix"]
        print(f"{dtype:>9} {site:>5} {nl:>6} {ntok:>7} {th:>7.2f} {tf:>7.2f} {tp:>8.2f} {tf / th:>7.3f} "
              f"{th / tp:>9.2f} {mh:>7.0f} {mp:>10.0f} {err:>12.2e}")
    print(f"model: {rows[0][2]}; full/HF = steer.record without prefix reuse / plain HF (target <= 1.05); "
          "HF/prefix = speed-up of prefix reuse over the plain HF full-prompt forward (target >= 2.5); "
          "max rel diff = prefix-reuse activations against plain HF")
    write_result("record", {
        "n_worlds": args.n, "template": args.template, "layers": args.layers, "batch_size": args.batch_size,
        "repeats": args.repeats, "model": rows[0][2],
        "rows": [{"dtype": dtype, "site": site, "layers": nl, "tokens": ntok, "hf_s": best["hf"][0],
                  "full_s": best["full"][0], "prefix_s": best["prefix"][0], "hf_peak_mb": best["hf"][1],
                  "prefix_peak_mb": best["prefix"][1], "full_over_hf": best["full"][0] / best["hf"][0],
                  "hf_over_prefix": best["hf"][0] / best["prefix"][0], "max_rel_diff": err}
                 for dtype, site, _, nl, ntok, best, err in rows],
    })


if __name__ == "__main__":
    main()
