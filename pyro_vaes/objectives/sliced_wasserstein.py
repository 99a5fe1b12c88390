"""The sliced Wasserstein autoencoder objective."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pyro.infer
import torch

from pyro_vaes.objectives.elbo import DifferentiableObjective, traces
from pyro_vaes.objectives.terms import batch_statistic_site, negative_elbo, prior_of, weigh

__all__ = ["SlicedWassersteinELBO", "sliced_wasserstein"]


def sliced_wasserstein(x: torch.Tensor, y: torch.Tensor, projections: int = 50) -> torch.Tensor:
    r"""The sliced 2-Wasserstein distance squared between equal-sized samples ``x`` and ``y``
    ``(n, d)``: the mean over random unit directions :math:`\theta` of the 1-D
    :math:`W_2^2` between the projections, which for sorted projections is the mean squared
    difference,

    .. math::
        SW_2^2 \approx \frac1L \sum_{l=1}^L \frac1n \sum_i
        \big(\theta_l^\top x_{(i)} - \theta_l^\top y_{(i)}\big)^2.

    References:
        [1] Kolouri, Pope, Martin, Rohde. Sliced Wasserstein Auto-Encoders. ICLR 2019.
    """
    if x.shape != y.shape or x.dim() != 2:
        raise ValueError(
            f"need two samples of the same shape (n, d), got {tuple(x.shape)}, {tuple(y.shape)}"
        )
    theta = torch.randn(x.shape[1], projections, dtype=x.dtype, device=x.device)
    theta = theta / theta.norm(dim=0, keepdim=True)
    px, _ = (x @ theta).sort(dim=0)
    py, _ = (y @ theta).sort(dim=0)
    return (px - py).pow(2).mean()


class SlicedWassersteinELBO(DifferentiableObjective, pyro.infer.ELBO):
    r"""SWAE: reconstruction plus :math:`\lambda` times the sliced Wasserstein distance between
    the batch's codes and as many prior draws, per datapoint,
    :math:`\mathcal L = \mathbb E_q[\log p(x\mid z)] - \lambda\, SW_2^2(q(z), p(z))`. The
    distance takes the place of the latent site's KL; other sites contribute their ELBO terms
    (:mod:`pyro_vaes.objectives.terms`).

    Scales and masks: the latent site's scale multiplies the distance term (``beta = b`` makes
    the weight :math:`b\lambda`; ``beta = 0``, a mask of the whole site, removes it). The
    distance compares the whole batch of codes with the prior, so a mask or scale that varies
    across datapoints of the latent site is refused (ValueError); observed sites may be masked
    per datapoint.

    :param lam: :math:`\lambda > 0`.
    :param projections: random directions per step.
    :param latent: the latent site.

    References:
        [1] Kolouri, Pope, Martin, Rohde. Sliced Wasserstein Auto-Encoders. ICLR 2019.
    """

    def __init__(self, lam: float = 10.0, projections: int = 50, latent: str = "z") -> None:
        if lam <= 0 or projections < 1:
            raise ValueError(f"need lam > 0 and projections >= 1, got {lam}, {projections}")
        super().__init__(num_particles=1)
        self.lam, self.projections, self.latent = float(lam), projections, latent

    def differentiable_loss(
        self, model: Callable[..., Any], guide: Callable[..., Any], *args: Any, **kwargs: Any
    ) -> torch.Tensor:
        model_tr, guide_tr = traces(model, guide, args, kwargs)
        what = "the sliced Wasserstein distance"
        site, codes = batch_statistic_site(model_tr, guide_tr, self.latent, what)
        prior_draws = prior_of(model_tr, self.latent).sample().reshape(codes.shape)
        distance = sliced_wasserstein(codes, prior_draws, self.projections)
        rest = negative_elbo(model_tr, guide_tr, without=(self.latent,))
        return rest + self.lam * codes.shape[0] * weigh(site, distance)
