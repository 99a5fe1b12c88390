"""A learned mixture of diagonal Gaussians as the prior."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from pyro_vaes.distributions import DiagonalNormalMixture
from pyro_vaes.parts import PartContext, priors


class MixtureOfGaussians(nn.Module):
    r"""The learned prior :math:`p(z) = \sum_{k=1}^K \pi_k\, \mathcal N(z; \mu_k,
    \operatorname{diag}\sigma_k^2)` with softmax weights :math:`\pi`, means :math:`\mu_k`
    initialised apart (standard normal draws) and :math:`\sigma_k = \operatorname{softplus}(\cdot)`.
    The KL term against any posterior is estimated by Monte Carlo (no closed form exists).

    :param latent_dim: :math:`d`.
    :param components: :math:`K`.

    References:
        [1] Dilokthanakul et al. Deep Unsupervised Clustering with Gaussian Mixture Variational
        Autoencoders. 2016.
        [2] Tomczak, Welling. VAE with a VampPrior. AISTATS 2018 (the mixture-of-Gaussians
        baseline).
    """

    def __init__(self, latent_dim: int, components: int = 10) -> None:
        super().__init__()
        if latent_dim < 1 or components < 1:
            raise ValueError(
                f"latent_dim and components must be >= 1, got {latent_dim}, {components}"
            )
        self.logits = nn.Parameter(torch.zeros(components))
        self.locs = nn.Parameter(torch.randn(components, latent_dim))
        self.raw_scales = nn.Parameter(
            torch.full((components, latent_dim), 0.5413)
        )  # softplus -> 1

    def forward(self) -> DiagonalNormalMixture:
        return DiagonalNormalMixture(self.logits, self.locs, F.softplus(self.raw_scales) + 1e-5)


@priors.register("mog")
def _build(ctx: PartContext) -> MixtureOfGaussians:
    return MixtureOfGaussians(ctx.latent_dim, ctx.components)
