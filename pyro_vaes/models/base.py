r"""What every model of the catalogue shares: Pyro registration, the data plate, generation.

A catalogue model is an ``nn.Module`` with a Pyro ``model(x=None, y=None)`` and
``guide(x=None, y=None)``:

* ``x`` is the batch, ``y`` optional labels or conditions (unconditional models ignore it).
* With ``x=None`` the model *generates*: the observed site is sampled instead of scored, one
  datapoint per row of ``y`` (or a single one), so ``pyro.infer.Predictive(model,
  num_samples=S)(None)`` draws from the prior predictive.
* Model and guide register the module's parameters with Pyro (``pyro.module``) under a name
  unique to the instance, so plain ``pyro.infer.SVI`` with any ``pyro.optim`` optimizer trains
  the model, and two models never share parameters.
  :func:`pyro_vaes.fit` collects the same parameters from the module and steps one optimizer over
  them; registration is skipped while it runs (:func:`parameters_managed`).

``encode``, ``decode``, ``sample`` and ``reconstruct`` give the pictures and the report what they
need, in the space of the codes that ``encode`` returns.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator
from contextlib import AbstractContextManager, contextmanager
from contextvars import ContextVar

import pyro
import torch
from pyro.params import param_with_module_name
from torch import nn

from pyro_vaes.distributions.geometry import Euclidean, Geometry
from pyro_vaes.models.data_plate import DataPlate

__all__ = ["BaseModel", "data_event_dim", "inputs_checked", "parameters_managed"]

_names = itertools.count()
_managed: ContextVar[frozenset[int]] = ContextVar(
    "pyro_vaes_parameters_managed", default=frozenset()
)
_checked: ContextVar[frozenset[int]] = ContextVar("pyro_vaes_inputs_checked", default=frozenset())


@contextmanager
def _including(var: ContextVar[frozenset[int]], modules: Iterable[nn.Module]) -> Iterator[None]:
    token = var.set(var.get() | {id(m) for m in modules})
    try:
        yield
    finally:
        var.reset(token)


def parameters_managed(modules: Iterable[nn.Module]) -> AbstractContextManager[None]:
    """Within this context ``modules`` do not register their parameters with Pyro's parameter
    store: the caller (:func:`pyro_vaes.fit`) has collected and optimises them itself. Models it
    does not know of (called from inside a plain function, say) register as usual, so the
    caller finds their parameters through the ``param`` sites."""
    return _including(_managed, modules)


def inputs_checked(modules: Iterable[nn.Module]) -> AbstractContextManager[None]:
    """Within this context ``modules`` skip their own checks of the inputs on every call
    (labels in range): the caller (:func:`pyro_vaes.fit`) has checked every batch before it
    reaches them. Those checks read values back to the host, which a captured step cannot do."""
    return _including(_checked, modules)


def data_event_dim(params: torch.Tensor, code: torch.Tensor, code_event_dim: int) -> int:
    """The number of data dims in decoder output ``params``, from the code it was decoded from:
    ``params`` has the code's batch dims (particles, datapoints) followed by the data dims."""
    return params.dim() - (code.dim() - code_event_dim)


class BaseModel(nn.Module):
    """Base of the catalogue's models (see the module docstring).

    Subclasses implement :meth:`model`, :meth:`guide`, :meth:`encode`, :meth:`decode` and
    :meth:`sample`, and declare their :attr:`latent_sites`.
    """

    #: the guide's latent sample sites, in order
    latent_sites: tuple[str, ...] = ("z",)
    #: the model's observed site
    observed_site: str = "x"

    _pyro_name: str | None = None
    _pyro_owner: int | None = None

    @property
    def pyro_name(self) -> str:
        """The name under which this instance registers with Pyro's parameter store: unique in
        the process (a copy of the module gets a name of its own)."""
        if self._pyro_name is None or self._pyro_owner != id(self):
            self._pyro_name = f"{type(self).__name__}{next(_names)}"
            self._pyro_owner = id(self)
        return self._pyro_name

    def register_with_pyro(self) -> None:
        """Register the trainable parameters as ``pyro.module`` does (a ``param`` site per
        parameter, named ``<pyro_name>$$$<parameter>``), unless :func:`parameters_managed` is
        active. Frozen parameters (``requires_grad=False``, such as a fixed curvature) are left
        out without a warning."""
        if id(self) in _managed.get():
            return
        name = self.pyro_name
        for key, value in self.named_parameters():
            if value.requires_grad:
                pyro.param(param_with_module_name(name, key), value)

    @staticmethod
    def data_plate(x: torch.Tensor | None, y: torch.Tensor | None = None) -> DataPlate:
        """The plate ``"data"`` of the datapoints (a :class:`DataPlate`): one per row of ``x``,
        else of ``y``, else one."""
        size = x.shape[0] if x is not None else y.shape[0] if y is not None else 1
        return DataPlate("data", size)

    @property
    def inputs_checked(self) -> bool:
        """Whether the caller has checked the inputs already (:func:`inputs_checked`)."""
        return id(self) in _checked.get()

    def require_x(self, x: torch.Tensor | None) -> torch.Tensor:
        """``x``, or a clear error for a guide called without data."""
        if x is None:
            raise ValueError(
                f"{type(self).__name__}.guide needs the data x: the posterior q(z | x) is "
                "amortised over x (to generate, run the model alone with x=None)"
            )
        return x

    @property
    def geometry(self) -> Geometry:
        """The geometry of the codes that :meth:`encode` returns (for traversals and
        interpolations): Euclidean unless the model says otherwise."""
        return Euclidean()

    def model(self, x: torch.Tensor | None = None, y: torch.Tensor | None = None) -> None:
        raise NotImplementedError

    def guide(self, x: torch.Tensor | None = None, y: torch.Tensor | None = None) -> None:
        raise NotImplementedError

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """A point code per datapoint, ``(N, code_dim)`` (the posterior mean, or its
        counterpart)."""
        raise NotImplementedError

    def decode(self, code: torch.Tensor) -> torch.Tensor:
        """The likelihood's mean at each code (as returned by :meth:`encode`)."""
        raise NotImplementedError

    def sample(self, n: int) -> torch.Tensor:
        """``n`` decoded draws from the prior (likelihood means, for pictures)."""
        raise NotImplementedError

    @torch.no_grad()
    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        """The decoded code of each datapoint."""
        return self.decode(self.encode(x))
