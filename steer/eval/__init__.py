"""steer.eval: the evaluation harness. It builds on the library (``steer``); the library never imports it.

- :mod:`steer.eval.faithfulness`: the paper's flip protocol (do the units flip a classification?);
- :mod:`steer.eval.quality`, :mod:`steer.eval.methods`: steering quality in generation against baselines;
- :mod:`steer.eval.scorers`, :mod:`steer.eval.metrics`: sentiment scorers independent of the model, perplexity,
  distinct-n, Wilson intervals, KL;
- :mod:`steer.eval.harness`: configs, running both modes with their controls, reports; :mod:`steer.eval.plots`.
"""

from steer.eval.faithfulness import FLIPS, Condition, answer_logprobs, answer_token_ids, flip_eval
from steer.eval.harness import (
    FlipConfig,
    FlipItems,
    FlipWorlds,
    SteeringEvalConfig,
    UnitChoice,
    evaluate_flips,
    evaluate_steering,
    flip_table,
    load_result,
    pooled_random,
    steering_table,
    write_report,
)
from steer.eval.methods import Method, NeuronSteering, Prompting, ResidualVector, SelfConditioning
from steer.eval.metrics import (
    distinct_n,
    format_rate,
    kl_divergence,
    perplexity,
    rate,
    vader_compound,
    wilson_interval,
)
from steer.eval.plots import plot_flips, plot_score_distributions, plot_tradeoff
from steer.eval.quality import TARGETS, best_at_fluency, quality_eval, summary_rows
from steer.eval.scorers import EncoderClassifier, PipelineScorer, Scorer, ScorerError, VaderScorer, get_scorer

__all__ = [
    "FLIPS",
    "TARGETS",
    "Condition",
    "EncoderClassifier",
    "FlipConfig",
    "FlipItems",
    "FlipWorlds",
    "Method",
    "NeuronSteering",
    "PipelineScorer",
    "Prompting",
    "ResidualVector",
    "Scorer",
    "ScorerError",
    "SelfConditioning",
    "SteeringEvalConfig",
    "UnitChoice",
    "VaderScorer",
    "answer_logprobs",
    "answer_token_ids",
    "best_at_fluency",
    "distinct_n",
    "evaluate_flips",
    "evaluate_steering",
    "flip_eval",
    "flip_table",
    "format_rate",
    "get_scorer",
    "kl_divergence",
    "load_result",
    "perplexity",
    "plot_flips",
    "plot_score_distributions",
    "plot_tradeoff",
    "pooled_random",
    "quality_eval",
    "rate",
    "steering_table",
    "summary_rows",
    "vader_compound",
    "wilson_interval",
    "write_report",
]
