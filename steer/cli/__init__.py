"""The `steer` command line: ``steer find | stability | record | generate | demo | export | eval | view``.

Every default lives in one place: the config dataclasses (:class:`steer.SteerConfig`,
:class:`steer.GenerationConfig`, :class:`steer.find.FindConfig`, the harness's configs), whose fields carry their
help text; the flags are built from them (:mod:`steer.cli.flags`). A flag left out is passed as None and the config
decides; the help shows the config's value. This package is a front end: it may import the evaluation harness
(``steer.eval``), which the library itself never does.

Each command's flags are added when that command is parsed (:class:`~steer.cli.flags.LazyParser`), and the command
modules import the library (torch) inside their functions: ``steer --help`` loads neither.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

from steer.cli import evaluate, steering, units, view
from steer.cli.flags import LazyParser

COMMANDS: dict[str, Callable[[argparse.Namespace], None]] = {
    "find": units.cmd_find,
    "stability": units.cmd_stability,
    "record": units.cmd_record,
    "generate": steering.cmd_generate,
    "demo": steering.cmd_demo,
    "export": steering.cmd_export,
    "eval": evaluate.cmd_eval,
    "view": view.cmd_view,
}
EXPECTED = (ValueError, OSError, RuntimeError, LookupError)  # what bad input and faults raise


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every command."""
    parser = argparse.ArgumentParser(
        prog="steer",
        description="Find the units of a language model that speak for a proposition, and steer generation with them.",
    )
    parser.add_argument("--debug", action="store_true", help="show the full traceback of an error")
    sub = parser.add_subparsers(dest="cmd", required=True, parser_class=LazyParser)
    units.add_parsers(sub)
    steering.add_parsers(sub)
    evaluate.add_parsers(sub)
    view.add_parsers(sub)
    return parser


def describe(e: BaseException) -> str:
    """One line naming the problem: the message, with the path for OS errors and the type for unexpected ones."""
    if isinstance(e, OSError) and e.filename:
        return f"{e.strerror or type(e).__name__}: {e.filename}"
    msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    if isinstance(e, KeyError):
        msg = f"missing key {msg}"
    if not isinstance(e, EXPECTED):
        return f"{type(e).__name__}: {msg} (unexpected; rerun with --debug for the traceback)"
    return msg


def quiet_libraries() -> None:
    """No progress bars from the libraries underneath (loading weights, de-quantizing): with ``--quiet``, and when
    stderr is not a terminal, where each redraw would be one more line in a log."""
    from huggingface_hub.utils import disable_progress_bars
    from transformers.utils import logging as hf_logging

    disable_progress_bars()
    hf_logging.disable_progress_bar()


def main(argv: list[str] | None = None) -> int:
    """Run one command; returns the exit code (2 with a one-line error for bad input and faults)."""
    args = build_parser().parse_args(argv)
    from steer.artifacts import Terminated, terminate_as_exception

    if getattr(args, "quiet", False) or not sys.stderr.isatty():
        quiet_libraries()

    try:
        with terminate_as_exception():
            COMMANDS[args.cmd](args)
    except KeyboardInterrupt:
        print(f"steer {args.cmd}: interrupted; nothing half-written was kept", file=sys.stderr)
        return 130
    except Terminated:
        print(f"steer {args.cmd}: terminated; nothing half-written was kept", file=sys.stderr)
        return 143
    except Exception as e:
        if args.debug:
            raise
        print(f"steer {args.cmd}: error: {describe(e)}", file=sys.stderr)
        return 2
    return 0
