r"""Procedural sprites with known generative factors, for disentanglement metrics.

Every combination of five factors on a grid is drawn once, as a binary image:

* ``shape``: square, ellipse, heart;
* ``scale``: evenly spaced in ``[0.5, 1]`` of the largest size;
* ``rotation``: evenly spaced in :math:`[0, \pi/2)`, a range on which all three shapes are
  told apart by their images (a square repeats every :math:`\pi/2`);
* ``x`` and ``y``: the sprite's centre, evenly spaced so that every sprite stays inside the frame.

A pixel is on when its centre lies inside the shape, mapped to the sprite's own frame by
:math:`u = R(-\theta)(p - c) / (r s)`, where :math:`c` is the centre, :math:`\theta` the
rotation, :math:`s` the scale and :math:`r` the largest half-width. The shapes in that frame:
square :math:`\max(|u_1|, |u_2|) \le 0.8`; ellipse :math:`u_1^2 + (u_2 / 0.5)^2 \le 1`; heart
:math:`(a^2 + b^2 - 1)^3 - a^2 b^3 \le 0` with :math:`(a, b) = 1.15\,(u_1, -u_2 - 0.1)`.

The design follows dSprites (Matthey et al. 2017), drawn here with no download and at any size.

    >>> s = generate(size=32)
    >>> s.images.shape, s.factors.shape, s.factor_names
    (torch.Size([4608, 1, 32, 32]), torch.Size([4608, 5]), ('shape', 'scale', 'rotation', 'x', 'y'))

References:
    [1] Matthey, Higgins, Hassabis, Lerchner. dSprites: Disentanglement testing Sprites dataset.
    https://github.com/deepmind/dsprites-dataset, 2017.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

__all__ = ["SHAPES", "Sprites", "generate"]

SHAPES = ("square", "ellipse", "heart")


@dataclass(frozen=True)
class Sprites:
    """Images ``(N, 1, size, size)`` in ``{0, 1}``, the integer factor values ``(N, 5)`` of each
    (indices into the grid), and the factors' names and numbers of values."""

    images: torch.Tensor
    factors: torch.Tensor
    factor_names: tuple[str, ...]
    factor_sizes: tuple[int, ...]


def _inside(shape: torch.Tensor, u1: torch.Tensor, u2: torch.Tensor) -> torch.Tensor:
    square = torch.maximum(u1.abs(), u2.abs()) <= 0.8
    ellipse = u1**2 + (u2 / 0.5) ** 2 <= 1
    a, b = 1.15 * u1, 1.15 * (-u2 - 0.1)  # image rows grow downwards: flip so the heart stands
    heart = (a**2 + b**2 - 1) ** 3 - a**2 * b**3 <= 0
    return torch.where(shape == 0, square, torch.where(shape == 1, ellipse, heart))


def generate(size: int = 32, scales: int = 4, rotations: int = 6, positions: int = 8) -> Sprites:
    """All ``3 * scales * rotations * positions**2`` sprites, in row-major factor order.

    :param size: image height and width in pixels (at least 16).
    :param scales: number of scale values.
    :param rotations: number of rotation values.
    :param positions: number of values of each of ``x`` and ``y``.
    """
    if size < 16 or min(scales, rotations, positions) < 1:
        raise ValueError(
            f"need size >= 16 and at least one value per factor, got size={size}, "
            f"scales={scales}, rotations={rotations}, positions={positions}"
        )
    sizes = (len(SHAPES), scales, rotations, positions, positions)
    factors = torch.cartesian_prod(*(torch.arange(n) for n in sizes))
    radius = 0.2 * size  # half-width of the largest sprite
    margin = radius * math.sqrt(2)  # a rotated square's corner stays inside the frame
    scale = torch.linspace(0.5, 1.0, scales) if scales > 1 else torch.ones(1)
    angle = torch.arange(rotations) * (math.pi / 2 / rotations)
    centre = (
        torch.linspace(margin, size - margin, positions)
        if positions > 1
        else torch.full((1,), size / 2)
    )

    shape_id, s, theta = factors[:, 0], scale[factors[:, 1]], angle[factors[:, 2]]
    cx, cy = centre[factors[:, 3]], centre[factors[:, 4]]
    pixel = torch.arange(size, dtype=torch.float32) + 0.5  # pixel centres
    dx = pixel[None, None, :] - cx[:, None, None]  # (N, 1, W)
    dy = pixel[None, :, None] - cy[:, None, None]  # (N, H, 1)
    cos, sin = theta.cos()[:, None, None], theta.sin()[:, None, None]
    r = (radius * s)[:, None, None]
    u1 = (cos * dx + sin * dy) / r
    u2 = (-sin * dx + cos * dy) / r
    images = _inside(shape_id[:, None, None], u1, u2).float().unsqueeze(1)
    return Sprites(images, factors, ("shape", "scale", "rotation", "x", "y"), sizes)
