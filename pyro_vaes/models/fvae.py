r"""The f-VAE's decoder: a likelihood :math:`p(x \mid z)` that is a flow conditioned on
:math:`z`, and the bits per dimension of dequantised data.

The f-VAE [1] keeps the VAE's encoder, prior and Gaussian posterior and replaces the factorised
likelihood by a conditional flow: :math:`x = G_z(v)`, :math:`v \sim \mathcal N(0, I)`, with
:math:`G_z` invertible for every :math:`z`, so that with :math:`f(x; z) = G_z^{-1}(x)`

.. math::
    \log p(x \mid z) = \log \mathcal N(f(x; z); 0, I)
    + \log\left|\det \frac{\partial f(x; z)}{\partial x}\right|, \qquad
    \mathrm{ELBO}(x) = \mathbb E_{q(z \mid x)}[\log p(x \mid z)] - \mathrm{KL}(q(z \mid x)\,\|\,p(z)).

:class:`FlowLikelihood` is that likelihood: the decoder maps :math:`z` to a context :math:`c(z)`
shaped like a datapoint, and :class:`~pyro_vaes.distributions.conditional_flow.ConditionalCouplingFlow`
conditions its affine couplings on it (and centres its last, elementwise affine map on it). It
plugs into :class:`pyro_vaes.VAE` like any other likelihood; the ELBO and the importance-sampled
:math:`\log p(x)` are then exact in the decoder, no pixel is assumed independent of another.

A density of continuous data is compared with discrete images through uniform dequantisation
(:func:`pyro_vaes.data.dequantize`): an image of :math:`L` grey levels :math:`k` becomes
:math:`y = (k + u)/L`, :math:`u \sim U[0, 1)^D`, and since the cube of side :math:`1/L` around
each image has volume :math:`L^{-D}`, :math:`\log P(k) \ge \mathbb E_u[\log p(y)] - D\log L`;
:func:`bits_per_dim` reports :math:`(-\log p(y) + D \log L) / (D \ln 2)` [2].

References:
    [1] Su, Wu. f-VAEs: Improve VAEs with Conditional Flows. arXiv:1809.05861, 2018.
    [2] Theis, van den Oord, Bethge. A note on the evaluation of generative models. ICLR 2016.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import pyro.distributions as dist
import torch

from pyro_vaes.distributions.conditional_flow import ConditionalCouplingFlow
from pyro_vaes.likelihoods import Likelihood

__all__ = ["FlowLikelihood", "bits_per_dim"]


class FlowLikelihood(Likelihood):
    r""":math:`p(x \mid z)` as a flow conditioned on the decoder's output :math:`c(z)` (module
    docstring): ``likelihood(c, event_dim)`` is the
    :class:`~pyro.distributions.TransformedDistribution` of a standard normal through
    :class:`~pyro_vaes.distributions.conditional_flow.ConditionalCouplingFlow`.

    :param data_shape: the shape of one datapoint (the decoder's output has it too).
    :param layers: the number of coupling layers (0: a Gaussian with mean :math:`c(z)` and a
        learned scale per pixel).
    :param hidden: the hidden sizes of each coupling's network.
    :param scale: the initial scale of the last, elementwise affine map.
    """

    def __init__(
        self,
        data_shape: Sequence[int],
        layers: int = 4,
        hidden: Sequence[int] = (256,),
        scale: float = 1.0,
    ) -> None:
        super().__init__()
        self.flow = ConditionalCouplingFlow(data_shape, layers, hidden, scale)

    def forward(self, params: torch.Tensor, event_dim: int) -> dist.TorchDistribution:
        if event_dim != len(self.flow.data_shape):
            raise ValueError(
                f"FlowLikelihood: event_dim must be the {len(self.flow.data_shape)} dims of a "
                f"datapoint {self.flow.data_shape}, got {event_dim}"
            )
        return self.flow.condition(params)

    def mean(self, params: torch.Tensor) -> torch.Tensor:
        """The image :math:`G_z(0)` of the base's mean (for pictures: the flow's mean has no
        closed form)."""
        d = self.flow.condition(params)
        x = d.base_dist.mean
        for t in d.transforms:
            x = t(x)
        return x


def bits_per_dim(
    log_likelihood: torch.Tensor, data_shape: Sequence[int], levels: int | None = None
) -> torch.Tensor:
    r"""Bits per dimension :math:`(-\log p(y) + D \log L) / (D \ln 2)` of the log densities
    ``log_likelihood`` (nats per datapoint) of data of shape ``data_shape`` (:math:`D` entries)
    dequantised from ``levels`` grey levels :math:`L` to :math:`[0, 1)`
    (:func:`pyro_vaes.data.dequantize`); ``levels=None``: no correction,
    :math:`-\log p(y) / (D \ln 2)`.

    :raises ValueError: for an empty ``data_shape`` or ``levels`` below 2.
    """
    if not data_shape or min(data_shape) < 1:
        raise ValueError(f"data_shape must be a tuple of positive sizes, got {data_shape!r}")
    if levels is not None and (not isinstance(levels, int) or levels < 2):
        raise ValueError(f"levels must be an int >= 2 (or None), got {levels!r}")
    dims = math.prod(data_shape)
    correction = dims * math.log(levels) if levels is not None else 0.0
    return (-log_likelihood + correction) / (dims * math.log(2.0))
