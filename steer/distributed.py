"""Recording on many machines with Ray (an optional extra: ``pip install "steer[ray]"``).

:func:`record_ray` records the same recording as :func:`steer.record` with ``out=DIR``, spread over a pool of Ray
actors. Each actor loads the model once (on a GPU when ``num_gpus_per_worker`` > 0) and records whole shards; the
driver reads the worlds (:class:`steer.Worlds` or a :class:`steer.WorldStream` over a file, Parquet or a
``datasets`` dataset) shard by shard and hands each shard to a free actor. Every actor writes its shards into the
recording's work directory, exactly as a local run does (``shard-XXXXX.safetensors`` written under a temporary name
and renamed, then its ``.done.json`` record), so:

- the result is the same recording, byte for byte, as a single-process run with the same shard and batch size;
- an interrupted run (the driver killed, the cluster gone) resumes from its finished shards, locally or on Ray;
- an actor that dies mid-shard (a killed worker, a lost node) is restarted by Ray (it loads the model again) and
  its shard is retried; a shard is written whole or not at all, so a retry cannot leave half a shard.

The output directory must be one every worker can write and the driver can read: a local path on one machine, a
shared filesystem (NFS, a mounted bucket) on a cluster.

    import ray; ray.init(address="auto")              # or nothing: a local instance
    acts = record_ray("Qwen/Qwen2.5-0.5B-Instruct", worlds, out="/shared/rec", num_workers=8, num_gpus_per_worker=1)
"""

from __future__ import annotations

import math
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from steer.activations import Activations, _finished_shard, _write_shard
from steer.artifacts import check_replaceable, write_json_atomic
from steer.record import record_prompts, shard_inputs
from steer.sites import REDUCTIONS, hook_name, parse_layers, resolve_layers, site_width
from steer.stream import WorldStream
from steer.workdir import finish_work, recording_extra, work_dir, work_key
from steer.worlds import Worlds

KILL_ENV = "STEER_RAY_TEST_KILL_ONCE"  # tests: "SHARD:MARKER" makes the first actor to reach SHARD exit abruptly


class RayMissingError(ImportError):
    """Ray is not installed; it is an optional extra."""


def _ray() -> Any:
    try:
        import ray
    except ImportError:
        raise RayMissingError(
            'the Ray engine needs Ray: pip install "steer[ray]" (or pip install ray); the default engine needs nothing'
        ) from None
    return ray


class ShardRecorder:
    """A Ray actor's state: the model, loaded once, and the recording's settings."""

    def __init__(
        self,
        model_spec: str,
        dtype: str,
        device: str,
        site: str,
        layers: list[int] | str | None,
        reduce: str,
        batch_size: int,
        reuse_prefix: bool,
        threads: int,
    ) -> None:
        import torch

        from steer.models import load_model

        self.error: str | None = None
        try:  # an error here would only show as Ray's ActorDiedError: keep it, and let describe() report it
            torch.set_num_threads(max(1, threads))
            self.model = load_model(model_spec, dtype=dtype, device=device)
            self.site, self.reduce, self.batch_size, self.reuse_prefix = site, reduce, batch_size, reuse_prefix
            n = self.model.n_layers
            self.layers = parse_layers(layers, n) if isinstance(layers, str) else resolve_layers(layers, n)
        except Exception as e:
            self.error = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__

    def describe(self) -> dict[str, Any]:
        if self.error is not None:
            return {"error": self.error}
        m = self.model
        return {
            "provenance": dict(m.provenance),
            "identity": m.identity,
            "dtype": str(m.dtype),
            "layers": self.layers,
            "width": site_width(m, self.site),
        }

    def record(self, work: str, s: int, prompts: list[str], chars: list[tuple[int, int]], start: int) -> dict:
        kill = os.environ.get(KILL_ENV, "")
        if kill:
            shard, _, marker = kill.partition(":")
            if int(shard) == s and not os.path.exists(marker):
                Path(marker).write_text("killed once")
                os._exit(1)  # an abrupt worker death, as when a node is lost
        X, note = record_prompts(
            self.model,
            prompts,
            chars,
            self.site,
            self.layers,
            self.reduce,
            self.batch_size,
            self.reuse_prefix,
            start=start,
        )
        meta = _write_shard(Path(work), s, X, mark_done=True)
        return {"shard": s, "rows": len(prompts), "meta": meta, "note": note}


def check_resources(resources: dict[str, float], num_workers: int, cpus: float, gpus: float) -> None:
    """Refuse a pool the Ray cluster can never place (Ray would wait for the resources forever): ``num_workers``
    actors of ``cpus`` CPUs and ``gpus`` GPUs each, against the cluster's total ``resources``."""
    have_gpus, have_cpus = float(resources.get("GPU", 0)), float(resources.get("CPU", 0))
    if gpus > 0 and have_gpus < gpus:
        raise ValueError(
            f"--num-gpus-per-worker {gpus:g} asks for GPUs, but the Ray cluster has {have_gpus:g}; "
            "use --num-gpus-per-worker 0 (CPU) or a cluster with GPUs"
        )
    if cpus > have_cpus:
        raise ValueError(f"each Ray worker asks for {cpus:g} CPUs, but the Ray cluster has {have_cpus:g}")
    if gpus > 0 and have_gpus // gpus < 1:
        raise ValueError(f"no Ray worker fits: {gpus:g} GPUs each, the cluster has {have_gpus:g}")


