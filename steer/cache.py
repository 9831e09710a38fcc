"""Where steer keeps what it computed once, and the hashes of large files: paths and keys only.

On disk everything lives under :func:`cache_dir` (``$STEER_CACHE``, default ``~/.cache/steer``):

- ``models/gguf-<sha>/``: de-quantized GGUF weights (written by :func:`steer.models.load_gguf`);
- ``recordings/<key>/``: recordings, keyed by the model identity, prompt-set hash, template, site, token
  reduction and layers (:func:`steer.select.recording`);
- ``neurons/<key>.json``: neuron sets, keyed by the same plus the proposition, score and k
  (:func:`steer.select.select_units`);
- ``scorers/``: fitted text classifiers of the evaluation harness;
- ``file-hashes.json``: sha256 of large files by (path, inode, size, mtime and ctime), so a model file is hashed
  once. The ctime (the inode's change time) is set by the kernel on every write and on ``os.utime`` itself and cannot
  be set back, so an edit that keeps a file's size and mtime still makes it hashed again.

Every key is :func:`steer.artifacts.content_key` of what the entry was made from, including the artifact format
version, so entries of another format are never read. Writing is atomic (:mod:`steer.artifacts`).
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import tempfile
from pathlib import Path

from steer.artifacts import make_private_dir, private_dir_problem, write_json_atomic

_FALLBACK: dict[Path, Path] = {}


def cache_dir() -> Path:
    """Where steer caches models, recordings, neuron sets and scorers: ``$STEER_CACHE`` or ``~/.cache/steer``.

    When that directory cannot be created or written, a per-user directory in the system's temporary directory
    is used instead (said once on stderr), so a read-only home does not stop the work. That fallback,
    ``$TMPDIR/steer-cache-<uid>``, is created by this process with mode 0700, or used only when it is this user's
    own folder that no one else may write (not a symbolic link); otherwise a fresh private folder is made.

    A cache directory that steer creates is private (mode 0700). An existing one that every user may write (mode
    o+w, e.g. ``STEER_CACHE=/tmp``) is refused: weights or recordings planted there would be loaded.

    Raises:
        ValueError: ``STEER_CACHE`` is set but empty (it would put the cache in the current folder), or the cache
            directory is writable by every user.
    """
    env = os.environ.get("STEER_CACHE")
    if env is not None and not env.strip():
        raise ValueError("STEER_CACHE is set but empty; unset it (default ~/.cache/steer) or name a folder")
    wanted = Path(env if env is not None else "~/.cache/steer").expanduser()
    if wanted in _FALLBACK:
        return _FALLBACK[wanted]
    try:
        wanted.mkdir(mode=0o700, parents=True, exist_ok=True)
        if os.access(wanted, os.W_OK | os.X_OK):
            if wanted.stat().st_mode & 0o002:
                raise ValueError(
                    f"the cache directory {wanted} is writable by every user (mode "
                    f"{wanted.stat().st_mode & 0o7777:o}): files planted there would be loaded; make it private "
                    f"(chmod o-w {wanted}) or set STEER_CACHE to a folder of your own"
                )
            return wanted
    except OSError:
        pass
    fallback = Path(tempfile.gettempdir()) / f"steer-cache-{os.geteuid()}"
    problem = None if make_private_dir(fallback) else private_dir_problem(fallback)
    if problem is not None:
        fresh = Path(tempfile.mkdtemp(prefix=f"steer-cache-{os.geteuid()}-"))
        print(f"steer: {fallback} {problem}: not used; using the fresh folder {fresh}", file=sys.stderr)
        fallback = fresh
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
    return f"{path}|{st.st_dev}|{st.st_ino}|{st.st_size}|{st.st_mtime_ns}|{st.st_ctime_ns}"


def _read_memo() -> dict[str, str]:
    try:
        return dict(json.loads((cache_dir() / "file-hashes.json").read_text()))
    except (OSError, ValueError, TypeError):
        return {}


def remember_sha256(hashes: dict[Path, str]) -> None:
    """Record files' sha256 (computed when they were written) by (path, inode, size, mtime, ctime), so reading them
    back does not hash them again."""
    memo = _read_memo()
    memo.update({_memo_key(p): sha for p, sha in hashes.items()})
    write_json_atomic(cache_dir() / "file-hashes.json", memo)


def file_sha256(path: Path) -> str:
    """sha256 of a file, remembered in the cache by (path, inode, size, mtime, ctime) so large files are hashed
    once; any change to the file (``os.utime`` included) changes its ctime, so it is hashed again."""
    memo = _read_memo().get(_memo_key(path))
    if memo is not None:
        return memo
    sha = hash_file(path)
    remember_sha256({path: sha})
    return sha
