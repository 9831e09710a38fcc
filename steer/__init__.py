"""steer: find the units of a language model that speak for a proposition, and steer generation with them.

Data flow: prompt set -> :class:`Worlds` -> :func:`record` (reasons vectors) -> :meth:`Activations.strength`
(doxastic strength D) -> :meth:`Strengths.top` (a :class:`NeuronSet`) -> :class:`Steerer` (rewrites the units
during generation). One call: ``steer.generate("The hotel was", toward="positive")``.
"""

from steer.artifacts import ArtifactMismatchError
from steer.models import Model, ModelLoadError, load_model
from steer.neurons import NeuronSet, Strengths, Unit
from steer.record import SITES, Activations, record
from steer.steering import SteerConfig, Steerer, generate, steering
from steer.strength import TrivialPropositionError, doxastic_strength, group_strength
from steer.worlds import Proposition, PromptSetError, Template, Worlds

__all__ = [
    "Activations", "ArtifactMismatchError", "Model", "ModelLoadError", "NeuronSet", "PromptSetError",
    "Proposition", "SITES", "Strengths", "Template", "TrivialPropositionError", "Unit", "Worlds",
    "doxastic_strength", "group_strength", "load_model", "record",
    "SteerConfig", "Steerer", "generate", "steering",
]
