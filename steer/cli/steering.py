"""``steer generate``, ``steer demo`` and ``steer export``: steered continuations and steering taken out of the
process (flags from :class:`steer.SteerConfig` and :class:`steer.GenerationConfig`)."""

from __future__ import annotations

import argparse
import textwrap
import time
from dataclasses import replace
from typing import TYPE_CHECKING

from steer.cli.flags import config_flags, config_from, layers_of, load_model_for, model_flags, positive_int

if TYPE_CHECKING:
    from steer.generation import GenerationConfig
    from steer.models import Model
    from steer.steering import SteerConfig

DEMO_PROMPTS = [
    "The hotel was",
    "I just finished reading the book, and",
    "The weather today is",
    "Our new neighbours are",
]
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
    "gguf": "llama.cpp: llama-cli -m {out}/model.gguf --control-vector {out}/control_vector.gguf",
}
_UNITS = ("template", "site", "reduce", "layers", "score", "k")
_REWRITE = ("rule", "coeff")


def defaults() -> tuple[SteerConfig, GenerationConfig]:
    """The default SteerConfig and GenerationConfig (torch-free)."""
    from steer.configs import GenerationConfig, SteerConfig

    return SteerConfig(), GenerationConfig()


def _steer_flags(p: argparse.ArgumentParser, generation: bool = True) -> None:
    p.add_argument("--worlds", default=None, help="prompt set the propositions are sets of (default: the bundled one)")
    steering, generation_config = defaults()
    config_flags(p, steering, _UNITS + _REWRITE + (("apply_to",) if generation else ()))
    if generation:
        config_flags(p, generation_config, ("max_new_tokens", "seed", "do_sample", "temperature", "top_p", "chat"))
        p.add_argument(
            "--compiled", action="store_true", help="steer through the exported form (edited weights, no hooks)"
        )


def add_parsers(sub: argparse._SubParsersAction) -> None:
    """The generate, demo and export commands (their flags are added when the command is parsed)."""
    sub.add_parser(
        "generate", help="unsteered and steered continuations of a prompt, side by side", build=_generate_parser
    )
    sub.add_parser(
        "demo", help="the main job: find sentiment neurons, then steer a few prompts both ways", build=_demo_parser
    )
    sub.add_parser(
        "export",
        help="write neuron steering for serving engines: a llama.cpp control vector, EasySteer direction files, "
        "or an edited checkpoint",
        build=_export_parser,
    )


def _generate_parser(g: argparse.ArgumentParser) -> None:
    g.add_argument("prompt")
    model_flags(g)
    _steer_flags(g)
    g.add_argument("--toward", default="positive", help="a label of the worlds (positive, negative...) or a predicate")
    g.add_argument("--samples", type=positive_int, default=1, help="continuations per prompt (seeds seed, seed+1, ...)")
    g.add_argument("--quiet", action="store_true", help="no progress bars")


def _demo_parser(d: argparse.ArgumentParser) -> None:
    model_flags(d)
    _steer_flags(d)
    d.add_argument("--prompts", nargs="*", default=None, help="prompts to continue (default: a few of our own)")
    d.add_argument("--quiet", action="store_true", help="no progress bars")


def _export_parser(x: argparse.ArgumentParser) -> None:
    from steer.names import EXPORT_FORMATS as FORMATS

    x.add_argument(
        "neurons", nargs="?", default=None, help="a saved neuron set (.json); default: the set steer generate uses"
    )
    model_flags(x)
    _steer_flags(x, generation=False)
    x.add_argument("--format", default="control-vector", choices=list(FORMATS), help="(default: control-vector)")
    x.add_argument(
        "--out", required=True, help="the .gguf file (control-vector) or directory (pt, model, gguf) to write"
    )
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


def _configs(args: argparse.Namespace, model: Model | None) -> tuple[SteerConfig, GenerationConfig]:
    """The SteerConfig and GenerationConfig of the flags (flags left out keep the configs' defaults). Without a
    model (before loading it) the layers are not parsed: bad rule/coeff values then fail before the model loads."""
    layers = None if model is None else layers_of(args, model)
    steering, generation_config = defaults()
    cfg = steering.resolve(
        **{name: getattr(args, name, None) for name in _UNITS + _REWRITE + ("apply_to",)} | {"layers": layers}
    )
    return cfg, config_from(generation_config, args)


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

    _configs(args, None)  # bad values fail before loading
    model = load_model_for(args)
    cfg, gen = _configs(args, model)
    worlds = cfg.worlds(args.worlds)
    print(f"model {model.name}; prompt: {args.prompt!r}")
    print(f"units: {cfg.score}, k={cfg.k}, {cfg.site}, reduce {cfg.reduce}; rewrite: {cfg.intervention}")
    for i in range(args.samples):
        seed = (gen.seed or 0) + i
        g = replace(gen, seed=seed)
        plain = generate(args.prompt, toward=None, model=model, worlds=worlds, config=cfg, generation=g, progress=False)
        steered = generate(
            args.prompt,
            toward=args.toward,
            model=model,
            worlds=worlds,
            config=cfg,
            generation=g,
            compiled=args.compiled,
        )
        cp, cs = vader_compound([plain, steered])
        print(f"\n[seed {seed}]")
        print(_columns(f"unsteered (VADER {cp:+.2f})", plain, f"toward {args.toward} (VADER {cs:+.2f})", steered))