def record_ray(
    model: str,
    worlds: Worlds | WorldStream,
    out: str | os.PathLike[str],
    site: str = "mlp",
    layers: int | Sequence[int] | str | None = None,
    reduce: str = "last",
    batch_size: int = 16,
    shard_size: int = 1024,
    dtype: str = "float32",
    num_workers: int = 2,
    num_gpus_per_worker: float = 0,
    cpus_per_worker: float = 1,
    address: str | None = None,
    reuse_prefix: bool = True,
    max_retries: int = 3,
    progress: bool = True,
) -> Activations:
    """Record ``worlds`` into ``out`` on a pool of Ray actors; the same recording as ``steer.record(out=...)``.

    Args:
        model: a model spec every worker can load (a hub id, ``bundled``, a path all machines see).
        worlds: :class:`steer.Worlds` or a :class:`steer.WorldStream`, read by the driver shard by shard.
        out: the recording's directory: writable by every worker (a shared filesystem on a cluster).
        site, layers, reduce, batch_size, shard_size, reuse_prefix: as for :func:`steer.record` (``layers`` may
            also be the CLI's text, ``18-23``, parsed by the workers, which know the model's depth).
        dtype: the model's dtype on the workers.
        num_workers: actors in the pool (each loads the model once).
        num_gpus_per_worker: GPUs per actor (0: CPU; > 0: the model goes to ``cuda``).
        cpus_per_worker: CPUs per actor (its torch thread count).
        address: the Ray cluster (``auto``, ``ray://host:10001``); None starts or joins a local instance.
        max_retries: how often an actor that died is restarted and its shard retried.
        progress: show a progress bar.

    Returns:
        The recording, opened from ``out``.
    """
    if reduce not in REDUCTIONS:
        raise ValueError(f"unknown reduce {reduce!r}; use one of {', '.join(REDUCTIONS)}")
    hook_name(site, 0)
    for name, v in (("batch_size", batch_size), ("shard_size", shard_size), ("num_workers", num_workers)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ValueError(f"{name} must be a positive integer, got {v!r}")
    for name, f in (("num_gpus_per_worker", num_gpus_per_worker), ("cpus_per_worker", cpus_per_worker)):
        if isinstance(f, bool) or not isinstance(f, (int, float)) or not math.isfinite(f) or f < 0:
            raise ValueError(f"{name} must be a finite number >= 0, got {f!r}")
    if isinstance(max_retries, bool) or not isinstance(max_retries, int) or max_retries < 0:
        raise ValueError(f"max_retries must be an integer >= 0, got {max_retries!r}")
    check_replaceable(out, "the recording's folder")
    ray = _ray()
    if not ray.is_initialized():
        ray.init(address=address, ignore_reinit_error=True, log_to_driver=False)
    check_resources(ray.cluster_resources(), num_workers, cpus_per_worker, num_gpus_per_worker)
    env = {k: v for k, v in os.environ.items() if k.startswith(("STEER_", "HF_"))}  # the model cache, hub settings
    actor_cls = ray.remote(ShardRecorder).options(
        num_cpus=cpus_per_worker,
        num_gpus=num_gpus_per_worker,
        max_restarts=max_retries,
        max_task_retries=max_retries,
        runtime_env={"env_vars": env},
    )
    device = "cuda" if num_gpus_per_worker > 0 else "cpu"
    layer_arg = (
        layers if layers is None or isinstance(layers, str) else ([layers] if isinstance(layers, int) else list(layers))
    )
    actors = [
        actor_cls.remote(
            model, dtype, device, site, layer_arg, reduce, batch_size, reuse_prefix, int(max(1, cpus_per_worker))
        )
        for _ in range(num_workers)
    ]
    try:
        info = ray.get(actors[0].describe.remote())
        if "error" in info:
            raise ValueError(f"the Ray workers could not start: {info['error']}")
        work = work_dir(
            out,
            work_key(
                info["identity"],
                info["dtype"],
                worlds,
                site,
                reduce,
                info["layers"],
                batch_size,
                shard_size,
                reuse_prefix,
            ),
        )
        rows: list[int] = []
        files: dict[int, dict[str, Any]] = {}
        pending: dict[Any, Any] = {}  # a running shard -> its actor
        free = list(actors)
        bar = tqdm(desc=f"recording {site} on {num_workers} Ray workers", unit="world", disable=not progress)
        noted = False

        def collect() -> None:
            """Wait for one running shard to finish, record its file, and free its actor."""
            nonlocal noted
            ready, _ = ray.wait(list(pending), num_returns=1)
            for ref in ready:
                free.append(pending.pop(ref))
                try:
                    got = ray.get(ref)
                except Exception as e:  # RayTaskError wraps the worker's own error: raise that one
                    cause = getattr(e, "cause", None)
                    raise (cause if isinstance(cause, Exception) else e) from None
                files[got["shard"]] = got["meta"]
                bar.update(got["rows"])
                if got["note"] and not noted:
                    noted = True
                    print(f"steer: {got['note']}", file=sys.stderr)

        start = 0
        for s, (prompts, chars) in enumerate(shard_inputs(worlds, shard_size)):
            rows.append(len(prompts))
            done = _finished_shard(work, s, len(prompts))
            if done is not None:
                files[s] = done
                bar.update(len(prompts))
            else:
                while not free:
                    collect()
                actor = free.pop()
                ref = actor.record.remote(str(work), s, prompts, chars, start)
                pending[ref] = actor
            start += len(prompts)
        while pending:
            collect()
        bar.close()
    finally:
        for a in actors:
            ray.kill(a)
    acts = Activations(
        site,
        reduce,
        info["layers"],
        info["provenance"],
        dict(worlds.provenance),
        rows,
        None,
        work,
        {**recording_extra(batch_size, reuse_prefix, info["dtype"], info["width"]), "engine": "ray"},
        [files[i] for i in range(len(rows))],
    )
    write_json_atomic(work / "manifest.json", acts.manifest())
    return finish_work(work, Path(out))
