"""The wrapped normal prior at the origin of the Poincare ball."""

from __future__ import annotations

import torch
from torch import nn

from pyro_vaes.distributions import WrappedNormal as WrappedNormalDistribution
from pyro_vaes.distributions.geometry import Ball
from pyro_vaes.parts import PartContext, priors


class WrappedNormal(nn.Module):
    r"""The prior :math:`p(z) = \mathcal{WN}(z; 0, \sigma_0^2 I)` on the Poincare ball of
    curvature :math:`-c` (the KL term against a wrapped normal posterior is estimated by Monte
    Carlo).

    :param latent_dim: :math:`d`.
    :param c: curvature magnitude.
    :param scale: :math:`\sigma_0`.

    References:
        [1] Mathieu et al. Continuous Hierarchical Representations with Poincare Variational
        Auto-Encoders. NeurIPS 2019.
    """

    loc: torch.Tensor
    scale: torch.Tensor

    def __init__(self, latent_dim: int, c: float = 1.0, scale: float = 1.0) -> None:
        super().__init__()
        if latent_dim < 1 or not scale > 0:
            raise ValueError(f"need latent_dim >= 1 and scale > 0, got {latent_dim}, {scale}")
        self.c = float(c)
        self.geometry = Ball(self.c)  # geodesic interpolations on the ball
        self.register_buffer("loc", torch.zeros(latent_dim))
        self.register_buffer("scale", torch.full((latent_dim,), float(scale)))

    def forward(self) -> WrappedNormalDistribution:
        return WrappedNormalDistribution(self.loc, self.scale, self.c)


@priors.register("wrapped_normal")
def _build(ctx: PartContext) -> WrappedNormal:
    return WrappedNormal(ctx.latent_dim, ctx.curvature)
