"""Flags, built from the config dataclasses: every default and help text lives in the config, once.

A config field declared with :func:`steer.options.option` becomes ``--field-name`` (or the flag it names); a flag
left out is None, and :func:`config_from` lets the config decide. One flag means one thing in every command:
``--seed`` is always the sampling seed, ``--n-worlds`` / ``--worlds-seed`` always choose records of the prompt set,
``--samples`` is always continuations per prompt.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import MISSING, fields, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from steer.options import help_of

if TYPE_CHECKING:
    from steer.models import Model
    from steer.worlds import Worlds

T = TypeVar("T")


class LazyParser(argparse.ArgumentParser):
    """A command's parser whose flags are added by ``build`` when it is first used (parsing its arguments or
    showing its help), so that listing the commands imports no command's configs (nor torch)."""

    def __init__(
        self, *args: Any, build: Callable[[argparse.ArgumentParser], None] | None = None, **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        self._build = build

    def built(self) -> LazyParser:
        """This parser with its flags added."""
        if self._build is not None:
            build, self._build = self._build, None
            build(self)
        return self

    def parse_known_args(self, args: Any = None, namespace: Any = None) -> Any:
        return super(LazyParser, self.built()).parse_known_args(args, namespace)

    def format_usage(self) -> str:
        return super(LazyParser, self.built()).format_usage()

    def format_help(self) -> str:
        return super(LazyParser, self.built()).format_help()


def _checked(cast: Callable[[str], T], kind: str, ok: Callable[[T], bool], rule: str) -> Callable[[str], T]:
    """An argparse type: ``cast`` the text (else "not {kind}"), then require ``ok`` (else "must {rule}")."""

    def parse(text: str) -> T:
        try:
            v = cast(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {kind}") from None
        if not ok(v):
            raise argparse.ArgumentTypeError(f"{text} must {rule}")
        return v

    return parse


positive_int = _checked(int, "an integer", lambda v: v >= 1, "be at least 1")
nonneg_int = _checked(int, "an integer", lambda v: v >= 0, "be 0 or more")
fraction = _checked(float, "a number", lambda v: 0 < v < 1, "be between 0 and 1 (exclusive)")
finite_float = _checked(float, "a number", math.isfinite, "be a finite number")
positive_float = _checked(float, "a number", lambda v: math.isfinite(v) and 0 < v <= 100, "be above 0 and at most 100")
nonneg_float = _checked(float, "a number", lambda v: math.isfinite(v) and v >= 0, "be a finite number >= 0")
share = _checked(float, "a number", lambda v: 0 < v <= 1, "be above 0 and at most 1")
seed_int = _checked(int, "an integer", lambda v: 0 <= v < 2**63, "be from 0 to 2**63 - 1")

# argparse types by a field's annotation (dataclass annotations are strings under `from __future__ import annotations`)
_TYPES: dict[str, Callable[[str], Any]] = {
    "int": positive_int,
    "int | None": nonneg_int,
    "float": finite_float,
    "float | None": finite_float,
    "str": str,
}
_FRACTIONS = {"alpha"}
_SPECIAL: dict[str, Callable[[str], Any]] = {"top_p": share, "temperature": positive_float, "seed": seed_int}
_NONNEG = {"bootstrap", "bootstrap_seed"}


def shown(value: object, none: str = "none") -> str:
    """A default as the help shows it."""
    if value is None:
        return none
    if isinstance(value, tuple):
        return ",".join(map(str, value))
    return f"{value:g}" if isinstance(value, float) else str(value)


def config_flags(p: argparse.ArgumentParser, config: Any, names: Iterable[str] | None = None) -> None:
    """Add a flag for each named field of a config instance (all its fields declared with ``option``), showing
    ``config``'s value as the default. Booleans are switches; a True default has a switch named by ``flag``."""
    wanted = None if names is None else list(names)
    by_name = {f.name: f for f in fields(config) if f.init and "help" in f.metadata}
    for name in wanted if wanted is not None else list(by_name):
        f = by_name[name]
        default = getattr(config, name)
        flag = f.metadata.get("flag") or "--" + name.replace("_", "-")
        text = help_of(f)
        if f.type == "bool":  # a switch that sets the opposite of the default
            if default and not f.metadata.get("flag"):
                flag = "--no-" + name.replace("_", "-")
            switch = f.metadata.get("switch_help") or text
            p.add_argument(flag, dest=name, action="store_const", const=not default, default=None, help=switch)
            continue
        kwargs: dict[str, Any] = {
            "dest": name,
            "default": None,
            "help": f"{text} (default: {shown(default, f.metadata.get('none', 'none'))})",
        }
        choices = f.metadata.get("choices")
        if str(f.type).startswith("tuple"):
            kwargs["metavar"] = "A,B,..."
            if choices is not None and "layers" not in name:
                kwargs["help"] += f"; from {', '.join(choices() if callable(choices) else choices)}"
        elif choices is not None:
            kwargs["choices"] = list(choices() if callable(choices) else choices)
        else:
            kind = _SPECIAL.get(name) or (
                fraction if name in _FRACTIONS else nonneg_int if name in _NONNEG else _TYPES.get(str(f.type), str)
            )
            kwargs["type"] = kind
        p.add_argument(flag, **kwargs)


def config_from(config: T, args: argparse.Namespace, **parsed: Any) -> T:
    """``config`` with the fields whose flags were given replaced; tuple fields are split at commas, and
    ``parsed`` gives values the caller parsed itself (e.g. layers, which need the model)."""
    given: dict[str, Any] = {}
    for f in fields(config):  # type: ignore[arg-type]
        if not f.init or (f.default is MISSING and f.default_factory is MISSING):
            continue
        value = parsed[f.name] if f.name in parsed else getattr(args, f.name, None)
        if value is None or (
            f.name == "layers" and f.name not in parsed
        ):  # layers need the model: parsed by the caller
            continue
        if isinstance(value, str) and str(f.type).startswith("tuple"):
            value = tuple(v.strip() for v in value.split(",") if v.strip())
        given[f.name] = value
    return replace(config, **given)  # type: ignore[type-var]


def model_flags(p: argparse.ArgumentParser) -> None:
    """``--model``, ``--dtype``, ``--device``."""
    p.add_argument(
        "--model",
        default="default",
        help="'default', 'bundled' (SmolLM2-135M-Instruct, offline), a hub id, a model dir or a .gguf file",
    )
    p.add_argument("--dtype", default="float32", help="float32 (default), bfloat16 or float16")
    p.add_argument("--device", default="cpu", help="cpu (default), cuda, cuda:N or mps")


def worlds_flags(p: argparse.ArgumentParser, template: bool = True) -> None:
    """The prompt set and which of its records are worlds: ``--worlds``, ``--template`` (or ``--template-file``),
    ``--text-field``, ``--n-worlds``, ``--worlds-seed``."""
    p.add_argument(
        "--worlds",
        default=None,
        help="prompt set: .jsonl/.csv/.tsv, a datasets dir or a hub dataset (default: the bundled sentiment set)",
    )
    if template:
        t = p.add_mutually_exclusive_group()
        t.add_argument(
            "--template",
            default=None,
            help="a template name of the bundled templates, or an inline string with {text} (default: plain)",
        )
        t.add_argument("--template-file", default=None, help="a template read from this file")
    p.add_argument("--text-field", default=None, help="field holding the text, copied into {text} (e.g. sentence)")
    p.add_argument("--n-worlds", type=positive_int, default=None, help="use n records (the first n, or a sample)")
    p.add_argument("--worlds-seed", type=seed_int, default=None, help="sample the --n-worlds records with this seed")


def load_worlds(args: argparse.Namespace, template: str | None = None) -> Worlds:
    """The worlds the flags of :func:`worlds_flags` name (``template``: the config's, when no flag gives one)."""
    from steer.resources import DEFAULT_PROMPT_SET
    from steer.templates import Template
    from steer.worlds import Worlds

    if getattr(args, "template_file", None):
        tpl: str | Template = Template.from_file(args.template_file)
    else:
        tpl = getattr(args, "template", None) or template or "plain"
    return Worlds.from_file(
        args.worlds or DEFAULT_PROMPT_SET,
        template=tpl,
        text_field=getattr(args, "text_field", None),
        n=getattr(args, "n_worlds", None),
        seed=getattr(args, "worlds_seed", None),
    )


def load_model_for(args: argparse.Namespace) -> Model:
    """The model of ``--model``/``--dtype``/``--device``, loaded once per process."""
    from steer.models import cached_model

    return cached_model(args.model, args.dtype, args.device)


def layers_of(args: argparse.Namespace, model: Model) -> tuple[int, ...] | None:
    """``--layers`` parsed against the model's depth (None when not given)."""
    from steer.sites import parse_layers

    return None if args.layers is None else tuple(parse_layers(args.layers, model.n_layers))


def numbers(text: str, cast: Callable[[str], T]) -> tuple[T, ...]:
    """``"1,2.5,4"`` -> a tuple of ``cast`` values."""
    return tuple(cast(x) for x in text.split(",") if x.strip())


def joined(values: Sequence[object]) -> str:
    """A tuple as the help shows it."""
    return ",".join(f"{v:g}" if isinstance(v, float) else str(v) for v in values)


def given(config: T, values: dict[str, Any]) -> T:
    """``config`` with the values that were given (not None) replaced."""
    return replace(config, **{k: v for k, v in values.items() if v is not None})  # type: ignore[type-var]


@contextlib.contextmanager
def results(args: argparse.Namespace) -> Iterator[Path | None]:
    """The command's result folder (``--out``), written whole or not at all, or None without ``--out``."""
    from steer.artifacts import output_dir

    if args.out is None:
        yield None
        return
    with output_dir(args.out, {"command": args.cmd, "argv": sys.argv[1:]}) as tmp:
        yield tmp
    print(f"\nwrote {args.out}/: " + ", ".join(sorted(p.name for p in Path(args.out).iterdir())))
