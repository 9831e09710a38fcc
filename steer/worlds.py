"""Prompt sets -> worlds -> propositions.

A *world* is one input situation: a prompt built from a record of a prompt set by a template, together with
the record's fields (text, label, domain, scores...). A *proposition* is a set of worlds, held as a boolean
mask: by a field predicate (``label=positive``), by the top-n of a numeric field (``vader_pos:top25``) or by
an explicit mask. See ``../shared/docs/method.md`` section 1.

Prompt sets load from JSONL, CSV or TSV files, a local ``datasets`` directory, or a Hugging Face hub dataset
name. Templates are Python format strings (``{text}``) named by a file under ``prompts/templates/``.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
import os
import re
import string
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import numpy as np
import torch
from torch import Tensor

from steer.resources import TEMPLATES_DIR
from steer.strength import TrivialPropositionError


class PromptSetError(ValueError):
    """A prompt file, dataset, template or proposition is malformed or refers to something that is not there."""


def sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


# ------------------------------------------------------------------------------------------------ templates

TEMPLATE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]*$")


@dataclass(frozen=True)
class Template:
    """A named prompt template: a Python format string over record fields, e.g. ``"Review: {text}"``.

    Only plain replacement fields are allowed (``{text}``, ``{label}``): no attribute or index access, no format
    spec, no conversion (``{text.__class__}``, ``{text:>100000000}`` and ``{text!r}`` are refused), and at least
    one field, so that different records make different prompts."""

    name: str
    text: str

    def __post_init__(self) -> None:
        try:
            parts = list(string.Formatter().parse(self.text))
        except ValueError as e:
            raise PromptSetError(f"template {self.name!r} is malformed: {e}") from None
        fields = [f for _, f, _, _ in parts if f is not None]
        for _, f, spec, conv in parts:
            if f is None:
                continue
            if not f.isidentifier():
                raise PromptSetError(f"template {self.name!r}: {{{f}}} is not a plain field name (use e.g. {{text}})")
            if spec or conv:
                raise PromptSetError(
                    f"template {self.name!r}: {{{f}{'!' + conv if conv else ''}{':' + spec if spec else ''}}} has a "
                    "conversion or format spec; only plain fields like {text} are allowed"
                )
        if not fields:
            raise PromptSetError(
                f"template {self.name!r} has no field such as {{text}}: every world would get the same prompt"
            )

    @classmethod
    def from_file(cls, path: str | os.PathLike[str]) -> Template:
        """A template read from an explicit file (one trailing newline is dropped)."""
        path = Path(path)
        try:
            text = _decode(path.read_bytes(), path)
        except OSError as e:
            raise PromptSetError(f"cannot read template file {path}: {e.strerror or e}") from None
        return cls(path.stem, text[:-1] if text.endswith("\n") else text)

    @property
    def fields(self) -> list[str]:
        return [f for _, f, _, _ in string.Formatter().parse(self.text) if f]

    @property
    def sha256(self) -> str:
        return sha256_text(self.text)

    def render(self, record: dict[str, Any]) -> str:
        return self.text.format(**record)

    @property
    def text_field(self) -> str:
        """The field that holds a world's own text: ``text`` when the template has it, else its first field."""
        fields = self.fields
        return "text" if "text" in fields else fields[0]

    def text_span(self, record: dict[str, Any]) -> tuple[int, int]:
        """Where the world's own text (the first ``{text}`` field, see :attr:`text_field`) lies in the rendered
        prompt, as character offsets [start, end). Everything else is the template's own text or other fields."""
        pos = 0
        for literal, f, _, _ in string.Formatter().parse(self.text):
            pos += len(literal)
            if f is None:
                continue
            value = format(record[f], "")
            if f == self.text_field:
                return pos, pos + len(value)
            pos += len(value)
        raise AssertionError("a template always has its text field")  # pragma: no cover


def prompt_set_provenance(source: str, n_worlds: int, sha256: str, template: Template) -> dict[str, Any]:
    """What a recording keeps of the prompt-made worlds it ran (for :class:`Worlds` and streams alike)."""
    return {
        "source": source,
        "n_worlds": n_worlds,
        "prompt_set_sha256": sha256,
        "template": template.name,
        "template_sha256": template.sha256,
        "template_text": template.text,
    }


