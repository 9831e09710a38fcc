"""The `steer` command line.

Every default lives in one place: the config dataclasses (``SteerConfig``, ``GenerationConfig``, ``FlipConfig``,
``SteeringEvalConfig``) and the library functions' signatures. A flag left out is passed as None and the config
decides; the help shows the config's value. This module is a front end: it may import the evaluation harness
(``steer.eval``), which the library itself never does.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import sys
import textwrap
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from steer.export import FORMATS
from steer.interventions import APPLY_TO, RULES, Direction
from steer.record import REDUCTIONS, SITES, format_layers, parse_layers
from steer.selection import SCORES
from steer.steering import GenerationConfig, SteerConfig
from steer.strength import NORMALIZATIONS

if TYPE_CHECKING:
    from steer.find import FindResult
    from steer.models import Model
    from steer.record import Activations
    from steer.strength import Normalize
    from steer.worlds import Worlds

T = TypeVar("T")
STEER = SteerConfig()
GEN = GenerationConfig()


def _default(value: object) -> str:
    return f"(default: {value})"


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


def _common_model(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--model",
        default="default",
        help="'default', 'bundled' (SmolLM2-135M-Instruct, offline), a hub id, a model dir or a .gguf file",
    )
    p.add_argument("--dtype", default="float32", help="float32 (default), bfloat16 or float16")
    p.add_argument("--device", default="cpu", help="cpu (default), cuda, cuda:N or mps")


def _common_worlds(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--worlds",
        default=None,
        help="prompt set: .jsonl/.csv/.tsv, a datasets dir or a hub dataset (default: prompts/sentiment.jsonl)",
    )
    t = p.add_mutually_exclusive_group()
    t.add_argument(
        "--template",
        default=None,
        help="a template name under prompts/templates, or an inline string with {text} (default: plain)",
    )
    t.add_argument("--template-file", default=None, help="a template read from this file")
    p.add_argument("--text-field", default=None, help="field holding the text, copied into {text} (e.g. sentence)")
    p.add_argument("--n", type=positive_int, default=None, help="use n records (the first n, or a sample with --seed)")
    p.add_argument("--seed", type=int, default=None, help="sample the n records with this seed")


def _units(p: argparse.ArgumentParser, position_help: str) -> None:
    p.add_argument(
        "--proposition",
        required=True,
        help="e.g. label=positive, label!=neutral, score>0.5, vader_pos:top25 (VADER fields are added on demand)",
    )
    p.add_argument("--site", default="mlp", choices=list(SITES))
    p.add_argument("--layers", default=None, help="all (default), 23, -1, 0,5,10 or 18-23")
    p.add_argument("--reduce", default=None, choices=list(REDUCTIONS), help=f"{position_help} (default: last)")
    p.add_argument("--k", type=positive_int, default=5, help="units for and against")
    p.add_argument("--batch-size", type=positive_int, default=16)
    p.add_argument("--recording", default=None, help="reuse a saved recording directory instead of recording")
    p.add_argument("--alpha", type=fraction, default=0.1, help="interval / prediction-set level")
    p.add_argument("--bootstrap-seed", type=int, default=0)
    p.add_argument("--out", default=None, help="directory for the artifacts and plots")
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def _steer_options(p: argparse.ArgumentParser) -> None:
    _selection_options(p)
    p.add_argument(
        "--apply-to", default=None, choices=list(APPLY_TO), help=f"token positions rewritten {_default(STEER.apply_to)}"
    )
    p.add_argument("--max-new-tokens", type=positive_int, default=None, help=_default(GEN.max_new_tokens))
    p.add_argument("--seed", type=int, default=None, help=f"sampling seed {_default(GEN.seed)}")
    p.add_argument("--greedy", action="store_true", help="greedy decoding instead of sampling")
    p.add_argument("--chat", action="store_true", help="wrap the prompt in the model's chat template")
    p.add_argument("--compiled", action="store_true", help="steer through the exported form (edited weights, no hooks)")


def _selection_options(p: argparse.ArgumentParser) -> None:
    """Which units steer (the SteerConfig fields) and how they are rewritten (rule, coeff)."""
    p.add_argument(
        "--worlds", default=None, help="prompt set defining the propositions (default prompts/sentiment.jsonl)"
    )
    p.add_argument("--template", default=None, help=f"template for recording the worlds {_default(STEER.template)}")
    p.add_argument("--site", default=None, choices=list(SITES), help=_default(STEER.site))
    p.add_argument(
        "--reduce",
        default=None,
        choices=list(REDUCTIONS),
        help=f"how a world's tokens become one vector {_default(STEER.reduce)}",
    )
    p.add_argument("--layers", default=None, help="all, 23, 0,5,10 or 18-23 (default: all)")
    p.add_argument("--score", default=None, choices=list(SCORES), help=f"selection score {_default(STEER.score)}")
    p.add_argument("--k", type=positive_int, default=None, help=f"units for and against {_default(STEER.k)}")
    p.add_argument("--rule", default=None, choices=list(RULES), help=_default(STEER.rule))
    p.add_argument(
        "--coeff",
        type=finite_float,
        default=None,
        help=f"the rule's coefficient {_default(STEER.coeff)} for {STEER.rule}; another rule: its own default",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="steer",
        description="Find the units of a language model that speak for a proposition, and steer generation with them.",
    )
    parser.add_argument("--debug", action="store_true", help="show the full traceback of an error")
    sub = parser.add_subparsers(dest="cmd", required=True)

    f = sub.add_parser("find", help="find the units that speak for and against a proposition")
    _common_model(f)
    _common_worlds(f)
    _units(f, "how a world's tokens become one vector: its last token (the paper) or the mean")
    f.add_argument("--per-layer", action="store_true", help="top-k in every layer instead of over all layers")
    f.add_argument(
        "--normalize",
        default="all",
        choices=["all", *NORMALIZATIONS],
        help="D on raw activations (none, the paper), per-unit z-scores (zscore), per-unit normal scores "
        "of the ranks (rank), or all three (default)",
    )
    f.add_argument("--bootstrap", type=nonneg_int, default=200, help="bootstrap resamples for stability (0: none)")

    t = sub.add_parser("stability", help="how stable and trustworthy are the units found for a proposition?")
    _common_model(t)
    _common_worlds(t)
    _units(t, "how a world's tokens become one vector")
    t.add_argument("--normalize", default="rank", choices=list(NORMALIZATIONS))
    t.add_argument("--bootstrap", type=positive_int, default=500, help="bootstrap resamples")
    t.add_argument("--q", type=fraction, default=0.1, help="top share of worlds that binarizes a unit (IoU, F1...)")
    t.add_argument("--delta", type=fraction, default=0.05, help="failure probability of the uniform bounds")

    g = sub.add_parser("generate", help="unsteered and steered continuations of a prompt, side by side")
    g.add_argument("prompt")
    _common_model(g)
    _steer_options(g)
    g.add_argument("--toward", default="positive", help="a label of the worlds (positive, negative...) or a predicate")
    g.add_argument("--n", type=positive_int, default=1, help="samples per prompt (seeds seed..seed+n-1)")

    e = sub.add_parser("eval", help="evaluation harness: the paper's flip protocol, or steering quality vs baselines")
    esub = e.add_subparsers(dest="mode", required=True)
    _flip_parser(
        esub.add_parser("flip", help="do the units flip the model's classification? (paper protocol + controls)")
    )
    _steering_eval_parser(esub.add_parser("steer", help="generation quality of neuron steering against baselines"))

    r = sub.add_parser(
        "record", help="record the worlds' activations at a site (resumable), for reuse with --recording"
    )
    _common_model(r)
    _common_worlds(r)
    r.add_argument("--site", default="mlp", choices=list(SITES))
    r.add_argument("--layers", default=None, help="all (default), 23, -1, 0,5,10 or 18-23")
    r.add_argument(
        "--reduce", default="last", choices=list(REDUCTIONS), help="a world's last token or its mean (default: last)"
    )
    r.add_argument("--batch-size", type=positive_int, default=16)
    r.add_argument("--shard-size", type=positive_int, default=1024, help="worlds per shard on disk (default: 1024)")
    r.add_argument(
        "--engine",
        default="local",
        choices=["local", "ray"],
        help='where to record: this process (default) or a Ray actor pool (pip install "steer[ray]")',
    )
    r.add_argument("--workers", type=positive_int, default=2, help="Ray actors, each loads the model once (default: 2)")
    r.add_argument("--address", default=None, help="the Ray cluster (auto, ray://HOST:10001); default: a local one")
    r.add_argument("--num-gpus-per-worker", type=float, default=0, help="GPUs per Ray actor (default: 0, CPU)")
    r.add_argument(
        "--no-prefix-reuse",
        action="store_true",
        help="run every full prompt instead of the shared template prefix once (same activations, slower)",
    )
    r.add_argument(
        "--out", required=True, help="the recording's directory; rerunning the same command resumes an interrupted one"
    )
    r.add_argument("--quiet", action="store_true", help="no progress bar")

    x = sub.add_parser(
        "export",
        help="write neuron steering for serving engines: a llama.cpp control vector, EasySteer direction files, "
        "or an edited checkpoint",
    )
    x.add_argument(
        "neurons",
        nargs="?",
        default=None,
        help="a saved neuron set (.json); default: the set steer generate uses for --toward",
    )
    _common_model(x)
    _selection_options(x)
    x.add_argument("--format", default="control-vector", choices=list(FORMATS), help="(default: control-vector)")
    x.add_argument("--out", required=True, help="the .gguf file (control-vector) or directory (pt, model) to write")
    x.add_argument(
        "--toward",
        default=None,
        help="the proposition to steer toward (default: positive); with a saved set it must be the set's own",
    )
    x.add_argument("--away", action="store_true", help="push away from the proposition instead of toward it")
    x.add_argument(
        "--skip-layer-0",
        action="store_true",
        help="select units from layers 1.. only (llama.cpp cannot steer layer 0), so export and in-process agree",
    )
    x.add_argument(
        "--drop-layer-0",
        action="store_true",
        help="export although layer 0 is steered, leaving its vector out (no longer equal to in-process steering)",
    )
    x.add_argument("--quiet", action="store_true", help="no progress bars")

    d = sub.add_parser("demo", help="the main job: find sentiment neurons, then steer a few prompts both ways")
    _common_model(d)
    _steer_options(d)
    d.add_argument("--prompts", nargs="*", default=None, help="prompts to continue (default: a few of our own)")
    return parser


def _flip_parser(p: argparse.ArgumentParser) -> None:
    from steer.eval.harness import FlipConfig

    c = FlipConfig()
    _common_model(p)
    p.add_argument(
        "--sst2", default=None, help=f"hub dataset or a GLUE dir with train/validation.tsv {_default(c.sst2)}"
    )
    p.add_argument("--worlds", default=None, help="worlds file (default: SST-2 train)")
    p.add_argument("--n-worlds", type=positive_int, default=None, help=_default(c.worlds.n))
    p.add_argument("--eval-set", default=None, help="labelled evaluation file (default: SST-2 validation)")
    p.add_argument("--n-eval", type=positive_int, default=None, help=_default(c.items.n))
    p.add_argument(
        "--sites", default=None, help=f"comma-separated: resid (the paper), mlp {_default(','.join(c.units.sites))}"
    )
    p.add_argument(
        "--layers", default=None, help="layers to select units from, e.g. -1 (the last) or 10,11 (default: -1)"
    )
    p.add_argument("--other-layers", default=None, help="the other layer choice (default: all, or the last)")
    p.add_argument("--k", type=positive_int, default=None, help=_default(c.units.k))
    p.add_argument("--score", default=None, choices=list(SCORES), help=f"selection score {_default(c.units.score)}")
    p.add_argument(
        "--compare-scores",
        default=None,
        help=f"control scores, comma-separated ('' for none) {_default(','.join(c.units.compare_scores))}",
    )
    p.add_argument(
        "--random-seeds",
        type=nonneg_int,
        default=None,
        help=f"how many random-unit controls {_default(len(c.units.random_seeds))}",
    )
    p.add_argument("--batch-size", type=positive_int, default=None, help=_default(c.batch_size))
    p.add_argument("--out", required=True, help="report directory (result.json, report.md, flips.png)")
    p.add_argument("--quiet", action="store_true")


def _steering_eval_parser(p: argparse.ArgumentParser) -> None:
    from steer.eval.harness import SteeringEvalConfig

    c = SteeringEvalConfig()
    _common_model(p)
    p.add_argument("--prompts", nargs="+", default=None, help=f"prompt files {_default(' '.join(c.prompts))}")
    p.add_argument("--n-prompts", type=positive_int, default=None, help="use the first n prompts (default: all)")
    p.add_argument(
        "--worlds", default=None, help="prompt set defining the propositions (default prompts/sentiment.jsonl)"
    )
    p.add_argument("--k", type=positive_int, default=None, help=_default(c.k))
    p.add_argument("--score", default=None, choices=list(SCORES), help=_default(c.score))
    p.add_argument("--compare-scores", default=None, help="other selection scores to steer with, comma-separated")
    p.add_argument("--coeffs", default=None, help=f"the neuron rule's coefficients {_default(_join(c.coeffs))}")
    p.add_argument("--caa-layer", type=int, default=None, help="the residual vector's layer (default: the middle)")
    p.add_argument("--caa-coeffs", default=None, help=_default(_join(c.caa_coeffs)))
    p.add_argument("--selfcond-k", default=None, help=_default(_join(c.selfcond_k)))
    p.add_argument("--no-prompting", action="store_true")
    p.add_argument(
        "--scorers", default=None, help=f"vader, minilm-sst2, hf:<model id>, auto {_default(_join(c.scorers))}"
    )
    p.add_argument("--sst2", default=None, help=f"labelled data for the minilm-sst2 classifier {_default(c.sst2)}")
    p.add_argument("--seeds", default=None, help=_default(_join(c.seeds)))
    p.add_argument("--max-new-tokens", type=positive_int, default=None, help=_default(c.max_new_tokens))
    p.add_argument("--out", required=True)
    p.add_argument("--quiet", action="store_true")


def _join(values: Sequence[object]) -> str:
    return ",".join(f"{v:g}" if isinstance(v, float) else str(v) for v in values)


def _nums(text: str, cast: Callable[[str], T]) -> tuple[T, ...]:
    return tuple(cast(x) for x in text.split(",") if x.strip())


def _given(config: T, values: dict[str, Any]) -> T:
    """``config`` with the values that were given (not None) replaced."""
    return replace(config, **{k: v for k, v in values.items() if v is not None})  # type: ignore[type-var]


# ----------------------------------------------------------------------------------------------- commands


def _load_worlds(args: argparse.Namespace) -> Worlds:
    from steer.resources import DEFAULT_PROMPT_SET
    from steer.worlds import Template, Worlds

    template = Template.from_file(args.template_file) if args.template_file else (args.template or "plain")
    return Worlds.from_file(
        args.worlds or DEFAULT_PROMPT_SET, template=template, text_field=args.text_field, n=args.n, seed=args.seed
    )


def _find(
    args: argparse.Namespace, normalizations: tuple[Normalize, ...], bootstrap: int, out: Path | None
) -> FindResult:
    """Record (or open ``--recording``), then find; write into ``out`` (a temporary result folder) when given."""
    from steer.find import find_units, format_find
    from steer.models import load_model
    from steer.record import Activations, site_width

    model = load_model(args.model, dtype=args.dtype, device=args.device)
    worlds = _load_worlds(args).with_fields_for(args.proposition)
    worlds.proposition(args.proposition)  # a bad proposition fails before anything is recorded
    per_layer = getattr(args, "per_layer", False)
    if args.recording is not None:
        acts = Activations.load(args.recording, model=model, site=args.site)
        for flag, given, saved in (("--layers", args.layers, acts.layers), ("--reduce", args.reduce, acts.reduce)):
            wanted = parse_layers(given, model.n_layers) if flag == "--layers" and given is not None else given
            if given is not None and wanted != saved:
                raise ValueError(f"{flag} {given} differs from the recording's ({saved}); drop {flag} or record again")
        layers, reduce = acts.layers, acts.reduce
    else:
        layers, reduce = parse_layers(args.layers, model.n_layers), args.reduce or "last"
    n_units = site_width(model, args.site) * (1 if per_layer else len(layers))
    if 2 * args.k > n_units:  # before recording, not after
        raise ValueError(
            f"k={args.k} for and against needs {2 * args.k} units, more than the {n_units} units "
            f"{'per layer' if per_layer else 'recorded'}"
        )
    _announce(model, worlds, args.site, reduce, layers)
    if args.recording is None:
        acts = _record(args, model, worlds, layers, reduce, None if out is None else out / "activations")
    result = find_units(
        acts,
        worlds,
        args.proposition,
        k=args.k,
        per_layer=per_layer,
        normalizations=normalizations,
        bootstrap=bootstrap,
        alpha=args.alpha,
        seed=args.bootstrap_seed,
    )
    if out is not None:
        result.save(out)
    print(format_find(result))
    return result


def _announce(model: Model, worlds: Worlds, site: str, reduce: str, layers: Sequence[int]) -> None:
    print(
        f"model {model.name} ({model.n_layers} layers), {len(worlds)} worlds from {worlds.source}, "
        f"template {worlds.template.name!r}, site {site}, reduce {reduce}, layers {format_layers(layers)}",
        flush=True,
    )


def _record(
    args: argparse.Namespace,
    model: Model,
    worlds: Worlds,
    layers: Sequence[int],
    reduce: str,
    out: Path | None,
    shard_size: int = 1024,
) -> Activations:
    """Record with the command's ``--site``, ``--batch-size`` and ``--quiet`` (resumable when ``out`` is given)."""
    from steer.record import record

    return record(
        model,
        worlds,
        site=args.site,
        layers=layers,
        reduce=reduce,
        batch_size=args.batch_size,
        out=out,
        shard_size=shard_size,
        progress=not args.quiet,
        reuse_prefix=not getattr(args, "no_prefix_reuse", False),
    )


