"""Streaming worlds: a prompt set too large to hold as Python records, read shard by shard.

:class:`WorldStream` reads its source in shards of records (a JSONL, CSV or TSV file line by line, a Parquet file
in row batches, a ``datasets`` dataset, including a streaming / iterable one, batch by batch) and hands out each
shard as a small :class:`steer.Worlds`. Only one shard's records are ever Python objects; :func:`steer.record`
records a stream shard by shard, writing each shard to disk as it completes. Propositions read only the
columns they need (one pass over the source per column, kept as a NumPy array).

Its provenance equals that of the same records held as :class:`steer.Worlds` (the hash is computed the same way,
incrementally), so a recording made from a stream and one made in memory are interchangeable.

    stream = WorldStream.from_file("sst2/train.tsv", template="classify-2shot", text_field="sentence")
    acts = record(model, stream, out="rec/")            # shard by shard, resumable
    D = acts.strength(stream.proposition("label=1"), normalize="rank")
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from steer.readers import PromptSetError, iter_delimited, iter_jsonl
from steer.templates import Template, load_template, prompt_set_provenance
from steer.worlds import WorldFields, Worlds

Reader = Callable[[int], Iterator[list[dict[str, Any]]]]  # batch size -> batches of records, in order


class WorldStream(WorldFields):
    """Worlds read from a source in shards, never all at once (see the module docstring).

    Args:
        reader: a callable that, given a batch size, returns a fresh iterator over the source's records in batches.
        template: the template that makes a record's prompt.
        source: where the records come from (shown in messages and provenance).
        fingerprint: a cheap identity of the source (file size and mtime, a dataset's fingerprint) used to key
            resumable recordings before the content hash is known.
        text_field: copy this field into ``text`` in every record.
        n: keep only the first n records.
    """

    HASH_KEY = "prompt_set_sha256"

    def __init__(
        self,
        reader: Reader,
        template: str | Template = "plain",
        source: str = "stream",
        fingerprint: str = "",
        text_field: str | None = None,
        n: int | None = None,
    ) -> None:
        if n is not None and n < 1:
            raise PromptSetError(f"asked for n={n} worlds")
        self._reader = reader
        self.template = load_template(template)
        self.source = source if n is None else f"{source}[n={n}]"
        self.fingerprint = fingerprint
        self.text_field = text_field
        self.n = n
        self._len: int | None = None
        self._hash: str | None = None
        self._columns: dict[str, list[Any]] = {}

    # -- construction

    @classmethod
    def from_file(
        cls,
        path: str | os.PathLike[str],
        template: str | Template = "plain",
        text_field: str | None = None,
        n: int | None = None,
    ) -> WorldStream:
        """Worlds streamed from a JSONL, CSV, TSV or Parquet file (a header row names the CSV/TSV fields)."""
        path = Path(path).expanduser()
        if not path.is_file():
            raise PromptSetError(f"prompt file {path} does not exist")
        suffix = path.suffix.lower()
        readers: dict[str, Reader] = {
            ".jsonl": lambda size: _jsonl_batches(path, size),
            ".json": lambda size: _jsonl_batches(path, size),
            ".csv": lambda size: _delimited_batches(path, ",", size),
            ".tsv": lambda size: _delimited_batches(path, "\t", size),
            ".parquet": lambda size: _parquet_batches(path, size),
        }
        if suffix not in readers:
            raise PromptSetError(
                f"{path}: unsupported prompt file type {suffix!r} (use .jsonl, .csv, .tsv or .parquet)"
            )
        st = path.stat()
        return cls(
            readers[suffix], template, str(path), f"file:{path.resolve()}:{st.st_size}:{st.st_mtime_ns}", text_field, n
        )

    @classmethod
    def from_dataset(
        cls,
        dataset: Any,
        template: str | Template = "plain",
        text_field: str | None = None,
        n: int | None = None,
        source: str | None = None,
    ) -> WorldStream:
        """Worlds streamed from a ``datasets.Dataset`` or ``IterableDataset`` (``load_dataset(..., streaming=True)``),
        read with ``dataset.iter(batch_size)``."""
        if not hasattr(dataset, "iter"):
            raise PromptSetError(f"{type(dataset).__name__} is not a datasets Dataset or IterableDataset")
        info = getattr(dataset, "info", None)
        name = source or (getattr(info, "dataset_name", None) or type(dataset).__name__)
        split = getattr(dataset, "split", None)
        fp = getattr(dataset, "_fingerprint", None) or f"{name}:{split}:{getattr(info, 'version', '')}"

        def reader(size: int) -> Iterator[list[dict[str, Any]]]:
            for batch in dataset.iter(batch_size=size):
                keys = list(batch)
                yield [dict(zip(keys, row)) for row in zip(*(batch[k] for k in keys))]

        return cls(reader, template, f"dataset:{name}" + (f":{split}" if split else ""), f"dataset:{fp}", text_field, n)

    # -- reading

    def _batches(self, size: int) -> Iterator[list[dict[str, Any]]]:
        """The records in batches of exactly ``size`` (the last one shorter), with ``text_field`` applied."""
        buf: list[dict[str, Any]] = []
        seen = 0
        for batch in self._reader(size):
            for rec in batch:
                if self.n is not None and seen >= self.n:
                    break
                if self.text_field is not None:
                    if self.text_field not in rec:
                        raise PromptSetError(
                            f"record {seen} of {self.source} has no field {self.text_field!r} "
                            f"(fields: {', '.join(rec)})"
                        )
                    rec = {**rec, "text": rec[self.text_field]}
                buf.append(rec)
                seen += 1
                if len(buf) == size:
                    yield buf
                    buf = []
            if self.n is not None and seen >= self.n:
                break
        if buf:
            yield buf
        if self.n is not None and seen < self.n:
            raise PromptSetError(f"asked for n={self.n} worlds but {self.source} has {seen} records")

    def shards(self, size: int) -> Iterator[Worlds]:
        """The worlds in shards of ``size`` (each a :class:`Worlds`), in order. A full pass also fixes the stream's
        length and content hash."""
        if size < 1:
            raise ValueError("shard size must be positive")
        h = hashlib.sha256(b"[")
        n = 0
        for recs in self._batches(size):
            part = Worlds(recs, self.template, f"{self.source}[{n}:{n + len(recs)}]")
            for rec in recs:
                h.update((", " if n else "").encode() + json.dumps(rec, sort_keys=True, default=str).encode())
                n += 1
            yield part
        if n == 0:
            raise PromptSetError(f"prompt set {self.source} has no records")
        h.update(b"]\0" + self.template.text.encode())
        self._len, self._hash = n, h.hexdigest()

    def _scan(self) -> None:
        for _ in self.shards(4096):
            pass

    @property
    def known_length(self) -> int | None:
        """The number of worlds once a pass has counted them, else None (no pass is made for it)."""
        return self._len

    def __len__(self) -> int:
        if self._len is None:
            self._scan()
        assert self._len is not None
        return self._len

    @property
    def content_hash(self) -> str:
        """sha256 over the records, the template and their order: the same as :attr:`Worlds.prompt_set_hash` of the
        same records (a pass over the source the first time)."""
        if self._hash is None:
            self._scan()
        assert self._hash is not None
        return self._hash

    @property
    def provenance(self) -> dict[str, Any]:
        return prompt_set_provenance(self.source, len(self), self.content_hash, self.template)

    @property
    def key(self) -> dict[str, Any]:
        """What identifies this stream before a pass: source, fingerprint, template, text field, n."""
        return {
            "source": self.source,
            "fingerprint": self.fingerprint,
            "template_sha256": self.template.sha256,
            "text_field": self.text_field,
            "n": self.n,
        }

    def column(self, name: str) -> list[Any]:
        """The values of one field in every world (one pass over the source, then kept)."""
        if name not in self._columns:
            col: list[Any] = []
            for recs in self._batches(4096):
                if not col and name not in recs[0]:
                    raise PromptSetError(f"unknown field {name!r}; fields: {', '.join(recs[0])}")
                col.extend(r.get(name) for r in recs)
            self._columns[name] = col
        return self._columns[name]

    def materialize(self) -> Worlds:
        """All the worlds as one in-memory :class:`Worlds` (for small streams)."""
        return Worlds([r for recs in self._batches(4096) for r in recs], self.template, self.source)

    def __repr__(self) -> str:
        return f"WorldStream({self.source!r}, template {self.template.name!r})"


# ------------------------------------------------------------------------------------------------ file readers


def _batched(records: Iterator[dict[str, Any]], size: int) -> Iterator[list[dict[str, Any]]]:
    batch: list[dict[str, Any]] = []
    for rec in records:
        batch.append(rec)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def _file_lines(path: Path) -> Iterator[tuple[int, str]]:
    """A text file's lines as (line number, text), read as they are needed (a UTF-8 BOM is dropped)."""
    with open(path, "rb") as f:
        for i, raw in enumerate(f, 1):
            try:
                yield i, raw.decode("utf-8-sig" if i == 1 else "utf-8")
            except UnicodeDecodeError:
                raise PromptSetError(f"{path}:{i}: not UTF-8 text; save the file as UTF-8") from None


def _jsonl_batches(path: Path, size: int) -> Iterator[list[dict[str, Any]]]:
    yield from _batched(iter_jsonl(_file_lines(path), path), size)


def _delimited_batches(path: Path, delimiter: str, size: int) -> Iterator[list[dict[str, Any]]]:
    with open(path, encoding="utf-8-sig", newline="") as f:
        yield from _batched(iter_delimited(f, path, delimiter), size)


def _parquet_batches(path: Path, size: int) -> Iterator[list[dict[str, Any]]]:
    import pyarrow.parquet as pq

    try:
        pf = pq.ParquetFile(path)
    except Exception as e:  # pyarrow raises its own error types
        raise PromptSetError(f"{path}: not a readable Parquet file ({e})") from None
    for batch in pf.iter_batches(batch_size=size):
        yield batch.to_pylist()
