r"""Structural similarity: SSIM and multi-scale SSIM (MS-SSIM) for batches of images.

At each scale, with Gaussian-weighted local means :math:`\mu`, variances :math:`\sigma^2` and
covariance :math:`\sigma_{xy}`,

.. math::
    l = \frac{2\mu_x\mu_y + C_1}{\mu_x^2 + \mu_y^2 + C_1}, \qquad
    cs = \frac{2\sigma_{xy} + C_2}{\sigma_x^2 + \sigma_y^2 + C_2},

averaged over the image, :math:`C_1 = (0.01 L)^2`, :math:`C_2 = (0.03 L)^2` for the data range
:math:`L`. MS-SSIM combines :math:`M` scales, each half the size of the one before:
:math:`\prod_{j<M} cs_j^{w_j} \cdot (l_M cs_M)^{w_M}`, with the weights of Wang et al. (2003)
renormalised to the scales used. Two choices make it work on the small images of this project
(8x8 digits up to 32x32): the Gaussian window (11 pixels, sigma 1.5) shrinks to the image, and
there are as many scales (at most 5) as keep the smallest side at least 4 pixels; :math:`cs` is
clipped at 1e-6 so that fractional powers stay real and differentiable. Leading dims (particles, datapoints) pass
through.

References:
    [1] Wang, Simoncelli, Bovik. Multiscale structural similarity for image quality assessment.
    Asilomar 2003.
    [2] Wang, Bovik, Sheikh, Simoncelli. Image quality assessment: from error visibility to
    structural similarity. IEEE TIP 2004.
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
    """Mean luminance and contrast-structure terms per image, ``(B,)`` each."""
    size = min(window, x.shape[-1], x.shape[-2])
    g = _window(size, sigma * size / window, x.dtype, x.device)
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    mx, my = _filter(x, g), _filter(y, g)
    sxx = _filter(x * x, g) - mx * mx
    syy = _filter(y * y, g) - my * my
    sxy = _filter(x * y, g) - mx * my
    lum = (2 * mx * my + c1) / (mx * mx + my * my + c1)
    cs = (2 * sxy + c2) / (sxx + syy + c2)
    return lum.flatten(1).mean(1), cs.flatten(1).mean(1)


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
    lum, cs = _terms(xb, yb, data_range, window, sigma)
    return (lum * cs).reshape(lead)


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
    w = w / w.sum()
    result = torch.ones(xb.shape[0], dtype=xb.dtype, device=xb.device)
    for j in range(scales):
        lum, cs = _terms(xb, yb, data_range, window, sigma)
        if j == scales - 1:
            result = result * (lum * cs).clamp_min(1e-6) ** w[j]
        else:
            result = result * cs.clamp_min(1e-6) ** w[j]
            xb, yb = F.avg_pool2d(xb, 2), F.avg_pool2d(yb, 2)
    return result.reshape(lead)
