"""Classification faithfulness: do the units flip the model's answer? (The paper's protocol, method.md section 4.)

An evaluation set of labelled sentences is put in an answer-letter template (the paper's three-shot
``a) positive / b) negative`` prompt); the model's prediction is whichever answer token (" a" or " b") has the
larger logit at the last position. On the items it classifies correctly, an intervention at the *last prompt
token* (pos2neg: the positives, neg2pos: the negatives) should flip the prediction to the other answer.

Every intervention is a :class:`Condition`: a neuron set, a rule, a strength and a direction. Conditions are
compared on the same items: the method itself and its controls (random units, another selection score,
another layer choice). Since the rewrite touches the last position only, the prompt minus its last token is
run once per batch (its KV cache is kept) and each condition costs a one-token forward pass.

Reported per condition: flip rate with a Wilson 95% interval, the mean probability of the source answer
(softmax over the whole vocabulary) before and after, and the KL divergence from the clean to the steered
distribution, over the two answers and over the whole vocabulary.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from steer.metrics import kl_divergence, rate
from steer.neurons import NeuronSet

DIRECTIONS = {"pos2neg": ("positive", "negative"), "neg2pos": ("negative", "positive")}


@dataclass
class Condition:
    """One intervention to test: ``neurons`` rewritten by ``rule`` at ``strength``, toward/away from their
    proposition, on the items of ``direction``. ``group`` says what it is (method or which control)."""

    name: str
    direction: str
    neurons: NeuronSet | None
    rule: str = "paper"
    strength: float = 5.0
    toward: bool = False
    group: str = "method"
    info: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self):
        if self.direction not in DIRECTIONS:
            raise ValueError(f"unknown direction {self.direction!r}; use pos2neg or neg2pos")


def answer_token_ids(tokenizer: Any, answers: dict[str, str]) -> dict[str, int]:
    """The single token id of each answer string (e.g. {"positive": " a"}); an answer of several tokens is an error."""
    ids = {}
    for label, text in answers.items():
        toks = tokenizer(text, add_special_tokens=False).input_ids
        if len(toks) != 1:
            raise ValueError(f"answer {text!r} for {label!r} is {len(toks)} tokens with this tokenizer; "
                             "answers must be single tokens")
        ids[label] = toks[0]
    if len(set(ids.values())) != len(ids):
        raise ValueError(f"answers {answers} map to the same token")
    return ids


@torch.inference_mode()
def answer_logits(model: Any, prompts: Sequence[str], conditions: Sequence[Condition], batch_size: int = 8,
                  progress: bool = True) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Last-position log-probabilities (whole vocabulary, float32) of every prompt, clean and under each
    condition: (clean [N, vocab], {condition name: [N, vocab]})."""
    from tqdm.auto import tqdm

    from steer.steering import Steerer

    steerers = {c.name: Steerer(model, c.neurons, rule=c.rule, strength=c.strength, toward=c.toward)
                for c in conditions}
    if len(steerers) != len(conditions):
        raise ValueError("condition names must be unique")
    tok, bridge = model.tokenizer, model.bridge
    clean, steered = [], {name: [] for name in steerers}
    order = np.argsort([len(p) for p in prompts], kind="stable")  # similar lengths together: less padding
    for s in tqdm(range(0, len(prompts), batch_size), desc="answers", disable=not progress):
        rows = order[s:s + batch_size]
        enc = tok([prompts[i] for i in rows], return_tensors="pt", padding=True)
        ids, mask = enc["input_ids"], enc["attention_mask"]
        _, cache = bridge(ids[:, :-1], attention_mask=mask[:, :-1], return_type="logits_and_cache")

        def last(hooks):
            with bridge.hooks(fwd_hooks=hooks):
                logits = bridge(ids[:, -1:], attention_mask=mask, past_key_values=cache)[:, -1]
            cache.crop(-1)  # drop the last token again: the cache holds the prefix for the next condition
            return torch.log_softmax(logits.float(), -1)

        clean.append((rows, last([])))
        for name, st in steerers.items():
            st.tracker.reset()
            steered[name].append((rows, last(st.fwd_hooks())))

    def unsort(parts):
        out = torch.empty(len(prompts), parts[0][1].shape[-1])
        for rows, lp in parts:
            out[torch.as_tensor(rows)] = lp
        return out

    return unsort(clean), {name: unsort(parts) for name, parts in steered.items()}


def flip_eval(model: Any, prompts: Sequence[str], labels: Sequence[str], conditions: Sequence[Condition],
              answers: dict[str, str] | None = None, batch_size: int = 8, progress: bool = True) -> dict[str, Any]:
    """The flip protocol on labelled prompts (labels "positive" / "negative"; other labels are ignored).

    Returns a JSON-ready dict: clean accuracy (with interval), and per condition the flip rate on the correctly
    classified items of its source label, P(source answer) before and after, and the KLs."""
    answers = answers or {"positive": " a", "negative": " b"}
    ids = answer_token_ids(model.tokenizer, answers)
    labels = np.asarray([str(v) for v in labels])
    keep = np.isin(labels, list(ids))
    if not keep.any():
        raise ValueError(f"no item has a label among {list(ids)}")
    prompts = [p for p, k in zip(prompts, keep) if k]
    labels = labels[keep]
    clean, steered = answer_logits(model, prompts, conditions, batch_size, progress)
    pos_id, neg_id = ids["positive"], ids["negative"]
    pred = np.where((clean[:, pos_id] >= clean[:, neg_id]).numpy(), "positive", "negative")
    correct = pred == labels
    out: dict[str, Any] = {
        "n_items": int(len(labels)),
        "answers": answers,
        "clean_accuracy": rate(int(correct.sum()), len(labels)),
        "clean_accuracy_by_label": {lab: rate(int(correct[labels == lab].sum()), int((labels == lab).sum()))
                                    for lab in ("positive", "negative")},
        "conditions": [],
    }
    for c in conditions:
        source, target = DIRECTIONS[c.direction]
        rows = torch.as_tensor(np.flatnonzero(correct & (labels == source)))
        lp_clean, lp_after = clean[rows], steered[c.name][rows]
        src, tgt = ids[source], ids[target]
        flipped = (lp_after[:, tgt] > lp_after[:, src]).numpy()
        two = [pos_id, neg_id]
        n_units = 0 if c.neurons is None else len({(u.layer, u.index)
                                                   for u in c.neurons.units_for + c.neurons.units_against})
        out["conditions"].append({
            "name": c.name, "group": c.group, "direction": c.direction, "rule": c.rule, "strength": c.strength,
            "toward": c.toward, "n_units": n_units, "info": c.info,
            "units": _units(c.neurons),
            "flip": rate(int(flipped.sum()), len(rows)),
            "p_source_before": _mean(lp_clean[:, src].exp()),
            "p_source_after": _mean(lp_after[:, src].exp()),
            "p_target_after": _mean(lp_after[:, tgt].exp()),
            "kl_answers": _mean(kl_divergence(lp_clean[:, two], lp_after[:, two])),
            "kl_vocab": _mean(kl_divergence(lp_clean, lp_after)),
        })
    return out


def _mean(t: torch.Tensor) -> float | None:
    return float(t.double().mean()) if t.numel() else None


def _units(ns: NeuronSet | None) -> dict[str, list[list[int]]]:
    if ns is None:
        return {"for": [], "against": []}
    return {"for": [[u.layer, u.index] for u in ns.units_for], "against": [[u.layer, u.index] for u in ns.units_against]}
