"""The catalogue's registry of named variants: name -> builder, summary, paper, defaults,
objective and schedule.

A builder takes the shape of one datapoint and keyword options and returns a model object with
``.model`` and ``.guide``. The CLI, the docs and the benchmarks read this registry; nothing else
dispatches on a variant's name. The variants themselves are registered by the family modules of
:mod:`pyro_vaes.catalogue` (importing the package registers them all).

    >>> vae = build("beta_vae", (1, 8, 8), latent_dim=4, beta=4.0)
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader

from pyro_vaes import guides as _guides  # noqa: F401  (the posteriors register themselves)
from pyro_vaes import priors as _priors  # noqa: F401  (the priors register themselves)
from pyro_vaes.catalogue.assembly import networks
from pyro_vaes.data.batch import Batch, as_batch, iterate
from pyro_vaes.parts import posteriors, priors
from pyro_vaes.protocols import PostTraining, PreTraining
from pyro_vaes.registry import Registry
from pyro_vaes.train.callbacks import Callback, History
from pyro_vaes.train.fit import fit

__all__ = ["Variant", "build", "networks", "posteriors", "priors", "register", "registry"]


@dataclass(frozen=True)
class Variant:
    """A named variant: its builder, a one-line summary, the paper, its default options, the
    objective it trains with (``None``: :func:`pyro_vaes.fit`'s default ELBO), the schedule
    it trains under: ``(model, objective) -> callbacks``, e.g. a growing capacity, and what its
    datapoints are: ``"images"`` ``(C, H, W)`` or ``"sequences"`` ``(T, *frame_shape)``."""

    name: str
    builder: Callable[..., nn.Module]
    summary: str
    reference: str
    defaults: dict[str, Any] = field(default_factory=dict)
    objective: Callable[[], Any] | None = None
    schedule: Callable[[nn.Module, Any], list[Callback]] | None = None
    datapoints: str = "images"

    def loss(self) -> Any:
        """A fresh instance of the variant's objective, or ``None`` for the default."""
        return self.objective() if self.objective is not None else None

    def callbacks(self, model: nn.Module, loss: Any) -> list[Callback]:
        """The callbacks of the variant's schedule, bound to ``model`` and its objective ``loss``
        (from :meth:`loss`); pass them to :func:`pyro_vaes.fit`."""
        return self.schedule(model, loss) if self.schedule is not None else []

    def fit(self, model: Any, data: Any, **kwargs: Any) -> History:
        """:func:`pyro_vaes.fit` of ``model`` (built by this variant) with the variant's
        objective and schedule; ``kwargs`` go to ``fit`` (extra ``callbacks`` run after the
        schedule's). A model with a pre-training stage
        (:class:`~pyro_vaes.protocols.PreTraining`) first fits it on the training images and
        labels; one with a post-training stage (:class:`~pyro_vaes.protocols.PostTraining`)
        then fits it on the training images."""
        loss = self.loss()
        callbacks = [*self.callbacks(model, loss), *kwargs.pop("callbacks", ())]
        if isinstance(model, PreTraining):
            batch = _training_batch(data, kwargs.get("transform"))
            model.before_fit(batch["x"], batch.get("y"))
        history = fit(model.model, model.guide, data, loss=loss, callbacks=callbacks, **kwargs)
        if isinstance(model, PostTraining):
            model.after_fit(_training_batch(data, kwargs.get("transform"))["x"])
        return history


def _training_batch(data: Any, transform: Callable[[torch.Tensor], torch.Tensor] | None) -> Batch:
    """The whole of ``data`` (any form :func:`pyro_vaes.fit` takes) as one batch, its images as
    the fit saw them (``transform`` applied once: the codes of binarised images for a Bernoulli
    model)."""
    if isinstance(data, DataLoader):
        parts = list(iterate(data, "data"))
        batch = {k: torch.cat([p[k] for p in parts]) for k in parts[0]}
    else:
        batch = dict(as_batch(data))
    if transform is not None:
        batch["x"] = transform(batch["x"])
    return batch


#: variant name -> :class:`Variant`
registry: Registry[Variant] = Registry("variant")


def register(
    name: str,
    summary: str,
    reference: str,
    objective: Callable[[], Any] | None = None,
    schedule: Callable[[nn.Module, Any], list[Callback]] | None = None,
    datapoints: str = "images",
    **defaults: Any,
) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Decorator: add a builder to the catalogue under ``name``."""
    if datapoints not in ("images", "sequences"):
        raise ValueError(f"datapoints must be 'images' or 'sequences', got {datapoints!r}")

    def add(builder: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        registry.register(
            name,
            Variant(name, builder, summary, reference, defaults, objective, schedule, datapoints),
        )
        return builder

    return add


def build(name: str, data_shape: Sequence[int], **options: Any) -> nn.Module:
    """Build the variant registered as ``name`` for datapoints of shape ``data_shape``; options
    override the variant's defaults."""
    variant = registry[name]
    return variant.builder(tuple(data_shape), **{**variant.defaults, **options})
