"""``steer find``, ``steer stability`` and ``steer record``: from a prompt set to recorded activations and the units
that speak for and against a proposition (flags from :class:`steer.find.FindConfig`)."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from steer.cli.flags import (
    config_flags,
    config_from,
    fraction,
    layers_of,
    load_model_for,
    load_worlds,
    model_flags,
    nonneg_float,
    positive_int,
    results,
    worlds_flags,
)
from steer.sites import REDUCTIONS, SITES, format_layers

if TYPE_CHECKING:
    from steer.activations import Activations
    from steer.find import FindConfig, FindResult
    from steer.models import Model
    from steer.worlds import Worlds


def find_defaults() -> FindConfig:
    """The FindConfig of ``steer find`` (torch-free)."""
    from steer.configs import FindConfig

    return FindConfig()


def stability_defaults() -> FindConfig:
    """The FindConfig of ``steer stability``: one score, more resamples."""
    from steer.configs import FindConfig

    return FindConfig(scores=("rank-D",), bootstrap=500)


def _unit_flags(p: argparse.ArgumentParser, config: FindConfig) -> None:
    p.add_argument(
        "--proposition",
        required=True,
        help="positive (a label), label=positive, label!=neutral, score>0.5, vader_pos:top25 (VADER on demand)",
    )
    config_flags(p, config)
    p.add_argument("--batch-size", type=positive_int, default=16, help="worlds per forward pass (default: 16)")
    p.add_argument("--recording", default=None, help="reuse a saved recording directory instead of recording")
    p.add_argument("--out", default=None, help="directory for the artifacts and plots")
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def add_parsers(sub: argparse._SubParsersAction) -> None:
    """The find, stability and record commands (their flags are added when the command is parsed)."""
    sub.add_parser("find", help="find the units that speak for and against a proposition", build=_find_parser)
    sub.add_parser(
        "stability",
        help="how stable and trustworthy are the units found for a proposition?",
        build=_stability_parser,
    )
    sub.add_parser(
        "record",
        help="record the worlds' activations at a site (resumable), for reuse with --recording",
        build=_record_parser,
    )


def _find_parser(f: argparse.ArgumentParser) -> None:
    model_flags(f)
    worlds_flags(f)
    _unit_flags(f, find_defaults())


def _stability_parser(t: argparse.ArgumentParser) -> None:
    model_flags(t)
    worlds_flags(t)
    _unit_flags(t, stability_defaults())
    t.add_argument("--q", type=fraction, default=0.1, help="top share of worlds that binarizes a unit (IoU, F1...)")
    t.add_argument("--delta", type=fraction, default=0.05, help="failure probability of the uniform bounds")


def _record_parser(r: argparse.ArgumentParser) -> None:
    model_flags(r)
    worlds_flags(r)
    r.add_argument("--site", default="mlp", choices=list(SITES), help="where units are recorded (default: mlp)")
    r.add_argument("--layers", default=None, help="all (default), 23, -1, 0,5,10 or 18-23")
    r.add_argument(
        "--reduce", default="last", choices=list(REDUCTIONS), help="a world's last token or its mean (default: last)"
    )
    r.add_argument("--batch-size", type=positive_int, default=16, help="worlds per forward pass (default: 16)")
    r.add_argument("--shard-size", type=positive_int, default=1024, help="worlds per shard on disk (default: 1024)")
    r.add_argument(
        "--engine",
        default="local",
        choices=["local", "ray"],
        help='where to record: this process (default) or a Ray actor pool (pip install "steer[ray]")',
    )
    r.add_argument("--workers", type=positive_int, default=2, help="Ray actors, each loads the model once (default: 2)")
    r.add_argument("--address", default=None, help="the Ray cluster (auto, ray://HOST:10001); default: a local one")
    r.add_argument("--num-gpus-per-worker", type=nonneg_float, default=0, help="GPUs per Ray actor (default: 0, CPU)")
    r.add_argument(
        "--no-prefix-reuse",
        action="store_true",
        help="run every full prompt instead of the shared template prefix once (same activations, slower)",
    )
    r.add_argument(
        "--out", required=True, help="the recording's directory; rerunning the same command resumes an interrupted one"
    )
    r.add_argument("--quiet", action="store_true", help="no progress bar")


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
    site: str,
    layers: Sequence[int],
    reduce: str,
    out: Path | None,
    shard_size: int = 1024,
) -> Activations:
    """Record with the command's ``--batch-size`` and ``--quiet`` (resumable when ``out`` is given)."""
    from steer.record import record

    return record(
        model,
        worlds,
        site=site,
        layers=layers,
        reduce=reduce,
        batch_size=args.batch_size,
        out=out,
        shard_size=shard_size,
        progress=not args.quiet,
        reuse_prefix=not getattr(args, "no_prefix_reuse", False),
    )


