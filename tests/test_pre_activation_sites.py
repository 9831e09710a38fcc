"""The MLP's pre-activation sites (``mlp_pre`` = gate(x), ``mlp_pre_linear`` = up(x)) on tiny Qwen2 and Llama models:
recording reads the HF modules' outputs, a rewrite there equals the same rewrite of gate_proj's / up_proj's output in
the plain HF model, a constant shift there is *not* a constant vector after the block (it reaches the output through
act'(gate) * up), and export refuses it with a message that says why."""

from __future__ import annotations

import pytest
import torch

from steer import Intervention, Steerer, Worlds, record
from steer.export import ExportError
from steer.interventions import Affine, LayerEdit
from tests.conftest import labelled_corpus
from tests.test_record import PRE_MODULE, hf_reference

PROMPTS = ["the film was", "a quiet morning in the old town"]


@pytest.mark.parametrize("site", ["mlp_pre", "mlp_pre_linear"])
def test_recording_reads_the_gate_and_up_projections(tiny_model, toy_records, site):
    worlds = Worlds.from_records(toy_records, "plain")
    acts = record(tiny_model, worlds, site=site, layers=[0, 2], reduce="last", batch_size=3, progress=False)
    assert acts.X.shape == (len(worlds), 2, tiny_model.d_mlp) and acts.site == site
    ref = hf_reference(tiny_model, worlds.prompts, site, [0, 2], "last")
    torch.testing.assert_close(acts.X, ref, rtol=1e-4, atol=1e-5)


@torch.no_grad()
@pytest.mark.parametrize("site", ["mlp_pre", "mlp_pre_linear"])
def test_a_rewrite_there_equals_editing_the_projection_in_plain_hf(tiny_model, site):
    layer, idx, shift = 1, torch.tensor([0, 3, 5]), torch.tensor([4.0, -3.0, 2.5])
    edit = {layer: LayerEdit(idx, Affine(torch.ones(3), shift))}
    ids, mask = tiny_model.tokenize(PROMPTS)
    plain = tiny_model.bridge(ids, attention_mask=mask)
    with Steerer.from_edits(tiny_model, site, edit):
        steered = tiny_model.bridge(ids, attention_mask=mask)
    hf = tiny_model.bridge.original_model

    def shifted(mod, args, out):
        out = out.clone()
        out[..., idx] += shift
        return out

    handle = getattr(hf.model.layers[layer].mlp, PRE_MODULE[site]).register_forward_hook(shifted)
    try:
        ref = hf(input_ids=ids, attention_mask=mask).logits
    finally:
        handle.remove()
    assert not torch.allclose(steered, plain, atol=1e-3)
    torch.testing.assert_close(steered, ref, rtol=1e-4, atol=1e-4)


@torch.no_grad()
def test_a_constant_shift_before_the_gate_moves_each_token_by_its_own_vector(tiny_model):
    """Unlike a shift of ``mlp`` units (a constant vector, tests/test_shift_is_a_vector.py), the same additive rule
    at ``mlp_pre`` changes the block's output by act'(gate) * up per token, which depends on the input."""
    w = Worlds.from_records(labelled_corpus(2))
    acts = record(tiny_model, w, site="mlp_pre", reduce="mean", progress=False)
    ns = acts.strength(w.proposition("positive"), normalize="rank").top(k=6)
    assert ns.site == "mlp_pre"
    steerer = Steerer(tiny_model, ns, Intervention("additive", 40.0))
    first = min(steerer.edits)
    name = f"blocks.{first}.hook_resid_post"
    ids, mask = tiny_model.tokenize(PROMPTS)
    _, base = tiny_model.bridge.run_with_cache(ids, attention_mask=mask, names_filter=name)
    with steerer:
        _, moved = tiny_model.bridge.run_with_cache(ids, attention_mask=mask, names_filter=name)
    delta = (moved[name] - base[name])[mask.bool()]  # [real tokens, d_model]
    assert delta.abs().max() > 1e-3 and (delta - delta[:1]).abs().max() > 1e-3
    with pytest.raises(ExportError, match="before its nonlinearity"):
        steerer.exported  # noqa: B018 (the property compiles the export)
    text = steerer.generate(PROMPTS[0], max_new_tokens=3, do_sample=False)
    assert isinstance(text, str)


def test_generate_selects_and_steers_at_the_gate(tiny_model):
    import steer

    w = Worlds.from_records(labelled_corpus(2))
    out = steer.generate(PROMPTS, toward="positive", model=tiny_model, worlds=w, site="mlp_pre", k=4,
                         max_new_tokens=3, seed=0, progress=False)
    assert isinstance(out, list) and len(out) == 2 and all(isinstance(t, str) for t in out)
