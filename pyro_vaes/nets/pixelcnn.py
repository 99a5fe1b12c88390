r"""PixelCNN: masked convolutions and the gated PixelCNN with vertical and horizontal stacks.

A PixelCNN maps an image :math:`x` to the parameters of :math:`p(x_i \mid x_{<i}, c)` at every
position :math:`i` at once, with :math:`x_{<i}` the positions before :math:`i` in raster order
(row by row, left to right) and :math:`c` a condition. The output at :math:`i` depends on the
input only at positions :math:`< i`, so one pass scores

.. math::
    \log p(x \mid c) = \sum_i \log p(x_i \mid x_{<i}, c),

and a draw takes one pass per position. All channels of a position are predicted together from
the positions before it (they are independent given :math:`x_{<i}`; PixelRNN's ordering of the
colour channels inside a pixel is not modelled).

* :class:`MaskedConv2d`: a convolution whose kernel is zero after its centre in raster order;
  mask ``"A"`` zeroes the centre too (a position never sees itself), mask ``"B"`` keeps it.
* :class:`GatedPixelCNNLayer`: one gated layer of [2] with a vertical stack (the rows above) and a
  horizontal stack (the row so far); the two together see every earlier position within reach,
  so the receptive field has no blind spot (the plain masked stack of [1] misses a growing wedge
  to the upper right).
* :class:`PixelCNN`: the stack of gated layers, for real or binary channels or for integer
  categories (an embedding in, ``categories`` logits per position out), conditioned on a global
  vector (a code, a class) and/or on a spatial map of the image's height and width (a decoder's
  output, an upsampled top-level code grid), in the first layer or in every layer.

References:
    [1] van den Oord, Kalchbrenner, Kavukcuoglu. Pixel Recurrent Neural Networks. ICML 2016.
    [2] van den Oord, Kalchbrenner, Vinyals, Espeholt, Graves, Kavukcuoglu. Conditional Image
    Generation with PixelCNN Decoders. NeurIPS 2016.
"""

from __future__ import annotations

from typing import cast

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["GatedPixelCNNLayer", "MaskedConv2d", "PixelCNN", "causal_mask"]


