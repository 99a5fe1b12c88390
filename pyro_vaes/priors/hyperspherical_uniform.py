"""The uniform prior on the unit sphere."""

from __future__ import annotations

import torch
from torch import nn

from pyro_vaes.distributions import HypersphericalUniform as HypersphericalUniformDistribution
from pyro_vaes.distributions.geometry import Sphere
from pyro_vaes.parts import PartContext, priors


class HypersphericalUniform(nn.Module):
    r"""The prior :math:`p(z) = 1/|S^{m-1}|` on the unit sphere; against a von Mises-Fisher
    posterior the KL term is in closed form.

    :param latent_dim: :math:`m`, the ambient dimension.

    References:
        [1] Davidson et al. Hyperspherical Variational Auto-Encoders. UAI 2018.
    """

    _anchor: torch.Tensor

    def __init__(self, latent_dim: int) -> None:
        super().__init__()
        if latent_dim < 2:
            raise ValueError(f"a spherical code needs latent_dim >= 2, got {latent_dim}")
        self.latent_dim = latent_dim
        self.geometry = Sphere()  # slerp interpolations, traversals along great circles
        self.register_buffer("_anchor", torch.zeros(()))  # follows the module's device and dtype

    def forward(self) -> HypersphericalUniformDistribution:
        return HypersphericalUniformDistribution(
            self.latent_dim, device=self._anchor.device, dtype=self._anchor.dtype
        )


@priors.register("uniform_sphere")
def _build(ctx: PartContext) -> HypersphericalUniform:
    return HypersphericalUniform(ctx.latent_dim)
