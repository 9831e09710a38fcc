"""Reasons-based training losses (Hornischer & Leitgeb 2025, section 4.2; docs/method.md section 6).

Differentiable, batched and numerically stable (log-sum-exp in float64 inside; the result has the input's dtype),
so each is a term to add to anyone's training loss. The worlds are the items of one batch, with the uniform prior
(or a prior conditioned on a group, for RD). For a batch of logits ``z`` [N, C] and labels ``y`` [N]:

- **strength** D(x, A, b) = 1/2 * [ LSE_{k in A}(log b_k + x_k) - LSE_{k not in A}(log b_k + x_k)
  - log b(A) + log b(A^c) ]  (:func:`batch_strength`, one value per column of x).
- **doxastic loss** = sum_d exp(-D(r_d, A_d, uniform)), where r_d = z[:, d] (the d-th logit over the batch) and
  A_d = {k : y_k = d}. It is small when every class's logit speaks strongly for its own class.
- **elementary loss** = sum_d (1 - cos(r_d, el_{A_d})), where el_A = +1 on A and -1 off A (the elementary
  reason, D(c el_A, A, b) = c): it pulls each class's logit vector toward the pattern "high on d, low elsewhere".
- **reasons difference** RD = (D(s, A+, b(.|priv)) - D(s, A+, b(.|unpriv)))^2 for a score s [N] (the logit of
  the favourable outcome), A+ = the items whose true outcome is favourable and b(.|G) the uniform prior on group G:
  how much more the score speaks for the truth in one group than in the other. Zero when the classifier's
  evidence for the favourable outcome is equally strong in both groups.

**Missing classes.** D(x, A, b) is undefined when b(A) = 0 or b(A) = 1. A class absent from the batch (or the
only class present) gives no term: it contributes exactly 0 and no gradient, and ``reduction="mean"`` divides by
the number of classes that do contribute. The same rule holds for the elementary loss (whose el_A is defined but
whose proposition is trivial) and for RD, which is 0 when either group lacks favourable or unfavourable items. A
batch where no class contributes gives a loss of 0 that is still connected to the graph. No case returns NaN.

**Range.** exp(-D) is computed in float64 and cast back: in float32 it overflows only for D < -88, i.e. when a
class's logits are about 176 nats higher off the class than on it.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from jaxtyping import Bool, Float, Int
from torch import Tensor

Reduction = Literal["sum", "mean"]


def batch_strength(
    x: Float[Tensor, " n *cols"], A: Bool[Tensor, " n *cols"], weights: Float[Tensor, " n"] | None = None
) -> tuple[Float[Tensor, "*cols"], Bool[Tensor, "*cols"]]:
    """Differentiable D(x_j, A_j, b) for every column j, with b proportional to ``weights`` (uniform if None).

    Args:
        x: reasons vectors, worlds (batch items) first.
        A: the proposition of each column (the same shape as x, or [n] for one proposition for every column).
        weights: non-negative prior weights over the worlds; worlds of weight 0 are outside the prior's support.

    Returns:
        (D, defined): D in float64 with 0 where the proposition is trivial under b (no gradient there), and the
        mask of columns where it is defined.
    """
    if x.ndim == 0:
        raise ValueError("x needs the worlds on its first axis")
    A = torch.as_tensor(A, device=x.device)
    if A.dtype != torch.bool:
        raise TypeError(f"A must be a boolean mask, got {A.dtype}")
    if A.shape != x.shape:
        if A.shape != x.shape[:1]:
            raise ValueError(f"A has shape {tuple(A.shape)}; expected {tuple(x.shape)} or ({x.shape[0]},)")
        A = A.reshape(-1, *([1] * (x.ndim - 1))).expand_as(x)
    z = x.to(torch.float64)
    if weights is None:
        logw = torch.zeros(x.shape[0], dtype=torch.float64, device=x.device)
        support = torch.ones(x.shape[0], dtype=torch.bool, device=x.device)
    else:
        w = torch.as_tensor(weights, dtype=torch.float64, device=x.device)
        if w.shape != x.shape[:1] or not torch.isfinite(w).all() or (w < 0).any():
            raise ValueError(f"weights must be finite, non-negative and of shape ({x.shape[0]},)")
        support = w > 0
        logw = torch.log(torch.where(support, w, torch.ones_like(w)))
    shape = (-1, *([1] * (x.ndim - 1)))
    logw, support = logw.reshape(shape), support.reshape(shape)
    in_a, in_c = A & support, ~A & support
    floor = torch.finfo(torch.float64).min  # a finite stand-in for log 0: no inf - inf, no NaN gradients
    zw = z + logw
    lse_a = torch.logsumexp(zw.masked_fill(~in_a, floor), 0)
    lse_c = torch.logsumexp(zw.masked_fill(~in_c, floor), 0)
    lw = logw.expand_as(z)
    prior_a = torch.logsumexp(lw.masked_fill(~in_a, floor), 0)
    prior_c = torch.logsumexp(lw.masked_fill(~in_c, floor), 0)
    defined = in_a.any(0) & in_c.any(0)
    D = 0.5 * (lse_a - lse_c - prior_a + prior_c)
    return torch.where(defined, D, torch.zeros_like(D)), defined


def _class_masks(logits: Tensor, labels: Tensor) -> Tensor:
    if logits.ndim != 2:
        raise ValueError(f"logits must be [batch, classes], got shape {tuple(logits.shape)}")
    labels = torch.as_tensor(labels, device=logits.device)
    if labels.shape != logits.shape[:1] or labels.dtype.is_floating_point or labels.dtype == torch.bool:
        raise ValueError(f"labels must be integer class indices of shape ({logits.shape[0]},)")
    if len(labels) and (labels.min() < 0 or labels.max() >= logits.shape[1]):
        raise ValueError(f"labels must lie in 0..{logits.shape[1] - 1}")
    return labels[:, None] == torch.arange(logits.shape[1], device=logits.device)[None, :]


def _reduce(terms: Tensor, defined: Tensor, reduction: Reduction, like: Tensor) -> Tensor:
    if reduction not in ("sum", "mean"):
        raise ValueError(f"reduction must be 'sum' or 'mean', got {reduction!r}")
    total = torch.where(defined, terms, torch.zeros_like(terms)).sum()
    if reduction == "mean":
        total = total / defined.sum().clamp_min(1)
    return total.to(like.dtype) + 0.0 * like.sum()  # stays in the graph when no class contributes


def doxastic_loss(
    logits: Float[Tensor, "batch classes"], labels: Int[Tensor, " batch"], reduction: Reduction = "sum"
) -> Float[Tensor, ""]:
    """sum_d exp(-D(logits[:, d], labels == d, uniform)) over the classes present (and not alone) in the batch.

    Args:
        logits: the network's outputs [batch, classes].
        labels: class indices [batch].
        reduction: ``sum`` over classes (the paper) or ``mean`` over the contributing classes.

    Returns:
        A scalar of the logits' dtype.
    """
    A = _class_masks(logits, labels)
    D, defined = batch_strength(logits, A)
    return _reduce(torch.exp(-D), defined, reduction, logits)


def elementary_loss(
    logits: Float[Tensor, "batch classes"],
    labels: Int[Tensor, " batch"],
    reduction: Reduction = "sum",
    eps: float = 1e-12,
) -> Float[Tensor, ""]:
    """sum_d (1 - cos(logits[:, d], el_{A_d})) over the classes present (and not alone) in the batch.

    Args:
        logits: the network's outputs [batch, classes].
        labels: class indices [batch].
        reduction: ``sum`` over classes or ``mean`` over the contributing classes.
        eps: guards the norm of an all-zero logit column (its cosine is then 0).

    Returns:
        A scalar of the logits' dtype.
    """
    A = _class_masks(logits, labels)
    el = torch.where(A, 1.0, -1.0).to(torch.float64)
    cos = F.cosine_similarity(logits.to(torch.float64), el, dim=0, eps=eps)
    defined = A.any(0) & (~A).any(0)
    return _reduce(1.0 - cos, defined, reduction, logits)


def reasons_difference(
    scores: Float[Tensor, " batch"],
    favourable: Bool[Tensor, " batch"],
    privileged: Bool[Tensor, " batch"],
) -> Float[Tensor, ""]:
    """RD = (D(scores, A+, b(.|privileged)) - D(scores, A+, b(.|unprivileged)))^2.

    Args:
        scores: the classifier's evidence for the favourable outcome per item (its logit), [batch].
        favourable: A+, the items whose true outcome is the favourable one.
        privileged: membership of the privileged group.

    Returns:
        A scalar of the scores' dtype; 0 (with no gradient) when a group lacks favourable or unfavourable items.
    """
    if scores.ndim != 1:
        raise ValueError(f"scores must be one value per item, got shape {tuple(scores.shape)}")
    fav = torch.as_tensor(favourable, device=scores.device)
    priv = torch.as_tensor(privileged, device=scores.device)
    for name, m in (("favourable", fav), ("privileged", priv)):
        if m.dtype != torch.bool or m.shape != scores.shape:
            raise ValueError(f"{name} must be a boolean mask of shape ({scores.shape[0]},)")
    d_priv, ok_priv = batch_strength(scores, fav, priv.to(torch.float64))
    d_unpriv, ok_unpriv = batch_strength(scores, fav, (~priv).to(torch.float64))
    rd = (d_priv - d_unpriv) ** 2
    return _reduce(rd, ok_priv & ok_unpriv, "sum", scores)
