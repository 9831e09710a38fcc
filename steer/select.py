"""The selection pipeline, written once: what to record (:class:`RecordSpec`) and how to choose units
(:class:`SelectSpec`) -> :func:`select_units` -> a :class:`~steer.neurons.NeuronSet`.

    spec = steer.RecordSpec(model, worlds, site="mlp", reduce="mean")          # what to record
    acts = steer.recording(spec)                                               # recorded once, cached on disk
    ns = steer.select_units(steer.SelectSpec(spec, worlds.proposition("positive"), score="rank-D", k=500))

Every consumer (``steer find``, ``steer.generate``, the evaluation harness, the benchmarks) goes through these two
functions, so a recording and a neuron set are made once and keyed by their full provenance: the model identity,
the prompt-set hash (records and template), site, token reduction and layers; for a neuron set also the proposition
(its name and the sha256 of its mask), the score and k. Neuron sets are also kept per process.
"""

from __future__ import annotations

import hashlib
import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from steer.activations import Activations
from steer.artifacts import FORMAT_VERSION, ArtifactMismatchError, content_key
from steer.cache import cache_dir
from steer.neurons import score_units, with_transport
from steer.neuronset import NeuronSet
from steer.record import record
from steer.selection import SCORES
from steer.sites import REDUCTIONS, SITES, format_layers, resolve_layers

if TYPE_CHECKING:
    from steer.models import Model
    from steer.propositions import Proposition
    from steer.worlds import Worlds


@dataclass(frozen=True)
class RecordSpec:
    """What to record: ``worlds`` (their prompts are made by their template) through ``model`` at ``site``, each
    prompt's tokens reduced by ``reduce``, at ``layers`` (None: every layer)."""

    model: Model
    worlds: Worlds
    site: str = "mlp"
    reduce: str = "mean"
    layers: tuple[int, ...] | None = None

    def __post_init__(self) -> None:
        if self.site not in SITES:
            raise ValueError(f"unknown site {self.site!r}; use one of {', '.join(SITES)}")
        if self.reduce not in REDUCTIONS:
            raise ValueError(f"unknown reduce {self.reduce!r}; use one of {', '.join(REDUCTIONS)}")
        object.__setattr__(self, "layers", tuple(resolve_layers(self.layers, self.model.n_layers)))

    @property
    def key(self) -> dict[str, Any]:
        """What the recording is made from (its cache key is the hash of this)."""
        return {
            "format": FORMAT_VERSION,
            "model": self.model.identity,
            "worlds": self.worlds.prompt_set_hash,
            "template": self.worlds.template.sha256,
            "site": self.site,
            "reduce": self.reduce,
            "layers": list(self.layers or ()),
        }

    def describe(self) -> str:
        """One line: ``mlp, reduce mean, layers 0-29, 688 worlds (sentiment.jsonl, template plain)``."""
        w = self.worlds
        return (
            f"{self.site}, reduce {self.reduce}, layers {format_layers(self.layers or ())}, {len(w)} worlds "
            f"({w.source}, template {w.template.name})"
        )


@dataclass(frozen=True)
class SelectSpec:
    """How to choose units from a recording: the ``k`` units for and ``k`` against ``proposition`` by ``score``
    (one of :data:`steer.selection.SCORES`: ``rank-D``, ``zscore-D``, ``D`` are the doxastic strength on
    rank-normalised, z-scored and raw activations; ``mean-diff``, ``smd``, ``ap`` are non-doxastic baselines)."""

    recording: RecordSpec
    proposition: Proposition
    score: str = "rank-D"
    k: int = 500

    def __post_init__(self) -> None:
        if self.score not in SCORES:
            raise ValueError(f"unknown score {self.score!r}; use one of {', '.join(SCORES)}")
        if isinstance(self.k, bool) or not isinstance(self.k, int) or self.k < 1:
            raise ValueError(f"k must be a positive integer, got {self.k!r}")
        if len(self.proposition.mask) != len(self.recording.worlds):
            raise ValueError(
                f"the proposition {self.proposition.name!r} is over {len(self.proposition.mask)} worlds, "
                f"the recording over {len(self.recording.worlds)}"
            )

    @property
    def key(self) -> dict[str, Any]:
        """What the neuron set is made from (its cache key is the hash of this)."""
        mask = np.asarray(self.proposition.mask, dtype=bool)
        return {
            **self.recording.key,
            "proposition": self.proposition.name,
            "mask": hashlib.sha256(np.packbits(mask).tobytes() + str(mask.size).encode()).hexdigest(),
            "score": self.score,
            "k": self.k,
            "transport": 1,  # the sets carry transport statistics (0.3.1): sets cached before are selected again
        }

    def describe(self) -> str:
        """One line: ``rank-D, k=500 for and against label=positive; mlp, reduce mean, ...``."""
        return f"{self.score}, k={self.k} for and against {self.proposition.name}; {self.recording.describe()}"


