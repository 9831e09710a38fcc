"""Worlds: the situations a model is recorded in, with their fields, for every kind of input.

Data flow: prompt set -> **worlds** -> recorded activations -> strengths -> selected units -> intervention ->
steered generation. A *world* is one input situation: a prompt built from a record of a prompt set by a template,
together with the record's fields (text, label, domain, scores...), or one input tensor of any PyTorch network.
Propositions over them (:mod:`steer.propositions`) are sets of worlds, named by their fields. See
``docs/method.md`` section 1.

:class:`Worlds` are made from records (:mod:`steer.readers`: JSONL, CSV or TSV files, a local ``datasets``
directory, or a Hugging Face hub dataset name) by a template (:mod:`steer.templates`); :class:`TensorWorlds` from
input tensors; both build on :class:`WorldFields`.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor

from steer.propositions import (
    VADER_FIELDS,
    Proposition,
    mask_proposition,
    parse_proposition,
    top_proposition,
    vader_columns,
    vader_fields,
)
from steer.readers import MAX_PROMPT_CHARS, PromptSetError, _check_prompt_field, _is_missing, _kind, read_records
from steer.templates import Template, load_template, prompt_set_provenance, sha256_text


class WorldFields:
    """What every kind of worlds shares: records of fields (one per world), a source, and propositions over them.

    :class:`Worlds` (prompts made by a template) and :class:`TensorWorlds` (input tensors of any PyTorch network)
    both build on it, so propositions, explanations and everything downstream treat them alike. A subclass has
    ``records`` and ``source``, a ``content_hash`` and the provenance key (``HASH_KEY``) it is saved under.
    """

    records: list[dict[str, Any]]
    source: str
    HASH_KEY: str = "sha256"

    @property
    def content_hash(self) -> str:
        raise NotImplementedError

    @property
    def provenance(self) -> dict[str, Any]:
        raise NotImplementedError

    def __len__(self) -> int:
        return len(self.records)

    def column(self, name: str) -> list[Any]:
        """The values of a field in every world (None where a record lacks it). The VADER fields (``vader_pos``,
        ``vader_neg``, ``vader_neu``, ``vader_compound``) of worlds with a ``text`` field are computed on first use
        (kept with these worlds; the records and their hash do not change)."""
        if name not in self.records[0]:
            if name in VADER_FIELDS and "text" in self.records[0]:
                derived: dict[str, list[Any]] = self.__dict__.setdefault("_derived", {})
                if name not in derived:
                    derived.update(vader_columns([r.get("text") for r in self.records]))
                return derived[name]
            raise PromptSetError(f"unknown field {name!r}; fields: {', '.join(self.records[0])}")
        return [r.get(name) for r in self.records]

    def defined_column(self, name: str) -> list[Any]:
        """The values of a field, refusing worlds where it is missing (null, NaN, absent) and fields that mix
        kinds of values (numbers and strings), either of which would put worlds silently in or out of a
        proposition."""
        col = self.column(name)
        missing = [i for i, v in enumerate(col) if _is_missing(v)]
        if missing:
            shown = ", ".join(map(str, missing[:10])) + (" ..." if len(missing) > 10 else "")
            raise PromptSetError(
                f"field {name!r} is missing (null, NaN or absent) in {len(missing)} of {len(col)} worlds of "
                f"{self.source} (worlds {shown}); a proposition over it would be silently wrong: drop or fill them"
            )
        kinds = sorted({_kind(v) for v in col})
        if len(kinds) > 1:
            raise PromptSetError(
                f"field {name!r} of {self.source} mixes {' and '.join(kinds)} values "
                f"(e.g. {next(v for v in col if _kind(v) == kinds[0])!r} and "
                f"{next(v for v in col if _kind(v) == kinds[1])!r}); make them one kind"
            )
        return col

    def values(self, name: str) -> list[str]:
        """The distinct values of a field, as strings, sorted."""
        return sorted({str(v) for v in self.defined_column(name)})

    # -- propositions

    def proposition(self, spec: str | None = None, /, **equals: Any) -> Proposition:
        """A proposition by a predicate string or keyword equalities, parsed here once.

        ``worlds.proposition("positive")`` (a bare word is a label: ``label=positive``),
        ``worlds.proposition("label=positive")``, ``worlds.proposition(label="positive")``,
        ``"label!=neutral"``, ``"score>0.5"`` (also ``>=``, ``<``, ``<=``), ``"vader_pos:top25"`` (the 25 worlds
        with the highest value; ``bottom25`` the lowest; ties broken by world order).
        """
        return parse_proposition(self, spec, **equals)

    def top(self, field: str, n: int, largest: bool = True) -> Proposition:
        """The n worlds with the highest (or lowest) value of a numeric field (the paper ranks by VADER pos)."""
        return top_proposition(self, field, n, largest)

    def mask(self, mask: Sequence[bool] | np.ndarray, name: str = "mask") -> Proposition:
        return mask_proposition(self, mask, name)


@dataclass
class Worlds(WorldFields):
    """N worlds: the records of a prompt set, the prompts a template made of them, and where they came from."""

    records: list[dict[str, Any]]
    template: Template
    source: str
    prompts: list[str] = field(init=False)

    def __post_init__(self) -> None:
        if not self.records:
            raise PromptSetError(f"prompt set {self.source} has no records")
        for i, rec in enumerate(self.records):
            missing = [f for f in self.template.fields if f not in rec]
            if missing:
                raise PromptSetError(
                    f"template {self.template.name!r} uses field(s) {missing} missing from record {i} of "
                    f"{self.source} (its fields: {', '.join(rec)})"
                )
            for f in self.template.fields:
                _check_prompt_field(rec[f], f, i, self.source)
        self.prompts = [self.template.render(r) for r in self.records]
        too_long = [i for i, p in enumerate(self.prompts) if len(p) > MAX_PROMPT_CHARS]
        if too_long:
            raise PromptSetError(
                f"{len(too_long)} prompt(s) of {self.source} are longer than {MAX_PROMPT_CHARS:,} characters "
                f"(first: world {too_long[0]}, {len(self.prompts[too_long[0]]):,} characters); shorten them"
            )
        if len(self.prompts) > 1 and len(set(self.prompts)) == 1:
            raise PromptSetError(
                f"every one of the {len(self.prompts)} worlds of {self.source} gets the same prompt with template "
                f"{self.template.name!r}: there is nothing to tell them apart"
            )

    # -- construction

    @classmethod
    def from_records(
        cls,
        records: Sequence[dict[str, Any]],
        template: str | Template = "plain",
        source: str = "records",
        text_field: str | None = None,
    ) -> Worlds:
        if isinstance(records, (str, bytes, Mapping)) or not isinstance(records, (Sequence, Iterable)):
            raise TypeError(f"records must be a list of dicts, got {type(records).__name__}")
        recs = []
        for i, r in enumerate(records):
            if not isinstance(r, Mapping):
                raise TypeError(f"record {i} must be a dict with a 'text' field, got {type(r).__name__}")
            recs.append(dict(r))
        if text_field is not None:
            for i, r in enumerate(recs):
                if text_field not in r:
                    raise PromptSetError(f"record {i} of {source} has no field {text_field!r} (fields: {', '.join(r)})")
                r["text"] = r[text_field]
        return cls(recs, load_template(template), source)

    @classmethod
    def from_file(
        cls,
        path: str | os.PathLike,
        template: str | Template = "plain",
        text_field: str | None = None,
        n: int | None = None,
        seed: int | None = None,
    ) -> Worlds:
        """Worlds from a JSONL, CSV or TSV file (a header row names the fields), a local ``datasets`` directory,
        or a hub dataset name (``stanfordnlp/sst2``, optionally ``name:split``). ``n`` keeps n records: the
        first n, or a random sample of n when ``seed`` is given. ``text_field`` copies that field into ``text``."""
        if not isinstance(path, (str, os.PathLike)):
            raise TypeError(f"path must be a file path or a dataset name, got {type(path).__name__}")
        for name, v in (("n", n), ("seed", seed)):
            if v is not None and (not isinstance(v, int) or isinstance(v, bool) or v < 0):
                raise ValueError(f"{name} must be a non-negative integer or None, got {v!r}")
        records, source = read_records(path)
        if n is not None:
            if n < 1 or n > len(records):
                raise PromptSetError(f"asked for n={n} worlds but {source} has {len(records)} records")
            if seed is None:
                records = records[:n]
            else:
                idx = np.sort(np.random.default_rng(seed).choice(len(records), size=n, replace=False))
                records = [records[i] for i in idx]
            source = f"{source}[n={n}{'' if seed is None else f',seed={seed}'}]"
        return cls.from_records(records, template, source, text_field)

    # -- views

    HASH_KEY = "prompt_set_sha256"

    @property
    def content_hash(self) -> str:
        return self.prompt_set_hash

    def text_char_spans(self) -> list[tuple[int, int]]:
        """Where each world's own text lies in its prompt, as character offsets (see :meth:`Template.text_span`)."""
        return [self.template.text_span(r) for r in self.records]

    @property
    def prompt_set_hash(self) -> str:
        """sha256 over the records (canonical JSON), the template text and the prompts' order."""
        return sha256_text(json.dumps(self.records, sort_keys=True, default=str) + "\0" + self.template.text)

    @property
    def provenance(self) -> dict[str, Any]:
        return prompt_set_provenance(self.source, len(self), self.prompt_set_hash, self.template)

    def with_vader(self, field: str = "text", prefix: str = "vader_") -> Worlds:
        """A copy with VADER scores of ``field`` added as ``vader_pos``, ``vader_neg``, ``vader_neu`` and
        ``vader_compound``."""
        return Worlds(vader_fields(self.records, field, prefix), self.template, self.source)


