"""Saving artifacts safely and checking their provenance.

Every file steer writes goes through :func:`atomic_file` (a fresh temporary file created exclusively in the
target's directory, renamed into place when complete) and every directory through :func:`atomic_dir`, so an
interrupted run leaves nothing half-written under the final name. Artifacts (recorded activations, neuron sets)
carry their provenance: the model identity (id, revision or file hash, architecture and sizes), the hook site,
the token reduction, the prompt set's hash and template, and library versions. Loading one against another
model or site is an :class:`ArtifactMismatchError`. :func:`content_key` is the one hash that names cache
entries by what they were made from.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

# 2: units carry "score" (was "D"), neuron sets "score" (was "normalize"), recordings "reduce" (was "position")
FORMAT_VERSION = 2
# What makes two models the same model for artifact checks (dtype and device are not part of it).
IDENTITY_KEYS = ("model_id", "revision", "sha256", "architecture", "n_layers", "d_model", "d_mlp")


class ArtifactMismatchError(ValueError):
    """An artifact was made with another model, site or prompt set than the one it is used with."""


def content_key(obj: Any, length: int = 24) -> str:
    """A short hex sha256 of ``obj`` as canonical JSON: the name of a cache entry made from ``obj``.

    Args:
        obj: anything JSON can render (other values are rendered with ``str``).
        length: hex digits kept.

    Returns:
        The first ``length`` hex digits of the hash.
    """
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:length]


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextmanager
def atomic_file(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a fresh temporary path in ``path``'s directory; it replaces ``path`` only if the block completes.

    The temporary file is created exclusively (``mkstemp``: an unpredictable name, never a planted symlink), so
    writers may open it by name. On any exception it is removed and ``path`` is left as it was.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(name)
    os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; the result gets the mode a plain open() would give
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_json_atomic(path: str | os.PathLike[str], obj: Any) -> Path:
    """Write ``obj`` as indented JSON to ``path`` atomically and return the path."""
    path = Path(path)
    with atomic_file(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=1, default=str))
    return path


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _remove_stale_partials(target: Path) -> None:
    """Temporary directories of ``target`` left by a process that no longer runs (killed with SIGKILL, a crash)
    are never read; they are removed when the next write of ``target`` starts."""
    for p in target.parent.glob(f".{target.name}.partial-*"):
        pid = p.name.removeprefix(f".{target.name}.partial-").split("-", 1)[0]
        if pid.isdigit() and int(pid) != os.getpid() and not _pid_alive(int(pid)):
            shutil.rmtree(p, ignore_errors=True)


@contextmanager
def atomic_dir(target: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a fresh temporary directory that replaces ``target`` only if the block completes.

    The temporary directory is a sibling named ``.<target>.partial-<pid>-<random>``: never read as a result,
    removed on any exception (SIGTERM too, under :func:`terminate_as_exception`) and, after a SIGKILL, by the next
    write of the same target."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_partials(target)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.partial-{os.getpid()}-", dir=target.parent))
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    replace_dir(tmp, target)


def replace_dir(src: str | os.PathLike[str], target: str | os.PathLike[str]) -> None:
    """Put the complete directory ``src`` under the name ``target``, replacing what was there (a sibling of it).

    Only an empty folder or one steer wrote (:func:`steer_made`) is replaced; anything else is a
    :class:`FileExistsError` and ``src`` is removed."""
    src, target = Path(src), Path(target)
    try:
        check_replaceable(target)
    except FileExistsError:
        shutil.rmtree(src, ignore_errors=True)
        raise
    old = None
    if target.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{target.name}.old-", dir=target.parent))
        os.replace(target, old / "content")
    os.replace(src, target)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


class Terminated(BaseException):
    """The process received SIGTERM; raised so that ``finally`` blocks and temporary files are cleaned up."""


@contextmanager
def terminate_as_exception() -> Iterator[None]:
    """Within the block (in the main thread), SIGTERM raises :class:`Terminated` instead of killing the process at
    once, so that every atomic write in progress removes its temporary files."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: object) -> None:
        raise Terminated(f"terminated by signal {signum}")

    old = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old)


RUN_MARKER = "steer-run.json"


