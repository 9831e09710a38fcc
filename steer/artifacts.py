"""Saving artifacts safely and checking their provenance.

Every artifact (recorded activations, neuron sets) is written to a temporary name and renamed into place, so
an interrupted run leaves nothing half-written under the final name. Each carries its provenance: the model
identity (id, revision or file hash, architecture and sizes), the hook site, positions, the prompt set's
hash and template, and library versions. Loading it against another model or site is an
:class:`ArtifactMismatchError`.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

FORMAT_VERSION = 1


class ArtifactMismatchError(ValueError):
    """An artifact was made with another model, site or prompt set than the one it is used with."""


def write_json_atomic(path: str | os.PathLike, obj: Any) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        tmp.write_text(json.dumps(obj, indent=1, default=str))
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


@contextmanager
def atomic_dir(target: str | os.PathLike) -> Iterator[Path]:
    """Yield a fresh temporary directory that replaces ``target`` only if the block completes."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.partial-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    old = target.with_name(f".{target.name}.old-{os.getpid()}")
    if target.exists():
        os.replace(target, old)
    os.replace(tmp, target)
    shutil.rmtree(old, ignore_errors=True)


def read_json(path: str | os.PathLike, kind: str) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no {kind} at {path}")
    try:
        obj = json.loads(path.read_text())
    except ValueError as e:
        raise ArtifactMismatchError(f"{path} is not a valid {kind} file ({e})") from None
    if obj.get("kind") != kind:
        raise ArtifactMismatchError(f"{path} holds {obj.get('kind')!r}, not {kind!r}")
    return obj


def check_model(saved_identity: dict[str, Any], model: Any, what: str) -> None:
    """Raise unless the model (a steer Model or an identity dict) is the one the artifact was made with."""
    current = model.identity if hasattr(model, "identity") else dict(model)
    diffs = [f"{k}: saved {saved_identity.get(k)!r}, given {current.get(k)!r}"
             for k in saved_identity if saved_identity.get(k) != current.get(k)]
    if diffs:
        raise ArtifactMismatchError(f"{what} was made with another model ({'; '.join(diffs)})")


def check_site(saved_site: str, site: str | None, what: str) -> None:
    if site is not None and site != saved_site:
        raise ArtifactMismatchError(f"{what} was recorded at site {saved_site!r}, not {site!r}")
