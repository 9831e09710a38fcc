"""steer: find the units of a language model that speak for a proposition, and steer generation with them.

The data flow, one module per step::

    prompt set -> Worlds (worlds.py) -> record (record.py) -> Activations (activations.py)
      -> Strengths / NeuronSet (neurons.py, strength.py) -> select_units (select.py)
      -> Intervention (interventions.py) -> Steerer (steerer.py) -> generate (steering.py)

One call: ``steer.generate("The hotel was", toward="positive")``. ``steer.__all__`` holds what a user calls;
everything else stays importable from its module (e.g. :mod:`steer.export` for the file formats, :mod:`steer.fold`
for compiled steering, :mod:`steer.interventions` for custom rules, :mod:`steer.distributed` for Ray). Any other
PyTorch network enters through :class:`Network` and :class:`TensorWorlds`; reasons-based training losses are in
:mod:`steer.losses`; the evaluation harness is :mod:`steer.eval`. The method: ``docs/method.md``.
"""

from __future__ import annotations

import sys
import types
from typing import TYPE_CHECKING, Any

from steer.lazy import lazy_getattr

# Each public name and the module that provides it. The modules load on first use (``steer.generate`` imports
# torch then, not ``import steer``), so ``steer --help`` and ``import steer.options`` stay light.
_PROVIDERS: dict[str, str] = {
    "Activations": "steer.activations",
    "ArtifactMismatchError": "steer.artifacts",
    "explain_unit": "steer.explain",
    "export_steering": "steer.export",
    "find_units": "steer.find",
    "format_find": "steer.find",
    "format_trust": "steer.find",
    "trust_report": "steer.find",
    "GenerationConfig": "steer.configs",
    "RULES": "steer.interventions",
    "Intervention": "steer.interventions",
    "doxastic_loss": "steer.losses",
    "elementary_loss": "steer.losses",
    "reasons_difference": "steer.losses",
    "Model": "steer.models",
    "ModelLoadError": "steer.models",
    "load_model": "steer.models",
    "Network": "steer.network",
    "Strengths": "steer.neurons",
    "NeuronSet": "steer.neuronset",
    "plot_stability": "steer.plots",
    "plot_strength_by_layer": "steer.plots",
    "Proposition": "steer.propositions",
    "PromptSetError": "steer.readers",
    "record": "steer.record",
    "DEFAULT_PROMPT_SET": "steer.resources",
    "RecordSpec": "steer.select",
    "SelectSpec": "steer.select",
    "recording": "steer.select",
    "select_units": "steer.select",
    "bootstrap_neurons": "steer.stability",
    "Steerer": "steer.steerer",
    "SteerConfig": "steer.configs",
    "generate": "steer.steering",
    "steering_neurons": "steer.steering",
    "WorldStream": "steer.stream",
    "__version__": "steer.version",
    "view": "steer.viewer",
    "TensorWorlds": "steer.worlds",
    "Worlds": "steer.worlds",
}

if TYPE_CHECKING:  # the same names, eagerly, for type checkers and IDEs
    from steer.activations import Activations
    from steer.artifacts import ArtifactMismatchError
    from steer.configs import GenerationConfig, SteerConfig
    from steer.explain import explain_unit
    from steer.export import export_steering
    from steer.find import find_units, format_find, format_trust, trust_report
    from steer.interventions import RULES, Intervention
    from steer.losses import doxastic_loss, elementary_loss, reasons_difference
    from steer.models import Model, ModelLoadError, load_model
    from steer.network import Network
    from steer.neurons import Strengths
    from steer.neuronset import NeuronSet
    from steer.plots import plot_stability, plot_strength_by_layer
    from steer.propositions import Proposition
    from steer.readers import PromptSetError
    from steer.record import record
    from steer.resources import DEFAULT_PROMPT_SET
    from steer.select import RecordSpec, SelectSpec, recording, select_units
    from steer.stability import bootstrap_neurons
    from steer.steerer import Steerer
    from steer.steering import generate, steering_neurons
    from steer.stream import WorldStream
    from steer.version import __version__
    from steer.viewer import view
    from steer.worlds import TensorWorlds, Worlds

__all__ = [
    "DEFAULT_PROMPT_SET",
    "RULES",
    "Activations",
    "ArtifactMismatchError",
    "GenerationConfig",
    "Intervention",
    "Model",
    "ModelLoadError",
    "Network",
    "NeuronSet",
    "PromptSetError",
    "Proposition",
    "RecordSpec",
    "SelectSpec",
    "SteerConfig",
    "Steerer",
    "Strengths",
    "TensorWorlds",
    "WorldStream",
    "Worlds",
    "__version__",
    "bootstrap_neurons",
    "doxastic_loss",
    "elementary_loss",
    "explain_unit",
    "export_steering",
    "find_units",
    "format_find",
    "format_trust",
    "generate",
    "load_model",
    "plot_stability",
    "plot_strength_by_layer",
    "reasons_difference",
    "record",
    "recording",
    "select_units",
    "steering_neurons",
    "trust_report",
    "view",
]


__getattr__ = lazy_getattr(__name__, _PROVIDERS, globals())


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


class _Package(types.ModuleType):
    """``steer.record`` is the function even after the import system sets the submodule ``steer.record`` as an
    attribute of the package (as the eager ``from steer.record import record`` made it before)."""

    def __setattr__(self, name: str, value: Any) -> None:
        if isinstance(value, types.ModuleType) and _PROVIDERS.get(name) == value.__name__:
            value = getattr(value, name, value)
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package
