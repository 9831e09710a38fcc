"""The configs: what a caller may leave unsaid, with its default and help, in one place and without torch.

:class:`GenerationConfig` (how continuations are decoded), :class:`SteerConfig` (which units ``steer.generate``
steers with and how) and :class:`FindConfig` (how ``steer find`` and ``steer stability`` choose and check units).
Their fields declared with :func:`steer.options.option` become the command line's flags; building one validates it
and imports no torch, so ``steer <command> --help`` is instant. The modules that use them re-export them
(``steer.generation.GenerationConfig``, ``steer.steering.SteerConfig``, ``steer.find.FindConfig``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from typing import TYPE_CHECKING, Any

from steer.names import APPLY_TO, D_SCORES, SCORES, Normalize, check_coeff, rule_names
from steer.options import option
from steer.sites import REDUCTIONS, SITES

if TYPE_CHECKING:
    from steer.interventions import Intervention
    from steer.models import Model
    from steer.propositions import Proposition
    from steer.select import SelectSpec
    from steer.worlds import Worlds


@dataclass(frozen=True)
class GenerationConfig:
    """How continuations are decoded.

    ``seed`` makes sampling reproducible (``torch.manual_seed`` before generating); ``do_sample=False`` is greedy;
    ``chat=True`` wraps each prompt in the model's chat template as a user turn.
    """

    max_new_tokens: int = option(40, "new tokens per continuation")
    seed: int | None = option(0, "sampling seed (torch.manual_seed before generating)")
    do_sample: bool = option(
        True, "sample (False: greedy decoding)", flag="--greedy", switch_help="greedy decoding instead of sampling"
    )
    temperature: float = option(1.0, "sampling temperature")
    top_p: float | None = option(0.9, "nucleus sampling: keep the smallest set of tokens with this probability")
    chat: bool = option(False, "wrap each prompt in the model's chat template as a user turn")
    use_past_kv_cache: bool = option(True, "reuse keys and values across generation steps")

    def __post_init__(self) -> None:
        def is_int(v: object) -> bool:
            return isinstance(v, int) and not isinstance(v, bool)

        if not is_int(self.max_new_tokens) or self.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be a positive integer, got {self.max_new_tokens!r}")
        if self.seed is not None and (not is_int(self.seed) or not 0 <= self.seed < 2**63):
            raise ValueError(f"seed must be an integer from 0 to 2**63 - 1 or None, got {self.seed!r}")
        for name in ("do_sample", "chat", "use_past_kv_cache"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name} must be True or False, got {getattr(self, name)!r}")
        t = self.temperature
        if isinstance(t, bool) or not isinstance(t, (int, float)) or not math.isfinite(t) or not 0 < t <= 100:
            raise ValueError(f"temperature must be a number above 0 and at most 100, got {t!r}")
        p = self.top_p
        if p is not None and (isinstance(p, bool) or not isinstance(p, (int, float)) or not 0 < p <= 1):
            raise ValueError(f"top_p must be a number in (0, 1] or None, got {p!r}")


def with_overrides(config: Any, overrides: Mapping[str, Any], what: str) -> Any:
    names = {f.name for f in fields(config)}
    unknown = sorted(set(overrides) - names)
    if unknown:
        raise TypeError(f"unknown {what} option(s) {unknown}; known: {', '.join(sorted(names))}")
    return replace(config, **overrides)


@dataclass(frozen=True)
class SteerConfig:
    """Which units ``steer.generate`` steers with and how it rewrites them, when the caller does not say.

    Units: the worlds are recorded with ``template`` at ``site``, each prompt's tokens reduced by ``reduce``, over
    ``layers`` (None: all); the ``k`` units for and ``k`` against the proposition by ``score`` are selected.
    Rewrite: ``rule`` with ``coeff`` (None: the rule's default) at the positions ``apply_to``; the resolved
    :class:`~steer.interventions.Intervention` is :attr:`intervention`, built (and validated) once.

    The defaults (rank-D, k = 500, ``additive`` with coeff 3 on every position, MLP activations averaged over each
    sentence's tokens) were chosen by a sweep on our own development prompts and re-checked at matched fluency; the
    runs and their tables are on the docs page ``docs/steering.md`` ("How the defaults were chosen").
    """

    template: str = option("plain", "template that turns each world into a prompt (a name or a string with {text})")
    site: str = option("mlp", "where units are recorded and rewritten", choices=tuple(SITES))
    reduce: str = option("mean", "how a world's tokens become one vector", choices=REDUCTIONS)
    layers: tuple[int, ...] | None = option(
        None, "layers to select units from: all, 23, -1, 0,5,10 or 18-23", none="all"
    )
    score: str = option("rank-D", "selection score", choices=SCORES)
    k: int = option(500, "units for, and units against")
    rule: str = option("additive", "how the units are rewritten", choices=rule_names)
    coeff: float | None = option(3.0, "the rule's coefficient (0: off); another rule than the default: its own default")
    apply_to: str = option("all", "token positions rewritten", choices=APPLY_TO)

    def __post_init__(self) -> None:
        for name in ("template", "site", "reduce", "score", "rule", "apply_to"):
            if not isinstance(getattr(self, name), str):
                raise TypeError(f"{name} must be a string, got {type(getattr(self, name)).__name__}")
        if self.site not in SITES:
            raise ValueError(f"unknown site {self.site!r}; use one of {', '.join(SITES)}")
        if self.reduce not in REDUCTIONS:
            raise ValueError(f"unknown reduce {self.reduce!r}; use one of {', '.join(REDUCTIONS)}")
        if self.score not in SCORES:
            raise ValueError(f"unknown score {self.score!r}; use one of {', '.join(SCORES)}")
        if isinstance(self.k, bool) or not isinstance(self.k, int) or self.k < 1:
            raise ValueError(f"k must be a positive integer, got {self.k!r}")
        if self.rule not in rule_names():
            raise ValueError(f"unknown rule {self.rule!r}; use one of {', '.join(rule_names())}")
        if self.apply_to not in APPLY_TO:
            raise ValueError(f"unknown apply_to {self.apply_to!r}; use one of {', '.join(APPLY_TO)}")
        check_coeff(self.coeff)
        if self.layers is not None:
            if isinstance(self.layers, (str, bytes)) or not hasattr(self.layers, "__iter__"):
                layers = [self.layers] if isinstance(self.layers, int) and not isinstance(self.layers, bool) else None
                if layers is None:
                    raise TypeError(f"layers must be a sequence of layer indices or None, got {self.layers!r}")
                object.__setattr__(self, "layers", tuple(layers))
            else:
                object.__setattr__(self, "layers", tuple(self.layers))
            if not all(isinstance(v, int) and not isinstance(v, bool) for v in self.layers or ()):
                raise TypeError(f"layers must be integers, got {self.layers!r}")

    @property
    def intervention(self) -> Intervention:
        """The :class:`~steer.interventions.Intervention` this config asks for (built once, on first use)."""
        built = self.__dict__.get("_intervention")
        if built is None:
            from steer.interventions import Intervention

            built = Intervention(self.rule, self.coeff, "toward", self.apply_to)
            object.__setattr__(self, "_intervention", built)
        return built

    def resolve(self, **overrides: Any) -> SteerConfig:
        """This config with the caller's non-None choices applied. A coeff left unset follows the rule: this
        config's coeff for its own rule, the rule's ``default_coeff`` for another rule."""
        given = {k: v for k, v in overrides.items() if v is not None}
        if "intervention" in given:
            raise TypeError("set rule, coeff and apply_to; the intervention is built from them")
        out: SteerConfig = with_overrides(self, given, "steering")
        if "coeff" not in given and out.rule != self.rule:
            from steer.interventions import get_rule

            out = replace(out, coeff=get_rule(out.rule).default_coeff)
        return out

    def select_spec(self, model: Model, worlds: Worlds, proposition: Proposition) -> SelectSpec:
        """The units this config asks for, of ``proposition`` over ``worlds`` (recorded with their template)."""
        from steer.select import RecordSpec, SelectSpec

        return SelectSpec(
            RecordSpec(model, worlds, self.site, self.reduce, self.layers), proposition, self.score, self.k
        )

    def worlds(self, worlds: Worlds | str | None = None) -> Worlds:
        """``worlds`` as they are, or the prompt set at a path (default: the bundled sentiment set) read with
        :attr:`template`."""
        from steer.resources import DEFAULT_PROMPT_SET
        from steer.worlds import Worlds

        if isinstance(worlds, Worlds):
            return worlds
        return Worlds.from_file(worlds or DEFAULT_PROMPT_SET, template=self.template)


@dataclass(frozen=True)
class FindConfig:
    """How ``steer find`` and ``steer stability`` choose and check units, when the caller does not say. The defaults
    follow the paper's protocol (the last token, raw and normalised D, k = 5); ``steer generate`` selects with
    :class:`steer.SteerConfig` (rank-D, k = 500, the mean over the text), and both commands print the selection
    they used."""

    site: str = option("mlp", "where units are recorded", choices=tuple(SITES))
    reduce: str = option("last", "how a world's tokens become one vector", choices=REDUCTIONS)
    layers: tuple[int, ...] | None = option(
        None, "layers to select units from: all, 23, -1, 0,5,10 or 18-23", none="all"
    )
    k: int = option(5, "units for, and units against")
    scores: tuple[str, ...] = option(
        ("D", "zscore-D", "rank-D"), "doxastic scores to report, comma-separated", choices=tuple(D_SCORES)
    )
    per_layer: bool = option(False, "top-k in every layer instead of over all layers")
    bootstrap: int = option(200, "bootstrap resamples of the worlds for stability (0: none)")
    alpha: float = option(0.1, "interval and prediction-set level")
    bootstrap_seed: int = option(0, "the bootstrap's random seed")

    def __post_init__(self) -> None:
        unknown = [s for s in self.scores if s not in D_SCORES]
        if unknown or not self.scores:
            raise ValueError(f"unknown score(s) {unknown}; use D scores: {', '.join(D_SCORES)}")

    @property
    def normalizations(self) -> tuple[Normalize, ...]:
        """The normalisation of each score (``rank-D`` -> ``rank``)."""
        return tuple(D_SCORES[s] for s in self.scores)
