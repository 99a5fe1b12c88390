"""ELBOs with a regulariser on the KL term or the aggregate posterior: the capacity-controlled
beta-VAE, JointVAE's two capacities, and DIP-VAE I and II."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pyro.infer
import torch
from pyro.poutine.trace_struct import Trace

from pyro_vaes.objectives.elbo import DifferentiableObjective, traces
from pyro_vaes.objectives.terms import (
    batch_statistic_site,
    kl,
    latent_site,
    negative_elbo,
    weigh,
)

__all__ = ["DIPELBO", "CapacityELBO", "JointCapacityELBO", "capacity_term", "dip_penalty"]


def capacity_term(model_tr: Trace, guide_tr: Trace, latent: str, capacity: float) -> torch.Tensor:
    r""":math:`\big|\sum_i w_i\,(\mathrm{KL}_i - C)\big|` over the datapoints of the batch, with
    :math:`w_i` the latent site's scale and mask (:func:`~pyro_vaes.objectives.terms.weigh`):
    :math:`B\,|\overline{\mathrm{KL}} - C|` when nothing is scaled or masked. A masked datapoint
    drops out with its share of the capacity; a scale ``b`` makes it
    :math:`b\,|\sum_i (\mathrm{KL}_i - C)|`."""
    site = latent_site(model_tr, guide_tr, latent)
    return weigh(site, kl(model_tr, guide_tr, latent) - capacity).sum().abs()


class CapacityELBO(DifferentiableObjective, pyro.infer.ELBO):
    r"""The disentangled beta-VAE of Burgess et al.: the KL term is held near a capacity
    :math:`C` that grows during training,

    .. math::
        \mathcal L = \mathbb E_q[\log p(x\mid z)] - \gamma\,\big|\mathrm{KL}(q(z\mid x)\,\|\,p(z)) - C\big|,

    with the KL averaged over the batch inside the absolute value (summed over the batch, the
    term is :math:`\gamma\,|\sum_i (\mathrm{KL}_i - C)|`, :func:`capacity_term`). Other sites
    contribute their ELBO terms. ``capacity`` is a plain attribute: grow it with
    ``pyro_vaes.KLAnnealing(objective, attr="capacity", start=0, end=25, warmup_steps=...)``.

    Scales and masks: the latent site's scale and mask weigh each datapoint's
    :math:`\mathrm{KL}_i - C` inside the absolute value. With ``beta = b`` the term is
    :math:`\gamma b\,|\sum_i (\mathrm{KL}_i - C)|` (so ``CapacityELBO(gamma=1, capacity=0)`` is the
    beta-ELBO) and ``beta = 0`` removes it; a per-datapoint mask removes those datapoints, with
    their share of :math:`C`. Observed sites are weighed as in the ELBO.

    References:
        [1] Burgess et al. Understanding disentangling in beta-VAE. 2018.
    """

    def __init__(self, gamma: float = 1000.0, capacity: float = 0.0, latent: str = "z") -> None:
        if gamma <= 0 or capacity < 0:
            raise ValueError(f"need gamma > 0 and capacity >= 0, got {gamma}, {capacity}")
        super().__init__(num_particles=1)
        self.gamma, self.capacity, self.latent = float(gamma), float(capacity), latent

    def differentiable_loss(
        self, model: Callable[..., Any], guide: Callable[..., Any], *args: Any, **kwargs: Any
    ) -> torch.Tensor:
        model_tr, guide_tr = traces(model, guide, args, kwargs)
        rest = negative_elbo(model_tr, guide_tr, without=(self.latent,))
        return rest + self.gamma * capacity_term(model_tr, guide_tr, self.latent, self.capacity)


class JointCapacityELBO(DifferentiableObjective, pyro.infer.ELBO):
    r"""JointVAE's objective: a capacity for the continuous and one for the discrete code,

    .. math::
        \mathcal L = \mathbb E_q[\log p(x \mid z, c)]
        - \gamma\,\big|\mathrm{KL}(q(z \mid x)\,\|\,p(z)) - C_z\big|
        - \gamma\,\big|\mathrm{KL}(q(c \mid x)\,\|\,p(c)) - C_c\big|,

    each KL averaged over the batch inside its absolute value (the discrete one in closed form,
    :class:`pyro_vaes.distributions.Concrete`). ``continuous_capacity`` and
    ``discrete_capacity`` are plain attributes, grown by ``KLAnnealing`` schedules; the discrete
    capacity should stay below :math:`n \log K`, the largest KL a categorical code can have.
    Scales and masks act on each capacity term as in :class:`CapacityELBO`; other sites
    contribute their ELBO terms.

    References:
        [1] Dupont. Learning Disentangled Joint Continuous and Discrete Representations.
        NeurIPS 2018.
    """

    def __init__(self, gamma: float = 30.0, continuous: str = "z", discrete: str = "c") -> None:
        if not gamma > 0:
            raise ValueError(f"need gamma > 0, got {gamma}")
        super().__init__(num_particles=1)
        self.gamma, self.continuous, self.discrete = float(gamma), continuous, discrete
        self.continuous_capacity = 0.0
        self.discrete_capacity = 0.0

    def differentiable_loss(
        self, model: Callable[..., Any], guide: Callable[..., Any], *args: Any, **kwargs: Any
    ) -> torch.Tensor:
        model_tr, guide_tr = traces(model, guide, args, kwargs)
        capacities = {self.discrete: self.discrete_capacity}
        if self.continuous in guide_tr.nodes:
            capacities[self.continuous] = self.continuous_capacity
        loss = negative_elbo(model_tr, guide_tr, without=tuple(capacities))
        for name, capacity in capacities.items():
            loss = loss + self.gamma * capacity_term(model_tr, guide_tr, name, capacity)
        return loss


def dip_penalty(cov: torch.Tensor, lambda_od: float, lambda_d: float) -> torch.Tensor:
    r""":math:`\lambda_{od}\sum_{i\ne j} C_{ij}^2 + \lambda_d \sum_i (C_{ii} - 1)^2`."""
    diag = cov.diagonal()
    off = cov - torch.diag_embed(diag)
    return lambda_od * off.pow(2).sum() + lambda_d * (diag - 1).pow(2).sum()


class DIPELBO(DifferentiableObjective, pyro.infer.ELBO):
    r"""DIP-VAE: the ELBO plus a penalty that pushes a covariance of the aggregate posterior
    towards the identity, :func:`dip_penalty`, on

    * DIP-VAE-I: :math:`\mathrm{Cov}_{p(x)}[\mu_\phi(x)]`, the covariance of the posterior means;
    * DIP-VAE-II: :math:`\mathrm{Cov}_{q(z)}[z] = \mathbb E_{p(x)}[\Sigma_\phi(x)] +
      \mathrm{Cov}_{p(x)}[\mu_\phi(x)]`,

    both estimated on the batch; the latent's posterior must be a diagonal normal.

    Scales and masks: the ELBO is weighed as :class:`~pyro_vaes.objectives.ELBO` weighs it; the
    penalty is a statistic of the whole batch's codes, weighed by the latent site's scale (with
    ``beta = b`` it is :math:`b` times the penalty; ``beta = 0``, a mask of the whole site,
    removes it). A mask or scale that varies across datapoints of the latent site is refused
    (ValueError).

    :param kind: ``"i"`` or ``"ii"``.

    References:
        [1] Kumar, Sattigeri, Balakrishnan. Variational Inference of Disentangled Latent
        Concepts from Unlabeled Observations. ICLR 2018.
    """

    def __init__(
        self,
        kind: str = "ii",
        lambda_od: float = 10.0,
        lambda_d: float | None = None,
        latent: str = "z",
    ) -> None:
        if kind not in ("i", "ii"):
            raise ValueError(f"kind must be 'i' or 'ii', got {kind!r}")
        super().__init__(num_particles=1)
        self.kind, self.latent = kind, latent
        self.lambda_od = float(lambda_od)
        # the paper's defaults: lambda_d = 10 lambda_od for DIP-VAE-I, lambda_od for DIP-VAE-II
        self.lambda_d = float(
            lambda_d if lambda_d is not None else (10 if kind == "i" else 1) * lambda_od
        )

    def covariance(self, guide_tr: Trace) -> torch.Tensor:
        """The batch estimate of the covariance this DIP-VAE regularises."""
        q: Any = guide_tr.nodes[self.latent]["fn"]
        base = getattr(q, "base_dist", q)
        if not isinstance(base, torch.distributions.Normal):
            raise ValueError("DIP-VAE needs a diagonal normal posterior")
        loc = base.loc.reshape(-1, base.loc.shape[-1])
        cov = torch.cov(loc.T).reshape(loc.shape[-1], loc.shape[-1])
        if self.kind == "ii":
            cov = cov + torch.diag_embed(base.scale.reshape(loc.shape).pow(2).mean(0))
        return cov

    def differentiable_loss(
        self, model: Callable[..., Any], guide: Callable[..., Any], *args: Any, **kwargs: Any
    ) -> torch.Tensor:
        model_tr, guide_tr = traces(model, guide, args, kwargs)
        what = "the DIP-VAE covariance"
        site, codes = batch_statistic_site(model_tr, guide_tr, self.latent, what)
        penalty = dip_penalty(self.covariance(guide_tr), self.lambda_od, self.lambda_d)
        return negative_elbo(model_tr, guide_tr) + codes.shape[0] * weigh(site, penalty)
