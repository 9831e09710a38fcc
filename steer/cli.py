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
    f.add_argument("--normalize", default="all", choices=["all", *NORMALIZATIONS],
                   help="D on raw activations (none, the paper), per-unit z-scores (zscore), per-unit normal scores "
                        "of the ranks (rank), or all three (default)")
    f.add_argument("--batch-size", type=int, default=16)
    f.add_argument("--recording", default=None, help="reuse a saved recording directory instead of recording")
    f.add_argument("--bootstrap", type=int, default=200, help="bootstrap resamples for stability (0: none)")
    f.add_argument("--alpha", type=float, default=0.1, help="interval / prediction-set level")
    f.add_argument("--bootstrap-seed", type=int, default=0)
    f.add_argument("--out", default=None, help="directory for the artifacts and plots")
    f.add_argument("--quiet", action="store_true", help="no progress bars")

    t = sub.add_parser("stability", help="how stable and trustworthy are the units found for a proposition?")
    _common_model(t)
    _common_worlds(t)
    t.add_argument("--proposition", required=True)
    t.add_argument("--site", default="mlp", choices=["mlp", "resid"])
    t.add_argument("--layers", default="all")
    t.add_argument("--position", default="last", choices=["last", "mean"])
    t.add_argument("--k", type=int, default=5)
    t.add_argument("--normalize", default="rank", choices=list(NORMALIZATIONS))
    t.add_argument("--K", type=int, default=500, help="bootstrap resamples")
    t.add_argument("--alpha", type=float, default=0.1)
    t.add_argument("--bootstrap-seed", type=int, default=0)
    t.add_argument("--q", type=float, default=0.1, help="top share of worlds that binarizes a unit (IoU, F1...)")
    t.add_argument("--delta", type=float, default=0.05, help="failure probability of the uniform bounds")
    t.add_argument("--batch-size", type=int, default=16)
    t.add_argument("--recording", default=None)
    t.add_argument("--out", default=None)
    t.add_argument("--quiet", action="store_true")

    g = sub.add_parser("generate", help="unsteered and steered continuations of a prompt, side by side")
    g.add_argument("prompt")
    _common_model(g)
    _steer_options(g)
    g.add_argument("--toward", default="positive", help="a label of the worlds (positive, negative...) or a predicate")
    g.add_argument("--n", type=int, default=1, help="samples per prompt (seeds seed..seed+n-1)")

    e = sub.add_parser("eval", help="evaluation harness: the paper's flip protocol, or steering quality vs baselines")
    esub = e.add_subparsers(dest="mode", required=True)
    ef = esub.add_parser("flip", help="do the units flip the model's classification? (paper protocol + controls)")
    _common_model(ef)
    ef.add_argument("--sst2", default="stanfordnlp/sst2", help="hub dataset or a GLUE dir with train/validation.tsv")
    ef.add_argument("--worlds", default=None, help="worlds file (default: SST-2 train)")
    ef.add_argument("--n-worlds", type=int, default=1024)
    ef.add_argument("--eval-set", default=None, help="labelled evaluation file (default: SST-2 validation)")
    ef.add_argument("--n-eval", type=int, default=500)
    ef.add_argument("--sites", default="resid", help="comma-separated: resid (the paper), mlp")
    ef.add_argument("--layers", default="-1", help="layers to select units from, e.g. -1 (the last) or 10,11")
    ef.add_argument("--other-layers", default=None, help="the other layer choice (default: all, or the last)")
    ef.add_argument("--k", type=int, default=5)
    ef.add_argument("--score", default="D", help="selection score: D, zscore-D, rank-D, mean-diff, smd, ap")
    ef.add_argument("--compare-scores", default="mean-diff", help="control scores, comma-separated ('' for none)")
    ef.add_argument("--random-seeds", type=int, default=3)
    ef.add_argument("--batch-size", type=int, default=32)
    ef.add_argument("--out", required=True, help="report directory (result.json, report.md, flips.png)")
    ef.add_argument("--quiet", action="store_true")
    es = esub.add_parser("steer", help="generation quality of neuron steering against baselines, over strengths")
    _common_model(es)
    es.add_argument("--prompts", nargs="+", default=None,
                    help="prompt files (default: prompts/steering_test.jsonl prompts/steering_opposite.jsonl)")
    es.add_argument("--n-prompts", type=int, default=None)
    es.add_argument("--worlds", default=None, help="prompt set defining the propositions (default prompts/sentiment.jsonl)")
    es.add_argument("--k", type=int, default=500)
    es.add_argument("--score", default="rank-D")
    es.add_argument("--compare-scores", default="", help="other selection scores to steer with, comma-separated")
    es.add_argument("--strengths", default="1,2,3,4,6")
    es.add_argument("--caa-layer", type=int, default=None)
    es.add_argument("--caa-strengths", default="2,4,8,16")
    es.add_argument("--selfcond-k", default="10,50,200,1000")
    es.add_argument("--no-prompting", action="store_true")
    es.add_argument("--scorers", default="vader,minilm-sst2", help="vader, minilm-sst2, hf:<model id>, auto")
    es.add_argument("--sst2", default="stanfordnlp/sst2", help="labelled data for the minilm-sst2 classifier")
    es.add_argument("--seeds", default="0,1")
    es.add_argument("--max-new-tokens", type=int, default=30)
    es.add_argument("--out", required=True)
    es.add_argument("--quiet", action="store_true")

    d = sub.add_parser("demo", help="the main job: find sentiment neurons, then steer a few prompts both ways")
    _common_model(d)
    _steer_options(d)
    d.add_argument("--prompts", nargs="*", default=None, help="prompts to continue (default: a few of our own)")
    return parser


