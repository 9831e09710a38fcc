"""Caches, in one place: loaded models (per process), recordings and neuron sets (on disk), and file hashes.

On disk everything lives under :func:`cache_dir` (``$STEER_CACHE``, default ``~/.cache/steer``):

- ``models/gguf-<sha>/``: de-quantized GGUF weights (written by :func:`steer.models.load_gguf`);
- ``recordings/<key>/``: recordings, keyed by the model identity, prompt-set hash, template, site, token
  reduction and layers (:func:`cached_recording`);
- ``neurons/<key>.json``: neuron sets, keyed by the same plus the proposition, score and k (:func:`cached_neurons`);
- ``scorers/``: fitted text classifiers of the evaluation harness;
- ``file-hashes.json``: sha256 of large files by (path, size, mtime), so a model file is hashed once.

Every key is :func:`steer.artifacts.content_key` of what the entry was made from, including the artifact format
version, so entries of another format are never read.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from steer.artifacts import FORMAT_VERSION, ArtifactMismatchError, content_key, write_json_atomic
from steer.neurons import NeuronSet, score_units
from steer.record import Activations, record, resolve_layers

if TYPE_CHECKING:
    from steer.models import Model
    from steer.worlds import Worlds


_FALLBACK: dict[Path, Path] = {}


def cache_dir() -> Path:
    """Where steer caches models, recordings, neuron sets and scorers: ``$STEER_CACHE`` or ``~/.cache/steer``.

    When that directory cannot be created or written, a per-user directory in the system's temporary directory
    is used instead (said once on stderr), so a read-only home does not stop the work."""
    wanted = Path(os.environ.get("STEER_CACHE", "~/.cache/steer")).expanduser()
    if wanted in _FALLBACK:
        return _FALLBACK[wanted]
    try:
        wanted.mkdir(parents=True, exist_ok=True)
        if os.access(wanted, os.W_OK | os.X_OK):
            return wanted
    except OSError:
        pass
    fallback = Path(tempfile.gettempdir()) / f"steer-cache-{os.getuid()}"
    fallback.mkdir(parents=True, exist_ok=True)
    print(
        f"steer: the cache directory {wanted} is not writable; using {fallback} (set STEER_CACHE to choose)",
        file=sys.stderr,
    )
    _FALLBACK[wanted] = fallback
    return fallback


def hash_file(path: Path) -> str:
    """sha256 of a file's bytes (read in 4 MiB chunks), not remembered."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 22):
            h.update(chunk)
    return h.hexdigest()


def _memo_key(path: Path) -> str:
    st = path.stat()
    return f"{path}|{st.st_size}|{st.st_mtime_ns}"


def _read_memo() -> dict[str, str]:
    try:
        return dict(json.loads((cache_dir() / "file-hashes.json").read_text()))
    except (OSError, ValueError, TypeError):
        return {}


def remember_sha256(hashes: dict[Path, str]) -> None:
    """Record files' sha256 (computed when they were written) by (path, size, mtime), so reading them back does
    not hash them again."""
    memo = _read_memo()
    memo.update({_memo_key(p): sha for p, sha in hashes.items()})
    write_json_atomic(cache_dir() / "file-hashes.json", memo)


def file_sha256(path: Path) -> str:
    """sha256 of a file, remembered in the cache by (path, size, mtime) so large files are hashed once."""
    memo = _read_memo().get(_memo_key(path))
    if memo is not None:
        return memo
    sha = hash_file(path)
    remember_sha256({path: sha})
    return sha


# ------------------------------------------------------------------------------------------------ models

_MODELS: dict[tuple[str, str, str], Model] = {}


def cached_model(spec: Model | str | None = None, dtype: str = "float32", device: str = "cpu") -> Model:
    """A loaded Model (passed through as it is), or a spec loaded once per process and kept.

    Args:
        spec: a :class:`steer.Model`, or a spec for :func:`steer.load_model` (default ``"default"``).
        dtype: the dtype to load a spec in.
        device: the device to load a spec on.

    Returns:
        The model.
    """
    from steer.models import Model, load_model  # models itself uses this module's disk caches

    if isinstance(spec, Model):
        return spec
    key = (str(spec or "default"), dtype, device)
    if key not in _MODELS:
        _MODELS[key] = load_model(key[0], dtype=dtype, device=device)
    return _MODELS[key]


# ------------------------------------------------------------------------------------ recordings, neurons


def recording_key(model: Model, worlds: Worlds, site: str, reduce: str, layers: Sequence[int]) -> dict[str, Any]:
    """What a cached recording is made from (its content key is the hash of this)."""
    return {
        "format": FORMAT_VERSION,
        "model": model.identity,
        "worlds": worlds.prompt_set_hash,
        "template": worlds.template.sha256,
        "site": site,
        "reduce": reduce,
        "layers": list(layers),
    }


def cached_recording(
    model: Model, worlds: Worlds, site: str, reduce: str, layers: Sequence[int] | None, progress: bool = True
) -> Activations:
    """The recording of ``worlds`` at ``site`` for ``layers`` (None: all), recorded once and cached on disk.

    Args:
        model: the model.
        worlds: the worlds.
        site: ``mlp`` or ``resid``.
        reduce: ``last`` or ``mean``.
        layers: layer indices, or None for all.
        progress: show a progress bar while recording.

    Returns:
        The recording (shards on disk).
    """
    layers = resolve_layers(layers, model.n_layers)
    rec_dir = cache_dir() / "recordings" / content_key(recording_key(model, worlds, site, reduce, layers))
    if (rec_dir / "manifest.json").is_file():
        try:
            acts = Activations.load(rec_dir, model=model, site=site)
            for _ in acts.iter_shards():  # every shard against its checksum
                pass
            return acts
        except ArtifactMismatchError as e:
            print(f"steer: the cached recording is unusable ({e}); recording again", file=sys.stderr)
    return record(model, worlds, site=site, layers=layers, reduce=reduce, out=rec_dir, progress=progress)


def cached_neurons(
    model: Model,
    worlds: Worlds,
    proposition: str,
    *,
    site: str,
    reduce: str,
    layers: Sequence[int] | None,
    score: str,
    k: int,
    progress: bool = True,
) -> NeuronSet:
    """The top-k neuron set of a proposition, computed once and cached on disk under its full provenance.

    The recording is cached too (:func:`cached_recording`), so other propositions, scores and k reuse it.

    Args:
        model: the model.
        worlds: the worlds the proposition is a set of.
        proposition: a proposition spec of ``worlds`` (e.g. ``label=positive``).
        site: ``mlp`` or ``resid``.
        reduce: ``last`` or ``mean``.
        layers: layer indices, or None for all.
        score: the selection score (``rank-D``, ``D``, ``zscore-D``, ``mean-diff``, ``smd``, ``ap``).
        k: units for and against.
        progress: show a progress bar while recording.

    Returns:
        The neuron set.
    """
    layers = resolve_layers(layers, model.n_layers)
    key = {**recording_key(model, worlds, site, reduce, layers), "proposition": proposition, "score": score, "k": k}
    path = cache_dir() / "neurons" / f"{content_key(key)}.json"
    if path.is_file():
        try:
            return NeuronSet.load(path, model=model, site=site)
        except ArtifactMismatchError:
            pass  # stale: recompute below
    acts = cached_recording(model, worlds, site, reduce, layers, progress)
    ns = score_units(acts, worlds.proposition(proposition), score).top(k)
    ns.save(path)
    return ns
