"""``steer eval flip`` and ``steer eval steer``: the evaluation harness from the command line (flags default to
:class:`steer.eval.FlipConfig` and :class:`steer.eval.SteeringEvalConfig`). This front end may import the harness,
which the library itself never does."""

from __future__ import annotations

import argparse

from steer.cli.flags import given, joined, load_model_for, model_flags, nonneg_int, numbers, positive_int, results


def add_parsers(sub: argparse._SubParsersAction) -> None:
    """The eval command and its two modes (their flags are added when the mode is parsed)."""
    e = sub.add_parser("eval", help="evaluation harness: the paper's flip protocol, or steering quality vs baselines")
    esub = e.add_subparsers(dest="mode", required=True)
    esub.add_parser(
        "flip", help="do the units flip the model's classification? (paper protocol + controls)", build=_flip_parser
    )
    esub.add_parser("steer", help="generation quality of neuron steering against baselines", build=_steering_parser)


def _flip_parser(p: argparse.ArgumentParser) -> None:
    from dataclasses import fields

    from steer.eval.configs import FlipConfig, FlipItems, FlipWorlds, UnitChoice
    from steer.names import SCORES

    # the defaults, read without building a FlipConfig (its interventions would import torch)
    top = {f.name: f.default for f in fields(FlipConfig)}
    c = argparse.Namespace(
        sst2=top["sst2"], batch_size=top["batch_size"], worlds=FlipWorlds(), items=FlipItems(), units=UnitChoice()
    )
    model_flags(p)
    p.add_argument(
        "--sst2", default=None, help=f"hub dataset or a GLUE dir with train/validation.tsv (default: {c.sst2})"
    )
    p.add_argument("--worlds", default=None, help="worlds file (default: SST-2 train)")
    p.add_argument("--n-worlds", type=positive_int, default=None, help=f"(default: {c.worlds.n})")
    p.add_argument("--eval-set", default=None, help="labelled evaluation file (default: SST-2 validation)")
    p.add_argument("--n-eval", type=positive_int, default=None, help=f"(default: {c.items.n})")
    p.add_argument(
        "--sites", default=None, help=f"comma-separated: resid (the paper), mlp (default: {','.join(c.units.sites)})"
    )
    p.add_argument(
        "--layers", default=None, help="layers to select units from, e.g. -1 (the last) or 10,11 (default: -1)"
    )
    p.add_argument("--other-layers", default=None, help="the other layer choice (default: all, or the last)")
    p.add_argument("--k", type=positive_int, default=None, help=f"units for and against (default: {c.units.k})")
    p.add_argument("--score", default=None, choices=list(SCORES), help=f"selection score (default: {c.units.score})")
    p.add_argument(
        "--compare-scores",
        default=None,
        help=f"control scores, comma-separated ('' for none) (default: {','.join(c.units.compare_scores)})",
    )
    p.add_argument(
        "--random-seeds",
        type=nonneg_int,
        default=None,
        help=f"how many random-unit controls (default: {len(c.units.random_seeds)})",
    )
    p.add_argument("--batch-size", type=positive_int, default=None, help=f"(default: {c.batch_size})")
    p.add_argument("--out", required=True, help="report directory (result.json, report.md, flips.png)")
    p.add_argument("--quiet", action="store_true")


