"""steer.eval: the evaluation harness. It builds on the library (``steer``); the library never imports it.

``steer.eval.__all__`` holds what a user of the harness calls; everything else stays importable from its module.

- the two modes of ``steer eval``: :mod:`steer.eval.flip_mode` (the paper's flip protocol with controls, on
  :mod:`steer.eval.faithfulness`: do the units flip a classification?) and :mod:`steer.eval.steering_mode`
  (steering quality in generation against baselines, on :mod:`steer.eval.quality` and :mod:`steer.eval.methods`);
  their tables and reports: :mod:`steer.eval.report`; :mod:`steer.eval.plots`;
- :mod:`steer.eval.matched`: the benchmark that compares steering methods at matched fluency, with its knob search
  :mod:`steer.eval.knob_search`;
- :mod:`steer.eval.scorers`, :mod:`steer.eval.metrics`: sentiment scorers independent of the model, perplexity,
  distinct-n, Wilson intervals, KL;
- the paper's non-LLM experiments: :mod:`steer.eval.mnist` (LeNet-5, :mod:`steer.eval.lenet`: sanity,
  faithfulness, correctness, robustness under reasons-based losses), :mod:`steer.eval.fairness` (income classifier
  with the RD loss) and their data, :mod:`steer.eval.datasets`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from steer.lazy import lazy_getattr

# Each public name and the module that provides it, imported on first use: ``steer eval --help`` and the modes'
# configs (steer.eval.configs) load no torch.
_PROVIDERS: dict[str, str] = {
    "LENET_SITES": "steer.eval.lenet",
    "Bench": "steer.eval.matched",
    "BenchPrompts": "steer.eval.matched",
    "CombinedSteering": "steer.eval.methods",
    "FairnessExperiment": "steer.eval.fairness",
    "FlipConfig": "steer.eval.configs",
    "FlipItems": "steer.eval.configs",
    "FlipWorlds": "steer.eval.configs",
    "MatchedConfig": "steer.eval.matched",
    "Method": "steer.eval.methods",
    "MnistExperiment": "steer.eval.mnist",
    "NeuronSteering": "steer.eval.methods",
    "PerTarget": "steer.eval.methods",
    "PromptPrefix": "steer.eval.methods",
    "Prompting": "steer.eval.methods",
    "ResidualVector": "steer.eval.methods",
    "Scorer": "steer.eval.scorers",
    "SelfConditioning": "steer.eval.methods",
    "SteeringEvalConfig": "steer.eval.configs",
    "TrainConfig": "steer.eval.lenet",
    "UnitChoice": "steer.eval.configs",
    "VaderScorer": "steer.eval.scorers",
    "accuracy": "steer.eval.lenet",
    "correctness": "steer.eval.mnist",
    "digit_flips": "steer.eval.mnist",
    "digit_worlds": "steer.eval.lenet",
    "evaluate_flips": "steer.eval.flip_mode",
    "evaluate_steering": "steer.eval.steering_mode",
    "fgsm_accuracy": "steer.eval.lenet",
    "flip_table": "steer.eval.report",
    "get_scorer": "steer.eval.scorers",
    "load_mnist": "steer.eval.datasets",
    "load_result": "steer.eval.report",
    "matched_eval": "steer.eval.matched",
    "matched_table": "steer.eval.matched_report",
    "mnist_split": "steer.eval.datasets",
    "perplexity": "steer.eval.metrics",
    "plot_digit_flips": "steer.eval.plots",
    "plot_k_curve": "steer.eval.plots",
    "plot_max_strength": "steer.eval.plots",
    "plot_pca_layers": "steer.eval.plots",
    "plot_tradeoff": "steer.eval.plots",
    "record_lenet": "steer.eval.lenet",
    "run_fairness": "steer.eval.fairness",
    "run_mnist": "steer.eval.mnist",
    "sanity": "steer.eval.mnist",
    "steering_table": "steer.eval.report",
    "summary_rows": "steer.eval.quality",
    "train_lenet": "steer.eval.lenet",
    "vader_compound": "steer.eval.metrics",
    "wilson_interval": "steer.eval.metrics",
    "write_fairness_report": "steer.eval.fairness",
    "write_mnist_report": "steer.eval.mnist",
}

if TYPE_CHECKING:  # the same names, eagerly, for type checkers and IDEs
    from steer.eval.configs import FlipConfig, FlipItems, FlipWorlds, SteeringEvalConfig, UnitChoice
    from steer.eval.datasets import load_mnist, mnist_split
    from steer.eval.fairness import FairnessExperiment, run_fairness, write_fairness_report
    from steer.eval.flip_mode import evaluate_flips
    from steer.eval.lenet import (
        LENET_SITES,
        TrainConfig,
        accuracy,
        digit_worlds,
        fgsm_accuracy,
        record_lenet,
        train_lenet,
    )
    from steer.eval.matched import Bench, BenchPrompts, MatchedConfig, matched_eval
    from steer.eval.matched_report import matched_table
    from steer.eval.methods import (
        CombinedSteering,
        Method,
        NeuronSteering,
        PerTarget,
        Prompting,
        PromptPrefix,
        ResidualVector,
        SelfConditioning,
    )
    from steer.eval.metrics import perplexity, vader_compound, wilson_interval
    from steer.eval.mnist import MnistExperiment, correctness, digit_flips, run_mnist, sanity, write_mnist_report
    from steer.eval.plots import plot_digit_flips, plot_k_curve, plot_max_strength, plot_pca_layers, plot_tradeoff
    from steer.eval.quality import summary_rows
    from steer.eval.report import flip_table, load_result, steering_table
    from steer.eval.scorers import Scorer, VaderScorer, get_scorer
    from steer.eval.steering_mode import evaluate_steering

__all__ = [
    "LENET_SITES",
    "Bench",
    "BenchPrompts",
    "CombinedSteering",
    "FairnessExperiment",
    "FlipConfig",
    "FlipItems",
    "FlipWorlds",
    "MatchedConfig",
    "Method",
    "MnistExperiment",
    "NeuronSteering",
    "PerTarget",
    "PromptPrefix",
    "Prompting",
    "ResidualVector",
    "Scorer",
    "SelfConditioning",
    "SteeringEvalConfig",
    "TrainConfig",
    "UnitChoice",
    "VaderScorer",
    "accuracy",
    "correctness",
    "digit_flips",
    "digit_worlds",
    "evaluate_flips",
    "evaluate_steering",
    "fgsm_accuracy",
    "flip_table",
    "get_scorer",
    "load_mnist",
    "load_result",
    "matched_eval",
    "matched_table",
    "mnist_split",
    "perplexity",
    "plot_digit_flips",
    "plot_k_curve",
    "plot_max_strength",
    "plot_pca_layers",
    "plot_tradeoff",
    "record_lenet",
    "run_fairness",
    "run_mnist",
    "sanity",
    "steering_table",
    "summary_rows",
    "train_lenet",
    "vader_compound",
    "wilson_interval",
    "write_fairness_report",
    "write_mnist_report",
]


__getattr__ = lazy_getattr(__name__, _PROVIDERS, globals())


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