@contextlib.contextmanager
def _results(args: argparse.Namespace) -> Iterator[Path | None]:
    """The command's result folder (``--out``), written whole or not at all, or None without ``--out``."""
    from steer.artifacts import output_dir

    if args.out is None:
        yield None
        return
    with output_dir(args.out, {"command": args.cmd, "argv": sys.argv[1:]}) as tmp:
        yield tmp
    print(f"\nwrote {args.out}/: " + ", ".join(sorted(p.name for p in Path(args.out).iterdir())))


def cmd_find(args: argparse.Namespace) -> None:
    norms = NORMALIZATIONS if args.normalize == "all" else (args.normalize,)
    with _results(args) as out:
        _find(args, norms, args.bootstrap, out)


def cmd_stability(args: argparse.Namespace) -> None:
    from steer.artifacts import write_json_atomic
    from steer.find import format_trust, trust_report

    with _results(args) as out:
        result = _find(args, (args.normalize,), args.bootstrap, out)
        report = trust_report(
            result,
            q=args.q,
            delta=args.delta,
            resamples=min(args.bootstrap, 200),
            alpha=args.alpha,
            seed=args.bootstrap_seed,
        )
        print(format_trust(report))
        if out is not None:
            write_json_atomic(out / "trust.json", report)


def _steering(args: argparse.Namespace, model: Model) -> tuple[SteerConfig, GenerationConfig]:
    """The SteerConfig and GenerationConfig of the steering flags (flags left out keep the configs' defaults)."""
    layers = None if args.layers is None else tuple(parse_layers(args.layers, model.n_layers))
    cfg = STEER.resolve(
        template=args.template,
        site=args.site,
        reduce=args.reduce,
        layers=layers,
        score=args.score,
        k=args.k,
        rule=args.rule,
        coeff=args.coeff,
        apply_to=getattr(args, "apply_to", None),
    )
    gen = _given(
        GEN,
        {
            "max_new_tokens": getattr(args, "max_new_tokens", None),
            "seed": getattr(args, "seed", None),
            "do_sample": False if getattr(args, "greedy", False) else None,
            "chat": getattr(args, "chat", False) or None,
        },
    )
    return cfg, gen