def available_templates() -> list[str]:
    return sorted(p.stem for p in TEMPLATES_DIR.glob("*.txt"))


def load_template(spec: str | Template) -> Template:
    """A template by name (``prompts/templates/NAME.txt``) or as a literal string containing ``{``.

    Names resolve only inside the templates directory; a template file elsewhere is read with
    :meth:`Template.from_file` (the CLI's ``--template-file``), never by a name that looks like a path."""
    if isinstance(spec, Template):
        return spec
    if "{" in spec:
        return Template("inline", spec)
    if TEMPLATE_NAME.match(spec):
        path = TEMPLATES_DIR / f"{spec}.txt"
        if path.is_file() and path.resolve().parent == TEMPLATES_DIR.resolve():
            return Template.from_file(path)
    hint = (
        " (a template file is given with --template-file / Template.from_file)" if ("/" in spec or "." in spec) else ""
    )
    raise PromptSetError(
        f"unknown template {spec!r}; available: {', '.join(available_templates())}, or an inline "
        f"string with a field such as {{text}}{hint}"
    )


def _decode(data: bytes, path: Path) -> str:
    """UTF-8 text of a file (a BOM is dropped); a decoding error names the file and line."""
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = data[: e.start].count(b"\n") + 1
        raise PromptSetError(
            f"{path}:{line}: not UTF-8 text (byte {data[e.start]:#04x}); save the file as UTF-8"
        ) from None


# ---------------------------------------------------------------------------------------------- propositions


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


# ---------------------------------------------------------------------------------------------------- worlds


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

    def with_fields_for(self, spec: str) -> WorldFields:
        """These worlds, with any derived fields the proposition ``spec`` needs (none by default)."""
        return self

    def __len__(self) -> int:
        return len(self.records)

    def column(self, name: str) -> list[Any]:
        """The values of a field in every world (None where a record lacks it)."""
        if name not in self.records[0]:
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
        """A proposition by a predicate string or keyword equalities.

        ``worlds.proposition("label=positive")``, ``worlds.proposition(label="positive")``,
        ``"label!=neutral"``, ``"score>0.5"`` (also ``>=``, ``<``, ``<=``), ``"vader_pos:top25"`` (the 25 worlds
        with the highest value; ``bottom25`` the lowest; ties broken by world order).
        """
        if spec is None:
            if len(equals) != 1:
                raise PromptSetError("give one predicate string, or one field=value keyword")
            ((f, v),) = equals.items()
            spec = f"{f}={v}"
        if m := _TOP.match(spec):
            return self.top(m["field"], int(m["n"]), largest=m["dir"] == "top")
        m = _PRED.match(spec)
        if not m:
            raise PromptSetError(
                f"cannot parse proposition {spec!r}; use FIELD=VALUE, FIELD!=VALUE, FIELD>NUMBER (>=, <, <=) "
                "or FIELD:topN / FIELD:bottomN"
            )
        fld, op, value = m["field"], m["op"], m["value"]
        col = self.defined_column(fld)
        if op in ("=", "!="):
            present = self.values(fld)
            if value not in present:
                shown = ", ".join(present[:20]) + (" ..." if len(present) > 20 else "")
                raise PromptSetError(f"unknown value {value!r} for field {fld!r}; values present: {shown}")
            mask = np.array([str(v) == value for v in col])
            mask = mask if op == "=" else ~mask
        else:
            nums = self._numeric(fld, col)
            try:
                x = float(value)
            except ValueError:
                raise PromptSetError(f"{spec!r}: {value!r} is not a number") from None
            mask = {">": nums > x, ">=": nums >= x, "<": nums < x, "<=": nums <= x}[op]
        return Proposition(f"{fld}{op}{value}", mask, f"worlds with {fld} {op} {value}")

    def top(self, field: str, n: int, largest: bool = True) -> Proposition:
        """The n worlds with the highest (or lowest) value of a numeric field (the paper ranks by VADER pos)."""
        nums = self._numeric(field, self.defined_column(field))
        if not 0 < n < len(self):
            raise TrivialPropositionError(f"top-n proposition needs 0 < n < {len(self)} worlds, got n={n}")
        order = np.argsort(-nums if largest else nums, kind="stable")
        mask = np.zeros(len(self), dtype=bool)
        mask[order[:n]] = True
        word = "top" if largest else "bottom"
        return Proposition(
            f"{field}:{word}{n}", mask, f"the {n} worlds with the {'highest' if largest else 'lowest'} {field}"
        )

    def mask(self, mask: Sequence[bool] | np.ndarray, name: str = "mask") -> Proposition:
        mask = np.asarray(mask)
        if mask.shape != (len(self),):
            raise PromptSetError(f"mask has shape {mask.shape}, expected ({len(self)},)")
        return Proposition(name, mask.astype(bool), "explicit mask")

    @staticmethod
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
        recs = [dict(r) for r in records]
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

    def with_fields_for(self, spec: str) -> Worlds:
        """These worlds, with VADER fields added when the proposition ``spec`` uses one they lack."""
        if "vader_" in spec and not any(k.startswith("vader_") for k in self.records[0]):
            return self.with_vader()
        return self

    def with_vader(self, field: str = "text", prefix: str = "vader_") -> Worlds:
        """A copy with VADER scores of ``field`` added as ``vader_pos``, ``vader_neg``, ``vader_neu`` and
        ``vader_compound``."""
        from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

        sia = SentimentIntensityAnalyzer()
        recs = []
        for r in self.records:
            s = sia.polarity_scores(str(r[field]))
            recs.append({**r, **{f"{prefix}{k}": v for k, v in s.items()}})
        return Worlds(recs, self.template, self.source)


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


