"""Benchmark: exported steering in a real engine (llama.cpp, through llama-cpp-python) against ``steer``'s own
steering of the bundled model.

For ``steer.generate``'s default positive and negative sets (layers 1 and up), under the default rule (additive, the
default coeff; exported as a control vector) and under linear-transport (exported as ``--format gguf``: the bundled
GGUF with the scaled ffn_down columns as F32, plus its control vector), per prompt: the correlation over the
vocabulary of the steered-minus-unsteered next-token log-prob shifts of the two engines (llama.cpp runs the Q4_1
weights, steer the de-quantized fp32 ones), their spreads, and the mean VADER compound of greedy continuations in each
engine, steered and unsteered (``steer.eval.llamacpp``). The opt-in test ``tests/test_llamacpp.py`` asserts on the
same comparison.

    pip install -e ".[llamacpp]"      # builds llama.cpp; see pyproject.toml for the flags that worked here
    python bench/llamacpp.py
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from importlib.metadata import version
from pathlib import Path

import torch
from common import write_result

from steer import SteerConfig, load_model
from steer.eval.llamacpp import compare_with_llamacpp, default_sets
from steer.weights import bundled_gguf


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--new-tokens", type=int, default=16)
    ap.add_argument("--transport-coeffs", default="1.5,3", help="lambdas of the linear-transport runs (3 is about "
                    "where the bundled steering benchmark's dev search put linear transport at 1.5x perplexity)")
    args = ap.parse_args()
    torch.set_num_threads(os.cpu_count() or 1)
    t0 = time.perf_counter()
    model = load_model("bundled")
    cfg, gguf, runs = SteerConfig(), bundled_gguf(), {}
    lams = [float(x) for x in args.transport_coeffs.split(",")]
    for label, ns in default_sets(model).items():
        for rule, coeff in [(cfg.rule, cfg.coeff)] + [("linear-transport", lam) for lam in lams]:
            with tempfile.TemporaryDirectory() as tmp:
                run = compare_with_llamacpp(model, ns, coeff, gguf, Path(tmp), new=args.new_tokens, rule=rule)
            runs[(label, rule, coeff)] = run
            corrs = run["correlations"]
            print(f"[{label}, {rule} {coeff:g}] correlations {min(corrs):.4f}-{max(corrs):.4f}; mean VADER "
                  + ", ".join(f"{k} {v:+.3f}" for k, v in run["vader"].items()))
    rows = [{"toward": label, "rule": rule, "coeff": r["coeff"], "min_correlation": min(r["correlations"]),
             "max_correlation": max(r["correlations"]), "correlations": r["correlations"],
             "shift_sizes": r["shift_sizes"],
             **{f"vader {k}": v for k, v in r["vader"].items()}} for (label, rule, _), r in runs.items()]
    continuations = [{"toward": label, "rule": rule, "coeff": lam, "condition": c, "prompt": p, "text": t}
                     for (label, rule, lam), r in runs.items() for c, texts in r["texts"].items()
                     for p, t in zip(r["prompts"], texts)]
    write_result("llamacpp", {
        "model": model.name, "gguf": gguf.name, "llama_cpp_python": version("llama-cpp-python"),
        "k": cfg.k, "coeff": cfg.coeff, "transport_coeffs": args.transport_coeffs, "new_tokens": args.new_tokens,
        "seconds": round(time.perf_counter() - t0, 1), "rows": rows, "continuations": continuations,
    })


if __name__ == "__main__":
    main()