def cmd_demo(args: argparse.Namespace) -> None:
    from steer.eval.metrics import vader_compound
    from steer.steering import generate, steering_neurons

    t0 = time.time()
    _configs(args, None)  # bad values fail before loading
    model = load_model_for(args)
    cfg, gen = _configs(args, model)
    worlds = cfg.worlds(args.worlds)
    print(
        f"model {model.name} ({model.n_layers} layers); worlds: {len(worlds)} from {worlds.source} "
        f"(template {worlds.template.name!r})"
    )
    print(
        f"units: the {cfg.k} {cfg.site.upper()} units with the largest {cfg.score} for each proposition and the "
        f"{cfg.k} with the smallest (against it), over every layer; each world's activations averaged over its text"
    )
    for label in ("positive", "negative"):
        ns = steering_neurons(model, worlds, label, cfg, progress=not args.quiet)
        shown = ns.head(5)
        print(f"\n== the 5 strongest of {ns.k} units FOR {label!r}")
        print(shown.table("for"))
        print(f"== the 5 strongest of {ns.k} units AGAINST {label!r}")
        print(shown.table("against"))
    print(
        f"\n(layer, unit: where the unit is; {cfg.score}: its strength for the proposition; mean m: its mean over all "
        "worlds; mean A / mean ~A: on the worlds where the proposition holds / does not; std: over all worlds)"
    )
    iv = cfg.intervention
    print(
        f"\nsteering: rule {iv.rule_obj.name}"
        + (
            f" (each unit pushed by {iv.value:g} of its std)"
            if iv.rule_obj.name == "additive"
            else f", coeff {iv.value:g}"
        )
        + f"; {'sampled' if gen.do_sample else 'greedy'}, seed {gen.seed}."
        + " VADER compound: -1 (negative) to +1 (positive)."
    )
    for prompt in args.prompts or DEMO_PROMPTS:
        outs = {
            t: generate(
                prompt, toward=t, model=model, worlds=worlds, config=cfg, generation=gen, compiled=args.compiled
            )
            for t in (None, "positive", "negative")
        }
        scores = dict(zip(outs, vader_compound(list(outs.values()))))
        print(f"\n>>> {prompt} ...")
        for t, text in outs.items():
            name = "unsteered" if t is None else f"toward {t}"
            body = " ".join(text.split()) or "(nothing)"
            lines = textwrap.wrap(body, 88, initial_indent=" " * 4, subsequent_indent=" " * 4)
            print(f"  {name} (VADER {scores[t]:+.2f}):")
            print("\n".join(lines))
    print(f"\ndone in {time.time() - t0:.0f}s")


def cmd_export(args: argparse.Namespace) -> None:
    from steer.artifacts import check_replaceable
    from steer.export import write_export
    from steer.fold import export_form
    from steer.neuronset import NeuronSet
    from steer.steering import steering_neurons

    _configs(args, None)  # bad values fail before loading
    folder = args.format != "control-vector"
    check_replaceable(args.out, "--out", folder=folder)  # before any work: never replace what steer did not write
    if args.skip_layer_0 and args.drop_layer_0:
        raise ValueError("--skip-layer-0 selects units without layer 0; --drop-layer-0 is then not needed")
    model = load_model_for(args)
    cfg, _ = _configs(args, model)
    if args.neurons is not None:
        given = [f for f in ("worlds", *_UNITS) if getattr(args, f) is not None]
        if given or args.skip_layer_0:
            flags = ", ".join(f"--{f}" for f in given) or "--skip-layer-0"
            raise ValueError(f"{flags} choose the units of the default set; a saved neuron set has its own units")
        ns = NeuronSet.load(args.neurons, model=model)
        name = ns.proposition.get("name")
        if args.toward is not None and name not in (args.toward, f"label={args.toward}"):
            raise ValueError(
                f"--toward {args.toward} is not this neuron set's proposition ({name}); use --away to push away from it"
            )
    else:
        if args.skip_layer_0:
            layers = cfg.layers if cfg.layers is not None else tuple(range(model.n_layers))
            if layers == (0,):
                raise ValueError("--skip-layer-0 with --layers 0 leaves no layer")
            cfg = replace(cfg, layers=tuple(layer for layer in layers if layer != 0))
        ns = steering_neurons(model, cfg.worlds(args.worlds), args.toward or "positive", cfg, progress=not args.quiet)
    iv = replace(cfg.intervention, direction="away" if args.away else "toward")
    form = export_form(model, ns, iv)
    used = sorted({u.layer for u in ns.units_for + ns.units_against})
    from steer.sites import format_layers

    print(
        f"model {model.name}; neuron set: {ns.k} units for and against {ns.proposition.get('name')!r} "
        f"(site {ns.site}, score {ns.score}, layers {format_layers(used)}); rule {iv.rule_obj.name}, coeff "
        f"{iv.value:g}, {iv.direction}; weights changed: {'yes' if form.changes_weights else 'no'}"
    )
    if args.drop_layer_0 and form.layer0_share() > 0:
        print(f"dropping layer 0: {form.layer0_share():.1%} of the steering's mass is left out (not exact any more)")
    path = write_export(model, form, args.format, args.out, drop_layer_0=args.drop_layer_0)
    print(f"wrote {path} ({args.format})")
    print("serve it with " + SERVE_HINTS[args.format].format(out=path))
