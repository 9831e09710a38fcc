"""Opt-in slow tests on the real Qwen2-architecture 0.5B (Qwen2.5-Coder-0.5B-Instruct, Q4 GGUF).

Run with STEER_SLOW=1; the model comes from ../shared/tools/get-qwen-gguf (or STEER_QWEN_GGUF)."""

import os
import subprocess
from pathlib import Path

import pytest
import torch

from steer.record import record
from steer.worlds import Worlds

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(os.environ.get("STEER_SLOW") != "1", reason="slow: set STEER_SLOW=1 to run")]

SHARED = Path(__file__).resolve().parents[2] / "shared"


@pytest.fixture(scope="module")
def qwen(cache_env):
    from steer.models import load_model

    path = os.environ.get("STEER_QWEN_GGUF") or subprocess.run(
        [str(SHARED / "tools" / "get-qwen-gguf")], check=True, capture_output=True, text=True).stdout.strip()
    return load_model(path)


def test_qwen_shapes_and_hf_equality(qwen):
    from tests.test_record import hf_reference

    assert (qwen.n_layers, qwen.d_mlp, qwen.d_model) == (24, 4864, 896)
    assert qwen.provenance["architecture"] == "Qwen2ForCausalLM"
    worlds = Worlds.from_file(SHARED / "data" / "sst2" / "validation.tsv", text_field="sentence",
                              template="paper-2shot", n=6, seed=0)
    for site in ("mlp", "resid"):
        acts = record(qwen, worlds, site=site, layers=[0, 11, 23], batch_size=3, progress=False)
        ref = hf_reference(qwen, worlds.prompts, site, [0, 11, 23], "last")
        assert ((acts.X - ref).abs().max() / ref.abs().max()).item() < 1e-4


def test_qwen_paper_protocol_strength_lives_in_late_layers(qwen):
    worlds = Worlds.from_file(SHARED / "data" / "sst2" / "train.tsv", text_field="sentence",
                              template="paper-2shot", n=128, seed=0).with_vader()
    acts = record(qwen, worlds, site="resid", batch_size=16, progress=False)
    s = acts.strength(worlds.proposition("vader_pos:top25"))
    peak = s.D.abs().amax(1)
    assert peak[18:].max() > peak[:6].max()
    ns = s.top(k=5)
    assert torch.isfinite(torch.tensor([u.score for u in ns.units_for])).all()
