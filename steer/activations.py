"""Recorded activations: the matrix X[worlds, layers, units] with its provenance, and its shard files on disk.

Data flow: prompt set -> worlds -> **recorded activations** -> strengths -> selected units -> intervention ->
steered generation. :func:`steer.record.record` (or :class:`steer.Network`, or
:func:`steer.distributed.record_ray`) makes an :class:`Activations`; :meth:`Activations.strength` turns it into
:class:`steer.neurons.Strengths`. The columns of X
are the units' reasons vectors, its rows the worlds' reasons characters (docs/method.md §2). Activations are float32.

On disk a recording is a directory of shards (``shard-NNNNN.safetensors``, each holding the rows ``X`` of
consecutive worlds) and a ``manifest.json`` with the provenance and each shard's size in bytes and sha256. A shard
file is written to a temporary name, then renamed; while a recording runs, a shard counts as finished only when
its file is complete and its record (``shard-NNNNN.done.json``: size, sha256, rows), written after it, matches the
file (:func:`_finished_shard`). Opening a recording checks every shard's presence, size and shape; reading a shard
checks its sha256.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from jaxtyping import Float
from safetensors import safe_open
from safetensors.torch import load
from safetensors.torch import save as safetensors_save
from torch import Tensor

from steer.artifacts import (
    FORMAT_VERSION,
    ArtifactMismatchError,
    atomic_dir,
    atomic_file,
    check_model,
    check_replaceable,
    check_site,
    read_json,
    sealed,
    unseal,
    write_json_atomic,
)
from steer.neurons import Strengths
from steer.sites import site_hooks
from steer.strength import Normalize

if TYPE_CHECKING:
    from steer.models import Model
    from steer.propositions import Proposition


@dataclass
class Activations:
    """Recorded reasons vectors X[worlds, layers, units] with their provenance, in memory or in shards on disk."""

    site: str
    reduce: str
    layers: list[int]
    model: dict[str, Any]  # the model's provenance
    worlds: dict[str, Any]  # the worlds' provenance
    shard_rows: list[int]
    _shards: list[Tensor] | None = None
    path: Path | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    shard_files: list[dict[str, Any]] | None = None  # on disk: per shard its size in bytes and sha256

    @property
    def n_worlds(self) -> int:
        return sum(self.shard_rows)

    @property
    def shape(self) -> tuple[int, int, int]:
        first = next(self.iter_shards())
        return (self.n_worlds, *first.shape[1:])

    def iter_shards(self) -> Iterator[Float[Tensor, "rows layers units"]]:
        """The row blocks of X in world order (loaded one at a time when on disk)."""
        if self._shards is not None:
            yield from self._shards
        else:
            assert self.path is not None and self.shard_files is not None, "a recording is in memory or on disk"
            for i, meta in enumerate(self.shard_files):
                yield _read_shard(self.path, i, meta)

    def iter_unit_blocks(self, width: int) -> Iterator[Float[Tensor, "worlds block"]]:
        """X's columns in blocks of ``width`` units of the flattened (layer, unit) axis, in order, each block read
        from every shard (only its slice of each shard when on disk): how rank normalisation sees whole columns
        in bounded memory."""
        n_units = len(self.layers) * self.width
        for a in range(0, n_units, width):
            b = min(a + width, n_units)
            if self._shards is not None:
                yield torch.cat([sh.reshape(sh.shape[0], -1)[:, a:b] for sh in self._shards], 0)
                continue
            assert self.path is not None
            pieces = []  # (layer index, first unit, end unit) covering [a, b)
            i = a
            while i < b:
                j, u = divmod(i, self.width)
                end = min(self.width, u + (b - i))
                pieces.append((j, u, end))
                i += end - u
            rows = []
            for s in range(len(self.shard_rows)):
                with safe_open(str(_shard_path(self.path, s)), framework="pt") as sf:
                    sl = sf.get_slice("X")
                    rows.append(torch.cat([sl[:, j : j + 1, u0:u1].reshape(-1, u1 - u0) for j, u0, u1 in pieces], 1))
            yield torch.cat(rows, 0)

    @property
    def X(self) -> Float[Tensor, "worlds layers units"]:
        """All of X in memory (concatenates shards from disk)."""
        return torch.cat(list(self.iter_shards()), 0)

    def layer_index(self, layer: int) -> int:
        if layer not in self.layers:
            raise ValueError(f"layer {layer} was not recorded (recorded: {self.layers})")
        return self.layers.index(layer)

    def strength(
        self, proposition: Proposition, prior: Tensor | None = None, normalize: Normalize = "none"
    ) -> Strengths:
        """The doxastic strength D of every recorded unit for a proposition.

        Args:
            proposition: a proposition over the recorded worlds.
            prior: belief weights over the worlds (default uniform).
            normalize: ``none`` (the paper's D on raw activations), ``zscore`` or ``rank`` (see steer.strength).

        Returns:
            A :class:`steer.neurons.Strengths` ([layers, units]) with the per-unit statistics.
        """
        return Strengths.compute(self, proposition, prior=prior, normalize=normalize)

    # -- persistence

    def manifest(self) -> dict[str, Any]:
        """What ``manifest.json`` holds, sealed with the sha256 of its content (checked by :meth:`load`)."""
        return sealed(
            {
                "kind": "activations",
                "format": FORMAT_VERSION,
                "site": self.site,
                "reduce": self.reduce,
                "layers": self.layers,
                "hooks": site_hooks(self.site, self.layers),
                "model": self.model,
                "worlds": self.worlds,
                "shard_rows": self.shard_rows,
                "width": self.width,
                "shards": self.shard_files,
                "extra": self.extra,
            }
        )

    @property
    def width(self) -> int:
        """Units per layer."""
        if self._shards is not None:
            return int(self._shards[0].shape[2])
        return int(self.extra["width"]) if "width" in self.extra else int(next(self.iter_shards()).shape[2])

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write shards + ``manifest.json`` to a directory (atomically: a temp dir renamed into place). An existing
        folder is replaced only when it is empty or a steer result."""
        check_replaceable(path, "the recording's folder")
        with atomic_dir(path) as tmp:
            files = [_write_shard(tmp, i, shard) for i, shard in enumerate(self.iter_shards())]
            write_json_atomic(tmp / "manifest.json", sealed({**self.manifest(), "shards": files}))
        return Path(path)

    @classmethod
    def load(cls, path: str | os.PathLike[str], model: Model | None = None, site: str | None = None) -> Activations:
        """Open a saved recording (shards stay on disk); with ``model``/``site`` given, refuse a mismatch."""
        if not isinstance(path, (str, os.PathLike)):
            raise TypeError(f"path must be a folder path (str or Path), got {type(path).__name__}")
        if site is not None and not isinstance(site, str):
            raise TypeError(f"site must be a site name such as 'mlp', got {type(site).__name__}")
        path = Path(path)
        man = read_json(path / "manifest.json", "activations")
        man = unseal(man, f"the manifest of recording {path}")
        try:
            site_saved, rows, layers, width, files = (
                man[k] for k in ("site", "shard_rows", "layers", "width", "shards")
            )
            acts = cls(
                site_saved,
                man["reduce"],
                layers,
                man["model"],
                man["worlds"],
                rows,
                None,
                path,
                {**man.get("extra", {}), "width": width},
                files,
            )
        except KeyError as e:
            raise ArtifactMismatchError(f"recording {path}: its manifest lacks {e}; record it again") from None
        check_site(site_saved, site, f"recording {path}")
        if model is not None:
            check_model({k: man["model"].get(k) for k in model.identity}, model.identity, f"recording {path}")
        if len(files) != len(rows):
            raise ArtifactMismatchError(f"recording {path}: {len(files)} shard entries for {len(rows)} shards")
        for i, (meta, n) in enumerate(zip(files, rows)):
            _check_shard_file(path, i, meta, (n, len(layers), width))
        return acts


# ------------------------------------------------------------------------------------------------- shards


def _shard_path(path: Path, i: int) -> Path:
    return path / f"shard-{i:05d}.safetensors"


def _write_shard(path: Path, i: int, X: Tensor, mark_done: bool = False) -> dict[str, Any]:
    """Write shard i (atomically) and, with ``mark_done``, its record beside it (what lets a rerun skip it);
    return what the manifest records of it: its size and sha256."""
    data = _shard_bytes(X.contiguous())
    with atomic_file(_shard_path(path, i)) as tmp:
        tmp.write_bytes(data)
    meta = {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    if mark_done:  # the record names its work directory (whose name is the recording's key)
        write_json_atomic(_shard_record(path, i), {**meta, "rows": int(X.shape[0]), "work": path.name})
    return meta


def _shard_record(path: Path, i: int) -> Path:
    return path / f"shard-{i:05d}.done.json"


def _finished_shard(path: Path, i: int, rows: int) -> dict[str, Any] | None:
    """The manifest entry of shard i when a previous run finished it (file and record complete and matching)."""
    f, rec = _shard_path(path, i), _shard_record(path, i)
    try:
        if f.is_symlink() or rec.is_symlink():
            return None
        meta = json.loads(rec.read_text())
        if meta.get("work") != path.name:  # a record of another recording's work, copied in
            return None
        if meta.get("rows") != rows or not f.is_file() or f.stat().st_size != meta.get("bytes"):
            return None
        if hashlib.sha256(f.read_bytes()).hexdigest() != meta.get("sha256"):
            return None
    except (OSError, ValueError, AttributeError):
        return None
    return {"bytes": meta["bytes"], "sha256": meta["sha256"]}


def _shard_bytes(X: Tensor) -> bytes:
    return bytes(safetensors_save({"X": X}))


def _check_shard_file(path: Path, i: int, meta: dict[str, Any], shape: tuple[int, int, int]) -> None:
    """A shard that is missing, of another size than written, or of another shape than the manifest says is an
    error naming the recording (checked when the recording is opened; the sha256 when a shard is read)."""
    f = _shard_path(path, i)
    if not f.is_file():
        raise ArtifactMismatchError(f"recording {path} is missing shard {i} ({f.name}); record it again")
    if f.stat().st_size != meta.get("bytes"):
        raise ArtifactMismatchError(
            f"recording {path}: shard {i} has {f.stat().st_size} bytes, {meta.get('bytes')} were written "
            "(truncated or replaced); delete the recording and record it again"
        )
    try:
        with safe_open(str(f), framework="pt") as sf:
            got = tuple(sf.get_slice("X").get_shape())
    except Exception as e:  # safetensors raises its own error types
        raise ArtifactMismatchError(f"recording {path}: shard {i} is unreadable ({e}); record it again") from None
    if got != shape:
        raise ArtifactMismatchError(
            f"recording {path}: shard {i} holds X of shape {got}, the manifest says {shape}; record it again"
        )


def _read_shard(path: Path, i: int, meta: dict[str, Any]) -> Tensor:
    data = _shard_path(path, i).read_bytes()
    if hashlib.sha256(data).hexdigest() != meta.get("sha256"):
        raise ArtifactMismatchError(
            f"recording {path}: shard {i} does not match the checksum written with it (corrupted); delete the "
            "recording and record it again"
        )
    return load(data)["X"]
