"""Reproduce the paper's LLM protocol (method.md section 4) end to end and print our numbers next to the paper's.

    python bench/paper_llm.py --model "$(../shared/tools/get-qwen-gguf)" --sst2 ../shared/data/sst2
    python bench/paper_llm.py --model Qwen/Qwen2.5-0.5B-Instruct          # where the hub is available

1024 SST-2 train sentences (seed 0) in the paper's two-shot prompt; A+/A- = the 25 with the highest VADER
pos/neg; top-5 for/against by raw D in the last layer at the last token; pos2neg (paper rule, c=5) and neg2pos
(c=7) on the correctly classified items of 500 SST-2 validation sentences (seed 0) in the three-shot a)/b)
prompt. Both sites (resid: the paper's; mlp: ours) share one pass over the evaluation set. Controls, same k and
rule: random units of the last layer (--random-seeds), units ranked by other scores (mean-diff, z-scored D,
rank D, standardised mean difference, average precision), and the top-5 by D over all layers. The full
report (JSON, Markdown, flips.png) goes to --out.
"""

from __future__ import annotations

import argparse
import time

from common import PeakRSS

from steer import load_model
from steer.eval import FlipConfig, FlipItems, FlipWorlds, UnitChoice, evaluate_flips, flip_table, load_result
from steer.eval.report import pooled_random, write_report

PAPER = {"accuracy": 0.912, "pos2neg": (0.979, 0.672, 0.278), "neg2pos": (0.986, 0.691, 0.024)}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=None, help="a .gguf file, model dir or hub id")
    ap.add_argument("--sst2", default="stanfordnlp/sst2", help="hub dataset or a GLUE dir with train/validation.tsv")
    ap.add_argument("--sites", default="resid,mlp")
    ap.add_argument("--n-worlds", type=int, default=1024)
    ap.add_argument("--n-eval", type=int, default=500)
    ap.add_argument("--random-seeds", type=int, default=5)
    ap.add_argument("--scores", default="mean-diff,zscore-D,rank-D,smd,ap")
    ap.add_argument("--dtype", default="float32")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--out", default="runs/paper_llm")
    ap.add_argument("--from-result", default=None, help="print (and re-render) a saved result.json instead of running")
    args = ap.parse_args()

    if args.from_result:
        r = load_result(args.from_result)
        write_report(r, args.out)
    else:
        t0 = time.time()
        model = load_model(args.model, dtype=args.dtype)
        units = UnitChoice(sites=tuple(args.sites.split(",")), random_seeds=tuple(range(args.random_seeds)),
                           compare_scores=tuple(s for s in args.scores.split(",") if s))
        cfg = FlipConfig(sst2=args.sst2, worlds=FlipWorlds(n=args.n_worlds), items=FlipItems(n=args.n_eval),
                         units=units, batch_size=args.batch_size)
        with PeakRSS() as mem:
            r = evaluate_flips(model, cfg, out=args.out)
        print(f"\nmodel {model.name}, {args.dtype}; {time.time() - t0:.0f} s in all, "
              f"peak extra memory {mem.extra_mb:.0f} MB")
    print(f"report: {args.out}/report.md\n")
    acc = r["clean_accuracy"]
    print(f"{'':38} {'paper':>8} {'ours':>8}  95% interval")
    print(f"{'clean accuracy':38} {PAPER['accuracy']:>8.1%} {acc['rate']:>8.1%}  [{acc['lo']:.1%}, {acc['hi']:.1%}]"
          f"  (n={acc['n']})")
    pooled = pooled_random(r)
    for site in r["config"]["units"]["sites"]:
        for flip_name in ("pos2neg", "neg2pos"):
            c = next(c for c in r["conditions"] if c["group"] == "method" and c["flip"] == flip_name
                     and c["info"]["site"] == site)
            flip, p_ref = c["flip_rate"], PAPER[flip_name]
            src = "a" if flip_name == "pos2neg" else "b"
            print(f"[{site}] {flip_name} flip rate{'':20} {p_ref[0]:>8.1%} {flip['rate']:>8.1%}  "
                  f"[{flip['lo']:.1%}, {flip['hi']:.1%}]  (n={flip['n']})")
            print(f"[{site}] {flip_name} P({src}) before -> after{'':9} {p_ref[1]:.1%}->{p_ref[2]:.1%}  "
                  f"{c['p_source_before']:.1%}->{c['p_source_after']:.1%}")
            rnd = pooled.get((flip_name, site))
            if rnd:
                print(f"[{site}] {flip_name} random units (pooled){'':8} {'-':>8} {rnd['rate']:>8.1%}  "
                      f"[{rnd['lo']:.1%}, {rnd['hi']:.1%}]  (n={rnd['n']})")
    print("\nall conditions:\n")
    print(flip_table(r))


if __name__ == "__main__":
    main()
