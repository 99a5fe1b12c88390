r"""The MS-SSIM VAE: a VAE whose reconstruction term is perceptual similarity, not a pixel
likelihood.

The observed likelihood is replaced by the factor :math:`\lambda\,\mathrm{MS\text{-}SSIM}(x,
\hat x(z))` per datapoint (:func:`pyro_vaes.ssim.ms_ssim`), with :math:`\hat x(z)` the mean of
the likelihood part at the decoder's output, so the negative ELBO is
:math:`\lambda\,(1 - \mathrm{MS\text{-}SSIM}) + \beta\,\mathrm{KL}` up to a constant.
:math:`\lambda` defaults to the number of pixels, which puts the term on the scale of a summed
per-pixel loss.

The MS-SSIM factor is not a normalised density of ``x``, so ``x`` is generated (``x=None``, and
for posterior predictive draws under ``poutine.uncondition``) from the likelihood part. While
scoring data that site is present but masked out (``poutine.mask(mask=False)``): it adds nothing
to any objective and is not checked against the data, but it is there to be replicated.

References:
    [1] Snell et al. Learning to Generate Images with Perceptual Similarity Metrics. ICIP 2017.
"""

from __future__ import annotations

from typing import Any

import pyro
import torch
from pyro import poutine

from pyro_vaes.metrics.ssim import ms_ssim
from pyro_vaes.models.base import data_event_dim
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

    def model(self, x: torch.Tensor | None = None, y: torch.Tensor | None = None) -> None:
        self.register_with_pyro()
        if x is not None and x.dim() != 4:
            raise ValueError(f"the MS-SSIM VAE needs images (N, C, H, W), got {tuple(x.shape)}")
        with self.data_plate(x, y):
            z = self.sample_code()
            params = self.decoder(z)
            if x is None:
                self.observe(params, z, None)
                return
            weight = self.weight if self.weight is not None else float(x.shape[-1] * x.shape[-2])
            pyro.factor("ms_ssim", weight * (ms_ssim(x, self.likelihood.mean(params)) - 1.0))
            # masked as a site (so no data check applies) and as a distribution (so its density
            # is never evaluated on data outside its support)
            event_dim = data_event_dim(params, z, 1)
            with poutine.mask(mask=False):
                pyro.sample("x", self.likelihood(params, event_dim).mask(False), obs=x)
