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

from steer.activations import Activations
from steer.artifacts import ArtifactMismatchError
from steer.explain import explain_unit
from steer.export import export_steering
from steer.find import find_units, format_find, format_trust, trust_report
from steer.generation import GenerationConfig
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
from steer.steering import SteerConfig, generate, steering_neurons
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
