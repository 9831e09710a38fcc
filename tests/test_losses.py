"""Reasons-based losses: gradients (gradcheck in float64), known values on constructed batches, missing classes,
numerical range and use in a training loop."""

from __future__ import annotations

import math

import pytest
import torch

from steer import doxastic_loss, elementary_loss, reasons_difference
from steer.losses import batch_strength
from steer.strength import doxastic_strength, elementary_reason

LABELS = torch.tensor([0, 0, 1, 1, 1, 2, 2, 0, 1, 2, 0, 1])


def _logits(seed: int = 0, n: int = 12, c: int = 3) -> torch.Tensor:
    return torch.randn(n, c, dtype=torch.float64, generator=torch.Generator().manual_seed(seed)).requires_grad_(True)


@pytest.mark.parametrize("loss", [doxastic_loss, elementary_loss])
@pytest.mark.parametrize("reduction", ["sum", "mean"])
def test_class_losses_pass_gradcheck(loss, reduction):
    z = _logits()
    assert torch.autograd.gradcheck(lambda z: loss(z, LABELS, reduction=reduction), (z,))


def test_reasons_difference_and_weighted_strength_pass_gradcheck():
    s = _logits(1, 12, 1)[:, 0].detach().requires_grad_(True)
    fav = torch.tensor([1, 0, 1, 0, 1, 0, 1, 0, 1, 1, 0, 0], dtype=torch.bool)
    priv = torch.arange(12) < 6
    assert torch.autograd.gradcheck(lambda s: reasons_difference(s, fav, priv), (s,))
    w = torch.rand(12, dtype=torch.float64) + 0.1
    assert torch.autograd.gradcheck(lambda s: batch_strength(s, fav, w)[0], (s,))


def test_batch_strength_equals_the_library_strength_with_any_prior():
    z = _logits(2, 30, 4).detach()
    A = torch.rand(30, generator=torch.Generator().manual_seed(3)) < 0.4
    for prior in (None, torch.rand(30, dtype=torch.float64) + 0.05):
        D, ok = batch_strength(z, A, prior)
        assert ok.all()
        torch.testing.assert_close(D, doxastic_strength(z, A, prior), rtol=1e-12, atol=1e-12)


def test_known_values_on_elementary_logits():
    # logits[:, d] = c * el_{A_d}: every class has D = c exactly, and cosine 1 with its elementary reason
    c = 1.7
    z = torch.stack([c * elementary_reason(LABELS == d) for d in range(3)], 1)
    D, _ = batch_strength(z, LABELS[:, None] == torch.arange(3))
    torch.testing.assert_close(D, torch.full((3,), c, dtype=torch.float64))
    assert doxastic_loss(z, LABELS).item() == pytest.approx(3 * math.exp(-c), rel=1e-12)
    assert doxastic_loss(z, LABELS, reduction="mean").item() == pytest.approx(math.exp(-c), rel=1e-12)
    assert elementary_loss(z, LABELS).item() == pytest.approx(0.0, abs=1e-12)
    assert elementary_loss(-z, LABELS).item() == pytest.approx(6.0, abs=1e-12)  # cos = -1 for every class


def test_a_missing_class_contributes_nothing_and_gets_no_gradient():
    z = _logits(4, 12, 5)  # classes 3 and 4 never occur in LABELS
    for loss in (doxastic_loss, elementary_loss):
        z.grad = None
        value = loss(z, LABELS)
        value.backward()
        assert torch.isfinite(value)
        assert torch.all(z.grad[:, 3:] == 0) and torch.isfinite(z.grad).all()
        present = loss(z[:, :3].detach(), LABELS)
        assert value.item() == pytest.approx(present.item(), rel=1e-12)
        mean = loss(z, LABELS, reduction="mean").item()
        assert mean == pytest.approx(present.item() / 3, rel=1e-12)


def test_a_batch_of_one_class_gives_zero_connected_to_the_graph():
    z = _logits(5, 6, 3)
    y = torch.zeros(6, dtype=torch.long)
    for loss in (doxastic_loss, elementary_loss):
        z.grad = None
        value = loss(z, y)
        assert value.item() == 0.0 and value.requires_grad
        value.backward()
        assert torch.all(z.grad == 0)


def test_reasons_difference_known_value_and_group_shift_blindness():
    # within each group the score is c_g * el_{A+}: D under the group's prior is c_g, so RD = (c_priv - c_unpriv)^2
    fav = torch.tensor([1, 0, 1, 0, 1, 0, 1, 1], dtype=torch.bool)
    priv = torch.tensor([1, 1, 1, 1, 0, 0, 0, 0], dtype=torch.bool)
    el = elementary_reason(fav)
    s = torch.where(priv, 2.0 * el, 0.5 * el)
    assert reasons_difference(s, fav, priv).item() == pytest.approx(1.5**2, rel=1e-12)
    # D is shift invariant, so shifting one group's scores leaves RD unchanged: RD cannot see a group offset
    shifted = s - 5.0 * (~priv)
    assert reasons_difference(shifted, fav, priv).item() == pytest.approx(1.5**2, rel=1e-12)


def test_reasons_difference_is_zero_when_a_group_lacks_an_outcome():
    s = torch.randn(8, dtype=torch.float64, requires_grad=True)
    fav = torch.tensor([1, 1, 1, 1, 1, 0, 1, 0], dtype=torch.bool)  # the privileged half has no unfavourable item
    priv = torch.tensor([1, 1, 1, 1, 0, 0, 0, 0], dtype=torch.bool)
    value = reasons_difference(s, fav, priv)
    value.backward()
    assert value.item() == 0.0 and torch.all(s.grad == 0)


def test_huge_logits_stay_finite():
    z = _logits(6, 16, 3).detach() * 1e4
    y = torch.arange(16) % 3
    D, _ = batch_strength(z.float(), y[:, None] == torch.arange(3))
    assert torch.isfinite(D).all()
    assert torch.isfinite(elementary_loss(z.float(), y))
    assert torch.isfinite(reasons_difference(z[:, 0].float(), y == 0, torch.arange(16) < 8))


@pytest.mark.parametrize(
    ("logits", "labels", "match"),
    [
        (torch.zeros(4, 3), torch.tensor([0, 1, 2, 3]), "0..2"),
        (torch.zeros(4, 3), torch.tensor([0.0, 1, 2, 1]), "integer"),
        (torch.zeros(4), torch.tensor([0, 1, 0, 1]), "batch, classes"),
        (torch.zeros(4, 3), torch.tensor([0, 1, 2]), "shape"),
    ],
)
def test_bad_input_is_refused(logits, labels, match):
    with pytest.raises(ValueError, match=match):
        doxastic_loss(logits, labels)


def test_usable_as_a_term_in_a_training_loop():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(96, 5, generator=g)
    y = (x[:, 0] > 0).long() + (x[:, 1] > 0).long()  # three classes
    model = torch.nn.Linear(5, 3)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    before = doxastic_loss(model(x), y).item()
    for step in range(60):
        idx = torch.arange(step % 3 * 32, step % 3 * 32 + 32)
        loss = torch.nn.functional.cross_entropy(model(x[idx]), y[idx]) + doxastic_loss(model(x[idx]), y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert doxastic_loss(model(x), y).item() < 0.7 * before
