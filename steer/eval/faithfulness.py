"""Classification faithfulness: do the units flip the model's answer? (The paper's protocol, docs/method.md section 4.)

An evaluation set of labelled sentences is put in an answer-letter template (the paper's three-shot
``a) positive / b) negative`` prompt); the model's prediction is whichever answer token (" a" or " b") has the
larger logit at the last position. On the items it classifies correctly, an intervention at the *last prompt
token* (pos2neg: the positives, neg2pos: the negatives) should flip the prediction to the other answer.

Every intervention is a :class:`Condition`: a neuron set and an :class:`steer.Intervention` (rule, coeff,
direction), tested on the items of one flip (``pos2neg`` or ``neg2pos``). Conditions are
compared on the same items: the method itself and its controls (random units, another selection score,
another layer choice). Since the rewrite touches the last position only, the prompt minus its last token is
run once per batch (its KV cache is kept) and each condition costs a one-token forward pass. A one-token pass
costs about as much as reading the weights once whatever the batch size, so large batches (32) pay off.

Reported per condition: flip rate with a Wilson 95% interval, the mean probability of the source answer
(softmax over the whole vocabulary) before and after, and the KL divergence from the clean to the steered
distribution, over the two answers and over the whole vocabulary.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from steer.eval.metrics import kl_divergence, rate
from steer.interventions import Intervention
from steer.neuronset import NeuronSet
from steer.steerer import Steerer

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

    from steer.models import Model

# flip -> (the label of the items it is tested on, the label it should flip them to)
FLIPS = {"pos2neg": ("positive", "negative"), "neg2pos": ("negative", "positive")}


@dataclass
class Condition:
    """One intervention to test: ``neurons`` rewritten by ``intervention`` on the items of ``flip``.
    ``group`` says what it is (the method or which control)."""

    name: str
    flip: str
    neurons: NeuronSet | None
    intervention: Intervention = field(default_factory=lambda: Intervention("paper", 5.0, "away"))
    group: str = "method"
    info: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.flip not in FLIPS:
            raise ValueError(f"unknown flip {self.flip!r}; use pos2neg or neg2pos")

    def steerer(self, model: Model) -> Steerer:
        return Steerer(model, self.neurons, self.intervention)


def answer_token_ids(tokenizer: PreTrainedTokenizerBase, answers: dict[str, str]) -> dict[str, int]:
    """The single token id of each answer string (e.g. {"positive": " a"}); an answer of several tokens is an error."""
    ids = {}
    for label, text in answers.items():
        toks = tokenizer(text, add_special_tokens=False).input_ids
        if len(toks) != 1:
            raise ValueError(
                f"answer {text!r} for {label!r} is {len(toks)} tokens with this tokenizer; "
                "answers must be single tokens"
            )
        ids[label] = toks[0]
    if len(set(ids.values())) != len(ids):
        raise ValueError(f"answers {answers} map to the same token")
    return ids


@torch.inference_mode()
def answer_logprobs(
    model: Model,
    prompts: Sequence[str],
    conditions: Sequence[Condition],
    answer_ids: Sequence[int],
    batch_size: int = 32,
    progress: bool = True,
) -> tuple[torch.Tensor, dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """Last-position log-probabilities (softmax over the whole vocabulary) of the answer tokens, clean and
    under each condition, and each condition's KL(clean || steered) over the whole vocabulary. Only these are
    kept: whole-vocabulary distributions of every condition would not fit in memory for real vocabularies.

    Args:
        model: the model.
        prompts: the prompts (their last token is where the conditions rewrite).
        conditions: the interventions, with unique names.
        answer_ids: the answer token ids whose log-probabilities are kept.
        batch_size: prompts per forward pass.
        progress: show a progress bar.

    Returns:
        (clean [N, answers], {name: [N, answers]}, {name: KL [N]}).
    """
    from tqdm.auto import tqdm

    steerers = {c.name: c.steerer(model) for c in conditions}
    if len(steerers) != len(conditions):
        raise ValueError("condition names must be unique")
    bridge = model.bridge
    cols = torch.as_tensor(list(answer_ids))
    n = len(prompts)
    clean = torch.empty(n, len(cols))
    steered = {name: torch.empty(n, len(cols)) for name in steerers}
    kl = {name: torch.empty(n, dtype=torch.float64) for name in steerers}
    order = np.argsort([len(p) for p in prompts], kind="stable")  # similar lengths together: less padding
    for s in tqdm(range(0, n, batch_size), desc="answers", disable=not progress):
        rows = torch.as_tensor(order[s : s + batch_size])
        ids, mask = model.tokenize([prompts[i] for i in rows.tolist()])
        # logits_to_keep=1: the prefix's logits are never used ([batch, pos, vocab] would dominate memory)
        _, cache = bridge(ids[:, :-1], attention_mask=mask[:, :-1], return_type="logits_and_cache", logits_to_keep=1)

        def last(
            hooks: list[Any], ids: torch.Tensor = ids, mask: torch.Tensor = mask, cache: Any = cache
        ) -> torch.Tensor:
            with bridge.hooks(fwd_hooks=hooks):
                logits = bridge(ids[:, -1:], attention_mask=mask, past_key_values=cache)[:, -1]
            cache.crop(-1)  # drop the last token again: the cache holds the prefix for the next condition
            return torch.log_softmax(logits.float(), -1)

        lp_clean = last([])
        clean[rows] = lp_clean[:, cols]
        for name, st in steerers.items():
            lp = last(st.hooks())
            steered[name][rows] = lp[:, cols]
            kl[name][rows] = kl_divergence(lp_clean, lp)
    return clean, steered, kl


def flip_eval(
    model: Model,
    prompts: Sequence[str],
    labels: Sequence[str],
    conditions: Sequence[Condition],
    answers: dict[str, str] | None = None,
    batch_size: int = 32,
    progress: bool = True,
) -> dict[str, Any]:
    """The flip protocol on labelled prompts.

    Args:
        model: the model.
        prompts: the items in the answer-letter template.
        labels: "positive" / "negative" per item (other labels are ignored).
        conditions: the interventions to test.
        answers: the answer string of each label (default " a" / " b"); each must be one token.
        batch_size: prompts per forward pass.
        progress: show a progress bar.

    Returns:
        A JSON-ready dict: clean accuracy (with interval), and per condition the flip rate on the correctly
        classified items of its source label, P(source answer) before and after, and the KLs.
    """
    answers = answers or {"positive": " a", "negative": " b"}
    ids = answer_token_ids(model.tokenizer, answers)
    all_labels = np.asarray([str(v) for v in labels])
    keep = np.isin(all_labels, list(ids))
    if not keep.any():
        raise ValueError(f"no item has a label among {list(ids)}")
    prompts = [p for p, k in zip(prompts, keep) if k]
    item_labels = all_labels[keep]
    clean, steered, kl_vocab = answer_logprobs(
        model, prompts, conditions, [ids["positive"], ids["negative"]], batch_size, progress
    )
    col = {"positive": 0, "negative": 1}  # columns of the answer log-probabilities
    pred = np.where((clean[:, 0] >= clean[:, 1]).numpy(), "positive", "negative")
    correct = pred == item_labels
    out: dict[str, Any] = {
        "n_items": len(item_labels),
        "answers": answers,
        "clean_accuracy": rate(int(correct.sum()), len(item_labels)),
        "clean_accuracy_by_label": {
            lab: rate(int(correct[item_labels == lab].sum()), int((item_labels == lab).sum()))
            for lab in ("positive", "negative")
        },
        "conditions": [],
    }
    for c in conditions:
        source, target = FLIPS[c.flip]
        rows = torch.as_tensor(np.flatnonzero(correct & (item_labels == source)))
        lp_clean, lp_after = clean[rows], steered[c.name][rows]
        src, tgt = col[source], col[target]
        flipped = (lp_after[:, tgt] > lp_after[:, src]).numpy()
        n_units = (
            0 if c.neurons is None else len({(u.layer, u.index) for u in c.neurons.units_for + c.neurons.units_against})
        )
        out["conditions"].append(
            {
                "name": c.name,
                "group": c.group,
                "flip": c.flip,
                **c.intervention.describe(),
                "n_units": n_units,
                "info": c.info,
                "units": _units(c.neurons),
                "flip_rate": rate(int(flipped.sum()), len(rows)),
                "p_source_before": _mean(lp_clean[:, src].exp()),
                "p_source_after": _mean(lp_after[:, src].exp()),
                "p_target_after": _mean(lp_after[:, tgt].exp()),
                "kl_answers": _mean(kl_divergence(lp_clean, lp_after)),  # renormalised over the two answers
                "kl_vocab": _mean(kl_vocab[c.name][rows]),
            }
        )
    return out


def _mean(t: torch.Tensor) -> float | None:
    return float(t.double().mean()) if t.numel() else None


def _units(ns: NeuronSet | None) -> dict[str, list[list[int]]]:
    if ns is None:
        return {"for": [], "against": []}
    return {
        "for": [[u.layer, u.index] for u in ns.units_for],
        "against": [[u.layer, u.index] for u in ns.units_against],
    }
