r"""The MS-SSIM VAE: a VAE whose reconstruction term is perceptual similarity, not a pixel
likelihood.

The observed likelihood is replaced by the factor :math:`\lambda\,\mathrm{MS\text{-}SSIM}(x,
\hat x(z))` per datapoint (:func:`pyro_vaes.ssim.ms_ssim`), with :math:`\hat x(z)` the mean of
the likelihood part at the decoder's output, so the negative ELBO is
:math:`\lambda\,(1 - \mathrm{MS\text{-}SSIM}) + \beta\,\mathrm{KL}` up to a constant.
:math:`\lambda` defaults to the number of pixels, which puts the term on the scale of a summed
per-pixel loss.

References:
    [1] Snell et al. Learning to Generate Images with Perceptual Similarity Metrics. ICIP 2017.
"""

from __future__ import annotations

from typing import Any

import pyro
import torch

from pyro_vaes.metrics.ssim import ms_ssim
from pyro_vaes.models.vae import VAE

__all__ = ["MSSSIMVAE"]


class MSSSIMVAE(VAE):
    """The parts of :class:`pyro_vaes.VAE`; the likelihood part only supplies the image mean.

    :param weight: :math:`\\lambda` (default: pixels per image).
    """

    def __init__(self, *args: Any, weight: float | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if weight is not None and not weight > 0:
            raise ValueError(f"weight must be > 0, got {weight}")
        self.weight = weight

    def model(self, x: torch.Tensor) -> None:
        if x.dim() != 4:
            raise ValueError(f"the MS-SSIM VAE needs images (N, C, H, W), got {tuple(x.shape)}")
        weight = self.weight if self.weight is not None else float(x.shape[-1] * x.shape[-2])
        with pyro.plate("data", x.shape[0]):
            with self._kl_weight():
                z = pyro.sample("z", self.prior())
            mean = self.likelihood.mean(self.decoder(z))
            pyro.factor("ms_ssim", weight * (ms_ssim(x, mean) - 1.0))