def _columns(title_a: str, a: str, title_b: str, b: str, width: int = 48) -> str:
    la = [title_a, "-" * len(title_a), *textwrap.wrap(a.replace("\n", " / "), width)]
    lb = [title_b, "-" * len(title_b), *textwrap.wrap(b.replace("\n", " / "), width)]
    rows = max(len(la), len(lb))
    la += [""] * (rows - len(la))
    lb += [""] * (rows - len(lb))
    return "\n".join(f"  {x:<{width}}   {y}" for x, y in zip(la, lb))


def cmd_generate(args: argparse.Namespace) -> None:
    from steer.eval.metrics import vader_compound
    from steer.steering import generate

    STEER.resolve(rule=args.rule, coeff=args.coeff, apply_to=args.apply_to)  # bad values fail before loading
    model = load_model_for(args)
    cfg, gen = _steering(args, model)
    print(f"model {model.name}; prompt: {args.prompt!r}")
    for i in range(args.n):
        seed = (gen.seed or 0) + i
        g = replace(gen, seed=seed)
        plain = generate(args.prompt, toward=None, model=model, worlds=args.worlds, config=cfg, generation=g)
        steered = generate(
            args.prompt,
            toward=args.toward,
            model=model,
            worlds=args.worlds,
            config=cfg,
            generation=g,
            compiled=args.compiled,
        )
        cp, cs = vader_compound([plain, steered])
        print(f"\n[seed {seed}]")
        print(_columns(f"unsteered (VADER {cp:+.2f})", plain, f"toward {args.toward} (VADER {cs:+.2f})", steered))


