"""The :class:`Steerer`: a neuron set and one :class:`~steer.interventions.Intervention`, turned into hooks.

    iv = steer.Intervention("additive", coeff=3)
    with steer.Steerer(model, neurons, iv) as s:              # hooks in
        texts = s.generate(["The hotel was"], max_new_tokens=30, seed=0)
    # hooks out, also after an exception

    handle = steer.Steerer(model, neurons, iv).apply()        # or by hand: a handle to remove
    ...
    handle.remove()

The intervention arrives whole and is used as it is: :func:`steer.interventions.neuron_edits` turns it into one
:class:`~steer.interventions.LayerEdit` per layer, and :meth:`Steerer.hooks` into TransformerLens hooks. Raw
edits (a residual steering vector, self-conditioning) enter through :meth:`Steerer.from_edits` and have no rule.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any, overload

from steer.fold import SteeringExport, compile_edits, compile_steering
from steer.generation import GenerationConfig, generate_text
from steer.interventions import APPLY_TO, HookFn, Intervention, LayerEdit, PositionTracker, edit_hooks, neuron_edits
from steer.sites import hook_name

if TYPE_CHECKING:
    from contextlib import AbstractContextManager

    from steer.models import Model
    from steer.neuronset import NeuronSet


class SteeringHandle:
    """Steering in force on a model until :meth:`remove` (also a context manager that removes it on exit)."""

    def __init__(self, ctx: AbstractContextManager[Any]):
        self._ctx: AbstractContextManager[Any] | None = ctx
        ctx.__enter__()

    @property
    def active(self) -> bool:
        """True until :meth:`remove` is called."""
        return self._ctx is not None

    def remove(self) -> None:
        """Take the hooks out (or restore the weights, for compiled steering); removing twice does nothing."""
        self._exit(None, None, None)

    def _exit(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        ctx, self._ctx = self._ctx, None
        if ctx is not None:
            ctx.__exit__(exc_type, exc, tb)

    def __enter__(self) -> SteeringHandle:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._exit(exc_type, exc, tb)


class Steerer:
    """Rewrites a neuron set's units during forward passes and generation, while applied.

    Args:
        model: the model to steer.
        neurons: the neuron set (None: no rewrite).
        intervention: how the units are rewritten (rule, coeff, direction, apply_to); default
            ``Intervention()`` (``additive`` at its default coefficient, toward the set's proposition).
        compiled: apply the exported form instead of per-unit hooks (:func:`steer.fold.compile_steering`: a bias
            on each steered layer's W_down and scaled W_down columns, restored on exit). Equal to the hook path to
            float rounding, at the speed of the unsteered model; needs ``apply_to="all"`` and an affine rule.
        on_call: called as ``on_call(key, start, n_positions)`` by every hook call (for tests and tracing).
    """

    def __init__(
        self,
        model: Model,
        neurons: NeuronSet | None,
        intervention: Intervention | None = None,
        *,
        compiled: bool = False,
        on_call: Callable[[str, int, int], None] | None = None,
    ):
        from steer.models import Model
        from steer.neuronset import NeuronSet

        if not isinstance(model, Model):
            raise TypeError(f"model must be a steer Model (steer.load_model(...)), got {type(model).__name__}")
        if neurons is not None and not isinstance(neurons, NeuronSet):
            raise TypeError(f"neurons must be a steer.NeuronSet or None, got {type(neurons).__name__}")
        if not isinstance(compiled, bool):
            raise TypeError(f"compiled must be True or False, got {compiled!r}")
        if intervention is not None and not isinstance(intervention, Intervention):
            raise TypeError(
                f"intervention must be a steer.Intervention, got {type(intervention).__name__} "
                "(e.g. Steerer(model, neurons, steer.Intervention('additive', coeff=3)))"
            )
        if neurons is not None:
            neurons.check_compatible(model)
        self.model, self.neurons, self.on_call, self.compiled = model, neurons, on_call, compiled
        self.intervention: Intervention | None = None
        self.site: str | None = None
        self.apply_to = "all"
        self.edits: dict[int, LayerEdit] = {}
        if neurons is not None:
            self.intervention = intervention or Intervention()
            self.site, self.apply_to = neurons.site, self.intervention.apply_to
            self.edits = neuron_edits(neurons, self.intervention)
        self._tracker = PositionTracker()
        self._handle: SteeringHandle | None = None
        self._form: SteeringExport | None = None
        if compiled:
            self._form = compile_edits(model, self.site or "mlp", self.edits, self.apply_to)

    @classmethod
    def from_edits(
        cls, model: Model, site: str, edits: Mapping[int, LayerEdit], apply_to: str = "all", *, compiled: bool = False
    ) -> Steerer:
        """A Steerer applying explicit per-layer edits at a site (the building block of other steering methods:
        a residual steering vector, self-conditioning). It has no neuron set and no rule: ``intervention`` is None.

        Args:
            model: the model.
            site: the hook site the edits address (``mlp`` or ``resid``).
            edits: ``{layer: LayerEdit}``.
            apply_to: which token positions are rewritten.
            compiled: apply the edits' exported form (weights) instead of hooks.

        Returns:
            The Steerer.
        """
        if apply_to not in APPLY_TO:
            raise ValueError(f"unknown apply_to {apply_to!r}; use one of {', '.join(APPLY_TO)}")
        hook_name(site, 0)
        s = cls(model, None)
        s.site, s.edits, s.apply_to, s.compiled = site, dict(edits), apply_to, compiled
        if compiled:
            s._form = compile_edits(model, site, s.edits, apply_to)
        return s

    @property
    def exported(self) -> SteeringExport:
        """This Steerer's rewrite in exported form (vectors after blocks, scaled W_down columns)."""
        if self._form is None:
            self._form = compile_edits(self.model, self.site or "mlp", self.edits, self.apply_to)
        return self._form

    def hooks(self) -> list[tuple[str, HookFn]]:
        """The (hook name, hook) pairs of this Steerer, for ``model.bridge.hooks(fwd_hooks=...)``, starting a new
        pass (token positions are counted afresh). None without edits. Prefer :meth:`apply` or ``with``: they
        also remove the hooks."""
        if self._handle is not None and self._handle.active:
            raise RuntimeError("this Steerer is applied: its hooks are in place (remove the handle first)")
        if not self.edits or self.site is None:
            return []
        self._tracker.reset()
        names = {layer: hook_name(self.site, layer) for layer in self.edits}
        return edit_hooks(names, self.edits, self.apply_to, self._tracker, self.on_call)

    def apply(self) -> SteeringHandle:
        """Put the steering in force until the returned handle's ``remove()`` (or the end of its ``with``)."""
        if self._handle is not None and self._handle.active:
            raise RuntimeError("this Steerer is already active")
        if self.compiled:
            ctx: AbstractContextManager[Any] = compile_steering(self.model, self.exported)
        else:
            ctx = self.model.bridge.hooks(fwd_hooks=self.hooks())
        self._handle = SteeringHandle(ctx)
        return self._handle

    def __enter__(self) -> Steerer:
        self.apply()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        handle, self._handle = self._handle, None
        if handle is not None:
            handle._exit(exc_type, exc, tb)

    @overload
    def generate(self, prompts: str, config: GenerationConfig | None = None, **overrides: Any) -> str: ...

    @overload
    def generate(
        self, prompts: Sequence[str], config: GenerationConfig | None = None, **overrides: Any
    ) -> list[str]: ...

    def generate(
        self, prompts: str | Sequence[str], config: GenerationConfig | None = None, **overrides: Any
    ) -> str | list[str]:
        """Steered continuations of ``prompts`` (see :func:`steer.generation.generate_text` for the arguments)."""
        if self._handle is not None and self._handle.active:
            self._tracker.reset()
            return generate_text(self.model, prompts, config, **overrides)
        with self:
            return generate_text(self.model, prompts, config, **overrides)

    def __repr__(self) -> str:
        what = "raw edits" if self.intervention is None else repr(self.intervention)
        n = sum(int(e.index.numel()) for e in self.edits.values())
        return f"<Steerer {what} at {self.site}: {n} units in {len(self.edits)} layers>"