@contextmanager
def output_dir(out: str | os.PathLike[str], what: dict[str, Any]) -> Iterator[Path]:
    """A result folder written whole or not at all: yields a temporary directory, writes ``steer-run.json`` (what
    made it, and its files) last, and swaps it in for ``out`` when the block completes.

    An existing ``out`` is replaced only when it is a previous steer result or empty (:func:`check_replaceable`);
    any other existing path is refused, so a mistyped ``--out`` never deletes someone's folder."""
    out = Path(out)
    check_replaceable(out, "--out")
    with atomic_dir(out) as tmp:
        yield tmp
        files = sorted(str(p.relative_to(tmp)) for p in tmp.rglob("*") if p.is_file())
        write_json_atomic(tmp / RUN_MARKER, {**what, "files": files, "complete": True})


def read_json(path: str | os.PathLike[str], kind: str) -> dict[str, Any]:
    """Read an artifact file, checking that it holds ``kind`` in a format version this library reads."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no {kind} at {path}")
    try:
        obj = json.loads(read_regular(path, kind))
    except ValueError as e:
        raise ArtifactMismatchError(f"{path} is not a valid {kind} file ({e})") from None
    if not isinstance(obj, dict) or obj.get("kind") != kind:
        found = obj.get("kind") if isinstance(obj, dict) else type(obj).__name__
        raise ArtifactMismatchError(f"{path} holds {found!r}, not {kind!r}")
    if obj.get("format") != FORMAT_VERSION:
        raise ArtifactMismatchError(
            f"{path} is a {kind} in format {obj.get('format')!r}; this steer reads format {FORMAT_VERSION}. "
            "Recreate it with this version (cached entries under $STEER_CACHE are recreated when deleted)."
        )
    return obj


def check_model(saved_identity: Mapping[str, Any], current_identity: Mapping[str, Any], what: str) -> None:
    """Raise ArtifactMismatchError unless the current model's identity matches the one an artifact was made with."""
    diffs = [
        f"{k}: saved {saved_identity.get(k)!r}, given {current_identity.get(k)!r}"
        for k in saved_identity
        if saved_identity.get(k) != current_identity.get(k)
    ]
    if diffs:
        raise ArtifactMismatchError(f"{what} was made with another model ({'; '.join(diffs)})")


def check_site(saved_site: str, site: str | None, what: str) -> None:
    """Raise ArtifactMismatchError when ``site`` is given and differs from the artifact's site."""
    if site is not None and site != saved_site:
        raise ArtifactMismatchError(f"{what} was recorded at site {saved_site!r}, not {site!r}")


# ------------------------------------------------------------------------------ what steer wrote, and whose it is

# Files that mark a folder as steer's own: the marker's name and what it must hold.
DIR_MARKERS: dict[str, str | None] = {
    RUN_MARKER: "complete",  # a result folder (steer find/stability/eval --out)
    "manifest.json": "activations",  # a recording
    "steer_export.json": "steer_export",  # steer export --format pt / model
    "steer_source.json": "gguf",  # de-quantized GGUF weights in the cache
    "summary.json": "find_summary",  # FindResult.save
}
STEER_FILE_KINDS = ("neuron_set", "activations", "find_summary", "steer_export")
MAX_MARKER_BYTES = 64 << 20


def read_regular(path: str | os.PathLike[str], what: str = "file", limit: int | None = None) -> str:
    """The UTF-8 text of a regular file. A FIFO, a device or a directory is refused before it is opened for
    reading (opening a FIFO would wait for a writer forever); ``limit`` caps the bytes read."""
    return read_regular_bytes(path, what, limit).decode("utf-8")


def read_regular_bytes(path: str | os.PathLike[str], what: str = "file", limit: int | None = None) -> bytes:
    """The bytes of a regular file (see :func:`read_regular`)."""
    import stat

    path = Path(path)
    st = os.stat(path)
    if not stat.S_ISREG(st.st_mode):
        raise ValueError(f"{what} {path} is not a regular file (a FIFO, device or folder); give a regular file")
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))  # never waits, even if swapped for a FIFO
    with os.fdopen(fd, "rb") as f:
        if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
            raise ValueError(f"{what} {path} is not a regular file; give a regular file")
        return f.read() if limit is None else f.read(limit)


def _json_kind(path: Path) -> dict[str, Any] | None:
    try:
        if path.is_symlink() or not path.is_file() or path.stat().st_size > MAX_MARKER_BYTES:
            return None
        obj = json.loads(read_regular(path))
    except (OSError, ValueError):
        return None
    return obj if isinstance(obj, dict) else None


