"""A constant shift of MLP units is a residual steering vector (docs/steering.md, "A constant shift is a steering
vector"): at ``site="mlp"`` the units are the input of W_down and the MLP output is added straight to the residual
stream, so shifting units i by t_i adds sum_i t_i W_down[:, i] after the block, at every token. Checked numerically
on tiny Qwen2 and Llama models: the additive rule through its hooks gives the same logits as that vector added at
``hook_resid_post`` of each steered layer, and a per-unit scale (an input-dependent edit) does not."""

from __future__ import annotations

import torch

from steer import Intervention, Steerer, Worlds, record
from steer.fold import output_projection
from steer.interventions import Affine, LayerEdit
from tests.conftest import labelled_corpus

PROMPTS = ["the film was", "a quiet morning in the old town"]


def _vector_edits(model, steerer):
    """{layer: the residual edit that adds W_down[:, idx] @ shift after the block}."""
    out = {}
    for layer, edit in steerer.edits.items():
        assert edit.affine is not None and edit.affine.is_shift
        w = output_projection(model, layer).weight.float()  # [d_model, d_mlp]
        v = w[:, edit.index] @ edit.affine.shift
        out[layer] = LayerEdit(torch.arange(v.numel()), Affine(torch.ones_like(v), v))
    return out


@torch.no_grad()
def test_the_additive_rule_equals_a_residual_vector(tiny_model):
    w = Worlds.from_records(labelled_corpus(2))
    acts = record(tiny_model, w, site="mlp", reduce="mean", progress=False)
    ns = acts.strength(w.proposition("positive"), normalize="rank").top(k=6)
    ids, mask = tiny_model.tokenize(PROMPTS)
    plain = tiny_model.bridge(ids, attention_mask=mask)
    neurons = Steerer(tiny_model, ns, Intervention("additive", 40.0))
    with neurons:
        by_units = tiny_model.bridge(ids, attention_mask=mask)
    with Steerer.from_edits(tiny_model, "resid", _vector_edits(tiny_model, neurons)):
        by_vector = tiny_model.bridge(ids, attention_mask=mask)
    assert not torch.allclose(by_units, plain, atol=1e-3)  # the push is large enough to matter
    torch.testing.assert_close(by_units, by_vector, rtol=1e-4, atol=1e-4)
    # after the first steered block, the constant shift moves every token by the same vector; a per-unit scale (an
    # input-dependent map, e.g. 3a) moves each token by its own
    first = min(neurons.edits)
    name = f"blocks.{first}.hook_resid_post"

    def delta(steerer):
        _, base = tiny_model.bridge.run_with_cache(ids, attention_mask=mask, names_filter=name)
        with steerer:
            _, moved = tiny_model.bridge.run_with_cache(ids, attention_mask=mask, names_filter=name)
        return (moved[name] - base[name])[mask.bool()]  # [real tokens, d_model]

    shift = delta(Steerer(tiny_model, ns, Intervention("additive", 40.0)))
    torch.testing.assert_close(shift, shift[:1].expand_as(shift), rtol=1e-4, atol=1e-4)
    e = neurons.edits[first]
    scale = {first: LayerEdit(e.index, Affine(torch.full_like(e.affine.shift, 3.0), torch.zeros_like(e.affine.shift)))}
    moved = delta(Steerer.from_edits(tiny_model, "mlp", scale))
    assert (moved - moved[:1]).abs().max() > 1e-3


@torch.no_grad()
def test_write_alignment_is_how_far_a_one_sigma_shift_moves_the_stream(tiny_model):
    """The write score of a unit is the movement of its layer's hook_resid_post along the direction when the unit
    alone is shifted by one sigma (selection.write_alignment, the score of the bench's ``neurons-write``)."""
    import pytest

    from steer.selection import write_alignment

    w = Worlds.from_records(labelled_corpus(2))
    acts = record(tiny_model, w, site="mlp", reduce="mean", progress=False)
    stats = acts.strength(w.proposition("positive")).stats
    layers = list(acts.layers)
    w_out = torch.stack([output_projection(tiny_model, layer).weight.float().T for layer in layers])
    g = torch.Generator().manual_seed(0)
    directions = torch.randn(len(layers), w_out.shape[2], generator=g)
    score = write_alignment(w_out, stats.std, directions)
    layer, unit = 1, int(score[1].abs().argmax())
    ids, mask = tiny_model.tokenize(PROMPTS)
    name = f"blocks.{layer}.hook_resid_post"
    _, base = tiny_model.bridge.run_with_cache(ids, attention_mask=mask, names_filter=name)
    sigma = stats.std[layers.index(layer), unit].float()
    one = {layer: LayerEdit(torch.tensor([unit]), Affine(torch.ones(1), sigma.reshape(1)))}
    with Steerer.from_edits(tiny_model, "mlp", one):
        _, moved = tiny_model.bridge.run_with_cache(ids, attention_mask=mask, names_filter=name)
    along = (moved[name] - base[name])[mask.bool()] @ (directions[1] / directions[1].norm())
    torch.testing.assert_close(along, torch.full_like(along, float(score[1, unit])), rtol=1e-3, atol=1e-4)
    # divided by a per-layer scale; shapes are checked
    halved = write_alignment(w_out, stats.std, directions, torch.full((len(layers),), 2.0))
    torch.testing.assert_close(halved, score / 2)
    with pytest.raises(ValueError, match="directions"):
        write_alignment(w_out, stats.std, directions[:, :3])
    with pytest.raises(ValueError, match="nonzero direction"):
        write_alignment(w_out, stats.std, torch.zeros_like(directions))
