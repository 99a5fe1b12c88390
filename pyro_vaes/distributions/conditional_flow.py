r"""A normalizing flow over a datapoint conditioned on a context: the decoder of the f-VAE.

:class:`ConditionalCouplingFlow` pushes a standard normal :math:`v \sim \mathcal N(0, I_D)`
through :math:`K` affine coupling layers (RealNVP [1], as in Glow [2]), each conditioned on a
context :math:`c`, with a fixed permutation of the dimensions between them, and a final
elementwise affine map around the context:

.. math::
    x = G_c(v) = c + \sigma \odot (h_K \circ \pi_{K-1} \circ \dots \circ \pi_1 \circ h_1)(v),
    \qquad h_k(u) = \bigl(u_{1:d},\; u_{d+1:D} \odot e^{s_k(u_{1:d}, c)} + t_k(u_{1:d}, c)\bigr),

so that with :math:`f_c = G_c^{-1}` the density is exact by the change of variables,

.. math::
    \log p(x \mid c) = \log \mathcal N(f_c(x); 0, I) + \log\left|\det
    \frac{\partial f_c(x)}{\partial x}\right|.

Pyro's :class:`~pyro.distributions.transforms.ConditionalAffineCoupling` (built by
:func:`~pyro.distributions.transforms.conditional_affine_coupling`) and
:class:`~pyro.distributions.transforms.Permute` do the arithmetic; the last layer of each
coupling's network starts at zero, so a fresh flow is the elementwise affine map alone (a
Gaussian with mean :math:`c` and scale :math:`\sigma`). With :math:`K = 0` it stays that
Gaussian.

References:
    [1] Dinh, Sohl-Dickstein, Bengio. Density estimation using Real NVP. ICLR 2017.
    [2] Kingma, Dhariwal. Glow: Generative Flow with Invertible 1x1 Convolutions. NeurIPS 2018.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import pyro.distributions as dist
import torch
from pyro.distributions.transforms import (
    AffineTransform,
    ConditionalAffineCoupling,
    Permute,
    conditional_affine_coupling,
)
from torch import nn
from torch.distributions.transforms import ReshapeTransform, Transform

__all__ = ["ConditionalCouplingFlow"]


class ConditionalCouplingFlow(nn.Module):
    r"""The conditional flow :math:`x = G_c(v)` of the module docstring over datapoints of shape
    ``data_shape``, conditioned on a context :math:`c` of the same shape.

    ``flow.condition(c)`` is the distribution :math:`p(x \mid c)`: a
    :class:`~pyro.distributions.TransformedDistribution` of the standard normal, with batch
    shape ``c.shape[:-len(data_shape)]`` and event shape ``data_shape``.

    :param data_shape: the shape of one datapoint; :math:`D` is its number of entries (at least
        2 when there are coupling layers).
    :param layers: :math:`K`, the number of coupling layers (0: the elementwise affine map
        alone).
    :param hidden: the hidden sizes of each coupling's network of :math:`(u_{1:d}, c)`.
    :param scale: the initial :math:`\sigma` of every dimension (learned, per dimension).
    """

    def __init__(
        self,
        data_shape: Sequence[int],
        layers: int = 4,
        hidden: Sequence[int] = (256,),
        scale: float = 1.0,
    ) -> None:
        super().__init__()
        self.data_shape = tuple(int(s) for s in data_shape)
        if not self.data_shape or min(self.data_shape) < 1:
            raise ValueError(f"data_shape must be a tuple of positive sizes, got {data_shape!r}")
        dim = math.prod(self.data_shape)
        if not isinstance(layers, int) or layers < 0:
            raise ValueError(f"layers must be an int >= 0, got {layers!r}")
        if layers > 0 and dim < 2:
            raise ValueError(f"coupling layers need at least 2 dimensions, got data of {dim}")
        if not hidden or min(hidden) < 1:
            raise ValueError(f"hidden must be a non-empty tuple of positive sizes, got {hidden!r}")
        if not (math.isfinite(scale) and scale > 0):
            raise ValueError(f"scale must be a positive number, got {scale!r}")
        self.dim = dim
        self.couplings = nn.ModuleList(
            conditional_affine_coupling(dim, dim, hidden_dims=list(hidden)) for _ in range(layers)
        )
        for coupling in self.couplings:  # start as the identity
            last = [m for m in coupling.modules() if isinstance(m, nn.Linear)][-1]
            nn.init.zeros_(last.weight)
            nn.init.zeros_(last.bias)
        for k in range(max(layers - 1, 0)):  # fixed random permutations, saved with the module
            self.register_buffer(f"permutation{k}", torch.randperm(dim))
        self.log_scale = nn.Parameter(torch.full((dim,), math.log(scale)))

    def transforms(self, context: torch.Tensor) -> list[Transform]:
        """The transforms from the base draw :math:`v` (flat) to :math:`x` for ``context``
        ``(..., *data_shape)``."""
        n = len(self.data_shape)
        if tuple(context.shape[context.dim() - n :]) != self.data_shape:
            raise ValueError(
                f"the flow's context must end in the data shape {self.data_shape}, got a tensor "
                f"of shape {tuple(context.shape)}"
            )
        c = context.reshape(*context.shape[: context.dim() - n], self.dim)
        out: list[Transform] = []
        couplings: list[ConditionalAffineCoupling] = list(self.couplings)  # type: ignore[arg-type]
        for k, coupling in enumerate(couplings):
            if k > 0:
                out.append(Permute(getattr(self, f"permutation{k - 1}")))
            out.append(coupling.condition(c))
        out.append(AffineTransform(c, self.log_scale.exp(), event_dim=1))
        out.append(ReshapeTransform(torch.Size([self.dim]), torch.Size(self.data_shape)))
        return out

    def condition(self, context: torch.Tensor) -> dist.TransformedDistribution:
        """:math:`p(x \\mid c)` for the context ``c`` ``(..., *data_shape)``."""
        batch = context.shape[: context.dim() - len(self.data_shape)]
        zeros = context.new_zeros(())
        base = dist.Normal(zeros, 1.0).expand((*batch, self.dim)).to_event(1)
        return dist.TransformedDistribution(base, self.transforms(context))

    def forward(self, context: torch.Tensor) -> dist.TransformedDistribution:
        return self.condition(context)
