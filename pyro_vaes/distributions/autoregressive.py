r"""An autoregressive distribution over binary images: a PixelCNN's Bernoulli conditionals.

.. math::
    p(x \mid c) = \prod_{i=1}^{D} \operatorname{Bernoulli}\big(x_i;\ \sigma(\ell_i(x_{<i}, c))\big),

with :math:`i` running over the positions of the image in raster order (all channels of a
position together) and :math:`\ell_i` the logits of a :class:`pyro_vaes.nets.pixelcnn.PixelCNN`,
which depend on the image only at the positions before :math:`i`. ``log_prob`` takes one pass of
the network; ``sample`` one pass per row and column, vectorised over the batch.

References:
    [1] van den Oord, Kalchbrenner, Kavukcuoglu. Pixel Recurrent Neural Networks. ICML 2016.
    [2] van den Oord et al. Conditional Image Generation with PixelCNN Decoders. NeurIPS 2016.
    [3] Gulrajani et al. PixelVAE: A Latent Variable Model for Natural Images. ICLR 2017.
"""

from __future__ import annotations

from typing import ClassVar

import torch
import torch.nn.functional as F
from pyro.distributions import TorchDistribution
from torch.distributions import constraints

from pyro_vaes.nets import pixelcnn

__all__ = ["PixelCNNBernoulli"]

_EMPTY = torch.Size()
_ShapeLike = torch.Size | list[int] | tuple[int, ...]


class PixelCNNBernoulli(TorchDistribution):
    r"""Binary images drawn pixel by pixel from a PixelCNN (see the module docstring).

    :param net: a :class:`~pyro_vaes.nets.pixelcnn.PixelCNN` for real input with one output per
        channel (its logit).
    :param cond: the global condition ``(..., cond_features)``, if the network takes one.
    :param cond_map: the spatial condition ``(..., cond_channels, H, W)``, if it takes one.
    :param image_size: ``(H, W)``, needed only without ``cond_map``.

    The batch shape is the condition's leading shape; the event shape ``(C, H, W)``. The exact
    mean is intractable: :meth:`conditional_means` gives an unbiased one-draw estimate of it.
    """

    arg_constraints: ClassVar[dict[str, constraints.Constraint]] = {}
    support = constraints.independent(constraints.boolean, 3)
    has_rsample = False

    def __init__(
        self,
        net: pixelcnn.PixelCNN,
        cond: torch.Tensor | None = None,
        cond_map: torch.Tensor | None = None,
        image_size: tuple[int, int] | None = None,
        validate_args: bool | None = None,
    ) -> None:
        if net.categories is not None or net.outputs != 1:
            raise ValueError(
                "PixelCNNBernoulli needs a PixelCNN for real input with outputs=1 (a logit per "
                f"channel), got categories={net.categories}, outputs={net.outputs}"
            )
        if cond_map is not None:
            size = tuple(cond_map.shape[-2:])
            batch = cond_map.shape[:-3]
            if cond is not None:
                batch = torch.broadcast_shapes(batch, cond.shape[:-1])
        elif cond is not None and image_size is not None:
            size, batch = tuple(image_size), cond.shape[:-1]
        else:
            raise ValueError("PixelCNNBernoulli needs cond_map, or cond and image_size")
        self.net, self.cond, self.cond_map = net, cond, cond_map
        event_shape = (net.in_channels, int(size[0]), int(size[1]))
        super().__init__(torch.Size(batch), torch.Size(event_shape), validate_args=validate_args)

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        r"""The logits :math:`\ell_i(x_{<i}, c)` of every position of ``x``, one pass."""
        return self.net(x, self.cond, self.cond_map).squeeze(-4)

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        if self._validate_args:
            self._validate_sample(value)
        shape = torch.broadcast_shapes(value.shape[: value.dim() - 3], self.batch_shape)
        x = value.expand(*shape, *self.event_shape)
        bce = F.binary_cross_entropy_with_logits(self.logits(x), x, reduction="none")
        return -bce.sum(dim=(-3, -2, -1))

    def _draw(self, sample_shape: torch.Size) -> tuple[torch.Tensor, torch.Tensor]:
        """A draw ``x`` in raster order and the probabilities :math:`p(x_i = 1 \\mid x_{<i}, c)`
        it was drawn with. The vertical stack runs once per row; the horizontal stacks once per
        pixel, on that row alone (:meth:`pyro_vaes.nets.pixelcnn.PixelCNN.row_context`)."""
        shape = self._extended_shape(sample_shape)
        lead = len(shape) - 3
        cond, cond_map = self.cond, self.cond_map
        if cond is not None:
            cond = cond.expand(*shape[:lead], cond.shape[-1])
        if cond_map is not None:
            cond_map = cond_map.expand(*shape[:lead], *cond_map.shape[-3:])
        ref = cond_map if cond_map is not None else cond
        assert ref is not None
        x = torch.zeros(shape, dtype=ref.dtype, device=ref.device)
        probs = torch.zeros_like(x)
        _, height, width = self.event_shape
        with torch.no_grad():
            for r in range(height):
                context = self.net.row_context(x, r, cond, cond_map)
                for c in range(width):
                    logits = self.net.row_forward(x[..., r : r + 1, :], context)[..., 0, :, 0, c]
                    probs[..., r, c] = p = torch.sigmoid(logits)
                    x[..., r, c] = torch.bernoulli(p)
        return x, probs

    def sample(self, sample_shape: _ShapeLike = _EMPTY) -> torch.Tensor:
        """Draw pixel by pixel in raster order, all images of the batch at once."""
        return self._draw(torch.Size(sample_shape))[0]

    def conditional_means(self, sample_shape: _ShapeLike = _EMPTY) -> torch.Tensor:
        r""":math:`p(x_i = 1 \mid x_{<i}, c)` along one draw :math:`x`: an unbiased estimate of
        the mean, since :math:`\mathbb E_{x_{<i}}[p(x_i = 1 \mid x_{<i}, c)] = p(x_i = 1 \mid
        c)` (a picture of the distribution that is smoother than a draw)."""
        return self._draw(torch.Size(sample_shape))[1]

    def expand(self, batch_shape: _ShapeLike, _instance: object = None) -> PixelCNNBernoulli:
        batch_shape = torch.Size(batch_shape)
        cond = (
            self.cond.expand(*batch_shape, self.cond.shape[-1]) if self.cond is not None else None
        )
        cond_map = (
            self.cond_map.expand(*batch_shape, *self.cond_map.shape[-3:])
            if self.cond_map is not None
            else None
        )
        _, height, width = self.event_shape
        return PixelCNNBernoulli(self.net, cond, cond_map, (height, width), self._validate_args)
