r"""Likelihoods :math:`p(x \mid z)`: decoder output -> distribution over a datapoint.

A decoder outputs raw parameters (logits, means); the likelihood owns the link function and
declares the data dimensions as event dimensions, so ``log_prob`` returns one number per
datapoint (and per particle, when particles are vectorised).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import pyro.distributions as dist
import torch
from torch import nn
from torch.distributions import constraints

from pyro_vaes.distributions.autoregressive import PixelCNNBernoulli
from pyro_vaes.distributions.log_cosh import LogCosh as LogCoshDistribution
from pyro_vaes.nets.pixelcnn import PixelCNN as PixelCNNNet
from pyro_vaes.registry import Registry

__all__ = [
    "Bernoulli",
    "Gaussian",
    "Likelihood",
    "LogCosh",
    "PixelCNN",
    "get",
    "register",
    "registry",
]


class Likelihood(nn.Module):
    """Base class: ``likelihood(params, event_dim)`` returns a distribution whose event shape is
    the trailing ``event_dim`` dimensions of ``params``."""

    #: the set of data values the likelihood can score
    support: constraints.Constraint = constraints.real

    def forward(self, params: torch.Tensor, event_dim: int) -> dist.TorchDistribution:
        raise NotImplementedError

    def mean(self, params: torch.Tensor) -> torch.Tensor:
        """The mean of :math:`p(x \\mid z)` for decoder output ``params`` (for pictures)."""
        raise NotImplementedError


class Bernoulli(Likelihood):
    r"""Independent Bernoulli pixels with logits from the decoder:
    :math:`\log p(x\mid z) = \sum_i x_i \ell_i - \log(1 + e^{\ell_i})`.

    Data must be binary (see :mod:`pyro_vaes.data` for static and dynamic binarisation).
    """

    support = constraints.boolean

    def forward(self, params: torch.Tensor, event_dim: int) -> dist.TorchDistribution:
        return dist.Bernoulli(logits=params).to_event(event_dim)

    def mean(self, params: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(params)


class Gaussian(Likelihood):
    r"""Independent Gaussian pixels :math:`\mathcal N(x_i; \mu_i, \sigma^2)` with the mean from the
    decoder and one standard deviation :math:`\sigma`, fixed or learned.

    :param scale: the (initial) standard deviation :math:`\sigma > 0`.
    :param learn_scale: learn :math:`\log\sigma` as a parameter (the :math:`\sigma`-VAE of
        Rybkin et al. 2021), instead of keeping it fixed.

    References:
        [1] Rybkin, Daniilidis, Levine. Simple and Effective VAE Training with Calibrated
        Decoders. ICML 2021.
    """

    def __init__(self, scale: float = 1.0, learn_scale: bool = False) -> None:
        super().__init__()
        if not (isinstance(scale, int | float) and math.isfinite(scale) and scale > 0):
            raise ValueError(f"Gaussian likelihood: scale must be a positive number, got {scale!r}")
        log_scale = torch.tensor(math.log(scale))
        if learn_scale:
            self.log_scale = nn.Parameter(log_scale)
        else:
            self.register_buffer("log_scale", log_scale)

    @property
    def scale(self) -> torch.Tensor:
        return self.log_scale.exp()

    def forward(self, params: torch.Tensor, event_dim: int) -> dist.TorchDistribution:
        return dist.Normal(params, self.scale).to_event(event_dim)

    def mean(self, params: torch.Tensor) -> torch.Tensor:
        return params


class LogCosh(Likelihood):
    r"""Independent log-cosh pixels (:class:`pyro_vaes.distributions.log_cosh.LogCosh`) around the
    decoder's output :math:`\hat x`:
    :math:`-\log p(x \mid z) = \sum_i \frac1a \log\cosh(a (x_i - \hat x_i)) + \log Z(a)`,
    the reconstruction loss of Chen et al. [1] plus its normaliser
    :math:`\log Z(a) = \log B(\frac{1}{2a}, \frac12) - \log a` per pixel, so that it is a
    density: quadratic near :math:`\hat x`, linear (Laplace) for large errors.

    :param sharpness: :math:`a > 0`; the default 10 is the value the widely used reference
        implementation trains with (the paper leaves it a hyper-parameter).
    :param scale: the scale :math:`s` of the errors (1 in the paper's loss).

    References:
        [1] Chen, Chen, Wang, Lan. Log Hyperbolic Cosine Loss Improves Variational Auto-Encoder.
        OpenReview, 2018.
    """

    def __init__(self, sharpness: float = 10.0, scale: float = 1.0) -> None:
        super().__init__()
        for name, value in (("sharpness", sharpness), ("scale", scale)):
            if not (isinstance(value, int | float) and math.isfinite(value) and value > 0):
                raise ValueError(f"LogCosh likelihood: {name} must be positive, got {value!r}")
        self.sharpness, self.scale = float(sharpness), float(scale)

    def forward(self, params: torch.Tensor, event_dim: int) -> dist.TorchDistribution:
        return LogCoshDistribution(params, self.sharpness, self.scale).to_event(event_dim)

    def mean(self, params: torch.Tensor) -> torch.Tensor:
        return params


class PixelCNN(Likelihood):
    r"""Binary pixels drawn one after the other by a gated PixelCNN
    (:class:`pyro_vaes.distributions.autoregressive.PixelCNNBernoulli`), conditioned on the
    decoder's output as a spatial map:

    .. math::
        \log p(x \mid z) = \sum_i \log \operatorname{Bernoulli}\big(x_i;\
        \sigma(\ell_i(x_{<i}, \mathrm{dec}(z)))\big),

    :math:`i` in raster order. The decoder outputs ``(..., cond_channels, H, W)``; the map enters
    the PixelCNN's first gated layer, or every layer (``condition_every_layer``: a generative skip
    connection from the code into each layer). ``mean`` is the conditional probabilities along
    one draw (an unbiased estimate of the intractable mean).

    :param channels: the image's channels.
    :param cond_channels: the decoder output's channels (default: ``channels``).
    :param hidden_channels: the PixelCNN's channels.
    :param layers: the PixelCNN's gated layers.
    :param kernel_size: the PixelCNN's kernel size.
    :param condition_every_layer: the decoder's map enters every layer, not only the first.

    References:
        [1] van den Oord et al. Conditional Image Generation with PixelCNN Decoders. NeurIPS 2016.
        [2] Gulrajani et al. PixelVAE: A Latent Variable Model for Natural Images. ICLR 2017.
        [3] Dieng, Kim, Rush, Blei. Avoiding Latent Variable Collapse with Generative Skip
        Models. AISTATS 2019.
    """

    support = constraints.boolean

    def __init__(
        self,
        channels: int = 1,
        cond_channels: int | None = None,
        hidden_channels: int = 32,
        layers: int = 3,
        kernel_size: int = 3,
        condition_every_layer: bool = False,
    ) -> None:
        super().__init__()
        self.net = PixelCNNNet(
            channels,
            channels=hidden_channels,
            layers=layers,
            kernel_size=kernel_size,
            cond_channels=channels if cond_channels is None else cond_channels,
            condition_every_layer=condition_every_layer,
        )

    def forward(self, params: torch.Tensor, event_dim: int) -> dist.TorchDistribution:
        if event_dim != 3:
            raise ValueError(
                "the PixelCNN likelihood needs image data (C, H, W) and a decoder output "
                f"(cond_channels, H, W): got event_dim={event_dim} for params of shape "
                f"{tuple(params.shape)}"
            )
        return PixelCNNBernoulli(self.net, cond_map=params)

    def mean(self, params: torch.Tensor) -> torch.Tensor:
        return PixelCNNBernoulli(self.net, cond_map=params).conditional_means()


#: likelihood name -> factory (for the CLI and the variant catalogue)
registry: Registry[Callable[..., Likelihood]] = Registry("likelihood")
register = registry.register


def get(name: str, **options: object) -> Likelihood:
    """Build the likelihood registered as ``name``."""
    return registry[name](**options)


register("bernoulli", Bernoulli)
register("gaussian", Gaussian)
register("logcosh", LogCosh)
register("pixelcnn", PixelCNN)
