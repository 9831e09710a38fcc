"""``steer view``: one self-contained HTML page per neuron set (flags for the units from :class:`steer.SteerConfig`)."""

from __future__ import annotations

import argparse
import time
from typing import TYPE_CHECKING

from steer.cli.flags import config_flags, layers_of, load_model_for, model_flags, nonneg_int, positive_int

if TYPE_CHECKING:
    from steer.steering import SteerConfig

_UNITS = ("template", "site", "reduce", "layers", "score", "k", "rule", "coeff", "apply_to")


def defaults() -> SteerConfig:
    """The default SteerConfig (torch-free)."""
    from steer.configs import SteerConfig

    return SteerConfig()


def add_parsers(sub: argparse._SubParsersAction) -> None:
    """The view command (its flags are added when it is parsed)."""
    sub.add_parser(
        "view", help="write one self-contained HTML page that shows a neuron set (works offline)", build=_view_parser
    )


def _view_parser(v: argparse.ArgumentParser) -> None:
    v.add_argument("neurons", nargs="?", default=None, help="a saved neuron set (.json); default: the set of --toward")
    model_flags(v)
    v.add_argument("--worlds", default=None, help="prompt set the propositions are sets of (default: the set's own)")
    config_flags(v, defaults(), _UNITS)
    v.add_argument("--toward", default=None, help="the proposition whose default set is shown (default: positive)")
    v.add_argument("--out", required=True, help="the .html file to write")
    v.add_argument("--detail", type=nonneg_int, default=50, help="units per side with per-token activations")
    v.add_argument("--examples", type=positive_int, default=5, help="worlds shown that activate a unit most / least")
    v.add_argument("--explain", type=nonneg_int, default=5, help="units per side explained by candidate propositions")
    v.add_argument("--prompts", nargs="*", default=None, help="prompts of the steering panel (default: our own)")
    v.add_argument("--max-new-tokens", type=positive_int, default=20, help="new tokens per steered continuation")
    v.add_argument("--seed", type=int, default=0, help="sampling seed of the steering panel")
    v.add_argument("--bench", default=None, help="a steering-benchmark result.json: adds its success/perplexity curve")


def cmd_view(args: argparse.Namespace) -> None:
    from steer.viewer import view

    t0 = time.time()
    if args.neurons is not None and args.toward is not None:
        raise ValueError("give a saved neuron set or --toward, not both: a neuron set has its own proposition")
    steering = defaults()
    steering.resolve(**{n: getattr(args, n) for n in _UNITS if n != "layers"})  # bad values fail before loading
    model = load_model_for(args)
    cfg = steering.resolve(**{n: getattr(args, n) for n in _UNITS if n != "layers"}, layers=layers_of(args, model))
    page = view(
        model,
        args.neurons,
        toward=None if args.neurons is not None else (args.toward or "positive"),
        worlds=args.worlds,
        config=cfg,
        out=args.out,
        detail=args.detail,
        examples=args.examples,
        prompts=args.prompts,
        bench=args.bench,
        explain=args.explain,
        max_new_tokens=args.max_new_tokens,
        seed=args.seed,
        progress=True,
    )
    print(f"wrote {args.out} ({len(page.encode('utf-8')) / 1e6:.2f} MB) in {time.time() - t0:.0f}s")
