"""Sweep: which selection score, k, layers, rule and coeff move sentiment most at small fluency cost?

On a development set of our own neutral prompt openings (prompts/steering_dev.jsonl; never the test prompts),
each configuration generates continuations toward positive (the neuron set of label=positive) and toward
negative (label=negative), n seeds per prompt, sampled (temperature 1, top-p 0.9). Reported per configuration:

- pos / neg: mean VADER compound of the continuations toward positive / negative; sep = (pos - neg) / 2;
- the same for a random-unit control (same k, rule, coeff; random units with their own stats): ctrl sep;
- ppl: perplexity of the steered continuations under the unsteered model (both directions pooled), next to
  the unsteered continuations' perplexity (base ppl).

One recording of the worlds (prompts/sentiment.jsonl with the chosen template) serves every configuration.

    python bench/sweep_steering.py --stage rules      # rule x coeff at k=50, raw and z-scored D
    python bench/sweep_steering.py --stage k          # k and layer ranges for --rule/--coeffs
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import time
from pathlib import Path

import numpy as np
import torch
from common import write_result

from steer import DEFAULT_PROMPT_SET, Intervention, Steerer, Worlds, load_model, record
from steer.eval import perplexity, vader_compound
from steer.generation import generate_text
from steer.resources import PROMPTS_DIR
from steer.sites import parse_layers


def run_config(model, strengths, k, layers, rule, coeff, prompts, seeds, max_new, control_seed=None):
    """Mean compound toward positive and negative, and the pooled steered perplexity."""
    out = {}
    conts_all, prompts_all = [], []
    for i, direction in enumerate(("positive", "negative")):
        s = strengths[direction]
        if layers is not None:
            s = s.restrict(layers)
        # the control draws different random units for the two directions (the same units would make sep 0)
        ns = s.top(k) if control_seed is None else s.random(k, seed=control_seed + i)
        st = Steerer(model, ns, Intervention(rule, coeff, direction="toward"))
        conts = []
        for seed in seeds:
            conts += st.generate(prompts, max_new_tokens=max_new, seed=seed, do_sample=True, top_p=0.9)
        out[direction] = float(np.mean(vader_compound(conts)))
        conts_all += conts
        prompts_all += prompts * len(seeds)
    out["ppl"] = perplexity(model, prompts_all, conts_all)
    out["sep"] = (out["positive"] - out["negative"]) / 2
    out["example"] = conts_all[0][:80]
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="bundled")
    ap.add_argument("--template", default="plain")
    ap.add_argument("--reduce", default="mean")
    ap.add_argument("--site", default="mlp")
    ap.add_argument("--stage", default="rules", choices=["rules", "k", "custom"])
    ap.add_argument("--normalize", default="none,zscore")
    ap.add_argument("--rules", default="additive,clamp,scale,paper,mean-ablate")
    ap.add_argument("--coeffs", default=None, help="comma list; default depends on the rule")
    ap.add_argument("--ks", default="50")
    ap.add_argument("--layer-sets", default="all", help="semicolon list of layer specs, e.g. 'all;0-9;10-19;20-29'")
    ap.add_argument("--seeds", type=int, default=2)
    ap.add_argument("--prompts", type=int, default=24)
    ap.add_argument("--prompt-set", default="dev", choices=["dev", "test"],
                    help="prompts/steering_dev.jsonl (choose settings) or steering_test.jsonl (report them)")
    ap.add_argument("--max-new-tokens", type=int, default=20)
    ap.add_argument("--control", action="store_true", help="also run the random-unit control per configuration")
    ap.add_argument("--out", default=None, help="write the rows as JSON lines here")
    args = ap.parse_args()
    torch.set_num_threads(os.cpu_count() or 1)

    model = load_model(args.model)
    worlds = Worlds.from_file(DEFAULT_PROMPT_SET, template=args.template)
    t = time.time()
    acts = record(model, worlds, site=args.site, reduce=args.reduce, batch_size=32, progress=False)
    print(f"recorded {len(worlds)} worlds in {time.time() - t:.0f}s", flush=True)
    prompts = [json.loads(line)["text"] for line in open(PROMPTS_DIR / f"steering_{args.prompt_set}.jsonl")][:args.prompts]
    seeds = list(range(args.seeds))
    base = []
    for seed in seeds:
        base += generate_text(model, prompts, max_new_tokens=args.max_new_tokens, seed=seed, do_sample=True, top_p=0.9)
    base_c = float(np.mean(vader_compound(base)))
    base_ppl = perplexity(model, prompts * len(seeds), base)
    print(f"unsteered: compound {base_c:+.3f}, ppl {base_ppl:.1f}  ({len(prompts)} prompts x {len(seeds)} seeds, "
          f"{args.max_new_tokens} new tokens)", flush=True)

    default_coeffs = {"additive": "2,4,8,16", "clamp": "0.5,1,2,4", "scale": "2,5,20", "paper": "1,3,5",
                         "mean-ablate": "1"}
    rows = []
    header = (f"{'norm':>6} {'k':>5} {'layers':>8} {'rule':>11} {'coeff':>5} {'pos':>7} {'neg':>7} {'sep':>7} "
              f"{'ppl':>7} {'ctrl sep':>8} {'ctrl ppl':>8}")
    print(header, flush=True)
    for norm in args.normalize.split(","):
        strengths = {d: acts.strength(worlds.proposition(f"label={d}"), normalize=norm) for d in ("positive", "negative")}
        for rule, k, lspec in itertools.product(args.rules.split(","), args.ks.split(","), args.layer_sets.split(";")):
            layers = None if lspec == "all" else parse_layers(lspec, model.n_layers)
            for coeff in (args.coeffs or default_coeffs[rule]).split(","):
                r = run_config(model, strengths, int(k), layers, rule, float(coeff), prompts, seeds,
                               args.max_new_tokens)
                c = (run_config(model, strengths, int(k), layers, rule, float(coeff), prompts, seeds,
                                args.max_new_tokens, control_seed=0) if args.control else None)
                row = {"normalize": norm, "k": int(k), "layers": lspec, "rule": rule, "coeff": float(coeff),
                       **{f"steer_{a}": b for a, b in r.items()}, "base_compound": base_c, "base_ppl": base_ppl,
                       **({f"ctrl_{a}": b for a, b in c.items()} if c else {})}
                rows.append(row)
                print(f"{norm:>6} {k:>5} {lspec:>8} {rule:>11} {float(coeff):>5g} {r['positive']:>+7.3f} "
                      f"{r['negative']:>+7.3f} {r['sep']:>+7.3f} {r['ppl']:>7.1f} "
                      + (f"{c['sep']:>+8.3f} {c['ppl']:>8.1f}" if c else f"{'-':>8} {'-':>8}")
                      + f"   | {r['example']!r}", flush=True)
                if args.out:
                    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
                    with open(args.out, "a") as f:
                        f.write(json.dumps(row) + "\n")
    best = max((r for r in rows if r["steer_ppl"] <= 1.5 * base_ppl), key=lambda r: r["steer_sep"], default=None)
    print(f"\nunsteered compound {base_c:+.3f}, ppl {base_ppl:.1f}")
    if best:
        print(f"best separation with ppl <= 1.5 x unsteered: {json.dumps({k: best[k] for k in ('normalize', 'k', 'layers', 'rule', 'coeff', 'steer_sep', 'steer_ppl')})}")
    write_result("sweep_steering", {"model": model.name, "prompts": len(prompts), "seeds": len(seeds),
                                    "max_new_tokens": args.max_new_tokens, "base_compound": base_c,
                                    "base_ppl": base_ppl, "rows": rows})


if __name__ == "__main__":
    main()
