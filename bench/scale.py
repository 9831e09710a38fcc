"""Benchmark: recording and ranking at scale, in bounded memory.

N worlds (SST-2 train sentences, then phrases cut from them -- the first half of a sentence's words, with the
sentence's label -- until N) are written to a JSONL file and read back as a :class:`steer.WorldStream`, shard by
shard: the recording writes each shard to disk as it completes, and never holds all worlds or all of X. Then D for
the proposition label=1 under the three normalisations, from the recording on disk (``rank`` in blocks of units).

Per N it prints: worlds per second, the peak resident memory above the loaded model while recording and while
computing each D, the disk the recording uses, and the time of each D. Two sizes in one run show how cost grows
with N.

    python bench/scale.py                          # 10,000 and 100,000 worlds, bundled model, all layers, mlp
    python bench/scale.py --ns 2000 --dtype float32
"""

from __future__ import annotations

import argparse
import csv
import gc
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

import torch
from common import PeakRSS, write_result

from steer import Activations, WorldStream, load_model, record
from steer.sites import parse_layers

SST2_TRAIN = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "sst2" / "train.tsv"


def build_worlds(n: int, path: Path) -> Path:
    """SST-2 train sentences, then phrases (each sentence's first half), up to n records, as JSONL."""
    with open(SST2_TRAIN, newline="") as f:
        rows = [(r["sentence"].strip(), r["label"]) for r in csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE)]
    out, seen = [], set()
    for s, lab in rows:
        if s and s not in seen:
            seen.add(s)
            out.append({"text": s, "label": lab, "kind": "sentence"})
    for s, lab in rows:
        words = s.split()
        phrase = " ".join(words[: len(words) // 2])
        if len(out) >= n:
            break
        if len(words) >= 4 and phrase not in seen:
            seen.add(phrase)
            out.append({"text": phrase, "label": lab, "kind": "phrase"})
    if len(out) < n:
        raise SystemExit(f"only {len(out)} distinct sentences and phrases; ask for fewer worlds")
    with open(path, "w") as f:
        for rec in out[:n]:
            f.write(json.dumps(rec) + "\n")
    return path


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="bundled")
    ap.add_argument("--ns", default="10000,100000")
    ap.add_argument("--site", default="mlp")
    ap.add_argument("--layers", default="all")
    ap.add_argument("--dtype", default="float32")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--shard-size", type=int, default=1024)
    ap.add_argument("--workdir", default=None, help="where worlds and recordings go (default: a temp dir)")
    ap.add_argument("--keep", action="store_true", help="keep the recordings")
    args = ap.parse_args()
    torch.set_num_threads(os.cpu_count() or 1)
    work = Path(args.workdir or tempfile.mkdtemp(prefix="steer-scale-"))
    work.mkdir(parents=True, exist_ok=True)

    model = load_model(args.model, dtype=args.dtype)
    layers = parse_layers(args.layers, model.n_layers)
    rows = []
    for n in (int(x) for x in args.ns.split(",")):
        worlds_file = build_worlds(n, work / f"worlds-{n}.jsonl")
        stream = WorldStream.from_file(worlds_file)
        out = work / f"rec-{n}"
        shutil.rmtree(out, ignore_errors=True)
        for stale in work.glob(f".rec-{n}.work-*"):  # no resuming: every run times a whole recording
            shutil.rmtree(stale, ignore_errors=True)
        gc.collect()
        with PeakRSS() as mem:
            t = time.perf_counter()
            acts = record(model, stream, site=args.site, layers=layers, batch_size=args.batch_size,
                          shard_size=args.shard_size, out=out)
            t_rec = time.perf_counter() - t
        disk = sum(f.stat().st_size for f in out.iterdir())
        prop = stream.proposition("label=1")
        d_cols = []
        for norm in ("none", "zscore", "rank"):
            gc.collect()
            acts = Activations.load(out)
            with PeakRSS() as dm:
                t = time.perf_counter()
                D = acts.strength(prop, normalize=norm).D  # on disk: rank in blocks of units
                dt = time.perf_counter() - t
            d_cols.append((norm, dt, dm.extra_mb))
            assert torch.isfinite(D).all()
        rows.append((n, acts.n_worlds, t_rec, mem.extra_mb, disk, d_cols, len(layers) * acts.width))
        if not args.keep:
            shutil.rmtree(out, ignore_errors=True)
        print(f"done N={n}: {rows[-1]}", flush=True)

    print(f"\nscale benchmark: model {model.name} ({args.dtype}), site {args.site}, layers {args.layers}, "
          f"batch {args.batch_size}, shard {args.shard_size}, {torch.get_num_threads()} threads")
    print(f"{'worlds':>8} {'units':>6} {'record s':>9} {'worlds/s':>8} {'rec +MB':>8} {'disk GB':>8} "
          + " ".join(f"{'D ' + k + ' s':>11} {'+MB':>6}" for k in ("none", "zscore", "rank")))
    for n, nw, t_rec, rss, disk, d_cols, units in rows:
        print(f"{nw:>8} {units:>6} {t_rec:>9.1f} {nw / t_rec:>8.1f} {rss:>8.0f} "
              f"{disk / 1e9:>8.2f} " + " ".join(f"{t:>11.1f} {m:>6.0f}" for _, t, m in d_cols))
    print("+MB: peak resident memory above the level before the step (the loaded model), sampled every 5 ms")
    write_result("scale", {
        "model": model.name, "dtype": args.dtype, "site": args.site, "layers": args.layers,
        "batch_size": args.batch_size, "shard_size": args.shard_size,
        "rows": [{"worlds": nw, "units": units, "record_s": t_rec, "worlds_per_s": nw / t_rec, "record_peak_mb": rss,
                  "disk_bytes": disk, "strength": {k: {"s": t, "peak_mb": m} for k, t, m in d_cols}}
                 for n, nw, t_rec, rss, disk, d_cols, units in rows],
    })


if __name__ == "__main__":
    main()
