"""The wrapped normal posterior on the Poincare ball (the Poincare VAE)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from pyro_vaes.distributions import WrappedNormal as WrappedNormalDistribution
from pyro_vaes.distributions.wrapped_normal import poincare_ball
from pyro_vaes.parts import PartContext, posteriors


class WrappedNormal(nn.Module):
    r"""The amortised posterior :math:`q(z \mid x) = \mathcal{WN}(z; \mu(h), \sigma(h))` on the
    Poincare ball of curvature :math:`-c`, whose mean comes out of the encoder through an
    exponential map at the origin, :math:`\mu = \exp_0^c(W_\mu h)`, and whose scale is
    :math:`\operatorname{softplus}(W_\sigma h) + 10^{-5}`.

    :param in_features: size of the encoder's features.
    :param latent_dim: :math:`d`.
    :param c: curvature magnitude.

    References:
        [1] Mathieu, Le Lan, Maddison, Tomioka, Teh. Continuous Hierarchical Representations with
        Poincare Variational Auto-Encoders. NeurIPS 2019.
    """

    def __init__(self, in_features: int, latent_dim: int, c: float = 1.0) -> None:
        super().__init__()
        self.latent_dim, self.c = latent_dim, float(c)
        self.ball = poincare_ball(self.c)
        self.head = nn.Linear(in_features, 2 * latent_dim)

    def forward(self, h: torch.Tensor) -> WrappedNormalDistribution:
        tangent, raw_scale = self.head(h).chunk(2, dim=-1)
        loc = self.ball.expmap0(tangent)
        return WrappedNormalDistribution(loc, F.softplus(raw_scale) + 1e-5, self.c)


@posteriors.register("wrapped_normal")
def _build(ctx: PartContext) -> WrappedNormal:
    return WrappedNormal(ctx.features, ctx.latent_dim, ctx.curvature)
