"""Benchmark: time and peak memory of the stability bootstrap on a saved recording, and its ratio to one
strength computation (D for every unit once).

    # record once (e.g. the paper's protocol on the Qwen GGUF, site mlp, 1024 worlds x 116,736 units):
    steer find --model FILE.gguf --worlds ../shared/data/sst2/train.tsv --text-field sentence --n-worlds 1024 \\
        --worlds-seed 0 --template paper-2shot --proposition vader_pos:top25 --site mlp --out runs/qwen-mlp
    python bench/stability.py --recording runs/qwen-mlp/activations --worlds ../shared/data/sst2/train.tsv \\
        --text-field sentence --n 1024 --seed 0 --template paper-2shot --proposition vader_pos:top25 --resamples 500
"""

from __future__ import annotations

import argparse
import gc
import os
import time

import numpy as np
import torch
from common import PeakRSS, write_result

from steer import Activations, Worlds
from steer.stability import bootstrap


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--recording", required=True)
    ap.add_argument("--worlds", required=True)
    ap.add_argument("--text-field", default=None)
    ap.add_argument("--template", default="plain")
    ap.add_argument("--n", type=int, default=None)
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument("--proposition", required=True)
    ap.add_argument("--resamples", type=int, default=500)
    ap.add_argument("--k", type=int, default=5)
    ap.add_argument("--normalize", default="none")
    ap.add_argument("--chunk", type=int, default=8192)
    args = ap.parse_args()
    torch.set_num_threads(os.cpu_count() or 1)

    worlds = Worlds.from_file(args.worlds, template=args.template, text_field=args.text_field, n=args.n, seed=args.seed)
    acts = Activations.load(args.recording)
    if acts.worlds.get("prompt_set_sha256") != worlds.prompt_set_hash:
        raise SystemExit("the recording was made from other worlds")
    prop = worlds.proposition(args.proposition)
    X = acts.X
    n, layers, width = X.shape
    gc.collect()
    with PeakRSS() as m1:
        t = time.perf_counter()
        acts.strength(prop, normalize=args.normalize)
        t_one = time.perf_counter() - t
    gc.collect()
    with PeakRSS() as m2:
        t = time.perf_counter()
        res = bootstrap(X.reshape(n, -1), np.asarray(prop.mask), resamples=args.resamples, k=args.k, normalize=args.normalize,
                        chunk=args.chunk, progress=True)
        t_boot = time.perf_counter() - t
    print(f"\nstability benchmark: {acts.model.get('model_id')}, site {acts.site}, {n} worlds x {layers * width:,} "
          f"units, proposition {prop.name!r}, normalize={args.normalize}, {torch.get_num_threads()} threads")
    print(f"one strength computation: {t_one:7.2f} s, peak +{m1.extra_mb:,.0f} MB (X itself: {X.numel() * 4 / 2**20:,.0f} MB)")
    print(f"bootstrap {args.resamples} resamples, chunk {args.chunk}: {t_boot:7.2f} s, peak +{m2.extra_mb:,.0f} MB")
    print(f"ratio bootstrap / one strength computation: {t_boot / t_one:.1f} (per resample: {t_boot / t_one / args.resamples:.3f})")
    top = torch.topk(res.freq_for, 5)
    print("most frequent top-k units for A:", ", ".join(
        f"L{i // width}.{i % width} ({f:.2f})" for i, f in zip(top.indices.tolist(), top.values.tolist())))
    write_result("stability", {
        "model": acts.model.get("model_id"), "site": acts.site, "worlds": n, "units": layers * width,
        "proposition": prop.name, "normalize": args.normalize, "resamples": args.resamples, "chunk": args.chunk,
        "strength_s": t_one, "strength_peak_mb": m1.extra_mb, "bootstrap_s": t_boot, "bootstrap_peak_mb": m2.extra_mb,
        "bootstrap_over_strength": t_boot / t_one,
    })


if __name__ == "__main__":
    main()