MAX_PROMPT_CHARS = 100_000  # a sanity cap before tokenizing; the model's context is checked when recording


def _is_missing(v: Any) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v))


def _kind(v: Any) -> str:
    if isinstance(v, bool):
        return "boolean"
    if isinstance(v, (int, float, np.number)):
        return "number"
    if isinstance(v, str):
        return "string"
    return type(v).__name__


def _check_prompt_field(v: Any, field: str, i: int, source: str) -> None:
    """A value a template puts into a prompt: text must be non-empty text; nothing may be missing."""
    where = f"record {i} of {source}"
    if _is_missing(v):
        raise PromptSetError(f"field {field!r} of {where} is null or NaN; a prompt cannot be built from it")
    if field == "text":
        if not isinstance(v, str):
            raise PromptSetError(f"the text of {where} is a {_kind(v)} ({v!r}), not a string")
        if not v.strip():
            raise PromptSetError(f"the text of {where} is empty")
    elif not isinstance(v, (str, int, float, np.number)):
        raise PromptSetError(f"field {field!r} of {where} is a {_kind(v)}; a template can only insert text or numbers")


# --------------------------------------------------------------------------------------------------- reading


def read_records(spec: str | os.PathLike) -> tuple[list[dict[str, Any]], str]:
    """Records from a file, a local ``datasets`` directory or a hub dataset name; returns (records, source)."""
    path = Path(spec).expanduser()
    if path.is_file():
        suffix = path.suffix.lower()
        if suffix in (".jsonl", ".json"):
            return _read_jsonl(path), str(path)
        if suffix in (".csv", ".tsv"):
            return _read_delimited(path, "\t" if suffix == ".tsv" else ","), str(path)
        raise PromptSetError(f"{path}: unsupported prompt file type {suffix!r} (use .jsonl, .csv or .tsv)")
    if path.is_dir():
        return _read_dataset_dir(path), str(path)
    text = str(spec)
    if text.startswith((".", "/", "~")) or text.endswith((".jsonl", ".json", ".csv", ".tsv")):
        raise PromptSetError(f"prompt file {text} does not exist")
    return _read_hub_dataset(text)


