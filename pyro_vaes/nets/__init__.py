"""Encoder and decoder networks for flat and image data.

An encoder maps a batch of datapoints ``(..., *data_shape)`` to features ``(..., out_features)``;
the posterior family owns the last layer. A decoder maps codes ``(..., latent_dim)`` to raw
likelihood parameters ``(..., *data_shape)``. Leading dimensions (datapoints, vectorised particles)
pass through untouched.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

import torch
from torch import nn

from pyro_vaes.nets.pixelcnn import GatedPixelCNNLayer, MaskedConv2d, PixelCNN

__all__ = [
    "ConvDecoder",
    "ConvEncoder",
    "Discriminator",
    "GatedPixelCNNLayer",
    "Gyroplane",
    "MLPDecoder",
    "MLPEncoder",
    "MaskedConv2d",
    "PixelCNN",
    "SkipMLPDecoder",
]


def _mlp(sizes: Sequence[int], final_activation: bool) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(itertools.pairwise(sizes)):
        layers.append(nn.Linear(a, b))
        if final_activation or i < len(sizes) - 2:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


def _check_shape(data_shape: Sequence[int]) -> tuple[int, ...]:
    shape = tuple(int(s) for s in data_shape)
    if not shape or any(s < 1 for s in shape):
        raise ValueError(f"data_shape must be a non-empty tuple of positive sizes, got {shape}")
    return shape


class MLPEncoder(nn.Module):
    """Flatten the datapoint, then ``Linear -> ReLU`` for each hidden size.

    :param data_shape: shape of one datapoint, e.g. ``(784,)`` or ``(1, 28, 28)``.
    :param hidden: hidden layer sizes; the last one is ``out_features``.
    """

    def __init__(self, data_shape: Sequence[int], hidden: Sequence[int] = (512,)) -> None:
        super().__init__()
        self.data_shape = _check_shape(data_shape)
        if not hidden:
            raise ValueError("MLPEncoder needs at least one hidden layer")
        self.out_features = int(hidden[-1])
        self.net = _mlp([math.prod(self.data_shape), *hidden], final_activation=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n = len(self.data_shape)
        if tuple(x.shape[x.dim() - n :]) != self.data_shape:
            raise ValueError(
                f"encoder expects datapoints of shape {self.data_shape}, got a batch of shape "
                f"{tuple(x.shape)}"
            )
        return self.net(x.reshape(*x.shape[: x.dim() - n], -1))


class MLPDecoder(nn.Module):
    """``Linear -> ReLU`` for each hidden size, a final ``Linear``, reshaped to ``data_shape``.

    :param latent_dim: dimension of the code.
    :param data_shape: shape of one datapoint.
    :param hidden: hidden layer sizes.
    """

    def __init__(
        self, latent_dim: int, data_shape: Sequence[int], hidden: Sequence[int] = (512,)
    ) -> None:
        super().__init__()
        self.data_shape = _check_shape(data_shape)
        self.latent_dim = latent_dim
        self.net = _mlp([latent_dim, *hidden, math.prod(self.data_shape)], final_activation=False)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z).reshape(*z.shape[:-1], *self.data_shape)


class SkipMLPDecoder(nn.Module):
    r"""An MLP decoder with generative skip connections: the code :math:`z` enters every layer,
    not only the first [1],

    .. math::
        h_1 = \operatorname{ReLU}(W_1 z + b_1), \qquad
        h_l = \operatorname{ReLU}(W_l h_{l-1} + W'_l z + b_l), \qquad
        \eta = W_{L} h_{L-1} + W'_{L} z + b_{L},

    each layer a ``Linear`` on the concatenation :math:`[h_{l-1}, z]`. The likelihood's
    parameters :math:`\eta` depend on :math:`z` through every layer, so the decoder cannot wash
    the code out on its way to the output, which keeps the mutual information between :math:`x`
    and :math:`z` from vanishing (posterior collapse).

    :param latent_dim: dimension of the code.
    :param data_shape: shape of one datapoint.
    :param hidden: hidden layer sizes.

    References:
        [1] Dieng, Kim, Rush, Blei. Avoiding Latent Variable Collapse with Generative Skip
        Models. AISTATS 2019.
    """

    def __init__(
        self, latent_dim: int, data_shape: Sequence[int], hidden: Sequence[int] = (512,)
    ) -> None:
        super().__init__()
        self.data_shape = _check_shape(data_shape)
        self.latent_dim = latent_dim
        sizes = [*hidden, math.prod(self.data_shape)]
        ins = [latent_dim, *(int(h) + latent_dim for h in hidden)]
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(ins, sizes, strict=True))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = self.layers[0](z)
        for layer in self.layers[1:]:
            h = layer(torch.cat([torch.relu(h), z], dim=-1))
        return h.reshape(*z.shape[:-1], *self.data_shape)


def _conv_sizes(size: int, layers: int) -> list[int]:
    sizes = [size]
    for _ in range(layers):
        sizes.append((sizes[-1] + 1) // 2)  # kernel 4, stride 2, padding 1 halves (rounding up)
    return sizes


class ConvEncoder(nn.Module):
    """Strided convolutions (kernel 4, stride 2) then a linear layer, for images ``(C, H, W)``.

    :param data_shape: ``(C, H, W)``.
    :param channels: output channels of each convolution; each halves the height and width.
    :param out_features: size of the feature vector.
    """

    def __init__(
        self,
        data_shape: Sequence[int],
        channels: Sequence[int] = (32, 64),
        out_features: int = 256,
    ) -> None:
        super().__init__()
        self.data_shape = _check_shape(data_shape)
        if len(self.data_shape) != 3:
            raise ValueError(f"ConvEncoder needs image data (C, H, W), got {self.data_shape}")
        c, h, w = self.data_shape
        layers: list[nn.Module] = []
        for c_in, c_out in zip([c, *channels[:-1]], channels, strict=True):
            layers += [nn.Conv2d(c_in, c_out, 4, stride=2, padding=1), nn.ReLU()]
        self.conv = nn.Sequential(*layers)
        hs, ws = _conv_sizes(h, len(channels)), _conv_sizes(w, len(channels))
        self.out_features = out_features
        self.fc = nn.Sequential(nn.Linear(channels[-1] * hs[-1] * ws[-1], out_features), nn.ReLU())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if tuple(x.shape[-3:]) != self.data_shape:
            raise ValueError(
                f"encoder expects images of shape {self.data_shape}, got a batch of shape "
                f"{tuple(x.shape)}"
            )
        batch = x.shape[:-3]
        h = self.conv(x.reshape(-1, *self.data_shape))
        return self.fc(h.flatten(1)).reshape(*batch, self.out_features)


class ConvDecoder(nn.Module):
    """A linear layer then transposed convolutions (kernel 4, stride 2), cropped to ``(C, H, W)``.

    :param latent_dim: dimension of the code.
    :param data_shape: ``(C, H, W)``.
    :param channels: input channels of each transposed convolution, coarse to fine.
    """

    def __init__(
        self, latent_dim: int, data_shape: Sequence[int], channels: Sequence[int] = (64, 32)
    ) -> None:
        super().__init__()
        self.data_shape = _check_shape(data_shape)
        if len(self.data_shape) != 3:
            raise ValueError(f"ConvDecoder needs image data (C, H, W), got {self.data_shape}")
        c, h, w = self.data_shape
        self.h0 = _conv_sizes(h, len(channels))[-1]
        self.w0 = _conv_sizes(w, len(channels))[-1]
        self.channels = tuple(channels)
        self.fc = nn.Sequential(nn.Linear(latent_dim, channels[0] * self.h0 * self.w0), nn.ReLU())
        layers: list[nn.Module] = []
        outs = [*channels[1:], c]
        for i, (c_in, c_out) in enumerate(zip(channels, outs, strict=True)):
            layers.append(nn.ConvTranspose2d(c_in, c_out, 4, stride=2, padding=1))
            if i < len(channels) - 1:
                layers.append(nn.ReLU())
        self.deconv = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        batch = z.shape[:-1]
        h = self.fc(z.reshape(-1, z.shape[-1])).reshape(-1, self.channels[0], self.h0, self.w0)
        c, height, width = self.data_shape
        out = self.deconv(h)[..., :height, :width]
        return out.reshape(*batch, c, height, width)


class Gyroplane(nn.Module):
    r"""The hyperbolic multinomial-logistic-regression layer: unit :math:`k` outputs the signed,
    scaled distance from :math:`z` to the gyroplane
    :math:`H_k = \{x : \langle -p_k \oplus_c x, a_k\rangle = 0\}` on the Poincare ball,

    .. math::
        f_k(z) = \frac{\lambda_{p_k}\|a_k\|}{\sqrt c}\, \sinh^{-1}\!\left(
        \frac{2\sqrt c\,\langle -p_k \oplus_c z, a_k\rangle}
        {(1 - c\|{-p_k} \oplus_c z\|^2)\,\|a_k\|}\right),

    the first layer of the Poincare VAE's decoder. :math:`p_k = \exp_0(\tilde p_k)` stays on the
    ball; geoopt's ``dist2plane`` does the arithmetic.

    References:
        [1] Ganea, Becigneul, Hofmann. Hyperbolic Neural Networks. NeurIPS 2018.
        [2] Mathieu et al. Continuous Hierarchical Representations with Poincare Variational
        Auto-Encoders. NeurIPS 2019.
    """

    def __init__(self, latent_dim: int, out_features: int, c: float = 1.0) -> None:
        super().__init__()
        from pyro_vaes.distributions.wrapped_normal import poincare_ball

        self.ball = poincare_ball(float(c))
        self.offsets = nn.Parameter(1e-2 * torch.randn(out_features, latent_dim))
        self.normals = nn.Parameter(torch.randn(out_features, latent_dim) / math.sqrt(latent_dim))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        p = self.ball.expmap0(self.offsets)
        # geoopt's scaled distance is ||a|| d(z, H); the MLR logit carries lambda_p as well
        dist = self.ball.dist2plane(z.unsqueeze(-2), p, self.normals, signed=True, scaled=True)
        return self.ball.lambda_x(p) * dist


class Discriminator(nn.Module):
    """An MLP critic ``(..., in_features) -> (...)`` logit, with leaky ReLUs (the adversarial
    objectives' second network). ``in_features=None`` infers the size from the first input."""

    def __init__(self, in_features: int | None = None, hidden: Sequence[int] = (256, 256)) -> None:
        super().__init__()
        if (in_features is not None and in_features < 1) or not hidden or min(hidden) < 1:
            raise ValueError(f"need positive sizes, got {in_features} and {tuple(hidden)}")
        first: nn.Module = (
            nn.Linear(in_features, hidden[0]) if in_features else nn.LazyLinear(hidden[0])
        )
        layers: list[nn.Module] = [first, nn.LeakyReLU(0.2)]
        for a, b in itertools.pairwise(hidden):
            layers += [nn.Linear(a, b), nn.LeakyReLU(0.2)]
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(hidden[-1], 1)

    def features(self, z: torch.Tensor) -> torch.Tensor:
        """The last hidden layer's activations (VAE-GAN's feature-space reconstruction)."""
        return self.body(z)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(z)).squeeze(-1)
