"""Benchmark: steered generation tokens/s over unsteered tokens/s on the same batch, for the hook path (target
>= 0.95) and the compiled path (the exported form applied to the weights, no hooks; target >= 0.99).

All runs call TransformerBridge.generate on the same left-padded batch with the KV cache, greedy, a fixed
number of new tokens (no stop at EOS, so every run produces exactly the same number of tokens); the steered runs
do it inside a Steerer (the default rule on k units for "positive" from the default prompt set, over all
layers), with per-unit hooks or ``compiled=True``. Each measurement is the best of --repeats, alternating
unsteered, hooks and compiled. Batch 1 and 8, fp32 and bf16. Prints the ratios measured in this one run.

    python bench/generate.py                      # the bundled SmolLM2-135M-Instruct
    python bench/generate.py --model FILE.gguf
"""

from __future__ import annotations

import argparse
import os
import time

import torch
from common import write_result

from steer import DEFAULT_PROMPT_SET, SteerConfig, Steerer, Worlds, load_model, steering_neurons

PROMPTS = ["The hotel was", "I just finished reading the book, and", "The weather today is", "Our new neighbours are"]


@torch.inference_mode()
def timed_generate(model, ids, mask, new_tokens):
    t = time.perf_counter()
    model.bridge.generate(ids, attention_mask=mask, max_new_tokens=new_tokens, do_sample=False, stop_at_eos=False,
                          verbose=False, return_type="tokens")
    return time.perf_counter() - t


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="bundled")
    ap.add_argument("--batches", default="1,8")
    ap.add_argument("--dtypes", default="float32,bfloat16")
    ap.add_argument("--new-tokens", type=int, default=64)
    ap.add_argument("--k", type=int, default=None)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    torch.set_num_threads(os.cpu_count() or 1)
    cfg = SteerConfig().resolve(k=args.k)
    rows = []
    for dtype in args.dtypes.split(","):
        model = load_model(args.model, dtype=dtype)
        worlds = Worlds.from_file(DEFAULT_PROMPT_SET, template=cfg.template)
        ns = steering_neurons(model, worlds, "positive", cfg, progress=False)
        steerer = Steerer(model, ns, cfg.intervention)
        compiled = Steerer(model, ns, cfg.intervention, compiled=True)
        for bs in map(int, args.batches.split(",")):
            prompts = (PROMPTS * bs)[:bs]
            ids, mask = model.tokenize(prompts)
            timed_generate(model, ids, mask, 4)  # warm-up
            plain, steered, fast = [], [], []
            for _ in range(args.repeats):
                plain.append(timed_generate(model, ids, mask, args.new_tokens))
                with steerer:
                    steered.append(timed_generate(model, ids, mask, args.new_tokens))
                with compiled:
                    fast.append(timed_generate(model, ids, mask, args.new_tokens))
            n = bs * args.new_tokens
            rows.append((dtype, bs, n / min(plain), n / min(steered), n / min(fast)))
    print(f"\ngeneration benchmark: {args.new_tokens} new tokens, greedy, KV cache, rule {cfg.rule}, "
          f"k {cfg.k} for / against, {torch.get_num_threads()} threads, best of {args.repeats}")
    print(f"{'dtype':>9} {'batch':>5} {'unsteered tok/s':>15} {'hooks tok/s':>11} {'ratio':>6} "
          f"{'compiled tok/s':>14} {'ratio':>6}")
    for dtype, bs, p, s, c in rows:
        print(f"{dtype:>9} {bs:>5} {p:>15.1f} {s:>11.1f} {s / p:>6.3f} {c:>14.1f} {c / p:>6.3f}")
    print(f"model: {model.name}; ratio = steered tok/s / unsteered tok/s (targets: hooks >= 0.95, compiled >= 0.99)")
    write_result("generate", {
        "model": model.name, "new_tokens": args.new_tokens, "repeats": args.repeats, "rule": cfg.rule, "k": cfg.k,
        "rows": [{"dtype": dtype, "batch": bs, "unsteered_tok_s": p, "hooks_tok_s": s, "hooks_ratio": s / p,
                  "compiled_tok_s": c, "compiled_ratio": c / p} for dtype, bs, p, s, c in rows],
    })


if __name__ == "__main__":
    main()
