"""Reasons on any PyTorch network: sites named by module path, recorded and rewritten through forward hooks.

The language-model path (:mod:`steer.models`, :mod:`steer.record`) reads TransformerLens hooks; this one wraps a
plain ``torch.nn.Module`` (:class:`Network`) and uses ordinary forward hooks, and both produce the same
:class:`~steer.activations.Activations`, so strengths, neuron sets, stability, explanations and interventions are the
same code for a LeNet and for Qwen.

Sites. A site is the output of one module, named by its path in ``module.named_modules()`` (``"conv2"``,
``"fc1"``, ``"features.3"``), flattened per world: a conv output [C, H, W] gives C*H*W units, indexed in
row-major order. ``"fc1:relu"`` records ``relu`` of that output (also ``tanh``, ``sigmoid``, ``gelu``), for
networks that apply their activation as a function; such a site can be recorded and ranked but not rewritten,
because the network applies the activation itself after the hook. To intervene after an activation, give it a
module (``nn.ReLU``) and name that module. A recording of a network has one "layer" (index 0) whose width is the
site's unit count; several sites are recorded in one pass as one :class:`Activations` per site.

Identity. A network's identity is its name (``torch:<class>`` when none is given), its class and the sha256 of its
state dict, so an artifact is tied to the exact weights it was recorded with: after more training, loading a
neuron set against the network is an :class:`~steer.artifacts.ArtifactMismatchError`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from jaxtyping import Float
from torch import Tensor, nn
from tqdm.auto import tqdm

from steer.activations import Activations
from steer.artifacts import ArtifactMismatchError
from steer.interventions import Intervention, neuron_edits
from steer.neuronset import NeuronSet
from steer.worlds import TensorWorlds

ACTIVATIONS: dict[str, Callable[[Tensor], Tensor]] = {
    "relu": torch.relu,
    "tanh": torch.tanh,
    "sigmoid": torch.sigmoid,
    "gelu": F.gelu,
}


def state_dict_sha256(module: nn.Module) -> str:
    """sha256 over a module's state dict: every entry's name, dtype, shape and bytes, in order."""
    h = hashlib.sha256()
    for name, t in module.state_dict().items():
        x = t.detach().cpu().contiguous()
        h.update(f"{name}|{x.dtype}|{tuple(x.shape)}|".encode())
        if x.numel():
            h.update(x.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


class Network:
    """A plain PyTorch network with named sites, an identity and forward-hook recording and interventions.

    Args:
        module: any ``torch.nn.Module`` whose forward takes a batch of inputs (worlds on the first axis).
        name: the model id saved in artifacts (default ``torch:<class name>``).
    """

    def __init__(self, module: nn.Module, name: str | None = None) -> None:
        if not isinstance(module, nn.Module):
            raise TypeError(f"Network wraps a torch.nn.Module, got {type(module).__name__}")
        self.module = module
        self.name = name or f"torch:{type(module).__name__}"

    def __repr__(self) -> str:
        return f"Network({self.name}, sites: {', '.join(self.sites()[:8])}{' ...' if len(self.sites()) > 8 else ''})"

    def __call__(self, x: Tensor) -> Tensor:
        return self.module(x)

    # -- identity

    @property
    def identity(self) -> dict[str, Any]:
        """What makes two networks the same for artifact checks (the weights' hash included)."""
        return {
            "model_id": self.name,
            "revision": None,
            "sha256": state_dict_sha256(self.module),
            "architecture": type(self.module).__name__,
            "n_layers": None,
            "d_model": None,
            "d_mlp": None,
        }

    @property
    def provenance(self) -> dict[str, Any]:
        from steer.version import __version__

        return {
            **self.identity,
            "kind": "torch.nn.Module",
            "n_parameters": sum(p.numel() for p in self.module.parameters()),
            "versions": {"steer": __version__, "torch": torch.__version__},
        }

    # -- sites

    def sites(self) -> list[str]:
        """Every module path that can be named as a site."""
        return [name for name, _ in self.module.named_modules() if name]

    def resolve_site(self, site: str) -> tuple[nn.Module, Callable[[Tensor], Tensor] | None]:
        """The module a site reads and the activation applied to its output (None for the output itself)."""
        if not isinstance(site, str) or not site:
            raise ValueError(f"a site is a module path such as 'fc1', got {site!r}")
        path, _, act = site.partition(":")
        modules = dict(self.module.named_modules())
        if path not in modules or not path:
            shown = ", ".join(self.sites()[:20])
            raise ValueError(f"unknown site {site!r}: {self.name} has no module {path!r} (modules: {shown})")
        if act and act not in ACTIVATIONS:
            raise ValueError(f"unknown activation {act!r} in site {site!r}; use one of {', '.join(ACTIVATIONS)}")
        return modules[path], ACTIVATIONS.get(act) if act else None

    # -- running

    @torch.no_grad()
    def predict(self, inputs: Tensor, batch_size: int = 512) -> Float[Tensor, "n outputs"]:
        """The network's outputs on ``inputs`` in eval mode, batched, on the inputs' device."""
        with _eval_mode(self.module):
            starts = range(0, len(inputs), batch_size) if len(inputs) else [0]
            return torch.cat([self.module(inputs[i : i + batch_size]) for i in starts])

    def record(
        self,
        worlds: TensorWorlds,
        sites: str | Sequence[str],
        batch_size: int = 256,
        progress: bool = False,
    ) -> Activations | dict[str, Activations]:
        """Record the activations of every world at one site (an :class:`Activations`) or several (a dict).

        Args:
            worlds: the worlds (their inputs are run in eval mode, without gradients).
            sites: a module path (``"fc1"``, ``"fc1:relu"``) or a list of them, recorded in one pass.
            batch_size: worlds per forward pass.
            progress: show a progress bar.

        Returns:
            float32 activations, one "layer" (0) per site with the site's flattened units.
        """
        names = [sites] if isinstance(sites, str) else list(sites)
        if not names:
            raise ValueError("no sites requested")
        if batch_size < 1:
            raise ValueError("batch_size must be positive")
        resolved = {s: self.resolve_site(s) for s in names}
        n = len(worlds)
        got: dict[str, list[Tensor]] = {s: [] for s in names}
        batch: dict[str, Tensor] = {}

        def keep(site: str, fn: Callable[[Tensor], Tensor] | None) -> Callable[..., None]:
            def hook(module: nn.Module, inputs: object, out: Tensor) -> None:
                if not isinstance(out, Tensor):
                    raise TypeError(f"site {site!r}: the module returns {type(out).__name__}, not a tensor")
                v = fn(out) if fn is not None else out
                batch[site] = v.reshape(v.shape[0], -1).float().cpu()

            return hook

        handles = [mod.register_forward_hook(keep(s, fn)) for s, (mod, fn) in resolved.items()]
        try:
            with torch.no_grad(), _eval_mode(self.module):
                for start in tqdm(range(0, n, batch_size), desc="recording", disable=not progress):
                    batch.clear()
                    self.module(worlds.inputs[start : start + batch_size])
                    for s in names:
                        if s not in batch:
                            raise RuntimeError(f"site {s!r} was not reached by the forward pass")
                        got[s].append(batch[s])
        finally:
            for h in handles:
                h.remove()
        model, prov = self.provenance, worlds.provenance
        out: dict[str, Activations] = {}
        for s in names:
            X = torch.cat(got[s])[:, None, :]
            bad = ~torch.isfinite(X).reshape(n, -1).all(1)
            if bad.any():
                raise ValueError(f"NaN/inf activations in world(s) {np.flatnonzero(bad.numpy())[:10].tolist()} at {s}")
            extra = {"batch_size": batch_size, "width": X.shape[2], "input_shape": prov["input_shape"]}
            out[s] = Activations(s, "none", [0], dict(model), dict(prov), [n], [X], None, extra)
        return out[names[0]] if isinstance(sites, str) else out

    # -- interventions

    @contextmanager
    def intervene(
        self,
        neurons: NeuronSet,
        intervention: Intervention | None = None,
    ) -> Iterator[Network]:
        """Rewrite a neuron set's units at its site on every forward pass inside the block; the hook is always
        removed on exit.

        Args:
            neurons: a neuron set found on a recording of this network (same weights, same site).
            intervention: how the units are rewritten (default ``Intervention("paper")``, the paper's rule).

        Yields:
            This network, with the rewrite in force (gradients flow through it).
        """
        if intervention is None:
            intervention = Intervention("paper")
        elif not isinstance(intervention, Intervention):
            raise TypeError(f"intervention must be a steer.Intervention, got {type(intervention).__name__}")
        if intervention.apply_to != "all":
            raise ValueError(
                f"apply_to={intervention.apply_to!r} selects token positions; a network's site has none (use 'all')"
            )
        mod, fn = self.resolve_site(neurons.site)
        if fn is not None:
            raise ValueError(
                f"site {neurons.site!r} applies an activation after the module, which the network then applies "
                "itself: rewrite a module whose output is the activation (e.g. an nn.ReLU) instead"
            )
        neurons.check_compatible(self.identity)
        layers = {u.layer for u in neurons.units_for + neurons.units_against}
        if layers != {0}:
            raise ArtifactMismatchError(f"a network site has one layer (0); the neuron set has units in {layers}")
        edit = neuron_edits(neurons, intervention).get(0)
        top = int(max(u.index for u in neurons.units_for + neurons.units_against))

        def hook(module: nn.Module, inputs: object, out: Tensor) -> Tensor:
            if out.shape[0] == 0:
                return out
            flat = out.reshape(out.shape[0], -1)
            if top >= flat.shape[1]:
                raise ArtifactMismatchError(
                    f"neuron set has unit {top} but site {neurons.site!r} has {flat.shape[1]} units"
                )
            if edit is None:  # coeff 0: the identity
                return out
            idx = edit.index.to(out.device)
            new = flat.clone()
            new[:, idx] = edit.rewrite(flat[:, idx].float()).to(out.dtype)
            return new.reshape(out.shape)

        handle = mod.register_forward_hook(hook)
        try:
            yield self
        finally:
            handle.remove()


@contextmanager
def _eval_mode(module: nn.Module) -> Iterator[None]:
    """Eval mode inside the block, the module's own mode restored after."""
    was = module.training
    module.eval()
    try:
        yield
    finally:
        module.train(was)