def _steer_options(p: argparse.ArgumentParser) -> None:
    from steer.interventions import RULES

    p.add_argument("--worlds", default=None, help="prompt set defining the propositions (default prompts/sentiment.jsonl)")
    p.add_argument("--template", default=None, help="template for recording the worlds (default: steer's choice)")
    p.add_argument("--k", type=int, default=None, help="units for and against (default: steer's choice)")
    p.add_argument("--rule", default=None, choices=RULES)
    p.add_argument("--strength", type=float, default=None)
    p.add_argument("--normalize", default=None, choices=list(NORMALIZATIONS))
    p.add_argument("--site", default=None, choices=["mlp", "resid"])
    p.add_argument("--layers", default=None, help="all, 23, 0,5,10 or 18-23 (default: steer's choice)")
    p.add_argument("--max-new-tokens", type=int, default=40)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--greedy", action="store_true", help="greedy decoding instead of sampling")
    p.add_argument("--chat", action="store_true", help="wrap the prompt in the model's chat template")


def cmd_find(args: argparse.Namespace) -> None:
    from steer.find import find_neurons, format_find
    from steer.models import load_model
    from steer.record import parse_layers
    from steer.worlds import DEFAULT_PROMPT_SET, Worlds

    model = load_model(args.model, dtype=args.dtype)
    worlds = Worlds.from_file(args.worlds or DEFAULT_PROMPT_SET, template=args.template, text_field=args.text_field,
                              n=args.n, seed=args.seed)
    layers = parse_layers(args.layers, model.n_layers)
    norms = NORMALIZATIONS if args.normalize == "all" else (args.normalize,)
    print(f"model {model.name} ({model.n_layers} layers), {len(worlds)} worlds from {worlds.source}, "
          f"template {worlds.template.name!r}, site {args.site}, position {args.position}, layers {args.layers}",
          flush=True)
    result = find_neurons(model, worlds, args.proposition, site=args.site, layers=layers, position=args.position,
                          k=args.k, per_layer=args.per_layer, normalizations=norms, batch_size=args.batch_size,
                          out=args.out, recording=args.recording, progress=not args.quiet,
                          bootstrap=args.bootstrap, alpha=args.alpha, bootstrap_seed=args.bootstrap_seed)
    print(format_find(result))


