"""Prompt templates: records -> prompts, and the hashes a recording keeps of them.

Data flow: **prompt set** -> worlds -> recorded activations -> strengths -> selected units -> intervention ->
steered generation. A template is a Python format string over a record's fields (``{text}``), named by a file
under ``prompts/templates/`` or given inline; it turns the records :mod:`steer.readers` reads into the prompts of
:class:`steer.worlds.Worlds`. :func:`prompt_set_provenance` is what a recording keeps of the prompt-made worlds.
"""

from __future__ import annotations

import hashlib
import os
import re
import string
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from steer.readers import PromptSetError, _decode
from steer.resources import TEMPLATES_DIR


def sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


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
        from steer.artifacts import read_regular_bytes

        path = Path(path)
        try:
            text = _decode(read_regular_bytes(path, "template file", limit=1 << 20), path)
        except OSError as e:
            raise PromptSetError(f"cannot read template file {path}: {e.strerror or e}") from None
        except ValueError as e:
            if isinstance(e, PromptSetError):
                raise
            raise PromptSetError(str(e)) from None
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
    """What a recording keeps of the prompt-made worlds it ran (for :class:`steer.worlds.Worlds` and streams alike)."""
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
