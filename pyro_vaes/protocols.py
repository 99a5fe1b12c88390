"""What the pieces promise each other.

The parts of a VAE meet through small declared contracts, checked by type checkers (the
``Protocol``\\ s) or declared by inheritance (the capability ABCs), never discovered by probing
attributes:

* :class:`Prior` ``() -> p(z)``, :class:`Posterior` ``h -> q(z | x)``, :class:`Likelihood`
  ``(params, event_dim) -> p(x | z)``: modules that return distributions, so any prior composes
  with any posterior.
* :class:`Objective`: a Pyro ELBO (``loss``, ``loss_and_grads``, and for the fast path
  ``differentiable_loss``, :class:`Differentiable`). Optional capabilities are ABCs an objective inherits:
  :class:`Adversarial` (a second network with a loss of its own, which :func:`pyro_vaes.fit`
  gives its own optimizer) and :class:`NeedsDatasetSize` (estimators that need the dataset size
  ``N``, handed over by ``fit`` before training).
* :class:`GenerativeModel`: what the CLI, the report and the benchmarks call on a model: its Pyro
  ``model``/``guide`` pair, its latent site names, ``encode``/``decode``/``sample``/
  ``reconstruct``. :class:`pyro_vaes.models.base.BaseModel` implements it for the catalogue.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any, Protocol, runtime_checkable

import torch
from torch import nn
from torch.distributions import Distribution, constraints

__all__ = [
    "Adversarial",
    "Differentiable",
    "GenerativeModel",
    "Labelled",
    "Likelihood",
    "NeedsDatasetSize",
    "Objective",
    "PostTraining",
    "Posterior",
    "PreTraining",
    "Predicts",
    "Prior",
    "Sequential",
]


@runtime_checkable
class Prior(Protocol):
    """``prior()`` is the distribution :math:`p(z)` (event shape: one code)."""

    def __call__(self) -> Distribution: ...


@runtime_checkable
class Posterior(Protocol):
    """``posterior(h)`` is :math:`q(z \\mid x)` for encoder features ``h`` ``(..., features)``."""

    def __call__(self, h: torch.Tensor) -> Distribution: ...


@runtime_checkable
class Likelihood(Protocol):
    """``likelihood(params, event_dim)`` is :math:`p(x \\mid z)` for decoder output ``params``,
    with the trailing ``event_dim`` dims as the event; ``mean(params)`` its mean."""

    support: constraints.Constraint

    def __call__(self, params: torch.Tensor, event_dim: int) -> Distribution: ...

    def mean(self, params: torch.Tensor) -> torch.Tensor: ...


@runtime_checkable
class Objective(Protocol):
    """A Pyro ELBO: the negative bound of a batch, summed over its datapoints."""

    def loss(
        self, model: Callable[..., Any], guide: Callable[..., Any], *args: Any, **kwargs: Any
    ) -> float: ...

    def loss_and_grads(
        self, model: Callable[..., Any], guide: Callable[..., Any], *args: Any, **kwargs: Any
    ) -> float: ...


@runtime_checkable
class Differentiable(Protocol):
    """An objective whose negative bound of a batch is a differentiable tensor (the fast path of
    :func:`pyro_vaes.fit`: no host synchronisation, one ``backward``)."""

    def differentiable_loss(
        self, model: Callable[..., Any], guide: Callable[..., Any], *args: Any, **kwargs: Any
    ) -> torch.Tensor: ...


class Adversarial(ABC):
    """Capability: a second network, :attr:`adversary`, trained on :meth:`adversary_loss` by an
    optimizer of its own, :attr:`adversary_steps` steps after every model step."""

    adversary: nn.Module
    adversary_steps: int = 1

    @abstractmethod
    def adversary_loss(
        self, model: Callable[..., Any], guide: Callable[..., Any], *args: Any, **kwargs: Any
    ) -> torch.Tensor:
        """The adversary's loss on a batch, summed over its datapoints."""


class NeedsDatasetSize(ABC):
    """Capability: estimators that need the number of training datapoints ``N``."""

    @abstractmethod
    def bind_dataset_size(self, n: int) -> None:
        """Set ``N`` (called by :func:`pyro_vaes.fit` before training)."""


@runtime_checkable
class GenerativeModel(Protocol):
    """A model the CLI, the report and the benchmarks can use."""

    latent_sites: tuple[str, ...]
    observed_site: str

    @property
    def geometry(self) -> Any:
        """The geometry of the codes (:mod:`pyro_vaes.distributions.geometry`)."""
        ...

    def model(self, x: torch.Tensor | None = None, y: torch.Tensor | None = None) -> None: ...

    def guide(self, x: torch.Tensor | None = None, y: torch.Tensor | None = None) -> None: ...

    def encode(self, x: torch.Tensor) -> torch.Tensor: ...

    def decode(self, code: torch.Tensor) -> torch.Tensor: ...

    def sample(self, n: int) -> torch.Tensor: ...

    def reconstruct(self, x: torch.Tensor) -> torch.Tensor: ...


@runtime_checkable
class Labelled(Protocol):
    """A model that takes labels ``y``: integer classes ``0 .. num_classes - 1`` per datapoint,
    ``-1`` for a missing one (where ``missing_labels`` allows it). It generates, decodes and
    reconstructs given labels, and checks a dataset's labels before training
    (:func:`pyro_vaes.fit` calls :meth:`check_labels` on every batch of the data first)."""

    num_classes: int
    missing_labels: bool

    def check_labels(self, y: torch.Tensor | None, rows: int, offset: int = 0) -> None:
        """Check labels ``y`` for ``rows`` datapoints.

        :raises pyro_vaes.errors.DataError: naming the first bad label (its index plus
            ``offset``), labels that are missing where the model needs them, or a ``y`` with
            another number of rows than ``rows``.
        """
        ...

    def sample(self, n: int, y: torch.Tensor | int | None = None) -> torch.Tensor: ...

    def encode(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor: ...

    def decode(self, code: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor: ...

    def reconstruct(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor: ...


@runtime_checkable
class Predicts(Protocol):
    """A model that is also a classifier (M2): ``predict(x)`` is the most probable label of each
    datapoint; ``evaluate`` and ``train`` report its test accuracy."""

    def predict(self, x: torch.Tensor) -> torch.Tensor: ...


@runtime_checkable
class PostTraining(Protocol):
    """A model with a stage fitted after training, on the training images: the RAE's ex-post
    mixture, the two-stage VAE's second VAE. :meth:`pyro_vaes.variants.Variant.fit` (and so the
    CLI) runs it when the fit ends."""

    def after_fit(self, x: torch.Tensor) -> None:
        """Fit the post-training stage on the training images ``x``."""
        ...


@runtime_checkable
class Sequential(Protocol):
    """A model of sequences ``x`` ``(N, T, *frame_shape)`` that imagines their future:
    ``rollout(prefix, steps)`` continues each sequence of ``prefix`` ``(N, t, *frame_shape)``
    by ``steps`` frames (likelihood means), ``(N, steps, *frame_shape)``. The CLI's ``sample``
    draws test sequences continued from their first half."""

    def rollout(self, prefix: torch.Tensor, steps: int) -> torch.Tensor: ...


@runtime_checkable
class PreTraining(Protocol):
    """A model with a stage fitted before training, on the training data: the DFC-VAE's feature
    network. :meth:`pyro_vaes.variants.Variant.fit` (and so the CLI) runs it before the fit."""

    def before_fit(self, x: torch.Tensor, y: torch.Tensor | None) -> None:
        """Fit the pre-training stage on the training images ``x`` and their labels ``y``
        (``None`` where the data has none)."""
        ...
