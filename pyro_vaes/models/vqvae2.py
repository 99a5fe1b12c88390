r"""The VQ-VAE-2: two levels of quantised code grids, the bottom one quantised given the top one,
a decoder reading both, and a learned autoregressive prior over each level.

For an image :math:`x` (``C x H x W``) the bottom encoder gives features :math:`h_b` on an
``H/4 x W/4`` grid (7x7 for MNIST), the top encoder a further halving (4x4). Per datapoint,

.. math::
    z_e^{top} = E_t(h_b), \quad k^{top}_i = \arg\min_j \lVert z^{top}_{e,i} - e^{top}_j\rVert,
    \quad z_e^{bot} = E_b\big(h_b,\ D_t(\tilde e^{top}_{k^{top}})\big),
    \quad k^{bot}_i = \arg\min_j \lVert z^{bot}_{e,i} - e^{bot}_j\rVert,

with :math:`\tilde e = z_e + \mathrm{sg}[e_k - z_e]` the straight-through value, and the decoder
:math:`D` reads the bottom codes beside the upsampled top codes. The loss sums both levels'
codebook and commitment errors,

.. math::
    \mathcal L = -\log p(x \mid e^{top}_{k^{top}}, e^{bot}_{k^{bot}})
    + \sum_{l \in \{top, bot\}} \lVert \mathrm{sg}[z^l_e] - e^l_{k^l}\rVert^2
    + \beta\,\lVert z^l_e - \mathrm{sg}[e^l_{k^l}]\rVert^2 - \log p(k^{top}) - \log p(k^{bot}
    \mid k^{top}),

and the generative model is :math:`p(k^{top})\,p(k^{bot} \mid k^{top})\,p(x \mid k^{top},
k^{bot})`. The autoencoder trains under the uniform priors (the last two terms constant); then
:meth:`VQVAE2.after_fit` fits the learned priors to the codes of the training images
(:class:`~pyro_vaes.models.code_prior.CodePrior`: a gated PixelCNN over the top grid, and one
over the bottom grid conditioned on the whole top grid), and the model scores and samples under
them: top codes first, then the bottom codes given them, then the decoder.

As a Pyro model/guide pair: the guide puts :math:`z_e^{top}` and :math:`z_e^{bot}` at the latent
sites ``z_top`` and ``z_bottom`` as point masses (the bottom computed from the straight-through
top codes, so the bottom's gradients reach the top encoder); the model draws ``z_top`` from the
top prior, quantises it, draws ``z_bottom`` from the bottom prior given the top codes, quantises
it and decodes (:func:`~pyro_vaes.models.vqvae.quantize_site` adds each level's squared errors as
a factor while training). As in the paper, the catalogue's ``vqvae2`` updates its codebooks as
exponential moving averages of the vectors assigned to them (``ema=True``: the codebook terms
drop out). The paper's priors are large PixelCNNs with self-attention layers; here they are small
gated PixelCNNs (5 layers of 32 channels by default), sized for a CPU.

References:
    [1] Razavi, van den Oord, Vinyals. Generating Diverse High-Fidelity Images with VQ-VAE-2.
    NeurIPS 2019.
    [2] van den Oord, Vinyals, Kavukcuoglu. Neural Discrete Representation Learning.
    NeurIPS 2017.
    [3] van den Oord, Kalchbrenner, Vinyals, Espeholt, Graves, Kavukcuoglu. Conditional Image
    Generation with PixelCNN Decoders. NeurIPS 2016.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pyro
import pyro.distributions as dist
import torch
from torch import nn

from pyro_vaes.data import batches
from pyro_vaes.likelihoods import Likelihood
from pyro_vaes.models.base import BaseModel, data_event_dim
from pyro_vaes.models.code_prior import CodePrior
from pyro_vaes.models.vqvae import (
    Codebook,
    UniformCodebook,
    VectorQuantizer,
    check_image,
    downsampler,
    grid_maps,
    grid_vectors,
    halved,
    quantize_site,
    upsampler,
)

__all__ = ["VQVAE2"]


class VQVAE2(BaseModel):
    """The two-level VQ-VAE-2 (module docstring) for images ``data_shape`` ``(C, H, W)``.

    :param likelihood: :math:`p(x \\mid \\cdot)` of the decoder's output.
    :param top: the top level's :class:`~pyro_vaes.models.vqvae.VectorQuantizer`.
    :param bottom: the bottom level's; both must have the same code size ``dim``.
    :param channels: the channels of the encoders' and decoders' convolutions.
    :param beta: the commitment weight (0.25 in the paper).
    :param top_prior: the learned prior over the top codes (unconditional), or ``None``.
    :param bottom_prior: the learned prior over the bottom codes, conditioned on the top codes,
        or ``None``; both or neither. Their parameters are frozen except while fitted.
    """

    latent_sites = ("z_top", "z_bottom")

    def __init__(
        self,
        data_shape: Sequence[int],
        likelihood: Likelihood,
        top: VectorQuantizer,
        bottom: VectorQuantizer,
        *,
        channels: int = 64,
        beta: float = 0.25,
        top_prior: CodePrior | None = None,
        bottom_prior: CodePrior | None = None,
    ) -> None:
        super().__init__()
        c, height, width = check_image(data_shape, "VQVAE2")
        if top.dim != bottom.dim:
            raise ValueError(
                f"top and bottom codes must have one size, got {top.dim}, {bottom.dim}"
            )
        if channels < 1 or beta < 0:
            raise ValueError(f"need channels >= 1 and beta >= 0, got {channels}, {beta}")
        self.data_shape = (c, height, width)
        self.bottom_grid = (halved(height, 2), halved(width, 2))
        self.top_grid = (halved(height, 3), halved(width, 3))
        d = top.dim
        self.top, self.bottom, self.likelihood, self.beta = top, bottom, likelihood, float(beta)
        self.encoder_bottom = downsampler(c, channels, 2)
        self.encoder_top = nn.Sequential(
            downsampler(channels, channels, 1), nn.Conv2d(channels, d, 1)
        )
        self.decoder_top = upsampler(d, channels, d, 1)
        self.pre_bottom = nn.Conv2d(channels + d, d, 1)
        self.upsample_top = nn.ConvTranspose2d(d, d, 4, 2, 1)
        self.decoder = upsampler(2 * d, channels, c, 2)
        if (top_prior is None) != (bottom_prior is None):
            raise ValueError("give both top_prior and bottom_prior, or neither")
        if top_prior is not None and bottom_prior is not None:
            top_cells, bottom_cells = self._cells(self.top_grid), self._cells(self.bottom_grid)
            if (
                top_prior.grid != self.top_grid
                or top_prior.num_codes != top.num_codes
                or top_prior.condition is not None
            ):
                raise ValueError(
                    f"top_prior must be unconditional over the {self.top_grid} grid of "
                    f"{top.num_codes} codes ({top_cells} positions)"
                )
            if (
                bottom_prior.grid != self.bottom_grid
                or bottom_prior.num_codes != bottom.num_codes
                or bottom_prior.condition != (top.num_codes, self.top_grid)
            ):
                raise ValueError(
                    f"bottom_prior must be over the {self.bottom_grid} grid of "
                    f"{bottom.num_codes} codes ({bottom_cells} positions), conditioned on the "
                    f"{self.top_grid} grid of {top.num_codes} top codes"
                )
            top_prior.requires_grad_(False)
            bottom_prior.requires_grad_(False)
        self.top_prior, self.bottom_prior = top_prior, bottom_prior

    @staticmethod
    def _cells(grid: tuple[int, int]) -> int:
        return grid[0] * grid[1]

    @property
    def learned_prior(self) -> bool:
        """Whether codes are scored and drawn under the fitted learned priors."""
        return (
            self.top_prior is not None
            and self.bottom_prior is not None
            and bool(self.top_prior.fitted)
            and bool(self.bottom_prior.fitted)
        )

    def prior_top(self, uniform: bool = False) -> Codebook:
        """The prior over the top code vectors: the learned one once fitted (unless
        ``uniform``), else the uniform one."""
        if self.top_prior is not None and self.learned_prior and not uniform:
            return Codebook(self.top.codebook, self.top_prior.distribution())
        return UniformCodebook(self.top.codebook, self._cells(self.top_grid))

    def prior_bottom(self, top_indices: torch.Tensor, uniform: bool = False) -> Codebook:
        """The prior over the bottom code vectors given the top code indices ``(..., P_top)``."""
        if self.bottom_prior is not None and self.learned_prior and not uniform:
            return Codebook(self.bottom.codebook, self.bottom_prior.distribution(top_indices))
        cells = self._cells(self.bottom_grid)
        return UniformCodebook(self.bottom.codebook, cells, top_indices.shape[:-1])

    # ------------------------------------------------------------------ networks

    def encode_vectors(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """:math:`(z_e^{top}, z_e^{bot})`, shaped ``(..., P_top, D)`` and ``(..., P_bot, D)``;
        the bottom one computed from the straight-through top codes."""
        if tuple(x.shape[-3:]) != self.data_shape:
            raise ValueError(
                f"VQVAE2 expects images of shape {self.data_shape}, got a batch of shape "
                f"{tuple(x.shape)}"
            )
        batch = x.shape[:-3]
        h = self.encoder_bottom(x.reshape(-1, *self.data_shape))
        z_top = grid_vectors(self.encoder_top(h), batch)
        e = self.top.codebook[self.top.nearest(z_top)]
        straight = z_top + (e - z_top).detach()
        hb, wb = self.bottom_grid
        from_top = self.decoder_top(grid_maps(straight, self.top_grid))[..., :hb, :wb]
        z_bottom = grid_vectors(self.pre_bottom(torch.cat([h, from_top], 1)), batch)
        return z_top, z_bottom

    def decoder_params(self, top: torch.Tensor, bottom: torch.Tensor) -> torch.Tensor:
        """The likelihood's parameters ``(..., C, H, W)`` from top and bottom code vectors."""
        batch = bottom.shape[:-2]
        hb, wb = self.bottom_grid
        up = self.upsample_top(grid_maps(top, self.top_grid))[..., :hb, :wb]
        maps = torch.cat([up, grid_maps(bottom, self.bottom_grid)], 1)
        c, height, width = self.data_shape
        return self.decoder(maps)[..., :height, :width].reshape(*batch, c, height, width)

    # ------------------------------------------------------------------ Pyro

    def model(self, x: torch.Tensor | None = None, y: torch.Tensor | None = None) -> None:
        """Top codes from their prior, quantised; bottom codes from their prior given the top
        indices, quantised; both decoded (each level's squared errors a factor while
        training); ``x=None`` decodes prior draws."""
        self.register_with_pyro()
        observed = x is not None
        with self.data_plate(x, y):
            z_top = pyro.sample("z_top", self.prior_top())
            top, k_top = quantize_site("vq_loss_top", self.top, z_top, self.beta, observed)
            z_bottom = pyro.sample("z_bottom", self.prior_bottom(k_top))
            bottom, _ = quantize_site("vq_loss_bottom", self.bottom, z_bottom, self.beta, observed)
            params = self.decoder_params(top, bottom)
            pyro.sample("x", self.likelihood(params, data_event_dim(params, z_bottom, 2)), obs=x)

    def guide(self, x: torch.Tensor | None = None, y: torch.Tensor | None = None) -> None:
        self.register_with_pyro()
        x = self.require_x(x)
        z_top, z_bottom = self.encode_vectors(x)
        with self.data_plate(x):
            pyro.sample("z_top", dist.Delta(z_top, event_dim=2))
            pyro.sample("z_bottom", dist.Delta(z_bottom, event_dim=2))

    # ------------------------------------------------------------------ codes and pictures

    @torch.no_grad()
    def codes(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The top and bottom code indices of every datapoint, ``(N, P_top)`` and
        ``(N, P_bot)``."""
        device = self.top.codebook.device
        tops, bottoms = [], []
        for b in batches(x, 1000):
            z_top, z_bottom = self.encode_vectors(b.to(device))
            tops.append(self.top.nearest(z_top))
            bottoms.append(self.bottom.nearest(z_bottom))
        return torch.cat(tops), torch.cat(bottoms)

    def after_fit(self, x: torch.Tensor) -> None:
        """The post-training stage (:class:`~pyro_vaes.protocols.PostTraining`): fit the learned
        priors to the codes of the training images ``x`` (nothing without them)."""
        if self.top_prior is not None:
            self.fit_prior(x)

    def fit_prior(self, x: torch.Tensor, **options: Any) -> VQVAE2:
        """Fit the top prior to the top codes of ``x`` and the bottom prior to the bottom codes
        given the top ones; ``options`` go to both
        :meth:`~pyro_vaes.models.code_prior.CodePrior.fit`."""
        if self.top_prior is None or self.bottom_prior is None:
            raise ValueError("this VQ-VAE-2 has no learned priors (built without them)")
        was_training = self.training
        k_top, k_bottom = self.codes(x)
        self.top_prior.fit(k_top, **options)
        self.bottom_prior.fit(k_bottom, k_top, **options)
        self.train(was_training)
        return self

    def _split(self, code: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        d = self.top.dim
        cut = self._cells(self.top_grid) * d
        top, bottom = code[..., :cut], code[..., cut:]
        return top.reshape(*code.shape[:-1], -1, d), bottom.reshape(*code.shape[:-1], -1, d)

    @torch.no_grad()
    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """The quantised top and bottom codes of each datapoint, flattened and concatenated to
        ``(N, (P_top + P_bot) * D)``."""
        k_top, k_bottom = self.codes(x)
        top, bottom = self.top.codebook[k_top], self.bottom.codebook[k_bottom]
        return torch.cat([top.flatten(-2), bottom.flatten(-2)], -1)

    @torch.no_grad()
    def decode(self, code: torch.Tensor) -> torch.Tensor:
        """The likelihood's mean at codes as :meth:`encode` returns them."""
        return self.likelihood.mean(self.decoder_params(*self._split(code)))

    @torch.no_grad()
    def sample_codes(self, n: int, uniform: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """``n`` draws of top and bottom code vectors: the top from its prior, the bottom from
        its prior given the top (the learned priors once fitted, unless ``uniform``)."""
        k_top = self.prior_top(uniform).indices.sample((n,))
        bottom = self.prior_bottom(k_top, uniform).sample()
        return self.top.codebook[k_top], bottom

    @torch.no_grad()
    def sample(self, n: int, uniform: bool = False) -> torch.Tensor:
        """``n`` decoded draws of codes (:meth:`sample_codes`)."""
        top, bottom = self.sample_codes(n, uniform)
        return self.likelihood.mean(self.decoder_params(top, bottom))
