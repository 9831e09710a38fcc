"""Shared fixtures: tiny random-weight Qwen2 and Llama models (built here, offline) and the bundled SmolLM2."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

CORPUS = [
    "the film was wonderful and the food was terrible",
    "not bad at all, a lovely day with friends",
    "awful service, cold soup, never again",
    "a quiet morning in the old town by the sea",
    "great music and a warm crowd in the evening",
]
LABELS = ["negative", "positive", "negative", "negative", "positive"]  # one label per text, always the same


def labelled_corpus(repeats: int = 2) -> list[dict[str, str]]:
    """The corpus as labelled records, each text with its own label every time it appears (a text with both
    labels would make every unit's D zero: the degenerate case steer refuses)."""
    return [{"text": t, "label": lab} for _ in range(repeats) for t, lab in zip(CORPUS, LABELS)]


def _tiny_tokenizer(path: Path):
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    trainer = trainers.BpeTrainer(vocab_size=200, special_tokens=["<unk>", "<pad>", "<eos>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(CORPUS * 5, trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", pad_token="<pad>", eos_token="<eos>")
    fast.save_pretrained(path)
    return fast


def build_tiny_model(path: Path, arch: str) -> Path:
    """A 3-layer random-weight model of the given architecture with a tiny BPE tokenizer, saved to ``path``."""
    from transformers import AutoModelForCausalLM, LlamaConfig, Qwen2Config

    tok = _tiny_tokenizer(path)
    cls = {"qwen2": Qwen2Config, "llama": LlamaConfig}[arch]
    cfg = cls(vocab_size=len(tok), hidden_size=32, intermediate_size=48, num_hidden_layers=3, num_attention_heads=4,
              num_key_value_heads=2, max_position_embeddings=128, pad_token_id=tok.pad_token_id,
              eos_token_id=tok.eos_token_id, bos_token_id=None, tie_word_embeddings=False)
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(cfg)
    model.save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def cache_env(tmp_path_factory):
    """Point STEER_CACHE at a session folder unless the caller chose one."""
    if "STEER_CACHE" not in os.environ:
        os.environ["STEER_CACHE"] = str(tmp_path_factory.mktemp("steer-cache"))
    return Path(os.environ["STEER_CACHE"])


@pytest.fixture(scope="session", params=["qwen2", "llama"])
def tiny_model(request, tmp_path_factory, cache_env):
    from steer.models import load_model

    path = build_tiny_model(tmp_path_factory.mktemp(f"tiny-{request.param}"), request.param)
    return load_model(str(path))


@pytest.fixture(scope="session")
def tiny_qwen(tmp_path_factory, cache_env):
    from steer.models import load_model

    return load_model(str(build_tiny_model(tmp_path_factory.mktemp("tiny-qwen2-single"), "qwen2")))


@pytest.fixture(scope="session")
def bundled(cache_env):
    from steer.models import load_model

    return load_model("bundled")


@pytest.fixture
def toy_records():
    return [
        {"text": "the film was wonderful", "label": "positive", "domain": "films", "score": "0.9"},
        {"text": "the food was terrible", "label": "negative", "domain": "food", "score": "0.1"},
        {"text": "not bad at all", "label": "positive", "domain": "misc", "score": "0.7"},
        {"text": "awful service, cold soup, never again", "label": "negative", "domain": "services", "score": "0.0"},
        {"text": "a quiet morning in the old town", "label": "neutral", "domain": "travel", "score": "0.5"},
        {"text": "great music and a warm crowd", "label": "positive", "domain": "music", "score": "0.95"},
    ]
