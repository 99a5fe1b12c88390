r"""Structural similarity: SSIM and multi-scale SSIM (MS-SSIM) for batches of images.

At each scale, with Gaussian-weighted local means :math:`\mu`, variances :math:`\sigma^2` and
covariance :math:`\sigma_{xy}` (an 11-tap Gaussian window, :math:`\sigma = 1.5`, 'valid'
borders), the maps

.. math::
    l = \frac{2\mu_x\mu_y + C_1}{\mu_x^2 + \mu_y^2 + C_1}, \qquad
    cs = \frac{2\sigma_{xy} + C_2}{\sigma_x^2 + \sigma_y^2 + C_2},

:math:`C_1 = (0.01 L)^2`, :math:`C_2 = (0.03 L)^2` for the data range :math:`L`. Per channel,
:math:`\mathrm{SSIM} = \overline{l \cdot cs}` (the mean of the SSIM map) and
:math:`\overline{cs}` the mean of the contrast-structure map. MS-SSIM combines :math:`M` scales,
each a 2x2 average pooling of the one before (odd sides padded by one, as pytorch-msssim does):

.. math::
    \mathrm{MS\text{-}SSIM} = \mathrm{relu}(\mathrm{SSIM}_M)^{w_M}
    \prod_{j<M} \mathrm{relu}(\overline{cs}_j)^{w_j}

per channel, then the mean over channels, with Wang et al.'s weights
:math:`w = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)` as they are (not renormalised). This is the
definition of Wang et al. (2003) as implemented by pytorch-msssim (``ms_ssim``), and ``ssim``
is its ``ssim`` (no relu). Where a term is clipped to zero by the relu its gradient is zero
(rather than the NaN of :math:`0^{w-1} \cdot 0`).

Adaptation to small images (8x8 digits up to 32x32), where pytorch-msssim refuses MS-SSIM (it
needs a side above 160) and smooths nothing along a side shorter than the window: the Gaussian
window shrinks to the image (``min(11, side)`` taps, :math:`\sigma` scaled by the same factor);
MS-SSIM uses as many scales (at most 5) as keep the smallest side at least ``min_size`` pixels,
and with fewer than 5 scales the first :math:`M` weights are renormalised to sum to one (so
that one scale is SSIM and scores stay comparable across image sizes). On images large enough
for five scales with an 11-tap window at the coarsest one, this is pytorch-msssim exactly.
Leading dims (particles, datapoints) pass through.

References:
    [1] Wang, Simoncelli, Bovik. Multiscale structural similarity for image quality assessment.
    Asilomar 2003.
    [2] Wang, Bovik, Sheikh, Simoncelli. Image quality assessment: from error visibility to
    structural similarity. IEEE TIP 2004.
    [3] pytorch-msssim, https://github.com/VainF/pytorch-msssim (the reference implementation
    compared against in the tests).
"""

from __future__ import annotations

import torch
from torch.nn import functional as F

__all__ = ["WEIGHTS", "ms_ssim", "ssim"]

#: Wang et al.'s weights of the five scales, finest first
WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)


def _window(size: int, sigma: float, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    x = torch.arange(size, dtype=dtype, device=device) - (size - 1) / 2
    g = torch.exp(-(x**2) / (2 * sigma**2))
    return g / g.sum()


def _filter(x: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """Separable Gaussian filter, 'valid' borders, per channel; ``x`` is ``(B, C, H, W)``."""
    c = x.shape[1]
    x = F.conv2d(x, g.reshape(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
    return F.conv2d(x, g.reshape(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)


def _terms(
    x: torch.Tensor, y: torch.Tensor, data_range: float, window: int, sigma: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean of the SSIM map and of the contrast-structure map, per image and channel,
    ``(B, C)`` each."""
    size = min(window, x.shape[-1], x.shape[-2])
    g = _window(size, sigma * size / window, x.dtype, x.device)
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    mx, my = _filter(x, g), _filter(y, g)
    sxx = _filter(x * x, g) - mx * mx
    syy = _filter(y * y, g) - my * my
    sxy = _filter(x * y, g) - mx * my
    lum = (2 * mx * my + c1) / (mx * mx + my * my + c1)
    cs = (2 * sxy + c2) / (sxx + syy + c2)
    return (lum * cs).flatten(2).mean(-1), cs.flatten(2).mean(-1)


def _relu_pow(x: torch.Tensor, w: torch.Tensor | float) -> torch.Tensor:
    """``relu(x) ** w`` with a zero (not NaN) gradient where ``x <= 0``."""
    positive = x > 0
    return torch.where(positive, torch.where(positive, x, torch.ones_like(x)) ** w, 0.0)


def _pool(x: torch.Tensor) -> torch.Tensor:
    """2x2 average pooling; an odd side is padded by one (zeros counted), as pytorch-msssim."""
    return F.avg_pool2d(x, kernel_size=2, padding=[s % 2 for s in x.shape[-2:]])


def _as_batch(x: torch.Tensor) -> tuple[torch.Tensor, torch.Size]:
    if x.dim() < 3:
        raise ValueError(f"expected images (..., C, H, W), got shape {tuple(x.shape)}")
    lead = x.shape[:-3]
    return x.reshape(-1, *x.shape[-3:]), lead


def ssim(
    x: torch.Tensor, y: torch.Tensor, data_range: float = 1.0, window: int = 11, sigma: float = 1.5
) -> torch.Tensor:
    """SSIM of each pair of images ``(..., C, H, W)`` (leading dims broadcast); returns
    ``(...)``."""
    x, y = torch.broadcast_tensors(x, y)
    xb, lead = _as_batch(x)
    yb, _ = _as_batch(y)
    per_channel, _ = _terms(xb, yb, data_range, window, sigma)
    return per_channel.mean(-1).reshape(lead)


def ms_ssim(
    x: torch.Tensor,
    y: torch.Tensor,
    data_range: float = 1.0,
    window: int = 11,
    sigma: float = 1.5,
    min_size: int = 4,
) -> torch.Tensor:
    """MS-SSIM of each pair of images ``(..., C, H, W)`` (leading dims broadcast); returns
    ``(...)``, 1 for identical images. See the module docstring for the number of scales."""
    if x.shape[-3:] != y.shape[-3:]:
        raise ValueError(f"image shapes differ: {tuple(x.shape)} and {tuple(y.shape)}")
    x, y = torch.broadcast_tensors(x, y)
    xb, lead = _as_batch(x)
    yb, _ = _as_batch(y)
    side = min(xb.shape[-2:])
    if side < min_size:
        raise ValueError(f"MS-SSIM needs images of at least {min_size} pixels a side, got {side}")
    scales = 1
    while scales < len(WEIGHTS) and side // 2**scales >= min_size:
        scales += 1
    w = torch.tensor(WEIGHTS[:scales], dtype=xb.dtype, device=xb.device)
    if scales < len(WEIGHTS):  # the small-image adaptation (module docstring)
        w = w / w.sum()
    result = torch.ones(xb.shape[:2], dtype=xb.dtype, device=xb.device)
    for j in range(scales):
        per_channel, cs = _terms(xb, yb, data_range, window, sigma)
        if j == scales - 1:
            result = result * _relu_pow(per_channel, w[j])
        else:
            result = result * _relu_pow(cs, w[j])
            xb, yb = _pool(xb), _pool(yb)
    return result.mean(-1).reshape(lead)
