"""Prompt-set readers: the first step of the data flow, files and datasets -> records (one dict per world).

Data flow: **prompt set** -> worlds -> recorded activations -> strengths -> selected units -> intervention ->
steered generation. This module reads a prompt set's records from a JSONL, CSV or TSV file (a header row names
the fields), a local ``datasets`` directory or a Hugging Face hub dataset name, decodes files as UTF-8 with errors
that name the file and line, and checks the values a template puts into a prompt. :mod:`steer.templates` turns
records into prompts; :mod:`steer.worlds` holds them as worlds.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import re
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, TextIO

import numpy as np


class PromptSetError(ValueError):
    """A prompt file, dataset, template or proposition is malformed or refers to something that is not there."""


def _decode(data: bytes, path: Path) -> str:
    """UTF-8 text of a file (a BOM is dropped); a decoding error names the file and line."""
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = data[: e.start].count(b"\n") + 1
        raise PromptSetError(
            f"{path}:{line}: not UTF-8 text (byte {data[e.start]:#04x}); save the file as UTF-8"
        ) from None


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
    if path.exists():
        raise PromptSetError(f"prompt file {path} is not a regular file (a FIFO or a device); give a regular file")
    text = str(spec)
    if text.startswith((".", "/", "~")) or text.endswith((".jsonl", ".json", ".csv", ".tsv")):
        raise PromptSetError(f"prompt file {text} does not exist")
    return _read_hub_dataset(text)


def _read_bytes(path: Path) -> bytes:
    from steer.artifacts import read_regular_bytes

    try:
        return read_regular_bytes(path, "prompt file")
    except OSError as e:
        raise PromptSetError(f"cannot read {path}: {e.strerror or e}") from None
    except ValueError as e:
        raise PromptSetError(str(e)) from None


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
