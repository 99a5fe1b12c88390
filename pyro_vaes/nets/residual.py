r"""Building blocks of the deep hierarchical models (:mod:`pyro_vaes.models.hierarchical`) for
flat features: batch normalisation over any leading dims, the squeeze-and-excitation gate, the
NVAE residual cell, the LVAE dense block and a Gaussian head.

Every block maps ``(..., in_features) -> (..., out_features)``; the leading dims (vectorised
particles, datapoints) pass through, so the models run unchanged under the importance-sampled
evaluation's particle plate.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "BatchNorm",
    "DenseBlock",
    "GaussianHead",
    "ResidualCell",
    "ResidualStack",
    "SqueezeExcitation",
    "soft_clamp",
]


def _check_sizes(**sizes: int) -> None:
    for name, size in sizes.items():
        if not (isinstance(size, int) and size >= 1):
            raise ValueError(f"{name} must be a positive integer, got {size!r}")


def soft_clamp(x: torch.Tensor, bound: float = 5.0) -> torch.Tensor:
    r"""NVAE's smooth clamp :math:`b \tanh(x / b)`: the identity near zero, bounded by
    :math:`\pm b` (keeps :math:`\exp` of a log-scale finite)."""
    return bound * torch.tanh(x / bound)


class BatchNorm(nn.BatchNorm1d):
    """Batch normalisation of the last dim over every leading dim together (datapoints and
    vectorised particles alike); running statistics in ``eval()`` mode, and for a batch of a
    single row, which has no variance to normalise by."""

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        flat = h.reshape(-1, h.shape[-1])
        out = F.batch_norm(
            flat,
            self.running_mean,
            self.running_var,
            self.weight,
            self.bias,
            training=self.training and flat.shape[0] > 1,
            momentum=0.1 if self.momentum is None else self.momentum,
            eps=self.eps,
        )
        return out.reshape(h.shape)


class SqueezeExcitation(nn.Module):
    r"""The squeeze-and-excitation gate [1] of NVAE's cells: each feature is rescaled by a gate
    computed from all of them,

    .. math::
        \operatorname{SE}(h) = h \odot \sigma\big(W_2 \operatorname{ReLU}(W_1 h + b_1) + b_2\big),

    with a bottleneck of :math:`\max(F / 16, 4)` units (NVAE's). On images the input of the gate
    is each channel's spatial mean; on flat features it is the features themselves.

    References:
        [1] Hu, Shen, Sun. Squeeze-and-Excitation Networks. CVPR 2018.
    """

    def __init__(self, features: int, reduction: int = 16) -> None:
        super().__init__()
        _check_sizes(features=features, reduction=reduction)
        hidden = max(features // reduction, 4)
        self.gate = nn.Sequential(
            nn.Linear(features, hidden), nn.ReLU(), nn.Linear(hidden, features), nn.Sigmoid()
        )

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return h * self.gate(h)


class ResidualCell(nn.Module):
    r"""NVAE's residual cell [1] (its encoder cell, BN-Swish-Conv twice then SE) on flat
    features, with linear layers in place of the convolutions:

    .. math::
        \operatorname{cell}(h) = h + 0.1\,\operatorname{SE}\Big(W_2\,\operatorname{Swish}\big(
        \operatorname{BN}(W_1\,\operatorname{Swish}(\operatorname{BN}(h)))\big)\Big),

    :math:`\operatorname{Swish}(u) = u\,\sigma(u)`. The branch is scaled by 0.1, as in NVAE's
    code, so a deep stack starts close to the identity.

    :param features: the width :math:`F` (input and output).
    :param norm: batch normalisation before each activation (``False``: none).

    References:
        [1] Vahdat, Kautz. NVAE: A Deep Hierarchical Variational Autoencoder. NeurIPS 2020
        (section 3.1.1, figure 3).
    """

    def __init__(self, features: int, norm: bool = True) -> None:
        super().__init__()
        _check_sizes(features=features)
        layers: list[nn.Module] = []
        for _ in range(2):
            if norm:
                layers.append(BatchNorm(features))
            layers += [nn.SiLU(), nn.Linear(features, features)]
        layers.append(SqueezeExcitation(features))
        self.branch = nn.Sequential(*layers)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return h + 0.1 * self.branch(h)


class ResidualStack(nn.Sequential):
    """A linear map to ``features`` (left out where ``in_features == features``) followed by
    ``cells`` :class:`ResidualCell`\\ s."""

    def __init__(self, in_features: int, features: int, cells: int = 1, norm: bool = True) -> None:
        _check_sizes(in_features=in_features, features=features)
        if not (isinstance(cells, int) and cells >= 0):
            raise ValueError(f"cells must be an integer >= 0, got {cells!r}")
        first: list[nn.Module] = (
            [] if in_features == features else [nn.Linear(in_features, features)]
        )
        super().__init__(*first, *(ResidualCell(features, norm) for _ in range(cells)))


class DenseBlock(nn.Sequential):
    r"""The Ladder VAE's deterministic block [1]: ``layers`` times
    :math:`h \mapsto \operatorname{LeakyReLU}(\operatorname{BN}(W h + b))`.

    References:
        [1] Sønderby, Raiko, Maaløe, Sønderby, Winther. Ladder Variational Autoencoders.
        NeurIPS 2016 (section 2).
    """

    def __init__(self, in_features: int, features: int, layers: int = 2, norm: bool = True) -> None:
        _check_sizes(in_features=in_features, features=features, layers=layers)
        modules: list[nn.Module] = []
        for i in range(layers):
            modules.append(nn.Linear(in_features if i == 0 else features, features))
            if norm:
                modules.append(BatchNorm(features))
            modules.append(nn.LeakyReLU(0.1))
        super().__init__(*modules)


class GaussianHead(nn.Module):
    r"""The mean and standard deviation of a diagonal Gaussian from features:
    :math:`(\mu, \rho) = W h + b`, with :math:`\sigma = \operatorname{softplus}(\rho) +
    \epsilon` (``link="softplus"``, the Ladder VAE's) or :math:`\sigma =
    \exp(\operatorname{soft\_clamp}(\rho))` (``link="exp"``, NVAE's, :func:`soft_clamp`, so
    that scales multiply as log-scales add).

    :param in_features: size of the features :math:`h`.
    :param out_features: size of the Gaussian.
    :param link: ``"softplus"`` or ``"exp"``.
    :param min_scale: :math:`\epsilon` of the softplus link.
    """

    def __init__(
        self, in_features: int, out_features: int, link: str = "softplus", min_scale: float = 1e-3
    ) -> None:
        super().__init__()
        _check_sizes(in_features=in_features, out_features=out_features)
        if link not in ("softplus", "exp"):
            raise ValueError(f"link must be 'softplus' or 'exp', got {link!r}")
        if not min_scale >= 0:
            raise ValueError(f"min_scale must be >= 0, got {min_scale!r}")
        self.link, self.min_scale = link, float(min_scale)
        self.linear = nn.Linear(in_features, 2 * out_features)

    def forward(self, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        loc, raw = self.linear(h).chunk(2, dim=-1)
        if self.link == "exp":
            return loc, soft_clamp(raw).exp()
        return loc, F.softplus(raw) + self.min_scale
