"""Propositions: sets of worlds, and the small language that names them over the worlds' fields.

Data flow: prompt set -> **worlds** -> recorded activations -> strengths -> selected units -> intervention ->
steered generation. A *proposition* A is a set of worlds, held as a boolean mask over them; the strength of a unit
is taken for one (:mod:`steer.strength`). It is named by a field predicate (``label=positive``, ``label!=neutral``,
``score>0.5``), by the top-n of a numeric field (``vader_pos:top25``) or by an explicit mask. The parsers here take
the worlds' field columns (anything with :meth:`~steer.worlds.WorldFields.defined_column` and a length, see
:class:`FieldColumns`); :class:`steer.worlds.WorldFields` calls them from ``proposition``, ``top`` and ``mask``.
The VADER fields (``vader_pos``, ``vader_neg``, ``vader_neu``, ``vader_compound``) that propositions like
``vader_pos:top25`` rank by are computed here too. See ``docs/method.md`` section 1.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from steer.readers import PromptSetError
from steer.strength import TrivialPropositionError


@dataclass(frozen=True)
class Proposition:
    """A set of worlds A, as a boolean mask over them, with a name saying what it means."""

    name: str
    mask: np.ndarray
    description: str = ""

    def __post_init__(self) -> None:
        mask = np.asarray(self.mask)
        if mask.dtype != bool or mask.ndim != 1:
            raise PromptSetError("a proposition mask must be a 1-D boolean array")
        n, k = mask.size, int(mask.sum())
        if k == 0 or k == n:
            raise TrivialPropositionError(
                f"proposition {self.name!r} holds in {k} of {n} worlds: it must hold in some worlds but not all"
            )
        object.__setattr__(self, "mask", mask)

    @property
    def size(self) -> int:
        return int(self.mask.sum())

    def complement(self) -> Proposition:
        return Proposition(f"not({self.name})", ~self.mask, f"complement of {self.description or self.name}")

    def __repr__(self) -> str:
        return f"Proposition({self.name!r}, {self.size}/{self.mask.size} worlds)"


_PRED = re.compile(r"^\s*(?P<field>[A-Za-z_][\w.-]*)\s*(?P<op>!=|>=|<=|=|>|<)\s*(?P<value>.*?)\s*$")
_TOP = re.compile(r"^\s*(?P<field>[A-Za-z_][\w.-]*)\s*:\s*(?P<dir>top|bottom)(?P<n>\d+)\s*$")


class FieldColumns(Protocol):
    """What a proposition is parsed against: the worlds' field columns and their number (a
    :class:`steer.worlds.WorldFields`)."""

    def defined_column(self, name: str) -> list[Any]:
        """The values of a field in every world, refusing missing values and mixed kinds."""
        ...

    def __len__(self) -> int: ...


def parse_proposition(worlds: FieldColumns, spec: str | None = None, /, **equals: Any) -> Proposition:
    """A proposition over ``worlds`` by a predicate string or keyword equalities (see
    :meth:`steer.worlds.WorldFields.proposition`)."""
    if spec is None:
        if len(equals) != 1:
            raise PromptSetError("give one predicate string, or one field=value keyword")
        ((f, v),) = equals.items()
        spec = f"{f}={v}"
    if not isinstance(spec, str):
        raise PromptSetError(f"a proposition is a string such as 'positive' or 'label=positive', got {spec!r}")
    if spec.strip() and not any(op in spec for op in "=!<>:"):  # the label shorthand: "positive" is "label=positive"
        spec = f"label={spec.strip()}"
    if m := _TOP.match(spec):
        return top_proposition(worlds, m["field"], int(m["n"]), largest=m["dir"] == "top")
    m = _PRED.match(spec)
    if not m:
        raise PromptSetError(
            f"cannot parse proposition {spec!r}; use FIELD=VALUE, FIELD!=VALUE, FIELD>NUMBER (>=, <, <=) "
            "or FIELD:topN / FIELD:bottomN"
        )
    fld, op, value = m["field"], m["op"], m["value"]
    col = worlds.defined_column(fld)
    if op in ("=", "!="):
        present = sorted({str(v) for v in col})  # the field's distinct values (WorldFields.values)
        if value not in present:
            shown = ", ".join(present[:20]) + (" ..." if len(present) > 20 else "")
            raise PromptSetError(f"unknown value {value!r} for field {fld!r}; values present: {shown}")
        mask = np.array([str(v) == value for v in col])
        mask = mask if op == "=" else ~mask
    else:
        nums = _numeric(fld, col)
        try:
            x = float(value)
        except ValueError:
            raise PromptSetError(f"{spec!r}: {value!r} is not a number") from None
        mask = {">": nums > x, ">=": nums >= x, "<": nums < x, "<=": nums <= x}[op]
    return Proposition(f"{fld}{op}{value}", mask, f"worlds with {fld} {op} {value}")


def top_proposition(worlds: FieldColumns, field: str, n: int, largest: bool = True) -> Proposition:
    """The n worlds with the highest (or lowest) value of a numeric field (see :meth:`steer.worlds.WorldFields.top`)."""
    nums = _numeric(field, worlds.defined_column(field))
    if not 0 < n < len(worlds):
        raise TrivialPropositionError(f"top-n proposition needs 0 < n < {len(worlds)} worlds, got n={n}")
    order = np.argsort(-nums if largest else nums, kind="stable")
    mask = np.zeros(len(worlds), dtype=bool)
    mask[order[:n]] = True
    word = "top" if largest else "bottom"
    return Proposition(
        f"{field}:{word}{n}", mask, f"the {n} worlds with the {'highest' if largest else 'lowest'} {field}"
    )


def mask_proposition(worlds: FieldColumns, mask: Sequence[bool] | np.ndarray, name: str = "mask") -> Proposition:
    """A proposition given as an explicit boolean mask, one entry per world of ``worlds``."""
    mask = np.asarray(mask)
    if mask.shape != (len(worlds),):
        raise PromptSetError(f"mask has shape {mask.shape}, expected ({len(worlds)},)")
    return Proposition(name, mask.astype(bool), "explicit mask")


def _numeric(name: str, col: list[Any]) -> np.ndarray:
    out = []
    for i, v in enumerate(col):
        try:
            if isinstance(v, bool):
                raise ValueError
            out.append(float(v))
        except (TypeError, ValueError):
            raise PromptSetError(f"field {name!r} is not numeric (world {i}: {v!r})") from None
    nums = np.array(out)
    bad = np.flatnonzero(~np.isfinite(nums))
    if bad.size:
        raise PromptSetError(f"field {name!r} is NaN or infinite in worlds {bad[:10].tolist()}; drop or fill them")
    return nums


# ---------------------------------------------------------------------------------------------- VADER fields


VADER_FIELDS = ("vader_neg", "vader_neu", "vader_pos", "vader_compound")


def vader_columns(texts: Sequence[Any]) -> dict[str, list[float]]:
    """The VADER scores of each text, as columns ``vader_neg``, ``vader_neu``, ``vader_pos``, ``vader_compound``."""
    from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

    sia = SentimentIntensityAnalyzer()
    scores = [sia.polarity_scores(str(t)) for t in texts]
    return {f"vader_{k}": [s[k] for s in scores] for k in ("neg", "neu", "pos", "compound")}


def vader_fields(
    records: Sequence[dict[str, Any]], field: str = "text", prefix: str = "vader_"
) -> list[dict[str, Any]]:
    """Copies of ``records`` with VADER scores of ``field`` added as ``vader_pos``, ``vader_neg``, ``vader_neu``
    and ``vader_compound`` (``prefix`` replaces ``vader_``)."""
    from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

    sia = SentimentIntensityAnalyzer()
    recs = []
    for r in records:
        s = sia.polarity_scores(str(r[field]))
        recs.append({**r, **{f"{prefix}{k}": v for k, v in s.items()}})
    return recs
