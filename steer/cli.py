"""The `steer` command line."""

from __future__ import annotations

import argparse
import sys

from steer.strength import NORMALIZATIONS


def _common_model(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default="default",
                   help="'default', 'bundled' (SmolLM2-135M-Instruct, offline), a hub id, a model dir or a .gguf file")
    p.add_argument("--dtype", default="float32", help="float32 (default) or bfloat16")


def _common_worlds(p: argparse.ArgumentParser) -> None:
    p.add_argument("--worlds", default=None, help="prompt set: .jsonl/.csv/.tsv, a datasets dir or a hub dataset "
                   "(default: prompts/sentiment.jsonl)")
    p.add_argument("--template", default="plain", help="template name under prompts/templates, a file, or a string")
    p.add_argument("--text-field", default=None, help="field holding the text, copied into {text} (e.g. sentence)")
    p.add_argument("--n", type=int, default=None, help="use n records (the first n, or a sample with --seed)")
    p.add_argument("--seed", type=int, default=None, help="sample the n records with this seed")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="steer", description=__doc__)
    sub = parser.add_subparsers(dest="cmd", required=True)

    f = sub.add_parser("find", help="find the units that speak for and against a proposition")
    _common_model(f)
    _common_worlds(f)
    f.add_argument("--proposition", required=True,
                   help="e.g. label=positive, label!=neutral, score>0.5, vader_pos:top25 (VADER fields are added on demand)")
    f.add_argument("--site", default="mlp", choices=["mlp", "resid"])
    f.add_argument("--layers", default="all", help="all, 23, -1, 0,5,10 or 18-23")
    f.add_argument("--position", default="last", choices=["last", "mean"])
    f.add_argument("--k", type=int, default=5)
    f.add_argument("--per-layer", action="store_true", help="top-k in every layer instead of over all layers")
    f.add_argument("--normalize", default="both", choices=["both", *NORMALIZATIONS],
                   help="D on raw activations (none, the paper), per-unit z-scores (zscore), or both (default)")
    f.add_argument("--batch-size", type=int, default=16)
    f.add_argument("--recording", default=None, help="reuse a saved recording directory instead of recording")
    f.add_argument("--out", default=None, help="directory for the artifacts and plots")
    f.add_argument("--quiet", action="store_true", help="no progress bars")
    return parser


def cmd_find(args: argparse.Namespace) -> None:
    from steer.find import find_neurons, format_find
    from steer.models import load_model
    from steer.record import parse_layers
    from steer.worlds import DEFAULT_PROMPT_SET, Worlds

    model = load_model(args.model, dtype=args.dtype)
    worlds = Worlds.from_file(args.worlds or DEFAULT_PROMPT_SET, template=args.template, text_field=args.text_field,
                              n=args.n, seed=args.seed)
    layers = parse_layers(args.layers, model.n_layers)
    norms = NORMALIZATIONS if args.normalize == "both" else (args.normalize,)
    print(f"model {model.name} ({model.n_layers} layers), {len(worlds)} worlds from {worlds.source}, "
          f"template {worlds.template.name!r}, site {args.site}, position {args.position}, layers {args.layers}",
          flush=True)
    result = find_neurons(model, worlds, args.proposition, site=args.site, layers=layers, position=args.position,
                          k=args.k, per_layer=args.per_layer, normalizations=norms, batch_size=args.batch_size,
                          out=args.out, recording=args.recording, progress=not args.quiet)
    print(format_find(result))


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        {"find": cmd_find}[args.cmd](args)
    except (ValueError, FileNotFoundError, RuntimeError) as e:
        print(f"steer {args.cmd}: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
