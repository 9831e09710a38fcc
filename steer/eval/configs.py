"""The evaluation modes' configs, without torch: what ``steer eval flip`` (:class:`FlipConfig`, with
:class:`FlipWorlds`, :class:`FlipItems`, :class:`UnitChoice`) and ``steer eval steer`` (:class:`SteeringEvalConfig`)
do when the caller does not say. Their modules re-export them (``steer.eval.flip_mode.FlipConfig``,
``steer.eval.steering_mode.SteeringEvalConfig``); the command line reads their defaults for its help without
importing torch."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from steer.interventions import Intervention
    from steer.templates import Template


def _intervention(rule: str, coeff: float, direction: str) -> Any:
    from steer.interventions import Intervention

    return Intervention(rule, coeff, direction)  # type: ignore[arg-type]


@dataclass(frozen=True)
class FlipWorlds:
    """Where the units are found: the worlds (default: SST-2 train), their template and the two propositions."""

    source: str | None = None
    n: int = 1024
    template: str | Template = "paper-2shot"
    positive: str = "vader_pos:top25"
    negative: str = "vader_neg:top25"


@dataclass(frozen=True)
class FlipItems:
    """What is classified: labelled items (default: SST-2 validation) in an answer-letter template."""

    source: str | None = None
    n: int | None = 500
    template: str | Template = "paper-3shot-ab"
    label_field: str = "label"
    answers: tuple[str, str] = (" a", " b")  # the answer tokens for positive and negative


@dataclass(frozen=True)
class UnitChoice:
    """Which units are rewritten: the method's (top-k by ``score`` in ``layers`` at each site) and the controls'."""

    sites: tuple[str, ...] = ("resid",)  # several sites share one pass over the evaluation items
    reduce: str = "last"
    layers: tuple[int, ...] = (-1,)
    other_layers: tuple[int, ...] | None = None  # default: all layers when `layers` is one layer, else the last
    k: int = 5
    score: str = "D"
    compare_scores: tuple[str, ...] = ("mean-diff",)
    random_seeds: tuple[int, ...] = (0, 1, 2)


@dataclass(frozen=True)
class FlipConfig:
    """The paper's protocol by default; ``sst2`` is the hub dataset or a local GLUE directory, the default source
    of the worlds and the items."""

    sst2: str = "stanfordnlp/sst2"
    text_field: str = "sentence"
    seed: int = 0  # samples the worlds and the items
    worlds: FlipWorlds = field(default_factory=FlipWorlds)
    items: FlipItems = field(default_factory=FlipItems)
    units: UnitChoice = field(default_factory=UnitChoice)
    pos2neg: Intervention = field(default_factory=lambda: _intervention("paper", 5.0, "away"))
    neg2pos: Intervention = field(default_factory=lambda: _intervention("paper", 7.0, "away"))
    batch_size: int = 32


@dataclass(frozen=True)
class SteeringEvalConfig:
    """What ``steer eval steer`` compares. Neuron steering uses the project's defaults (SteerConfig)."""

    prompts: tuple[str, ...] = ("prompts/steering_test.jsonl", "prompts/steering_opposite.jsonl")
    n_prompts: int | None = None
    worlds: str | None = None  # default: prompts/sentiment.jsonl
    template: str | Template = "plain"
    reduce: str = "mean"
    site: str = "mlp"
    score: str = "rank-D"
    k: int = 500
    rule: str = "additive"
    coeffs: tuple[float, ...] = (1.0, 2.0, 3.0, 4.0, 6.0)
    compare_scores: tuple[str, ...] = ()  # other selection scores at the same k/rule/coeffs
    random_seed: int = 0
    caa_layer: int | None = None  # default: the middle layer
    caa_coeffs: tuple[float, ...] = (2.0, 4.0, 8.0, 16.0)
    selfcond_k: tuple[int, ...] = (10, 50, 200, 1000)
    prompting: bool = True
    scorers: tuple[str, ...] = ("vader", "minilm-sst2")
    sst2: str = "stanfordnlp/sst2"
    seeds: tuple[int, ...] = (0, 1)
    max_new_tokens: int = 30
    fluency_budget: float = 1.5  # compare methods at perplexity <= budget x unsteered perplexity
