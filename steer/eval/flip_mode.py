"""The flip mode of the evaluation harness (``steer eval flip``): the paper's classification protocol with controls.

:func:`evaluate_flips` runs the paper's protocol (docs/method.md section 4) with controls. Defaults are the paper's
setting: 1024 SST-2 train sentences in the two-shot prompt, A+/A- = the 25 sentences with the highest VADER pos/neg,
site resid, the last token, top-5 by raw D in the last layer, pos2neg = paper rule c=5 away from A+, neg2pos = c=7
away from A-, evaluated on 500 SST-2 validation sentences in the three-shot a)/b) prompt. Controls with the same k
and rule: random units of the same layers (several seeds), the top-k by plain mean difference, and the top-k of the
other layer choice. The result is written as ``result.json`` + ``report.md`` + ``flips.png``
(:mod:`steer.eval.report`).
"""

from __future__ import annotations

import time
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

from steer.eval.configs import FlipConfig, FlipItems, FlipWorlds, UnitChoice  # noqa: F401 - public here
from steer.eval.faithfulness import Condition, answer_token_ids, flip_eval
from steer.eval.report import write_report
from steer.models import versions
from steer.neurons import Strengths, UnitScores, score_units
from steer.select import RecordSpec, recording
from steer.sites import format_layers, resolve_layers
from steer.worlds import Worlds

if TYPE_CHECKING:
    from steer.models import Model

LABEL_MAP = {"1": "positive", "0": "negative", "positive": "positive", "negative": "negative"}


def flip_conditions(
    S: dict[str, UnitScores],
    scores: dict[str, dict[str, UnitScores]],
    cfg: FlipConfig,
    layers: list[int],
    other: list[int],
    site: str,
) -> list[Condition]:
    """The method and its controls for both flips. ``S[flip]`` is the main score's scores (all recorded layers)
    of that flip's proposition; ``scores[name][flip]`` those of other scores."""
    u = cfg.units
    out = []
    for flip, iv in (("pos2neg", cfg.pos2neg), ("neg2pos", cfg.neg2pos)):
        main = S[flip].restrict(layers)
        where = f"{site}, layers {format_layers(layers)}"
        out.append(
            Condition(
                f"{flip}: top-{u.k} {u.score}, {where}",
                flip,
                main.top(u.k),
                iv,
                "method",
                {"score": u.score, "layers": layers, "site": site},
            )
        )
        for seed in u.random_seeds:
            out.append(
                Condition(
                    f"{flip}: random {u.k}, {where}, seed {seed}",
                    flip,
                    main.random(u.k, seed=seed),
                    iv,
                    "random",
                    {"seed": seed, "layers": layers, "site": site},
                )
            )
        for name, by_flip in scores.items():
            out.append(
                Condition(
                    f"{flip}: top-{u.k} {name}, {where}",
                    flip,
                    by_flip[flip].restrict(layers).top(u.k),
                    iv,
                    f"score:{name}",
                    {"score": name, "layers": layers, "site": site},
                )
            )
        out.append(
            Condition(
                f"{flip}: top-{u.k} {u.score}, {site}, layers {format_layers(other)}",
                flip,
                S[flip].restrict(other).top(u.k),
                iv,
                "other-layers",
                {"score": u.score, "layers": other, "site": site},
            )
        )
    return out


def evaluate_flips(
    model: Model, cfg: FlipConfig | None = None, out: str | Path | None = None, progress: bool = True
) -> dict[str, Any]:
    """Run the flip protocol with its controls.

    Args:
        model: the model.
        cfg: the protocol (default: the paper's, :class:`FlipConfig`).
        out: a report directory to write (``result.json``, ``report.md``, ``flips.png``); None writes nothing.
        progress: show progress bars.

    Returns:
        The result, JSON-ready.
    """
    from steer.eval.scorers import sst2_split

    cfg = cfg or FlipConfig()
    t0 = time.time()
    answers = dict(zip(("positive", "negative"), cfg.items.answers))
    answer_token_ids(model.tokenizer, answers)  # fail before recording
    w, u = cfg.worlds, cfg.units
    worlds = Worlds.from_file(
        w.source or sst2_split(cfg.sst2, "train"), template=w.template, text_field=cfg.text_field, n=w.n, seed=cfg.seed
    ).with_vader()
    layers = resolve_layers(list(u.layers), model.n_layers)
    if u.other_layers is not None:
        other = resolve_layers(list(u.other_layers), model.n_layers)
    else:
        other = list(range(model.n_layers)) if len(layers) == 1 else [model.n_layers - 1]
    props = {"pos2neg": worlds.proposition(w.positive), "neg2pos": worlds.proposition(w.negative)}
    conditions = []
    for site in u.sites:
        acts = recording(RecordSpec(model, worlds, site, u.reduce, tuple(sorted(set(layers) | set(other)))), progress)
        raw = {f: Strengths.compute(acts, p) for f, p in props.items()}  # D and stats, shared by every score
        S = {f: score_units(acts, p, u.score, raw=raw[f]) for f, p in props.items()}
        scores = {
            name: {f: score_units(acts, p, name, raw=raw[f]) for f, p in props.items()} for name in u.compare_scores
        }
        conditions += flip_conditions(S, scores, cfg, layers, other, site)

    it = cfg.items
    items = Worlds.from_file(
        it.source or sst2_split(cfg.sst2, "validation"),
        template=it.template,
        text_field=cfg.text_field,
        n=it.n,
        seed=cfg.seed if it.n else None,
    )
    labels = [LABEL_MAP.get(str(v), str(v)) for v in items.column(it.label_field)]
    result = flip_eval(
        model, items.prompts, labels, conditions, batch_size=cfg.batch_size, progress=progress, answers=answers
    )
    result.update(
        mode="flip",
        config=asdict(cfg),
        layers=layers,
        other_layers=other,
        model=model.provenance,
        worlds=worlds.provenance,
        eval_set=items.provenance,
        steer_version=versions()["steer"],
        seconds=round(time.time() - t0, 1),
        propositions={f: {"spec": p.name, "size": int(p.size)} for f, p in props.items()},
    )
    if out is not None:
        write_report(result, out)
    return result
