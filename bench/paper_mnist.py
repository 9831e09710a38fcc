"""Reproduce the paper's MNIST experiments (LeNet-5) with controls, and print our numbers next to the paper's.

    python bench/paper_mnist.py --mnist ../shared/data/mnist            # about 10 minutes on 2 CPU cores

Only MNIST's 10,000 test digits exist here: LeNet-5 trains on a fixed 8,000 of them and the 1,024 worlds and
every evaluation come from the other 2,000 (the paper trained on the 60,000 training digits). For every training
(cross-entropy; + doxastic loss; + elementary loss; FGSM adversarial training at eps 0.2, the established
baseline) and seed: clean and white-box FGSM accuracy, the Figure 2 sanity check, Figure 3 flips (paper rule
a' = m - c*a on the top-k units of fc2 after ReLU, c = 3..7, against k random units of the same layer) and
Figure 4 silhouettes. The report (result.json, report.md, figures) goes to --out.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from steer.eval import MnistExperiment, run_mnist, write_mnist_report
from steer.eval.mnist import PAPER_MNIST


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mnist", default="../shared/data/mnist", help="directory with the t10k IDX files")
    ap.add_argument("--trainings", default="ce,doxastic,elementary,fgsm")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--epochs", type=int, default=15)
    ap.add_argument("--k", type=int, default=5)
    ap.add_argument("--random-seeds", type=int, default=5)
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    ap.add_argument("--out", default="runs/paper_mnist")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    cfg = MnistExperiment(args.mnist, tuple(args.trainings.split(",")), tuple(range(args.seeds)), args.epochs,
                          k=args.k, random_seeds=tuple(range(args.random_seeds)))
    t0 = time.time()
    r = run_mnist(cfg)
    write_mnist_report(r, args.out)
    print(f"\n{r['data']}\n{time.time() - t0:.0f} s in all on {torch.get_num_threads()} threads; "
          f"report: {args.out}/report.md\n")
    ms = r["models"]

    def stat(values):
        a = 100 * np.array(values)
        return f"{a.mean():5.1f} ± {a.std():4.1f}"

    print(f"{'':34} {'paper':>7}   ours (mean ± std over {args.seeds} seeds)")
    for training in dict.fromkeys(m["training"] for m in ms):
        mt = [m for m in ms if m["training"] == training]
        paper_fgsm = PAPER_MNIST["fgsm_0.15"].get(training)
        print(f"{training:12} clean accuracy{'':8} {PAPER_MNIST['clean_accuracy']:>7.0%}   "
              f"{stat([m['clean_accuracy'] for m in mt])}")
        print(f"{training:12} FGSM accuracy, eps 0.15  {f'{paper_fgsm:.0%}' if paper_fgsm else '-':>7}   "
              f"{stat([m['fgsm']['0.15'] for m in mt])}")
        for flip in ("pos2neg", "neg2pos"):
            print(f"{training:12} {flip} top-{args.k} (c=5){'':4} {'100%*':>7}   "
                  f"{stat([m['faithfulness_at_5'][f'{flip}/top-k']['rate'] for m in mt])}   random units "
                  f"{stat([m['faithfulness_at_5'][f'{flip}/random']['rate'] for m in mt])}")
        print(f"{training:12} output unit d = argmax D for label d: {sum(m['sanity']['holds'] for m in mt)}/{len(mt)}")
    print("\n* the paper: 100% of flips for every digit but one\n")
    with open(f"{args.out}/report.md") as f:
        print(f.read().split("## Reference model")[0].split("\n\n", 3)[-1])


if __name__ == "__main__":
    main()