def causal_mask(kernel_size: tuple[int, int], mask_type: str) -> torch.Tensor:
    """The ``(kh, kw)`` 0/1 mask of a causal kernel: ones at the taps before the centre
    ``(kh // 2, kw // 2)`` in raster order, and at the centre for ``mask_type="B"``."""
    if mask_type not in ("A", "B"):
        raise ValueError(f"mask_type must be 'A' or 'B', got {mask_type!r}")
    kh, kw = kernel_size
    if kh < 1 or kw < 1 or kh % 2 == 0 or kw % 2 == 0:
        raise ValueError(f"kernel_size must be odd and positive, got {kernel_size}")
    mask = torch.zeros(kh, kw)
    mask[: kh // 2] = 1.0
    mask[kh // 2, : kw // 2 + (mask_type == "B")] = 1.0
    return mask


class MaskedConv2d(nn.Conv2d):
    r"""A ``same``-padded 2-d convolution with a causal mask on its kernel (PixelCNN [1]):
    output position :math:`(r, c)` sees input positions :math:`(r', c')` with :math:`r' < r`, or
    :math:`r' = r` and :math:`c' < c` (mask ``"A"``) or :math:`c' \le c` (mask ``"B"``), within
    the kernel. Mask ``"A"`` is the first layer's (no position sees its own value), ``"B"`` every
    later one's. All input channels of a position are treated alike.

    :param in_channels: input channels.
    :param out_channels: output channels.
    :param kernel_size: odd size, an int or ``(kh, kw)``; ``(1, k)`` is the horizontal stack's
        kernel of the gated PixelCNN.
    :param mask_type: ``"A"`` or ``"B"``.

    References:
        [1] van den Oord, Kalchbrenner, Kavukcuoglu. Pixel Recurrent Neural Networks. ICML 2016.
    """

    mask: torch.Tensor

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | tuple[int, int],
        mask_type: str,
        bias: bool = True,
    ) -> None:
        kh, kw = (kernel_size, kernel_size) if isinstance(kernel_size, int) else kernel_size
        mask = causal_mask((kh, kw), mask_type)
        super().__init__(in_channels, out_channels, (kh, kw), padding=(kh // 2, kw // 2), bias=bias)
        self.mask_type = mask_type
        self.register_buffer("mask", mask)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._conv_forward(x, self.weight * self.mask, self.bias)


def _gate(a: torch.Tensor) -> torch.Tensor:
    """:math:`\\tanh(a_1) \\odot \\sigma(a_2)` for ``a`` split in two along the channels."""
    f, g = a.chunk(2, dim=1)
    return torch.tanh(f) * torch.sigmoid(g)


def _down_shift(v: torch.Tensor) -> torch.Tensor:
    """Move the rows of ``v`` down by one (a zero row on top): row ``r`` then holds what was
    computed at row ``r - 1``."""
    return F.pad(v, (0, 0, 1, 0))[..., :-1, :]


class GatedPixelCNNLayer(nn.Module):
    r"""One layer of the gated PixelCNN [1] with vertical and horizontal stacks:

    .. math::
        v' = \tanh(W_{v,f} * v + V_f c) \odot \sigma(W_{v,g} * v + V_g c), \\
        h' = h + W_{1\times1}\big(\tanh(W_{h,f} * h + U_f \downarrow(W_v * v) + V_f c) \odot
        \sigma(W_{h,g} * h + U_g \downarrow(W_v * v) + V_g c)\big),

    :math:`W_v` a :math:`(\lceil k/2\rceil \times k)` convolution over the current and the
    :math:`\lfloor k/2 \rfloor` rows above (padded on top), :math:`\downarrow` a shift down by one
    row, so the vertical stack reaches the horizontal one only from rows strictly above;
    :math:`W_h` a masked :math:`1 \times k` convolution along the row (mask ``"A"`` in the first
    layer, which has no residual connection, ``"B"`` after); :math:`U` a :math:`1 \times 1`
    convolution. The condition :math:`c` enters as a bias: :math:`V c` for a global vector
    (per channel), a :math:`1 \times 1` convolution of a spatial map (per position).

    :param in_channels: input channels (the first layer: the embedded image).
    :param channels: the layer's channels :math:`p` (its gates have :math:`2p`).
    :param kernel_size: odd :math:`k`.
    :param first: the first layer (mask ``"A"``, no residual connection).
    :param cond_features: the size of the global condition (0: none).
    :param cond_channels: the channels of the spatial condition (0: none).

    References:
        [1] van den Oord et al. Conditional Image Generation with PixelCNN Decoders. NeurIPS 2016.
    """

    def __init__(
        self,
        in_channels: int,
        channels: int,
        kernel_size: int = 3,
        *,
        first: bool = False,
        cond_features: int = 0,
        cond_channels: int = 0,
    ) -> None:
        super().__init__()
        if kernel_size < 1 or kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be odd and positive, got {kernel_size}")
        if first is False and in_channels != channels:
            raise ValueError("a residual layer needs in_channels == channels")
        k = kernel_size
        self.first = first
        self.rows_above = k // 2
        self.vertical = nn.Conv2d(in_channels, 2 * channels, (k // 2 + 1, k), padding=(0, k // 2))
        self.vertical_to_horizontal = nn.Conv2d(2 * channels, 2 * channels, 1)
        self.horizontal = MaskedConv2d(in_channels, 2 * channels, (1, k), "A" if first else "B")
        self.horizontal_out = nn.Conv2d(channels, channels, 1)
        self.cond_vector = nn.Linear(cond_features, 4 * channels) if cond_features else None
        self.cond_map = nn.Conv2d(cond_channels, 4 * channels, 1) if cond_channels else None

    def condition(
        self, cond: torch.Tensor | None, cond_map: torch.Tensor | None
    ) -> torch.Tensor | None:
        """The condition's bias for both stacks, ``(N, 4p, 1 or H, 1 or W)``, or ``None``."""
        bias = None
        if self.cond_vector is not None and cond is not None:
            bias = self.cond_vector(cond)[..., None, None]
        if self.cond_map is not None and cond_map is not None:
            spatial = self.cond_map(cond_map)
            bias = spatial if bias is None else bias + spatial
        return bias

    def vertical_step(
        self, v: torch.Tensor, bias: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The next vertical stack from ``v`` ``(N, C, H, W)``, and what it gives the horizontal
        stack: at row ``r``, from the rows above ``r`` only."""
        v_pre = self.vertical(F.pad(v, (0, 0, self.rows_above, 0)))  # rows r - k//2 .. r
        above = self.vertical_to_horizontal(_down_shift(v_pre))
        if bias is not None:
            v_pre = v_pre + bias.chunk(2, dim=1)[0]
        return _gate(v_pre), above

    def horizontal_step(
        self, h: torch.Tensor, above: torch.Tensor, bias: torch.Tensor | None
    ) -> torch.Tensor:
        """The next horizontal stack from ``h`` and the vertical stack's ``above`` (any rows)."""
        h_pre = self.horizontal(h) + above
        if bias is not None:
            h_pre = h_pre + bias.chunk(2, dim=1)[1]
        h_out = self.horizontal_out(_gate(h_pre))
        return h_out if self.first else h + h_out

    def forward(
        self,
        v: torch.Tensor,
        h: torch.Tensor,
        cond: torch.Tensor | None = None,
        cond_map: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The next vertical and horizontal stacks from ``v`` and ``h`` ``(N, C, H, W)``."""
        bias = self.condition(cond, cond_map)
        v, above = self.vertical_step(v, bias)
        return v, self.horizontal_step(h, above, bias)


class PixelCNN(nn.Module):
    r"""The gated PixelCNN [2]: per position :math:`i` of an image the parameters of
    :math:`p(x_i \mid x_{<i}, c)`, depending on the image only at positions before :math:`i` in
    raster order: with :math:`L` layers and :math:`m = \lfloor k/2 \rfloor`, on every row of
    the :math:`Lm + 1` above within :math:`Lm` columns either side, and on its own row the
    :math:`Lm` positions to its left (no blind spot).

    The image enters as ``x`` ``(..., C, H, W)``: real or binary values (``categories=None``), or
    integer categories ``0 .. categories - 1`` embedded in ``embedding_dim`` dims per channel
    (a VQ-VAE's code grid, with ``C = 1``). The output is ``(..., outputs, C, H, W)``:
    ``outputs`` numbers per channel and position (default: 1, a Bernoulli logit; ``categories``
    logits for integer input), in the layout of ``torch.nn.functional.cross_entropy``.

    The condition :math:`c` is a global vector ``cond`` ``(..., cond_features)`` (a code, a
    one-hot class) and/or a spatial map ``cond_map`` ``(..., cond_channels, H, W)`` (a decoder's
    output; an upsampled top-level code grid). It enters every gated layer as a bias, as in [2]
    (``condition_every_layer=True``), or only the first layer.

    :param in_channels: the image's channels :math:`C`.
    :param channels: the channels :math:`p` of every layer.
    :param layers: the number of gated layers (the first has mask ``"A"``).
    :param kernel_size: odd :math:`k` of the stacks' kernels.
    :param categories: the number of integer categories of the input, or ``None`` for real input.
    :param embedding_dim: the embedding size of a category (default ``channels``).
    :param outputs: numbers per channel and position (default 1, or ``categories``).
    :param cond_features: the size of the global condition (0: none).
    :param cond_channels: the channels of the spatial condition (0: none).
    :param condition_every_layer: the condition enters every layer (else only the first).

    References:
        [1] van den Oord, Kalchbrenner, Kavukcuoglu. Pixel Recurrent Neural Networks. ICML 2016.
        [2] van den Oord et al. Conditional Image Generation with PixelCNN Decoders. NeurIPS 2016.
    """

    def __init__(
        self,
        in_channels: int = 1,
        *,
        channels: int = 32,
        layers: int = 5,
        kernel_size: int = 3,
        categories: int | None = None,
        embedding_dim: int | None = None,
        outputs: int | None = None,
        cond_features: int = 0,
        cond_channels: int = 0,
        condition_every_layer: bool = True,
    ) -> None:
        super().__init__()
        for name, value in (("in_channels", in_channels), ("channels", channels)):
            if not (isinstance(value, int) and value >= 1):
                raise ValueError(f"PixelCNN: {name} must be a positive int, got {value!r}")
        if not (isinstance(layers, int) and layers >= 1):
            raise ValueError(f"PixelCNN: layers must be a positive int, got {layers!r}")
        if categories is not None and not (isinstance(categories, int) and categories >= 2):
            raise ValueError(
                f"PixelCNN: categories must be an int >= 2 or None, got {categories!r}"
            )
        if cond_features < 0 or cond_channels < 0:
            raise ValueError("PixelCNN: cond_features and cond_channels must be >= 0")
        self.in_channels = in_channels
        self.categories = categories
        self.outputs = int(outputs if outputs is not None else (categories or 1))
        self.cond_features, self.cond_channels = int(cond_features), int(cond_channels)
        self.embedding: nn.Embedding | None = None
        width = in_channels
        if categories is not None:
            embedding_dim = int(embedding_dim or channels)
            self.embedding = nn.Embedding(categories, embedding_dim)
            width = in_channels * embedding_dim
        self.layers = nn.ModuleList(
            GatedPixelCNNLayer(
                width if i == 0 else channels,
                channels,
                kernel_size,
                first=i == 0,
                cond_features=cond_features if condition_every_layer or i == 0 else 0,
                cond_channels=cond_channels if condition_every_layer or i == 0 else 0,
            )
            for i in range(layers)
        )
        self.head = nn.Sequential(
            nn.ReLU(),
            nn.Conv2d(channels, channels, 1),
            nn.ReLU(),
            nn.Conv2d(channels, self.outputs * in_channels, 1),
        )

    def _embed(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` ``(N, C, H, W)`` as the first layer's input ``(N, C', H, W)``."""
        if self.embedding is None:
            if x.is_floating_point():
                return x
            return x.to(next(self.parameters()).dtype)
        if x.is_floating_point():
            raise ValueError("PixelCNN with categories needs integer input x")
        if x.numel() and (int(x.min()) < 0 or int(x.max()) >= self.embedding.num_embeddings):
            raise ValueError(
                f"PixelCNN: x must hold categories 0 .. {self.embedding.num_embeddings - 1}"
            )
        e = self.embedding(x)  # (N, C, H, W, E)
        return e.permute(0, 1, 4, 2, 3).reshape(x.shape[0], -1, *x.shape[2:])

    def _inputs(
        self, x: torch.Tensor, cond: torch.Tensor | None, cond_map: torch.Tensor | None
    ) -> tuple[torch.Size, torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        """The batch shape, and ``x`` embedded and the conditions with the batch flattened."""
        if x.dim() < 4 or x.shape[-3] != self.in_channels:
            raise ValueError(
                f"PixelCNN expects x of shape (..., {self.in_channels}, H, W), got {tuple(x.shape)}"
            )
        batch, (c, height, width) = x.shape[:-3], x.shape[-3:]
        if (self.cond_features and cond is None) or (self.cond_channels and cond_map is None):
            raise ValueError("PixelCNN: this network is conditioned: pass cond / cond_map")
        if cond is not None:
            if cond.shape[-1] != self.cond_features:
                raise ValueError(
                    f"PixelCNN: cond must have {self.cond_features} features, got "
                    f"{tuple(cond.shape)}"
                )
            cond = cond.expand(*batch, self.cond_features).reshape(-1, self.cond_features)
        if cond_map is not None:
            expected = (self.cond_channels, height, width)
            if tuple(cond_map.shape[-3:]) != expected:
                raise ValueError(
                    f"PixelCNN: cond_map must be (..., {expected[0]}, {height}, {width}), got "
                    f"{tuple(cond_map.shape)}"
                )
            cond_map = cond_map.expand(*batch, *expected).reshape(-1, *expected)
        return batch, self._embed(x.reshape(-1, c, height, width)), cond, cond_map

    def _gated(self) -> list[GatedPixelCNNLayer]:
        return cast(list[GatedPixelCNNLayer], list(self.layers))

    def _output(self, h: torch.Tensor, batch: torch.Size) -> torch.Tensor:
        out = self.head(h)
        return out.reshape(*batch, self.outputs, self.in_channels, *h.shape[-2:])

    def forward(
        self,
        x: torch.Tensor,
        cond: torch.Tensor | None = None,
        cond_map: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """The parameters ``(..., outputs, C, H, W)`` of each :math:`p(x_i \\mid x_{<i}, c)`."""
        batch, v, cond, cond_map = self._inputs(x, cond, cond_map)
        h = v
        for layer in self.layers:
            v, h = layer(v, h, cond, cond_map)
        return self._output(h, batch)

    def row_context(
        self,
        x: torch.Tensor,
        row: int,
        cond: torch.Tensor | None = None,
        cond_map: torch.Tensor | None = None,
    ) -> list[tuple[torch.Tensor, torch.Tensor | None]]:
        """What each layer's horizontal stack receives at row ``row`` from the rows above it and
        from the condition, computed once per row for :meth:`row_forward` (drawing a row pixel
        by pixel then runs the horizontal stacks on that row alone). Rows of ``x`` from ``row``
        on are ignored."""
        if cond_map is not None:
            cond_map = cond_map[..., : row + 1, :]
        _, v, cond, cond_map = self._inputs(x[..., : row + 1, :], cond, cond_map)
        context: list[tuple[torch.Tensor, torch.Tensor | None]] = []
        for layer in self._gated():
            bias = layer.condition(cond, cond_map)
            v, above = layer.vertical_step(v, bias)
            context.append((above[..., -1:, :], None if bias is None else bias[..., -1:, :]))
        return context

    def row_forward(
        self, x_row: torch.Tensor, context: list[tuple[torch.Tensor, torch.Tensor | None]]
    ) -> torch.Tensor:
        """The output ``(..., outputs, C, 1, W)`` at one row from that row's values ``x_row``
        ``(..., C, 1, W)`` and its :meth:`row_context`: equal to :meth:`forward`'s row."""
        batch = x_row.shape[:-3]
        h = self._embed(x_row.reshape(-1, *x_row.shape[-3:]))
        for layer, (above, bias) in zip(self._gated(), context, strict=True):
            h = layer.horizontal_step(h, above, bias)
        return self._output(h, batch)