DEMO_PROMPTS = [
    "The hotel was",
    "I just finished reading the book, and",
    "The weather today is",
    "Our new neighbours are",
]


def cmd_demo(args: argparse.Namespace) -> None:
    from steer.eval.metrics import vader_compound
    from steer.resources import DEFAULT_PROMPT_SET
    from steer.steering import generate, steering_neurons
    from steer.worlds import Worlds

    t0 = time.time()
    STEER.resolve(rule=args.rule, coeff=args.coeff, apply_to=args.apply_to)  # bad values fail before loading
    model = load_model_for(args)
    cfg, gen = _steering(args, model)
    worlds = Worlds.from_file(args.worlds or DEFAULT_PROMPT_SET, template=cfg.template)
    print(
        f"model {model.name} ({model.n_layers} layers); worlds: {len(worlds)} from {worlds.source} "
        f"(template {worlds.template.name!r})"
    )
    for label in ("positive", "negative"):
        ns = steering_neurons(model, worlds, label, cfg)
        shown = ns.head(5)
        print(f"\n== top 5 of {ns.k} units FOR {label!r} (site {ns.site}, score {ns.score})")
        print(shown.table("for"))
        print(f"== top 5 of {ns.k} units AGAINST {label!r}")
        print(shown.table("against"))
    iv = cfg.intervention
    print(
        f"\nsteering: rule {iv.rule_obj.name}, k {cfg.k}, coeff {iv.value:g}; "
        f"{'sampled' if gen.do_sample else 'greedy'}, seed {gen.seed}"
    )
    for prompt in args.prompts or DEMO_PROMPTS:
        outs = {
            t: generate(
                prompt, toward=t, model=model, worlds=worlds, config=cfg, generation=gen, compiled=args.compiled
            )
            for t in (None, "positive", "negative")
        }
        scores = dict(zip(outs, vader_compound(list(outs.values()))))
        print(f"\n>>> {prompt}")
        for t, text in outs.items():
            name = "unsteered" if t is None else f"toward {t}"
            print(f"  {name:<17} (VADER {scores[t]:+.2f}): {text.strip()!r}")
    print(f"\ndone in {time.time() - t0:.0f}s")


