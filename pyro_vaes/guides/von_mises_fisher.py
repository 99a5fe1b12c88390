"""The von Mises-Fisher posterior on the unit sphere (the hyperspherical VAE)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from pyro_vaes.distributions import VonMisesFisher as VonMisesFisherDistribution
from pyro_vaes.parts import PartContext, posteriors


class VonMisesFisher(nn.Module):
    r"""The amortised posterior :math:`q(z \mid x) = \mathrm{vMF}(z; \mu(h), \kappa(h))` on
    :math:`S^{m-1}`, with :math:`\mu = W_\mu h / \|W_\mu h\|` and
    :math:`\kappa = \operatorname{softplus}(w_\kappa^\top h) + 1`.

    :param in_features: size of the encoder's features :math:`h`.
    :param latent_dim: :math:`m`, the ambient dimension (the code lies on :math:`S^{m-1}`).

    References:
        [1] Davidson, Falorsi, De Cao, Kipf, Tomczak. Hyperspherical Variational Auto-Encoders.
        UAI 2018.
    """

    def __init__(self, in_features: int, latent_dim: int) -> None:
        super().__init__()
        if latent_dim < 2:
            raise ValueError(f"a spherical code needs latent_dim >= 2, got {latent_dim}")
        self.latent_dim = latent_dim
        self.head = nn.Linear(in_features, latent_dim + 1)

    def forward(self, h: torch.Tensor) -> VonMisesFisherDistribution:
        out = self.head(h)
        loc = out[..., :-1]
        loc = loc / loc.norm(dim=-1, keepdim=True).clamp_min(1e-12)
        return VonMisesFisherDistribution(loc, F.softplus(out[..., -1]) + 1.0)


@posteriors.register("vmf")
def _build(ctx: PartContext) -> VonMisesFisher:
    return VonMisesFisher(ctx.features, ctx.latent_dim)