def _find(args: argparse.Namespace, config: FindConfig, out: Path | None) -> FindResult:
    """Record (or open ``--recording``), then find; write into ``out`` (a temporary result folder) when given."""
    from steer.activations import Activations
    from steer.find import find_units, format_find
    from steer.sites import site_width
    from steer.steering import SteerConfig

    model = load_model_for(args)
    worlds = load_worlds(args)
    prop = worlds.proposition(args.proposition)  # a bad proposition fails before anything is recorded
    cfg = config_from(config, args, layers=layers_of(args, model))
    if args.recording is not None:
        acts = Activations.load(args.recording, model=model, site=cfg.site)
        for flag, given_text, wanted, saved in (
            ("--layers", args.layers, None if args.layers is None else list(cfg.layers or ()), acts.layers),
            ("--reduce", args.reduce, args.reduce, acts.reduce),
        ):
            if wanted is not None and wanted != saved:
                raise ValueError(
                    f"{flag} {given_text} differs from the recording's ({saved}); drop {flag} or record again"
                )
        layers, reduce = acts.layers, acts.reduce
    else:
        layers, reduce = list(cfg.layers or range(model.n_layers)), cfg.reduce
    n_units = site_width(model, cfg.site) * (1 if cfg.per_layer else len(layers))
    if 2 * cfg.k > n_units:  # before recording, not after
        raise ValueError(
            f"k={cfg.k} for and against needs {2 * cfg.k} units, more than the {n_units} units "
            f"{'per layer' if cfg.per_layer else 'recorded'}"
        )
    _announce(model, worlds, cfg.site, reduce, layers)
    gen = SteerConfig()
    print(
        f"units: {', '.join(cfg.scores)}, k={cfg.k}{' per layer' if cfg.per_layer else ''} "
        f"(steer generate selects with {gen.score}, k={gen.k}, reduce {gen.reduce})",
        flush=True,
    )
    if args.recording is None:
        acts = _record(args, model, worlds, cfg.site, layers, reduce, None if out is None else out / "activations")
    result = find_units(
        acts,
        worlds,
        prop,
        k=cfg.k,
        per_layer=cfg.per_layer,
        normalizations=cfg.normalizations,
        bootstrap=cfg.bootstrap,
        alpha=cfg.alpha,
        seed=cfg.bootstrap_seed,
    )
    if out is not None:
        result.save(out)
    print(format_find(result))
    return result


def cmd_find(args: argparse.Namespace) -> None:
    with results(args) as out:
        _find(args, find_defaults(), out)


def cmd_stability(args: argparse.Namespace) -> None:
    from steer.artifacts import write_json_atomic
    from steer.find import format_trust, trust_report

    defaults = stability_defaults()
    cfg = config_from(defaults, args)
    if cfg.bootstrap < 1:
        raise ValueError("argument --bootstrap: steer stability needs at least 1 resample")
    if len(cfg.scores) != 1:
        raise ValueError(f"steer stability checks one score at a time; got --scores {','.join(cfg.scores)}")
    with results(args) as out:
        result = _find(args, defaults, out)
        report = trust_report(
            result,
            q=args.q,
            delta=args.delta,
            resamples=min(cfg.bootstrap, 200),
            alpha=cfg.alpha,
            seed=cfg.bootstrap_seed,
        )
        print(format_trust(report))
        if out is not None:
            write_json_atomic(out / "trust.json", report)


def cmd_record(args: argparse.Namespace) -> None:
    from steer.artifacts import check_replaceable
    from steer.sites import parse_layers

    check_replaceable(args.out, "--out")  # before any work: never replace what steer did not write
    worlds = load_worlds(args)
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
        model = load_model_for(args)
        layers = parse_layers(args.layers, model.n_layers)
        _announce(model, worlds, args.site, args.reduce, layers)
        acts = _record(args, model, worlds, args.site, layers, args.reduce, Path(args.out), shard_size=args.shard_size)
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
        ("--n-worlds", args.n_worlds),
        ("--worlds-seed", args.worlds_seed),
    )
    same = " ".join(f"{flag} {value}" for flag, value in flags if value is not None)
    print(f"reuse it: steer find {same} --site {args.site} --recording {out} --proposition label=positive")