def cmd_eval(args: argparse.Namespace) -> None:
    from steer.eval import harness
    from steer.eval.metrics import format_rate
    from steer.models import load_model

    model = load_model(args.model, dtype=args.dtype, device=args.device)
    if args.mode == "flip":
        c = harness.FlipConfig()
        units = _given(
            c.units,
            {
                "sites": None if args.sites is None else tuple(args.sites.split(",")),
                "layers": None if args.layers is None else _nums(args.layers, int),
                "other_layers": None if args.other_layers is None else _nums(args.other_layers, int),
                "k": args.k,
                "score": args.score,
                "compare_scores": None
                if args.compare_scores is None
                else tuple(s for s in args.compare_scores.split(",") if s),
                "random_seeds": None if args.random_seeds is None else tuple(range(args.random_seeds)),
            },
        )
        cfg = _given(
            c,
            {
                "sst2": args.sst2,
                "batch_size": args.batch_size,
                "units": units,
                "worlds": _given(c.worlds, {"source": args.worlds, "n": args.n_worlds}),
                "items": _given(c.items, {"source": args.eval_set, "n": args.n_eval}),
            },
        )
        with _results(args) as out:
            result = harness.evaluate_flips(model, cfg, out=out, progress=not args.quiet)
        print(f"clean accuracy {format_rate(result['clean_accuracy'])} on {result['n_items']} items\n")
        print(harness.flip_table(result))
    else:
        scfg = _given(
            harness.SteeringEvalConfig(),
            {
                "prompts": None if args.prompts is None else tuple(args.prompts),
                "n_prompts": args.n_prompts,
                "worlds": args.worlds,
                "k": args.k,
                "score": args.score,
                "compare_scores": None
                if args.compare_scores is None
                else tuple(s for s in args.compare_scores.split(",") if s),
                "coeffs": None if args.coeffs is None else _nums(args.coeffs, float),
                "caa_layer": args.caa_layer,
                "caa_coeffs": None if args.caa_coeffs is None else _nums(args.caa_coeffs, float),
                "selfcond_k": None if args.selfcond_k is None else _nums(args.selfcond_k, int),
                "prompting": False if args.no_prompting else None,
                "scorers": None if args.scorers is None else tuple(args.scorers.split(",")),
                "sst2": args.sst2,
                "seeds": None if args.seeds is None else _nums(args.seeds, int),
                "max_new_tokens": args.max_new_tokens,
            },
        )
        with _results(args) as out:
            result = harness.evaluate_steering(model, scfg, out=out, progress=not args.quiet)
        for name in result["summary"]:
            print(f"\n== scorer {name}\n{harness.steering_table(result, name)}")
    print(f"\nreport: {args.out}/report.md")