def _read_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as e:
        raise PromptSetError(f"cannot read {path}: {e.strerror or e}") from None


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    records = list(iter_jsonl(enumerate(_decode(_read_bytes(path), path).splitlines(), 1), path))
    if not records:
        raise PromptSetError(f"{path}: no records")
    return records


def _read_delimited(path: Path, delimiter: str) -> list[dict[str, Any]]:
    text = _decode(_read_bytes(path), path)
    records = list(iter_delimited(io.StringIO(text, newline=""), path, delimiter))
    if not records:
        raise PromptSetError(f"{path}: no records")
    return records


def iter_jsonl(lines: Iterable[tuple[int, str]], path: Path) -> Iterator[dict[str, Any]]:
    """The records of JSONL lines given as (line number, text); a malformed line is an error naming it."""
    for i, line in lines:
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as e:
            raise PromptSetError(f"{path}:{i}: not valid JSON ({e.msg})") from None
        except RecursionError:
            raise PromptSetError(f"{path}:{i}: JSON nested too deeply") from None
        if not isinstance(rec, dict):
            raise PromptSetError(f"{path}:{i}: each line must be a JSON object, got {type(rec).__name__}")
        yield rec


def iter_delimited(stream: TextIO, path: Path, delimiter: str) -> Iterator[dict[str, Any]]:
    """The records of CSV/TSV text whose header row names the fields (TSV GLUE-style: quotes are text)."""
    if delimiter == "\t":
        reader = csv.reader(stream, delimiter=delimiter, quoting=csv.QUOTE_NONE)
    else:
        reader = csv.reader(stream, delimiter=delimiter, quoting=csv.QUOTE_MINIMAL)
    try:
        try:
            header = next(reader)
        except StopIteration:
            raise PromptSetError(f"{path}: empty file") from None
        header = [h.strip() for h in header]
        if len(set(header)) != len(header) or not all(header):
            raise PromptSetError(f"{path}: the header row needs distinct, non-empty field names, got {header}")
        for row in reader:
            if not row:
                continue
            if len(row) != len(header):
                raise PromptSetError(f"{path}:{reader.line_num}: {len(row)} columns, the header has {len(header)}")
            yield dict(zip(header, row))
    except csv.Error as e:
        raise PromptSetError(f"{path}:{reader.line_num}: {e} (a field too large or a stray quote?)") from None
    except UnicodeDecodeError:  # a file read as it streams
        raise PromptSetError(f"{path}: not UTF-8 text near line {reader.line_num}; save it as UTF-8") from None


def _read_dataset_dir(path: Path) -> list[dict[str, Any]]:
    import datasets

    try:
        ds = datasets.load_from_disk(str(path))
    except FileNotFoundError:
        try:
            ds = datasets.load_dataset(str(path))
        except Exception as e:
            raise PromptSetError(f"{path}: not a prompt file nor a dataset directory ({e})") from None
    if isinstance(ds, datasets.DatasetDict):
        split = "train" if "train" in ds else next(iter(ds))
        ds = ds[split]
    return [dict(r) for r in ds]


def _read_hub_dataset(spec: str) -> tuple[list[dict[str, Any]], str]:
    """``name`` or ``name:split`` from the hub; fails within seconds when the hub cannot be reached."""
    from steer.hub import hub_reachable

    name, _, split = spec.partition(":")
    split = split or "train"
    if not re.match(r"^[\w.-]+(/[\w.-]+)?$", name):
        raise PromptSetError(f"{spec!r} is neither an existing file or directory nor a hub dataset name")
    if not hub_reachable(name, kind="dataset"):
        raise PromptSetError(
            f"cannot load hub dataset {name!r}: the Hugging Face hub is unreachable (offline). Pass a local file "
            "instead: a .jsonl/.csv/.tsv with a header (e.g. ../shared/data/sst2/train.tsv with "
            "--text-field sentence), a `datasets` directory, or the bundled prompts/sentiment.jsonl. With a "
            "local datasets cache, set HF_HUB_OFFLINE=1 to use it."
        )
    import datasets

    ds = datasets.load_dataset(name, split=split)
    return [dict(r) for r in ds], f"hub:{name}:{split}"
