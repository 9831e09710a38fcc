"""steer: find the units of a language model that speak for a proposition, and steer generation with them.

Data flow: prompt set -> :class:`Worlds` -> :func:`record` (reasons vectors, :class:`Activations`) ->
:meth:`Activations.strength` (doxastic strength D, :class:`Strengths`) -> :meth:`Strengths.top` (a
:class:`NeuronSet`) -> :class:`Steerer` (an :class:`Intervention` rewriting the units during generation).
One call: ``steer.generate("The hotel was", toward="positive")``; :mod:`steer.export` takes the steering out of
the process (a llama.cpp control vector, EasySteer direction files, an edited checkpoint). Any other PyTorch network
enters through :class:`Network` (sites are module paths) and :class:`TensorWorlds`, and feeds the same types;
reasons-based training losses are in :mod:`steer.losses`. The evaluation harness is :mod:`steer.eval`.
"""

__version__ = "0.2.0"

from steer.artifacts import ArtifactMismatchError
from steer.cache import cache_dir, cached_model, cached_neurons, cached_recording
from steer.distributed import record_ray
from steer.explain import Explanation, candidate_propositions, explain_unit, sanity_checks
from steer.export import (
    FORMATS,
    ControlVectorFile,
    ExportError,
    SteeringExport,
    compile_steering,
    control_vector_hooks,
    export_form,
    export_steering,
    read_control_vector,
    write_control_vector,
)
from steer.find import FindResult, find_units, format_find, format_trust, trust_report
from steer.interventions import (
    APPLY_TO,
    DIRECTIONS,
    RULES,
    Affine,
    Intervention,
    LayerEdit,
    Rule,
    UnitTable,
    get_rule,
    register_rule,
)
from steer.losses import batch_strength, doxastic_loss, elementary_loss, reasons_difference
from steer.models import Model, ModelLoadError, load_model
from steer.network import Network
from steer.neurons import D_SCORES, NeuronSet, Strengths, Unit, UnitScores, score_units
from steer.plots import plot_stability, plot_strength_by_layer
from steer.record import REDUCTIONS, SITES, Activations, hook_name, parse_layers, record, resolve_layers
from steer.resources import DEFAULT_PROMPT_SET, PROMPTS_DIR
from steer.selection import SCORES
from steer.stability import Bootstrap, bootstrap, bootstrap_neurons, prediction_set
from steer.steering import GenerationConfig, SteerConfig, Steerer, generate, generate_text, steering_neurons
from steer.stream import WorldStream
from steer.strength import NORMALIZATIONS, TrivialPropositionError, doxastic_strength, group_strength
from steer.worlds import PromptSetError, Proposition, Template, TensorWorlds, WorldFields, Worlds

__all__ = [
    "APPLY_TO",
    "DEFAULT_PROMPT_SET",
    "DIRECTIONS",
    "D_SCORES",
    "FORMATS",
    "NORMALIZATIONS",
    "PROMPTS_DIR",
    "REDUCTIONS",
    "RULES",
    "SCORES",
    "SITES",
    "Activations",
    "Affine",
    "ArtifactMismatchError",
    "Bootstrap",
    "ControlVectorFile",
    "Explanation",
    "ExportError",
    "FindResult",
    "GenerationConfig",
    "Intervention",
    "LayerEdit",
    "Model",
    "ModelLoadError",
    "Network",
    "NeuronSet",
    "PromptSetError",
    "Proposition",
    "Rule",
    "SteerConfig",
    "Steerer",
    "SteeringExport",
    "Strengths",
    "Template",
    "TensorWorlds",
    "TrivialPropositionError",
    "Unit",
    "UnitScores",
    "UnitTable",
    "WorldFields",
    "WorldStream",
    "Worlds",
    "__version__",
    "batch_strength",
    "bootstrap",
    "bootstrap_neurons",
    "cache_dir",
    "cached_model",
    "cached_neurons",
    "cached_recording",
    "candidate_propositions",
    "compile_steering",
    "control_vector_hooks",
    "doxastic_loss",
    "doxastic_strength",
    "elementary_loss",
    "explain_unit",
    "export_form",
    "export_steering",
    "find_units",
    "format_find",
    "format_trust",
    "generate",
    "generate_text",
    "get_rule",
    "group_strength",
    "hook_name",
    "load_model",
    "parse_layers",
    "plot_stability",
    "plot_strength_by_layer",
    "prediction_set",
    "read_control_vector",
    "reasons_difference",
    "record",
    "record_ray",
    "register_rule",
    "resolve_layers",
    "sanity_checks",
    "score_units",
    "steering_neurons",
    "trust_report",
    "write_control_vector",
]
