"""Benchmark: the same recording in one process and on a local Ray actor pool (the engine's overhead on one machine).

N SST-2 train sentences in the paper's two-shot template, all layers, mlp, last token, written to disk in shards:
``steer.record`` in this process (all cores as torch threads) against ``steer.record_ray`` with W actors of one CPU
each (each loads the model once). Ray's start-up (``ray.init``) is timed apart. Both recordings are checked equal.
On one machine the pool can only redistribute the same cores, so the ratio shows the engine's overhead; on a
cluster the actors run on other machines' cores and GPUs, and the throughput adds up per worker.

    python bench/ray_engine.py            # needs pip install "steer[ray]"
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

import torch
from common import write_result

from steer import Worlds, load_model, record
from steer.distributed import record_ray

SST2_TRAIN = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "sst2" / "train.tsv"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="bundled")
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--shard-size", type=int, default=125)
    ap.add_argument("--batch-size", type=int, default=32)
    args = ap.parse_args()
    import ray

    torch.set_num_threads(os.cpu_count() or 1)
    work = Path(tempfile.mkdtemp(prefix="steer-ray-bench-"))
    worlds = Worlds.from_file(SST2_TRAIN, template="classify-2shot", text_field="sentence", n=args.n, seed=0)
    kw = dict(site="mlp", reduce="last", batch_size=args.batch_size, shard_size=args.shard_size, progress=False)

    model = load_model(args.model)
    t = time.perf_counter()
    local = record(model, worlds, out=work / "local", **kw)
    t_local = time.perf_counter() - t
    del model

    t = time.perf_counter()
    ray.init(num_cpus=args.workers, include_dashboard=False, log_to_driver=False)
    t_init = time.perf_counter() - t
    t = time.perf_counter()
    on_ray = record_ray(args.model, worlds, out=work / "ray", num_workers=args.workers, **kw)
    t_ray = time.perf_counter() - t
    ray.shutdown()
    same = torch.equal(local.X, on_ray.X)
    diff = ((local.X - on_ray.X).abs().max() / local.X.abs().max()).item()
    shutil.rmtree(work, ignore_errors=True)

    print(f"\nRay engine benchmark: {args.n} worlds (classify-2shot), all layers, mlp, shard {args.shard_size}, "
          f"batch {args.batch_size}, {os.cpu_count()} cores")
    print(f"{'engine':>28} {'seconds':>8} {'worlds/s':>9}")
    print(f"{'one process (' + str(torch.get_num_threads()) + ' threads)':>28} {t_local:>8.1f} {args.n / t_local:>9.1f}")
    print(f"{'Ray, ' + str(args.workers) + ' actors x 1 CPU':>28} {t_ray:>8.1f} {args.n / t_ray:>9.1f}")
    print(f"ray.init: {t_init:.1f} s (not in the Ray time); Ray / one process: {t_ray / t_local:.2f}; "
          f"recordings identical: {same} (max rel diff {diff:.1e}; thread counts differ, so sums may round apart)")
    write_result("ray_engine", {
        "n_worlds": args.n, "workers": args.workers, "shard_size": args.shard_size, "batch_size": args.batch_size,
        "local_s": t_local, "ray_s": t_ray, "ray_init_s": t_init, "ray_over_local": t_ray / t_local,
        "identical": same, "max_rel_diff": diff,
    })


if __name__ == "__main__":
    main()
