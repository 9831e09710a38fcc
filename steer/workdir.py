"""The work directory of a recording: where its finished shards wait, private to this process's user, until the
whole recording is done and renamed into place (resumable after any interruption; see :mod:`steer.record`).

Data flow: worlds -> **recorded activations** (:func:`steer.record.record` and :func:`steer.distributed.record_ray`
both write shards here) -> :class:`steer.activations.Activations`.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from steer.activations import Activations
from steer.artifacts import (
    FORMAT_VERSION,
    _umask,
    check_replaceable,
    content_key,
    make_private_dir,
    private_dir_problem,
    replace_dir,
    write_json_atomic,
)
from steer.stream import WorldStream

if TYPE_CHECKING:
    from steer.worlds import Worlds


def recording_extra(batch_size: int, reuse_prefix: bool, dtype: torch.dtype | str, width: int) -> dict[str, Any]:
    """How a recording was made, beyond its provenance (kept in its manifest)."""
    return {
        "batch_size": batch_size,
        "reuse_prefix": reuse_prefix,
        "mean_over": "text span",
        "model_dtype": str(dtype),
        "width": width,
    }


WORK_RECORD = "work.json"


def work_dir(out: str | os.PathLike[str], key: dict[str, Any]) -> Path:
    """The work directory of a recording into ``out``: ``.OUT.work-<key>`` beside it.

    It is created by this process (mode 0700, with ``work.json`` naming the recording's full key), and an existing
    one is trusted only when it is this user's folder that no one else may write, not a symbolic link, and its
    ``work.json`` names the same recording. A folder or link planted under that predictable name by someone else
    is refused (never read, never written through, never deleted); this user's folder without a valid record is
    emptied and the recording starts afresh."""
    out = Path(out)
    check_replaceable(out, "the recording's folder")  # before any work: never replace what steer did not write
    out.parent.mkdir(parents=True, exist_ok=True)
    work = out.parent / f".{out.name}.work-{content_key(key)}"
    record_ = {"kind": "recording_work", "key": content_key(key, length=64), "uid": os.geteuid()}
    if not make_private_dir(work):
        problem = private_dir_problem(work)
        if problem is not None:
            raise FileExistsError(
                f"the work directory {work} {problem}: steer did not make it, so it is not used; remove it and run "
                "again"
            )
        try:
            trusted = json.loads((work / WORK_RECORD).read_text()) == record_
        except (OSError, ValueError):
            trusted = False
        if trusted:
            return work
        print(f"steer: {work} has no record of this recording; starting it afresh", file=sys.stderr)
        shutil.rmtree(work)
        os.mkdir(work, 0o700)
    write_json_atomic(work / WORK_RECORD, record_)
    return work


def finish_work(work: Path, out: Path) -> Activations:
    """Turn a complete work directory (shards + manifest) into the recording ``out`` and open it."""
    for f in work.glob("shard-*.done.json"):
        f.unlink()
    (work / WORK_RECORD).unlink(missing_ok=True)
    os.chmod(work, 0o777 & ~_umask())  # a finished recording gets a plain folder's mode
    replace_dir(work, out)
    for stale in out.parent.glob(f".{out.name}.work-*"):  # work of a recording with other settings: useless now
        if private_dir_problem(stale) is None:  # only this user's own work folders, never a planted one
            shutil.rmtree(stale, ignore_errors=True)
    return Activations.load(out)


def work_key(
    identity: dict[str, Any],
    dtype: torch.dtype | str,
    worlds: Worlds | WorldStream,
    site: str,
    reduce: str,
    layers: list[int],
    batch_size: int,
    shard_size: int,
    reuse_prefix: bool,
) -> dict[str, Any]:
    """Everything a recording's shards depend on: the same key continues the same recording."""
    return {
        "format": FORMAT_VERSION,
        "model": identity,
        "dtype": str(dtype),
        "worlds": worlds.key if isinstance(worlds, WorldStream) else dict(worlds.provenance),
        "site": site,
        "reduce": reduce,
        "layers": list(layers),
        "batch_size": batch_size,
        "shard_size": shard_size,
        "reuse_prefix": reuse_prefix,
        "mean_over": "text span",
    }
