"""Reproduce the paper's fairness experiment: an income classifier with and without the reasons-difference loss.

    python bench/paper_fairness.py --adult ../shared/data/adult/adult.data     # about a minute on 2 CPU cores

UCI Adult (>50K favourable, sex protected, Male privileged), a fixed 80/20 split; an MLP trained with
cross-entropy alone, with the RD loss (on the predicted probability, the paper's y-hat, at weights 1 and 10, and
on the logit), and with reweighing (Kamiran & Calders 2012) as the standard mitigation; 3 seeds each. Prints
accuracy, demographic-parity and equalised-odds differences and RD per variant; the report goes to --out.
"""

from __future__ import annotations

import argparse

from steer.eval import FairnessExperiment, run_fairness, write_fairness_report
from steer.eval.fairness import fairness_table


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--adult", default="../shared/data/adult/adult.data")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--out", default="runs/paper_fairness")
    args = ap.parse_args()
    r = run_fairness(FairnessExperiment(args.adult, seeds=tuple(range(args.seeds)), epochs=args.epochs))
    write_fairness_report(r, args.out)
    print(f"\n{r['data']}\n{r['seconds']:.0f} s in all; report: {args.out}/report.md\n")
    print(fairness_table(r))
    print(f"\npaper: {r['paper']}")


if __name__ == "__main__":
    main()
