"""The point-mass posterior of deterministic (regularised) autoencoders."""

from __future__ import annotations

import pyro.distributions as dist
import torch
from torch import nn

from pyro_vaes.parts import PartContext, posteriors


class Delta(nn.Module):
    r"""The amortised point mass :math:`q(z \mid x) = \delta(z - \mu(h))`, :math:`\mu` linear in
    the encoder's features. Its log-density at its own draw is 0, so under a standard normal
    prior the ELBO's latent term is :math:`\log p(\mu) = -\tfrac12\lVert\mu\rVert^2 + const`: the
    L2 penalty on the code of a regularised autoencoder.

    :param in_features: size of the encoder's feature vector :math:`h`.
    :param latent_dim: dimension of :math:`z`.

    References:
        [1] Ghosh, Sajjadi, Vergari, Black, Schoelkopf. From Variational to Deterministic
        Autoencoders. ICLR 2020.
    """

    def __init__(self, in_features: int, latent_dim: int) -> None:
        super().__init__()
        if in_features < 1 or latent_dim < 1:
            raise ValueError(
                f"in_features and latent_dim must be >= 1, got {in_features}, {latent_dim}"
            )
        self.latent_dim = latent_dim
        self.head = nn.Linear(in_features, latent_dim)

    def forward(self, h: torch.Tensor) -> dist.TorchDistribution:
        return dist.Delta(self.head(h), event_dim=1)


@posteriors.register("delta")
def _build(ctx: PartContext) -> Delta:
    return Delta(ctx.features, ctx.latent_dim)