def recording(spec: RecordSpec, progress: bool = True) -> Activations:
    """The recording ``spec`` asks for, recorded once and cached on disk (``$STEER_CACHE/recordings/<key>``).

    A cached recording is checked against its checksums before it is used; one that fails is recorded again.

    Args:
        spec: what to record.
        progress: show a progress bar while recording.

    Returns:
        The recording (shards on disk).
    """
    layers = list(spec.layers or ())
    rec_dir = cache_dir() / "recordings" / content_key(spec.key)
    if (rec_dir / "manifest.json").is_file():
        try:
            acts = Activations.load(rec_dir, model=spec.model, site=spec.site)
            if acts.extra.get("cache_key") != content_key(spec.key, length=64):
                raise ArtifactMismatchError("it was made for another recording (its cache key does not match)")
            for _ in acts.iter_shards():  # every shard against its checksum
                pass
            return acts
        except ArtifactMismatchError as e:
            print(f"steer: the cached recording is unusable ({e}); recording again", file=sys.stderr)
    return record(
        spec.model,
        spec.worlds,
        site=spec.site,
        layers=layers,
        reduce=spec.reduce,
        out=rec_dir,
        progress=progress,
        extra={"cache_key": content_key(spec.key, length=64)},
    )


_SELECTED: dict[tuple[str, str], NeuronSet] = {}  # by (cache directory, key): a new $STEER_CACHE starts afresh


def select_units(spec: SelectSpec, progress: bool = True) -> NeuronSet:
    """The neuron set ``spec`` asks for: record (:func:`recording`), score every unit, take the top k each side.

    Memoised per process and on disk (``$STEER_CACHE/neurons/<key>.json``) under the full provenance, so other
    propositions, scores and k reuse the recording, and asking again costs nothing.

    Args:
        spec: the recording and how to choose from it.
        progress: show a progress bar while recording.

    Returns:
        The neuron set (a copy: changing it does not change the memo).
    """
    key = content_key(spec.key)
    memo = (str(cache_dir()), key)
    if memo in _SELECTED:
        return _SELECTED[memo].copy()
    model = spec.recording.model
    path = cache_dir() / "neurons" / f"{key}.json"
    ns: NeuronSet | None = None
    full_key = content_key(spec.key, length=64)
    if path.is_file():
        try:
            ns = NeuronSet.load(path, model=model, site=spec.recording.site)
            if ns.extra.get("cache_key") != full_key:  # a set copied over another key (e.g. negative for positive)
                raise ArtifactMismatchError("it was made for another selection (its cache key does not match)")
        except ArtifactMismatchError as e:
            print(f"steer: the cached neuron set {path.name} is unusable ({e}); selecting again", file=sys.stderr)
            ns = None  # stale: computed again below
    if ns is None:
        acts = recording(spec.recording, progress)
        ns = with_transport(score_units(acts, spec.proposition, spec.score).top(spec.k), acts, spec.proposition)
        ns.extra["cache_key"] = full_key
        path.unlink(missing_ok=True)  # a stale entry of the cache (steer's own): replaced
        ns.save(path)
    _SELECTED[memo] = ns
    return ns.copy()