def cmd_stability(args: argparse.Namespace) -> None:
    from steer.artifacts import write_json_atomic
    from steer.find import find_neurons, format_find, format_trust, trust_report
    from steer.models import load_model
    from steer.record import parse_layers
    from steer.worlds import DEFAULT_PROMPT_SET, Worlds

    model = load_model(args.model, dtype=args.dtype)
    worlds = Worlds.from_file(args.worlds or DEFAULT_PROMPT_SET, template=args.template, text_field=args.text_field,
                              n=args.n, seed=args.seed)
    result = find_neurons(model, worlds, args.proposition, site=args.site, layers=parse_layers(args.layers, model.n_layers),
                          position=args.position, k=args.k, normalizations=(args.normalize,), batch_size=args.batch_size,
                          out=args.out, recording=args.recording, progress=not args.quiet, bootstrap=args.K,
                          alpha=args.alpha, bootstrap_seed=args.bootstrap_seed)
    print(format_find(result))
    report = trust_report(result, q=args.q, delta=args.delta, K=min(args.K, 200),
                          alpha=args.alpha, seed=args.bootstrap_seed)
    print(format_trust(report))
    if args.out:
        write_json_atomic(f"{args.out}/trust.json", report)


def _steer_kwargs(args: argparse.Namespace, model) -> dict:
    from steer.record import parse_layers

    return dict(k=args.k, rule=args.rule, strength=args.strength, model=model, worlds=args.worlds,
                template=args.template, site=args.site, normalize=args.normalize,
                layers=None if args.layers is None else parse_layers(args.layers, model.n_layers),
                max_new_tokens=args.max_new_tokens, do_sample=not args.greedy, chat=args.chat)


def _columns(title_a: str, a: str, title_b: str, b: str, width: int = 48) -> str:
    import textwrap

    la = [title_a, "-" * len(title_a)] + textwrap.wrap(a.replace("\n", " / "), width)
    lb = [title_b, "-" * len(title_b)] + textwrap.wrap(b.replace("\n", " / "), width)
    rows = max(len(la), len(lb))
    la += [""] * (rows - len(la))
    lb += [""] * (rows - len(lb))
    return "\n".join(f"  {x:<{width}}   {y}" for x, y in zip(la, lb))


def cmd_generate(args: argparse.Namespace) -> None:
    from steer.metrics import vader_compound
    from steer.steering import generate, get_model

    model = get_model(args.model, args.dtype)
    kw = _steer_kwargs(args, model)
    print(f"model {model.name}; prompt: {args.prompt!r}")
    for i in range(args.n):
        seed = args.seed + i
        plain = generate(args.prompt, toward=None, seed=seed, **kw)
        steered = generate(args.prompt, toward=args.toward, seed=seed, **kw)
        cp, cs = vader_compound([plain, steered])
        print(f"\n[seed {seed}]")
        print(_columns(f"unsteered (VADER {cp:+.2f})", plain, f"toward {args.toward} (VADER {cs:+.2f})", steered))


DEMO_PROMPTS = ["The hotel was", "I just finished reading the book, and", "The weather today is",
                "Our new neighbours are"]