def _steering_parser(p: argparse.ArgumentParser) -> None:
    from steer.eval.configs import SteeringEvalConfig
    from steer.names import SCORES

    c = SteeringEvalConfig()
    model_flags(p)
    p.add_argument(
        "--prompt-files", nargs="+", default=None, help=f"files of prompts to continue (default: {' '.join(c.prompts)})"
    )
    p.add_argument("--n-prompts", type=positive_int, default=None, help="use the first n prompts (default: all)")
    p.add_argument("--worlds", default=None, help="prompt set the propositions are sets of (default: the bundled one)")
    p.add_argument("--k", type=positive_int, default=None, help=f"units for and against (default: {c.k})")
    p.add_argument("--score", default=None, choices=list(SCORES), help=f"selection score (default: {c.score})")
    p.add_argument("--compare-scores", default=None, help="other selection scores to steer with, comma-separated")
    p.add_argument("--coeffs", default=None, help=f"the neuron rule's coefficients (default: {joined(c.coeffs)})")
    p.add_argument("--caa-layer", type=int, default=None, help="the residual vector's layer (default: the middle)")
    p.add_argument("--caa-coeffs", default=None, help=f"(default: {joined(c.caa_coeffs)})")
    p.add_argument("--selfcond-k", default=None, help=f"(default: {joined(c.selfcond_k)})")
    p.add_argument("--no-prompting", action="store_true")
    p.add_argument(
        "--scorers", default=None, help=f"vader, minilm-sst2, hf:<model id>, auto (default: {joined(c.scorers)})"
    )
    p.add_argument("--sst2", default=None, help=f"labelled data for the minilm-sst2 classifier (default: {c.sst2})")
    p.add_argument("--seeds", default=None, help=f"sampling seeds (default: {joined(c.seeds)})")
    p.add_argument("--max-new-tokens", type=positive_int, default=None, help=f"(default: {c.max_new_tokens})")
    p.add_argument("--out", required=True)
    p.add_argument("--quiet", action="store_true")


def _scores(text: str | None) -> tuple[str, ...] | None:
    return None if text is None else tuple(s for s in text.split(",") if s)


def cmd_eval(args: argparse.Namespace) -> None:
    from steer import eval as harness
    from steer.eval.metrics import format_rate

    model = load_model_for(args)
    if args.mode == "flip":
        c = harness.FlipConfig()
        units = given(
            c.units,
            {
                "sites": None if args.sites is None else tuple(args.sites.split(",")),
                "layers": None if args.layers is None else numbers(args.layers, int),
                "other_layers": None if args.other_layers is None else numbers(args.other_layers, int),
                "k": args.k,
                "score": args.score,
                "compare_scores": _scores(args.compare_scores),
                "random_seeds": None if args.random_seeds is None else tuple(range(args.random_seeds)),
            },
        )
        cfg = given(
            c,
            {
                "sst2": args.sst2,
                "batch_size": args.batch_size,
                "units": units,
                "worlds": given(c.worlds, {"source": args.worlds, "n": args.n_worlds}),
                "items": given(c.items, {"source": args.eval_set, "n": args.n_eval}),
            },
        )
        with results(args) as out:
            result = harness.evaluate_flips(model, cfg, out=out, progress=not args.quiet)
        print(f"clean accuracy {format_rate(result['clean_accuracy'])} on {result['n_items']} items\n")
        print(harness.flip_table(result))
    else:
        scfg = given(
            harness.SteeringEvalConfig(),
            {
                "prompts": None if args.prompt_files is None else tuple(args.prompt_files),
                "n_prompts": args.n_prompts,
                "worlds": args.worlds,
                "k": args.k,
                "score": args.score,
                "compare_scores": _scores(args.compare_scores),
                "coeffs": None if args.coeffs is None else numbers(args.coeffs, float),
                "caa_layer": args.caa_layer,
                "caa_coeffs": None if args.caa_coeffs is None else numbers(args.caa_coeffs, float),
                "selfcond_k": None if args.selfcond_k is None else numbers(args.selfcond_k, int),
                "prompting": False if args.no_prompting else None,
                "scorers": None if args.scorers is None else tuple(args.scorers.split(",")),
                "sst2": args.sst2,
                "seeds": None if args.seeds is None else numbers(args.seeds, int),
                "max_new_tokens": args.max_new_tokens,
            },
        )
        with results(args) as out:
            result = harness.evaluate_steering(model, scfg, out=out, progress=not args.quiet)
        for name in result["summary"]:
            print(f"\n== scorer {name}\n{harness.steering_table(result, name)}")
    print(f"\nreport: {args.out}/report.md")
