"""The diagonal normal posterior."""

from __future__ import annotations

import pyro.distributions as dist
import torch
import torch.nn.functional as F
from torch import nn

from pyro_vaes.parts import PartContext, posteriors


class DiagonalNormal(nn.Module):
    r"""The amortised mean-field posterior
    :math:`q(z \mid x) = \mathcal N(z; \mu(h), \operatorname{diag}\sigma(h)^2)`,

    where :math:`h` are the encoder's features, :math:`\mu` a linear map and
    :math:`\sigma = \operatorname{softplus}(\cdot) + \epsilon` keeps the scale positive without the
    overflow of :math:`\exp`.

    :param in_features: size of the encoder's feature vector :math:`h`.
    :param latent_dim: dimension of :math:`z`.
    :param min_scale: the floor :math:`\epsilon` on :math:`\sigma`.

    References:
        [1] Kingma, Welling. Auto-Encoding Variational Bayes. ICLR 2014.
    """

    def __init__(self, in_features: int, latent_dim: int, min_scale: float = 1e-5) -> None:
        super().__init__()
        if in_features < 1 or latent_dim < 1:
            raise ValueError(
                f"in_features and latent_dim must be >= 1, got {in_features}, {latent_dim}"
            )
        self.latent_dim = latent_dim
        self.min_scale = min_scale
        self.head = nn.Linear(in_features, 2 * latent_dim)

    def forward(self, h: torch.Tensor) -> dist.TorchDistribution:
        loc, raw_scale = self.head(h).chunk(2, dim=-1)
        return dist.Normal(loc, F.softplus(raw_scale) + self.min_scale).to_event(1)


@posteriors.register("diagonal_normal")
def _build(ctx: PartContext) -> DiagonalNormal:
    return DiagonalNormal(ctx.features, ctx.latent_dim)
