"""The evidence lower bound with closed-form KL terms where they are registered, and the traces
and mixin the other objectives share. The terms and their scale/mask rule are in
:mod:`pyro_vaes.objectives.terms`, the traces in :mod:`pyro_vaes.objectives.traces`."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pyro.infer
import torch
from pyro.poutine.trace_struct import Trace

from pyro_vaes.objectives.terms import kl, latent_site, log_likelihood, negative_elbo, weigh
from pyro_vaes.objectives.traces import traces

__all__ = ["ELBO", "DifferentiableObjective", "negative_elbo", "reconstruction_and_kl", "traces"]


def reconstruction_and_kl(
    model_tr: Trace, guide_tr: Trace, latent: str = "z"
) -> tuple[torch.Tensor, torch.Tensor]:
    r"""The observed log densities summed over the batch, and the KL of ``latent`` per datapoint
    (closed form where registered, else the one-draw estimate :math:`\log q(z) - \log p(z)`),
    each weighed by its site's scale and mask (:mod:`pyro_vaes.objectives.terms`)."""
    site = latent_site(model_tr, guide_tr, latent)
    return log_likelihood(model_tr), weigh(site, kl(model_tr, guide_tr, latent))


class DifferentiableObjective:
    """Mixin for objectives defined by ``differentiable_loss`` (the summed negative bound of a
    batch): ``loss`` and ``loss_and_grads`` follow from it, as Pyro's ``SVI`` expects, and
    traces are taken by :func:`traces`."""

    def differentiable_loss(
        self, model: Callable[..., Any], guide: Callable[..., Any], *args: Any, **kwargs: Any
    ) -> torch.Tensor:
        raise NotImplementedError

    def _get_trace(
        self, model: Callable[..., Any], guide: Callable[..., Any], args: tuple, kwargs: dict
    ) -> tuple[Trace, Trace]:
        return traces(model, guide, args, kwargs)

    def loss(
        self, model: Callable[..., Any], guide: Callable[..., Any], *args: Any, **kwargs: Any
    ) -> float:
        with torch.no_grad():
            return float(self.differentiable_loss(model, guide, *args, **kwargs))

    def loss_and_grads(
        self, model: Callable[..., Any], guide: Callable[..., Any], *args: Any, **kwargs: Any
    ) -> float:
        value = self.differentiable_loss(model, guide, *args, **kwargs)
        value.backward()
        return float(value.detach())


class ELBO(DifferentiableObjective, pyro.infer.ELBO):
    r"""The evidence lower bound for reparameterised guides,

    .. math::
        \mathrm{ELBO}(x) = \mathbb E_{q(z\mid x)}[\log p(x \mid z)] - \mathrm{KL}(q(z \mid x)\,\|\,p(z)),

    with the KL in closed form wherever ``kl_divergence`` is registered for the pair (as
    ``TraceMeanField_ELBO``) and estimated from the draw otherwise (as ``Trace_ELBO``). Every
    term is weighed by its site's scale and mask, as in ``Trace_ELBO``: ``poutine.scale`` on a
    latent site (``VAE``'s ``beta``) multiplies its KL, a subsampled plate's :math:`N/B` its
    sites' terms, and a mask removes the terms where it is false. It gives
    the same values and gradients as those two, but computes only the terms it needs and never
    reads the loss back to the host, so a CUDA step needs no synchronisation. It is the default
    objective of :func:`pyro_vaes.fit` for reparameterised guides.

    :param num_particles: draws averaged per evaluation.

    References:
        [1] Kingma, Welling. Auto-Encoding Variational Bayes. ICLR 2014.
    """

    def __init__(self, num_particles: int = 1) -> None:
        if num_particles < 1:
            raise ValueError(f"num_particles must be >= 1, got {num_particles}")
        super().__init__(num_particles=num_particles)

    def differentiable_loss(
        self, model: Callable[..., Any], guide: Callable[..., Any], *args: Any, **kwargs: Any
    ) -> torch.Tensor:
        total = negative_elbo(*traces(model, guide, args, kwargs))
        if self.num_particles == 1:
            return total
        for _ in range(self.num_particles - 1):
            total = total + negative_elbo(*traces(model, guide, args, kwargs))
        return total / self.num_particles
