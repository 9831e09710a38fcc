"""The vocabulary of steer's options, without torch: rule names, token positions, directions, scores.

The modules that implement them (:mod:`steer.rules`, :mod:`steer.interventions`, :mod:`steer.neurons`,
:mod:`steer.selection`) import these, and so do the configs (:mod:`steer.configs`) and the command line, so that
``steer <command> --help`` and building a config import no torch.
"""

from __future__ import annotations

import math
import sys
from typing import Literal

Normalize = Literal["none", "zscore", "rank"]
NORMALIZATIONS: tuple[Normalize, ...] = ("none", "zscore", "rank")
# the doxastic scores and the normalization each applies before D
D_SCORES: dict[str, Normalize] = {"D": "none", "zscore-D": "zscore", "rank-D": "rank"}
# every selection score: the doxastic ones and the non-doxastic baselines (steer.selection)
SCORES = ("D", "zscore-D", "rank-D", "mean-diff", "smd", "ap")

EXPORT_FORMATS: tuple[str, ...] = ("control-vector", "pt", "model", "gguf")  # steer export --format

BUILTIN_RULES = (
    "paper",
    "scale",
    "mean-ablate",
    "additive",
    "clamp",
    "mean-transport",
    "gaussian-transport",
    "linear-transport",
    "linear-transport-support",
)
DIRECTIONS: tuple[str, ...] = ("toward", "away")
APPLY_TO: tuple[str, ...] = ("all", "prompt", "generated", "last-prompt")
MAX_COEFF = 1000.0  # far beyond any useful push (the defaults are 1-20); larger values only destroy the text


def rule_names() -> tuple[str, ...]:
    """The rules that can be named: the registry's when it is loaded (it may hold rules a program registered),
    else the built-in ones (a rule can only be registered after the registry is loaded)."""
    rules = sys.modules.get("steer.rules")
    return tuple(rules.RULES) if rules is not None else BUILTIN_RULES


def check_coeff(coeff: object) -> None:
    """Raise ValueError unless ``coeff`` is None or a finite number in [0, MAX_COEFF]."""
    if coeff is None:
        return
    if not isinstance(coeff, (int, float)) or isinstance(coeff, bool):
        raise ValueError(f"coeff must be a number, got {coeff!r}")
    if not math.isfinite(coeff):
        raise ValueError(f"coeff must be a finite number, got {coeff!r}")
    if coeff < 0:
        raise ValueError(
            f"coeff must be >= 0, got {coeff:g}: to push the other way use direction='away' "
            "(or the other proposition), so that the result is labelled for what it does"
        )
    if coeff > MAX_COEFF:
        raise ValueError(f"coeff {coeff:g} is absurd (more than {MAX_COEFF:g}): the text would be destroyed")