def cmd_demo(args: argparse.Namespace) -> None:
    import time

    from steer.metrics import vader_compound
    from steer.steering import SteerConfig, cached_neurons, generate, get_model, proposition_spec
    from steer.worlds import DEFAULT_PROMPT_SET, Worlds

    t0 = time.time()
    model = get_model(args.model, args.dtype)
    kw = _steer_kwargs(args, model)
    cfg = SteerConfig().resolve(template=kw["template"], site=kw["site"], layers=kw["layers"],
                                normalize=kw["normalize"], k=kw["k"], rule=kw["rule"], strength=kw["strength"])
    worlds = Worlds.from_file(args.worlds or DEFAULT_PROMPT_SET, template=cfg.template)
    print(f"model {model.name} ({model.n_layers} layers); worlds: {len(worlds)} from {worlds.source} "
          f"(template {worlds.template.name!r})")
    for label in ("positive", "negative"):
        ns = cached_neurons(model, worlds, proposition_spec(label), cfg.site, cfg.position, cfg.layers, cfg.normalize,
                            cfg.k)
        shown = type(ns)(ns.units_for[:5], ns.units_against[:5], ns.site, ns.normalize, 5, ns.per_layer,
                         ns.proposition, ns.provenance)
        print(f"\n== top 5 of {ns.k} units FOR {label!r} (site {ns.site}, normalize={ns.normalize})")
        print(shown.table("for"))
        print(f"== top 5 of {ns.k} units AGAINST {label!r}")
        print(shown.table("against"))
    print(f"\nsteering: rule {cfg.rule}, k {cfg.k}, strength {cfg.strength:g}; sampled, seed {args.seed}")
    for prompt in args.prompts or DEMO_PROMPTS:
        outs = {t: generate(prompt, toward=t, seed=args.seed, **kw) for t in (None, "positive", "negative")}
        scores = dict(zip(outs, vader_compound(list(outs.values()))))
        print(f"\n>>> {prompt}")
        for t, text in outs.items():
            name = "unsteered" if t is None else f"toward {t}"
            print(f"  {name:<17} (VADER {scores[t]:+.2f}): {text.strip()!r}")
    print(f"\ndone in {time.time() - t0:.0f}s")


def _nums(text: str, cast=float) -> tuple:
    return tuple(cast(x) for x in text.split(",") if x.strip())


def cmd_eval(args: argparse.Namespace) -> None:
    from steer import evaluate
    from steer.models import load_model

    model = load_model(args.model, dtype=args.dtype)
    if args.mode == "flip":
        cfg = evaluate.FlipConfig(
            sst2=args.sst2, worlds=args.worlds, n_worlds=args.n_worlds, eval_set=args.eval_set, n_eval=args.n_eval,
            sites=tuple(args.sites.split(",")), layers=_nums(args.layers, int),
            other_layers=None if args.other_layers is None else _nums(args.other_layers, int), k=args.k,
            score=args.score, compare_scores=tuple(s for s in args.compare_scores.split(",") if s),
            random_seeds=tuple(range(args.random_seeds)), batch_size=args.batch_size)
        result = evaluate.evaluate_flips(model, cfg, out=args.out, progress=not args.quiet)
        print(f"clean accuracy {evaluate._pct(result['clean_accuracy'])} on {result['n_items']} items\n")
        print(evaluate.flip_table(result))
    else:
        cfg = evaluate.SteeringEvalConfig(
            **({"prompts": tuple(args.prompts)} if args.prompts else {}), n_prompts=args.n_prompts,
            worlds=args.worlds, k=args.k, score=args.score,
            compare_scores=tuple(s for s in args.compare_scores.split(",") if s), strengths=_nums(args.strengths),
            caa_layer=args.caa_layer, caa_strengths=_nums(args.caa_strengths), selfcond_k=_nums(args.selfcond_k, int),
            prompting=not args.no_prompting, scorers=tuple(args.scorers.split(",")), sst2=args.sst2,
            seeds=_nums(args.seeds, int), max_new_tokens=args.max_new_tokens)
        result = evaluate.evaluate_steering(model, cfg, out=args.out, progress=not args.quiet)
        for name in result["summary"]:
            print(f"\n== scorer {name}\n{evaluate.steering_table(result, name)}")
    print(f"\nreport: {args.out}/report.md")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        {"find": cmd_find, "stability": cmd_stability, "generate": cmd_generate, "demo": cmd_demo,
         "eval": cmd_eval}[args.cmd](args)
    except (ValueError, FileNotFoundError, RuntimeError) as e:
        print(f"steer {args.cmd}: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