@dataclass
class TensorWorlds(WorldFields):
    """N worlds given as inputs of a PyTorch network (row k of ``inputs`` is world k) with their fields.

    Built with :meth:`from_tensors` (``TensorWorlds.from_tensors(images, label=labels)``); propositions are
    written as for prompt sets (``worlds.proposition("label=3")``). Its provenance hashes the inputs and fields.
    """

    inputs: Tensor
    records: list[dict[str, Any]]
    source: str = "tensors"
    HASH_KEY = "worlds_sha256"

    def __post_init__(self) -> None:
        if not isinstance(self.inputs, Tensor) or self.inputs.ndim < 1:
            raise PromptSetError("TensorWorlds needs a tensor of inputs with the worlds on the first axis")
        if len(self.inputs) == 0:
            raise PromptSetError(f"{self.source} has no worlds")
        if len(self.records) != len(self.inputs):
            raise PromptSetError(
                f"{self.source}: {len(self.inputs)} inputs but {len(self.records)} records of fields (one per world)"
            )
        if self.inputs.is_floating_point() and not torch.isfinite(self.inputs).all():
            bad = (~torch.isfinite(self.inputs.reshape(len(self.inputs), -1))).any(1).nonzero()[:, 0]
            raise PromptSetError(f"{self.source}: inputs of world(s) {bad[:10].tolist()} are NaN or infinite")

    @classmethod
    def from_tensors(cls, inputs: Tensor, source: str = "tensors", **fields: Sequence[Any] | Tensor) -> TensorWorlds:
        """Worlds from an input tensor and per-world fields (``label=labels``), each as long as ``inputs``."""
        n = len(inputs)
        records: list[dict[str, Any]] = [{} for _ in range(n)]
        for name, col in fields.items():
            values = col.tolist() if isinstance(col, (Tensor, np.ndarray)) else list(col)
            if len(values) != n:
                raise PromptSetError(f"field {name!r} has {len(values)} values for {n} worlds")
            for rec, v in zip(records, values):
                rec[name] = v
        return cls(inputs, records, source)

    def subset(self, index: Sequence[int] | np.ndarray | Tensor, source: str | None = None) -> TensorWorlds:
        """The worlds at ``index`` (in that order)."""
        idx = torch.as_tensor(np.asarray(index), dtype=torch.long)
        return TensorWorlds(
            self.inputs[idx], [self.records[i] for i in idx.tolist()], source or f"{self.source}[{len(idx)}]"
        )

    @property
    def content_hash(self) -> str:
        """sha256 over the inputs (dtype, shape, bytes) and the fields."""
        x = self.inputs.detach().cpu().contiguous()
        h = hashlib.sha256(f"{x.dtype}{tuple(x.shape)}".encode())
        h.update(x.view(torch.uint8).numpy().tobytes() if x.numel() else b"")
        h.update(json.dumps(self.records, sort_keys=True, default=str).encode())
        return h.hexdigest()

    @property
    def provenance(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "n_worlds": len(self),
            self.HASH_KEY: self.content_hash,
            "input_shape": list(self.inputs.shape[1:]),
            "input_dtype": str(self.inputs.dtype),
        }