SERVE_HINTS = {
    "control-vector": (
        "llama.cpp: llama-cli -m <the model's .gguf> --control-vector {out}   (llama-server takes the same flag; "
        "scale it with --control-vector-scaled {out} S)"
    ),
    "pt": (
        "EasySteer: one SteerVectorRequest per layer from {out}/easysteer.json (steer_vector_local_path = "
        "{out}/layer_<k>.pt, target_layers [k]); any other engine: {out}/directions.safetensors"
    ),
    "model": (
        "transformers: AutoModelForCausalLM.from_pretrained('{out}') plus {out}/control_vector.gguf added after each "
        "block (steer.export.control_vector_hooks); llama.cpp: convert_hf_to_gguf.py {out}, then "
        "llama-cli -m <converted .gguf> --control-vector {out}/control_vector.gguf"
    ),
}


def cmd_export(args: argparse.Namespace) -> None:
    from steer.export import export_form, write_export
    from steer.neurons import NeuronSet
    from steer.resources import DEFAULT_PROMPT_SET
    from steer.steering import proposition_spec, steering_neurons
    from steer.worlds import Worlds

    STEER.resolve(rule=args.rule, coeff=args.coeff)  # bad values fail before loading
    if args.skip_layer_0 and args.drop_layer_0:
        raise ValueError("--skip-layer-0 selects units without layer 0; --drop-layer-0 is then not needed")
    model = load_model_for(args)
    cfg, _ = _steering(args, model)
    if args.neurons is not None:
        given = [f for f in ("worlds", "template", "site", "reduce", "layers", "score", "k") if getattr(args, f)]
        if given or args.skip_layer_0:
            flags = ", ".join(f"--{f}" for f in given) or "--skip-layer-0"
            raise ValueError(f"{flags} choose the units of the default set; a saved neuron set has its own units")
        ns = NeuronSet.load(args.neurons, model=model)
        name = ns.proposition.get("name")
        if args.toward is not None and name not in (args.toward, proposition_spec(args.toward)):
            raise ValueError(
                f"--toward {args.toward} is not this neuron set's proposition ({name}); use --away to push away from it"
            )
    else:
        if args.skip_layer_0:
            layers = cfg.layers if cfg.layers is not None else tuple(range(model.n_layers))
            if layers == (0,):
                raise ValueError("--skip-layer-0 with --layers 0 leaves no layer")
            cfg = replace(cfg, layers=tuple(layer for layer in layers if layer != 0))
        worlds = Worlds.from_file(args.worlds or DEFAULT_PROMPT_SET, template=cfg.template)
        ns = steering_neurons(model, worlds, args.toward or "positive", cfg, progress=not args.quiet)
    direction: Direction = "away" if args.away else "toward"
    form = export_form(model, ns, cfg.rule, cfg.coeff, direction)
    used = sorted({u.layer for u in ns.units_for + ns.units_against})
    print(
        f"model {model.name}; neuron set: {ns.k} units for and against {ns.proposition.get('name')!r} "
        f"(site {ns.site}, score {ns.score}, layers {format_layers(used)}); rule {cfg.rule}, coeff "
        f"{form.metadata['coeff']:g}, {direction}; weights changed: {'yes' if form.changes_weights else 'no'}"
    )
    if args.drop_layer_0 and form.layer0_share() > 0:
        print(f"dropping layer 0: {form.layer0_share():.1%} of the steering's mass is left out (not exact any more)")
    path = write_export(model, form, args.format, args.out, drop_layer_0=args.drop_layer_0)
    print(f"wrote {path} ({args.format})")
    print("serve it with " + SERVE_HINTS[args.format].format(out=path))


