"""Config fields that carry their own help text, so that a default and its help exist once.

``steer.SteerConfig`` and ``steer.GenerationConfig`` declare their fields with :func:`option`; the command line
(``steer.cli``) builds its flags from them, shows the config's default in the help, and passes a flag that was left
out as None so the config decides.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import Field, field
from typing import Any


def option(
    default: Any,
    help: str,
    *,
    choices: Sequence[str] | Callable[[], Sequence[str]] | None = None,
    flag: str | None = None,
    none: str = "none",
    switch_help: str | None = None,
) -> Any:
    """A dataclass field with its help text (and, for the CLI, its choices and a flag name other than the
    field's own, e.g. ``--greedy`` for ``do_sample=False``).

    Args:
        default: the field's default.
        help: one line saying what the field means.
        choices: the allowed values, or a function returning them (a registry that can grow).
        flag: the command-line flag, when it is not ``--field-name``.
        none: what a default of None means, as the help shows it (e.g. ``all`` layers).
        switch_help: for a boolean, the help of the switch that sets the other value (e.g. ``--greedy``).

    Returns:
        The ``dataclasses.field``.
    """
    return field(
        default=default,
        metadata={"help": help, "choices": choices, "flag": flag, "none": none, "switch_help": switch_help},
    )


def help_of(f: Field[Any]) -> str:
    """The help text of a field declared with :func:`option` ("" for a plain field)."""
    return str(f.metadata.get("help", ""))
