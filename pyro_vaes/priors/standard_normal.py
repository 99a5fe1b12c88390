"""The standard normal prior."""

from __future__ import annotations

import pyro.distributions as dist
import torch
from torch import nn

from pyro_vaes.parts import PartContext, priors


class StandardNormal(nn.Module):
    r"""The isotropic prior :math:`p(z) = \mathcal N(z; 0, I_d)`.

    ``prior()`` returns a distribution with event shape ``(latent_dim,)``; Pyro's plates broadcast
    it over datapoints and particles. Paired with a diagonal normal posterior the KL term is
    analytic (``kl_divergence`` is registered for the pair).

    :param latent_dim: the dimension :math:`d` of :math:`z`.

    References:
        [1] Kingma, Welling. Auto-Encoding Variational Bayes. ICLR 2014.
    """

    loc: torch.Tensor
    scale: torch.Tensor

    def __init__(self, latent_dim: int) -> None:
        super().__init__()
        if latent_dim < 1:
            raise ValueError(f"latent_dim must be >= 1, got {latent_dim}")
        self.latent_dim = latent_dim
        self.register_buffer("loc", torch.zeros(latent_dim))
        self.register_buffer("scale", torch.ones(latent_dim))

    def forward(self) -> dist.TorchDistribution:
        return dist.Normal(self.loc, self.scale).to_event(1)


@priors.register("standard_normal")
def _build(ctx: PartContext) -> StandardNormal:
    return StandardNormal(ctx.latent_dim)