def cmd_record(args: argparse.Namespace) -> None:
    from steer.models import load_model

    worlds = _load_worlds(args)
    if args.engine == "ray":
        from steer.distributed import record_ray

        print(f"recording {len(worlds)} worlds from {worlds.source} on {args.workers} Ray workers", flush=True)
        acts = record_ray(
            args.model,
            worlds,
            out=args.out,
            site=args.site,
            layers=args.layers,  # parsed by the workers, which know the model's depth
            reduce=args.reduce,
            batch_size=args.batch_size,
            shard_size=args.shard_size,
            dtype=args.dtype,
            num_workers=args.workers,
            num_gpus_per_worker=args.num_gpus_per_worker,
            address=args.address,
            reuse_prefix=not args.no_prefix_reuse,
            progress=not args.quiet,
        )
    else:
        model = load_model(args.model, dtype=args.dtype, device=args.device)
        layers = parse_layers(args.layers, model.n_layers)
        _announce(model, worlds, args.site, args.reduce, layers)
        acts = _record(args, model, worlds, layers, args.reduce, Path(args.out), shard_size=args.shard_size)
    out = Path(args.out)
    size = sum(f.stat().st_size for f in out.iterdir() if f.is_file())
    n_shards = len(list(out.glob("shard-*.safetensors")))
    print(
        f"recorded {acts.n_worlds} worlds x {len(acts.layers)} layers x {acts.width} units into {out}/ "
        f"({size / 2**20:.1f} MiB in {n_shards} shard(s))"
    )
    flags = (
        ("--model", args.model),
        ("--worlds", args.worlds),
        ("--template", args.template),
        ("--template-file", args.template_file),
        ("--text-field", args.text_field),
        ("--n", args.n),
        ("--seed", args.seed),
    )
    same = " ".join(f"{flag} {value}" for flag, value in flags if value is not None)
    print(f"reuse it: steer find {same} --site {args.site} --recording {out} --proposition label=positive")


def load_model_for(args: argparse.Namespace) -> Model:
    """The model of ``--model``/``--dtype``/``--device``, loaded once per process."""
    from steer.cache import cached_model

    return cached_model(args.model, args.dtype, args.device)


COMMANDS: dict[str, Callable[[argparse.Namespace], None]] = {
    "find": cmd_find,
    "stability": cmd_stability,
    "generate": cmd_generate,
    "export": cmd_export,
    "record": cmd_record,
    "demo": cmd_demo,
    "eval": cmd_eval,
}


EXPECTED = (ValueError, OSError, RuntimeError, LookupError)  # what bad input and faults raise


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


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from steer.artifacts import Terminated, terminate_as_exception

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


if __name__ == "__main__":
    sys.exit(main())
