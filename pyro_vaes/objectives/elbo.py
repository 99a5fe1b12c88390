"""The evidence lower bound with closed-form KL terms where they are registered."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pyro.infer
import torch
from pyro import poutine
from pyro.distributions.util import scale_and_mask
from pyro.poutine.trace_struct import Trace
from pyro.poutine.util import prune_subsample_sites
from torch.distributions import kl_divergence

__all__ = ["ELBO", "DifferentiableObjective", "negative_elbo", "reconstruction_and_kl", "traces"]


def traces(
    model: Callable[..., Any], guide: Callable[..., Any], args: tuple, kwargs: dict
) -> tuple[Trace, Trace]:
    """One draw of the guide and the model replayed against it (plate sites pruned)."""
    guide_tr = prune_subsample_sites(poutine.trace(guide).get_trace(*args, **kwargs))
    model_tr = prune_subsample_sites(
        poutine.trace(poutine.replay(model, trace=guide_tr)).get_trace(*args, **kwargs)
    )
    return model_tr, guide_tr


def _scaled_sum(site: Any, value: torch.Tensor) -> torch.Tensor:
    return scale_and_mask(value, site["scale"], site["mask"]).sum()


def negative_elbo(model_tr: Trace, guide_tr: Trace) -> torch.Tensor:
    r""":math:`-\mathrm{ELBO}` of one draw: minus the observed log densities, plus for each latent
    site :math:`\mathrm{KL}(q\,\|\,p)` in closed form where registered, else
    :math:`\log q(z) - \log p(z)` at the drawn :math:`z`. Scales and masks (``poutine.scale``,
    ``poutine.mask``) apply to each term."""
    model_sites: dict[str, Any] = model_tr.nodes
    guide_sites: dict[str, Any] = guide_tr.nodes
    loss = torch.zeros(())
    for name, site in model_sites.items():
        if site["type"] != "sample":
            continue
        fn, value = site["fn"], site["value"]
        if site["is_observed"]:
            loss = loss - _scaled_sum(site, fn.log_prob(value))
            continue
        q = guide_sites[name]
        if not q["fn"].has_rsample:
            raise ValueError(
                f"latent site {name!r} is not reparameterisable ({type(q['fn']).__name__}); "
                "use pyro.infer.Trace_ELBO or TraceGraph_ELBO, which add score-function terms"
            )
        try:
            loss = loss + _scaled_sum(q, kl_divergence(q["fn"], fn))
        except NotImplementedError:
            loss = (
                loss
                + _scaled_sum(q, q["fn"].log_prob(value))
                - _scaled_sum(site, fn.log_prob(value))
            )
    for name, q in guide_sites.items():  # auxiliary guide sites: their entropy term
        if q["type"] == "sample" and name not in model_sites:
            loss = loss + _scaled_sum(q, q["fn"].log_prob(q["value"]))
    return loss


def reconstruction_and_kl(
    model_tr: Trace, guide_tr: Trace, latent: str = "z"
) -> tuple[torch.Tensor, torch.Tensor]:
    r"""The observed log densities summed over the batch, and the per-datapoint KL of ``latent``
    (closed form where registered, else the one-draw estimate :math:`\log q(z) - \log p(z)`)."""
    sites: dict[str, Any] = model_tr.nodes
    q: Any = guide_tr.nodes[latent]
    recon = torch.zeros(())
    for s in sites.values():
        if s["type"] == "sample" and s["is_observed"]:
            recon = recon + s["fn"].log_prob(s["value"]).sum()
    try:
        kl = kl_divergence(q["fn"], sites[latent]["fn"])
    except NotImplementedError:
        kl = q["fn"].log_prob(q["value"]) - sites[latent]["fn"].log_prob(q["value"])
    return recon, kl


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
    ``TraceMeanField_ELBO``) and estimated from the draw otherwise (as ``Trace_ELBO``). It gives
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
        total = sum(
            negative_elbo(*traces(model, guide, args, kwargs)) for _ in range(self.num_particles)
        )
        return total / self.num_particles  # type: ignore[operator]