def steer_made(path: str | os.PathLike[str]) -> bool:
    """True when ``path`` is something steer wrote: a folder holding one of :data:`DIR_MARKERS` with the content
    it must hold, a JSON artifact of a steer kind, or a GGUF control vector. Symbolic links never are."""
    path = Path(path)
    if path.is_symlink():
        return False
    if path.is_dir():
        for name, want in DIR_MARKERS.items():
            obj = _json_kind(path / name)
            if obj is None:
                continue
            if want == "complete" and obj.get("complete") is True:
                return True
            if want == "gguf" and "gguf" in obj and "files" in obj:
                return True
            if obj.get("kind") == want:
                return True
        return False
    if path.suffix == ".gguf":
        return _is_control_vector(path)
    obj = _json_kind(path)
    return obj is not None and obj.get("kind") in STEER_FILE_KINDS


def _is_control_vector(path: Path) -> bool:
    try:
        import gguf

        f = gguf.GGUFReader(str(path)).get_field("general.architecture")
        return f is not None and bytes(f.parts[-1]) == b"controlvector"
    except Exception:  # not a GGUF file at all
        return False


def check_replaceable(path: str | os.PathLike[str], what: str = "output", folder: bool = True) -> None:
    """Raise :class:`FileExistsError` unless writing ``path`` replaces nothing steer did not write.

    A path that does not exist, an empty folder (``folder``) or something steer wrote (:func:`steer_made`) may be
    replaced; a symbolic link, a file where a folder goes (or the reverse), and a folder or file of the user's are
    refused with one line naming them."""
    path = Path(path)
    if path.is_symlink():
        raise FileExistsError(f"{what} {path} is a symbolic link; steer never writes through one: choose another path")
    if not path.exists():
        return
    if folder and not path.is_dir():
        raise FileExistsError(f"{what} {path} is a file, not a folder; choose a folder path")
    if not folder and path.is_dir():
        raise FileExistsError(f"{what} {path} is a folder, not a file; choose a file path")
    if folder and not any(path.iterdir()):
        return
    if steer_made(path):
        return
    kind = "folder" if folder else "file"
    raise FileExistsError(
        f"{what} {path} exists and is not a steer result {kind} (steer never replaces what it did not write); "
        f"choose a new {'or empty folder' if folder else 'file name'}"
    )


def _uid() -> int:
    return os.geteuid()


def private_dir_problem(path: str | os.PathLike[str]) -> str | None:
    """None when ``path`` is a real folder (not a symbolic link) owned by this user that no group or other user
    may write, else what is wrong with it: the test a work directory or a fallback cache must pass before
    anything in it is trusted."""
    import stat

    path = Path(path)
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return "does not exist"
    if stat.S_ISLNK(st.st_mode):
        return "is a symbolic link"
    if not stat.S_ISDIR(st.st_mode):
        return "is not a folder"
    if st.st_uid != _uid():
        return f"belongs to another user (uid {st.st_uid})"
    if st.st_mode & 0o022:
        return f"may be written by other users (mode {stat.S_IMODE(st.st_mode):o})"
    return None


def make_private_dir(path: str | os.PathLike[str]) -> bool:
    """Create ``path`` as a folder only this user may use (mode 0700); False when something is there already."""
    try:
        os.mkdir(path, 0o700)
    except FileExistsError:
        return False
    return True


def sealed(obj: Mapping[str, Any]) -> dict[str, Any]:
    """``obj`` with ``sha256``: the hash of its canonical JSON (everything else in it), checked by :func:`unseal`."""
    body = {k: v for k, v in obj.items() if k != "sha256"}
    return {**body, "sha256": content_key(body, length=64)}


def unseal(obj: dict[str, Any], what: str) -> dict[str, Any]:
    """``obj`` without its ``sha256``, which must match its content: an artifact edited by hand (or cut short) is
    an :class:`ArtifactMismatchError`."""
    body = {k: v for k, v in obj.items() if k != "sha256"}
    saved = obj.get("sha256")
    if saved is None:
        raise ArtifactMismatchError(
            f"{what} carries no checksum (written by hand or by an older steer): recreate it with this steer"
        )
    if saved != content_key(body, length=64):
        raise ArtifactMismatchError(
            f"{what} does not match the checksum written with it (edited by hand or corrupted); recreate it"
        )
    return body
