r"""The diagonal normal posterior with batch-normalised means (BN-VAE), against posterior
collapse."""

from __future__ import annotations

import pyro.distributions as dist
import torch
import torch.nn.functional as F
from torch import nn

from pyro_vaes.parts import PartContext, posteriors

__all__ = ["BatchNormNormal"]


class BatchNormNormal(nn.Module):
    r"""The BN-VAE posterior: a diagonal normal whose means go through batch normalisation with
    a *fixed* scale :math:`\gamma` and a learned shift :math:`\beta_j` [1],

    .. math::
        \hat\mu_{ij} = \gamma\,\frac{\mu_{ij} - \bar\mu_j}{\sqrt{s_j^2 + \epsilon}} + \beta_j,
        \qquad q(z \mid x_i) = \mathcal N(z; \hat\mu_i, \operatorname{diag}\sigma_i^2),

    with :math:`\bar\mu_j, s_j^2` the batch mean and (biased) variance of dimension :math:`j`
    while training and their running averages in ``eval()`` mode (a batch of one uses the
    running averages too). :math:`\sigma = \operatorname{softplus}(\cdot) + \epsilon'` as in
    :class:`~pyro_vaes.guides.DiagonalNormal`. Against the standard normal prior, the batch
    mean of the KL is then bounded below [1]: with
    :math:`\mathrm{KL}_i = \frac12\sum_j (\hat\mu_{ij}^2 + \sigma_{ij}^2 - \log\sigma_{ij}^2 - 1)`
    and :math:`\sigma^2 - \log\sigma^2 - 1 \ge 0`,

    .. math::
        \frac1B \sum_i \mathrm{KL}_i \;\ge\; \frac12 \sum_j \frac1B \sum_i \hat\mu_{ij}^2
        = \frac12 \sum_j \big(\gamma^2 \tfrac{s_j^2}{s_j^2 + \epsilon} + \beta_j^2\big)
        \;\approx\; \frac{d\,(\gamma^2 + \overline{\beta^2})}{2} \;\ge\; \frac{d\,\gamma^2}{2},

    so the KL cannot vanish: the code keeps at least :math:`\gamma^2/2` nats per dimension on a
    training batch. Leading dims of ``h`` (datapoints, particles) are normalised together.

    :param in_features: size of the encoder's feature vector :math:`h`.
    :param latent_dim: dimension of :math:`z`.
    :param gamma: the fixed scale :math:`\gamma` of the normalised means (a plain attribute).
    :param eps: the :math:`\epsilon` of the batch normalisation.
    :param momentum: the running averages' momentum (as ``nn.BatchNorm1d``).
    :param min_scale: the floor :math:`\epsilon'` on :math:`\sigma`.

    References:
        [1] Zhu, Bi, Liu, Ma, Li, Wu. A Batch Normalized Inference Network Keeps the KL
        Vanishing Away. ACL 2020.
    """

    running_mean: torch.Tensor
    running_var: torch.Tensor

    def __init__(
        self,
        in_features: int,
        latent_dim: int,
        gamma: float = 0.5,
        eps: float = 1e-5,
        momentum: float = 0.1,
        min_scale: float = 1e-5,
    ) -> None:
        super().__init__()
        if in_features < 1 or latent_dim < 1 or not gamma > 0:
            raise ValueError(
                f"need in_features, latent_dim >= 1 and gamma > 0, got {in_features}, "
                f"{latent_dim}, {gamma}"
            )
        self.latent_dim, self.gamma = latent_dim, float(gamma)
        self.eps, self.momentum, self.min_scale = float(eps), float(momentum), min_scale
        self.head = nn.Linear(in_features, 2 * latent_dim)
        self.beta = nn.Parameter(torch.zeros(latent_dim))  # the learned shift
        self.register_buffer("running_mean", torch.zeros(latent_dim))
        self.register_buffer("running_var", torch.ones(latent_dim))

    def normalise(self, loc: torch.Tensor) -> torch.Tensor:
        r""":math:`\hat\mu`: ``loc`` ``(..., d)`` batch-normalised over its leading dims, scaled
        by :math:`\gamma`, shifted by :math:`\beta`."""
        flat = loc.reshape(-1, self.latent_dim)
        batch_stats = self.training and flat.shape[0] > 1
        out = F.batch_norm(
            flat,
            self.running_mean,
            self.running_var,
            weight=torch.full_like(self.beta, self.gamma),
            bias=self.beta,
            training=batch_stats,
            momentum=self.momentum,
            eps=self.eps,
        )
        return out.reshape(loc.shape)

    def forward(self, h: torch.Tensor) -> dist.TorchDistribution:
        loc, raw_scale = self.head(h).chunk(2, dim=-1)
        scale = F.softplus(raw_scale) + self.min_scale
        return dist.Normal(self.normalise(loc), scale).to_event(1)


@posteriors.register("bn_normal")
def _build(ctx: PartContext) -> BatchNormNormal:
    return BatchNormNormal(ctx.features, ctx.latent_dim)
