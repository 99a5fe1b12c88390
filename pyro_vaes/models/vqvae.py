r"""The VQ-VAE as a Pyro model/guide pair: a codebook, the straight-through estimator, codebook
and commitment losses, optional EMA codebook updates, dead-code restarts, and a uniform prior
over codes.

The guide puts the encoder's output :math:`z_e(x)`, ``P`` vectors of size ``D`` per datapoint,
at the latent site as a point mass. The model quantises each vector to its nearest codebook
entry, :math:`k = \arg\min_j \lVert z_e - e_j\rVert`, and decodes the straight-through value
:math:`z_e + \mathrm{sg}[e_k - z_e]` (forward: :math:`e_k`; backward: the identity to the
encoder). Per datapoint, summed over its ``P`` vectors like the reconstruction over its pixels,

.. math::
    \mathcal L = -\log p(x \mid e_k) + \lVert \mathrm{sg}[z_e] - e_k\rVert^2
    + \beta\,\lVert z_e - \mathrm{sg}[e_k]\rVert^2 + P \log K,

the last term the KL of the deterministic posterior to the uniform prior over the ``K`` codes (a
constant). The two squared errors enter as a ``pyro.factor`` while training, so :func:`fit`
averages them over the batch exactly as it does the reconstruction: their weight does not drift
with the batch size. With ``ema=True`` the codebook is not trained by gradient but is an
exponential moving average of the vectors assigned to each code (the codebook term drops out);
with ``restart_after=n`` a code unused for ``n`` training steps is moved to a random encoder
output of the current batch.

The code vectors form a sequence of ``P`` positions (an MLP's ``latent_dim`` vectors) or, with
:class:`GridEncoder` and :class:`GridDecoder`, a convolutional grid of ``h x w`` positions (7x7
for 28x28 images), each position a ``D``-channel vector quantised on its own, as in the paper.
The uniform prior over codes is the one the autoencoder trains under; for sampling, the paper fits
an autoregressive prior over the code indices of the training images afterwards. With a
:class:`~pyro_vaes.models.code_prior.CodePrior` (a gated PixelCNN over the grid),
:meth:`VQVAE.after_fit` fits it to the codes of the training images, and the model then scores and
draws codes under it: :math:`\log p(x) \ge \log p(x \mid e_k) + \log p_\psi(k)`, the bound of a
point-mass posterior, replaces the :math:`-P \log K` of the uniform prior.

References:
    [1] van den Oord, Vinyals, Kavukcuoglu. Neural Discrete Representation Learning.
    NeurIPS 2017.
    [2] Razavi, van den Oord, Vinyals. Generating Diverse High-Fidelity Images with VQ-VAE-2.
    NeurIPS 2019 (EMA updates).
    [3] Dhariwal et al. Jukebox: A Generative Model for Music. 2020 (restarting dead codes).
    [4] van den Oord, Kalchbrenner, Vinyals, Espeholt, Graves, Kavukcuoglu. Conditional Image
    Generation with PixelCNN Decoders. NeurIPS 2016 (the prior over codes).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import pyro
import pyro.distributions as dist
import torch
from torch import nn
from torch.distributions import constraints

from pyro_vaes.data import batches
from pyro_vaes.likelihoods import Likelihood
from pyro_vaes.models.base import BaseModel, data_event_dim
from pyro_vaes.models.code_prior import CodePrior

_ShapeLike = torch.Size | list[int] | tuple[int, ...]
_SCALAR = torch.Size()

__all__ = [
    "VQVAE",
    "Codebook",
    "GridDecoder",
    "GridEncoder",
    "Quantized",
    "ResidualBlock",
    "UniformCodebook",
    "VectorQuantizer",
    "check_image",
    "downsampler",
    "grid_maps",
    "grid_vectors",
    "halved",
    "nearest_code",
    "perplexity",
    "quantize_site",
    "upsampler",
]


def perplexity(indices: torch.Tensor, num_codes: int) -> float:
    r"""Codebook usage :math:`\exp(-\sum_k \bar p_k \log \bar p_k)` of code indices: ``K`` when
    all codes are used equally, 1 when one code takes everything."""
    p = torch.bincount(indices.reshape(-1), minlength=num_codes).double()
    p = p / p.sum()
    nz = p[p > 0]
    return float(torch.exp(-(nz * nz.log()).sum()))


def nearest_code(codebook: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """The index of the entry of ``codebook`` ``(K, D)`` nearest to each vector of ``z``
    ``(..., D)``."""
    flat = z.reshape(-1, codebook.shape[1])
    d2 = flat.pow(2).sum(1, keepdim=True) - 2 * flat @ codebook.T + codebook.pow(2).sum(1)
    return d2.argmin(1).reshape(z.shape[:-1])


class Codebook(dist.TorchDistribution):
    r"""A prior over ``P`` code vectors given by a distribution ``indices`` over their code
    indices (event shape ``(P,)``): ``sample`` draws indices and returns their codebook vectors
    ``(..., P, D)``; ``log_prob`` of vectors is that of the indices they quantise to (their
    nearest codebook entries), which is the point-mass posterior's term of the bound.

    :param codebook: ``(K, D)``.
    :param indices: the distribution of the indices, e.g. a
        :class:`~pyro_vaes.models.code_prior.CodeGrid` (the learned prior).
    """

    arg_constraints: ClassVar[dict[str, constraints.Constraint]] = {}
    support = constraints.real_vector

    def __init__(self, codebook: torch.Tensor, indices: dist.TorchDistribution) -> None:
        if len(indices.event_shape) != 1:
            raise ValueError(f"indices must have event shape (P,), got {indices.event_shape}")
        self.codebook, self.indices = codebook, indices
        self.positions = int(indices.event_shape[0])
        event = torch.Size((self.positions, codebook.shape[1]))
        super().__init__(indices.batch_shape, event, validate_args=False)

    def expand(self, batch_shape: _ShapeLike, _instance: object = None) -> Codebook:
        return Codebook(self.codebook, self.indices.expand(torch.Size(batch_shape)))

    def sample(self, sample_shape: _ShapeLike = _SCALAR) -> torch.Tensor:
        return self.codebook.detach()[self.indices.sample(torch.Size(sample_shape))]

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        return self.indices.log_prob(nearest_code(self.codebook.detach(), value))


class UniformCodebook(Codebook):
    r"""The uniform prior over codes, in embedding space: each of ``P`` positions takes one of the
    ``K`` codebook vectors with probability :math:`1/K`; ``log_prob`` is :math:`-P \log K`."""

    def __init__(
        self, codebook: torch.Tensor, positions: int, batch_shape: _ShapeLike = ()
    ) -> None:
        logits = codebook.new_zeros(positions, codebook.shape[0]).detach()
        uniform = dist.Categorical(logits=logits).to_event(1)
        super().__init__(codebook, uniform.expand(torch.Size(batch_shape)))

    def expand(self, batch_shape: _ShapeLike, _instance: object = None) -> UniformCodebook:
        return UniformCodebook(self.codebook, self.positions, batch_shape)


@dataclass(frozen=True)
class Quantized:
    """What quantising a batch gives: the straight-through codes, the code indices, and per
    datapoint the codebook and commitment squared errors."""

    codes: torch.Tensor
    indices: torch.Tensor
    codebook_loss: torch.Tensor
    commitment_loss: torch.Tensor


class VectorQuantizer(nn.Module):
    """A codebook of ``num_codes`` vectors of size ``dim``, with the straight-through estimator,
    optional EMA updates and dead-code restarts (see the module docstring).

    :param ema: update the codebook as a moving average (decay ``decay``) instead of by gradient.
    :param restart_after: training steps a code may go unused before it is restarted (0: never).
    """

    counts: torch.Tensor
    sums: torch.Tensor
    idle: torch.Tensor

    def __init__(
        self,
        num_codes: int,
        dim: int,
        *,
        ema: bool = False,
        decay: float = 0.99,
        restart_after: int = 0,
    ) -> None:
        super().__init__()
        if num_codes < 2 or dim < 1 or not 0 < decay < 1 or restart_after < 0:
            raise ValueError(
                f"need num_codes >= 2, dim >= 1, 0 < decay < 1, restart_after >= 0; got "
                f"{num_codes}, {dim}, {decay}, {restart_after}"
            )
        self.num_codes, self.dim, self.ema, self.decay = num_codes, dim, ema, decay
        self.restart_after = restart_after
        init = torch.empty(num_codes, dim).uniform_(-1 / num_codes, 1 / num_codes)
        if ema:
            self.register_buffer("codebook", init)
            self.register_buffer("counts", torch.ones(num_codes))
            self.register_buffer("sums", init.clone())
        else:
            self.codebook = nn.Parameter(init)
        self.register_buffer("idle", torch.zeros(num_codes, dtype=torch.long))

    def nearest(self, z: torch.Tensor) -> torch.Tensor:
        """The index of the nearest code of each vector ``(..., dim)``."""
        return nearest_code(self.codebook, z)

    def forward(self, z: torch.Tensor) -> Quantized:
        """Quantise ``z`` ``(..., P, dim)``; in training mode also update the EMA codebook and
        restart dead codes."""
        k = self.nearest(z)
        e = self.codebook[k]  # the codes as chosen, before this batch's update
        if self.training:
            self._update(z.detach(), k)
        codebook_loss = (z.detach() - e).pow(2).sum((-1, -2))
        commitment_loss = (z - e.detach()).pow(2).sum((-1, -2))
        return Quantized(z + (e - z).detach(), k, codebook_loss, commitment_loss)

    @torch.no_grad()
    def _update(self, z: torch.Tensor, k: torch.Tensor) -> None:
        flat, idx = z.reshape(-1, self.dim), k.reshape(-1)
        used = torch.bincount(idx, minlength=self.num_codes)
        if self.ema:
            sums = torch.zeros_like(self.sums).index_add_(0, idx, flat)
            self.counts.mul_(self.decay).add_(used, alpha=1 - self.decay)
            self.sums.mul_(self.decay).add_(sums, alpha=1 - self.decay)
            n = self.counts.sum()
            smoothed = (self.counts + 1e-5) / (n + self.num_codes * 1e-5) * n  # Laplace smoothing
            self.codebook.copy_(self.sums / smoothed[:, None])
        self.idle.add_(1).masked_fill_(used > 0, 0)
        if self.restart_after > 0:
            dead = (self.idle >= self.restart_after).nonzero().squeeze(1)
            if len(dead):
                pick = flat[torch.randint(len(flat), (len(dead),), device=flat.device)]
                self.codebook[dead] = pick
                if self.ema:
                    self.sums[dead] = pick
                    self.counts[dead] = 1.0
                self.idle[dead] = 0


def quantize_site(
    name: str, quantizer: VectorQuantizer, z: torch.Tensor, beta: float, observed: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    """Quantise the value ``z`` ``(..., P, D)`` of a latent site inside the data plate: the
    straight-through codes and the code indices. With data (``observed``) in training mode, the
    codebook (unless EMA-updated) and ``beta``-weighted commitment errors enter as the factor
    ``name``; generating (prior draws, codebook vectors already), only the indices are looked up."""
    if not observed:
        return z, quantizer.nearest(z)
    q = quantizer(z)
    if quantizer.training:
        vq = q.codebook_loss * (0.0 if quantizer.ema else 1.0)
        pyro.factor(name, -(vq + beta * q.commitment_loss))
    return q.codes, q.indices


# ------------------------------------------------------------------ convolutional code grids


def halved(size: int, steps: int) -> int:
    """A side of ``size`` after ``steps`` stride-2 convolutions (kernel 3, padding 1): each
    halves it, rounding up (28 -> 14 -> 7 -> 4)."""
    for _ in range(steps):
        size = (size + 1) // 2
    return size


class ResidualBlock(nn.Module):
    r"""The residual block of the VQ-VAE's encoders and decoders:
    :math:`h + \mathrm{conv}_{1\times1}(\mathrm{ReLU}(\mathrm{conv}_{3\times3}(\mathrm{ReLU}(h))))`."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        hidden = max(1, channels // 2)
        self.net = nn.Sequential(
            nn.ReLU(),
            nn.Conv2d(channels, hidden, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(hidden, channels, 1),
        )

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return h + self.net(h)


def downsampler(c_in: int, channels: int, steps: int) -> nn.Sequential:
    """``steps`` stride-2 convolutions (each halving the sides, :func:`halved`), a 3x3
    convolution and a residual block: ``(B, c_in, H, W) -> (B, channels, h, w)``."""
    layers: list[nn.Module] = []
    for i in range(steps):
        layers += [nn.Conv2d(c_in if i == 0 else channels, channels, 3, 2, 1), nn.ReLU()]
    layers += [nn.Conv2d(channels if steps else c_in, channels, 3, padding=1)]
    layers += [ResidualBlock(channels), nn.ReLU()]
    return nn.Sequential(*layers)


def upsampler(c_in: int, channels: int, c_out: int, steps: int) -> nn.Sequential:
    """A 3x3 convolution, a residual block and ``steps`` transposed convolutions (kernel 4,
    stride 2, each doubling the sides): ``(B, c_in, h, w) -> (B, c_out, 2^s h, 2^s w)``; crop to
    the size wanted."""
    layers: list[nn.Module] = [nn.Conv2d(c_in, channels, 3, padding=1), ResidualBlock(channels)]
    for i in range(steps):
        last = i == steps - 1
        layers += [nn.ReLU(), nn.ConvTranspose2d(channels, c_out if last else channels, 4, 2, 1)]
    if not steps:
        layers += [nn.ReLU(), nn.Conv2d(channels, c_out, 1)]
    return nn.Sequential(*layers)


def check_image(data_shape: Sequence[int], who: str) -> tuple[int, int, int]:
    """``data_shape`` as ``(C, H, W)``, or an error naming ``who`` needs image data."""
    shape = tuple(int(s) for s in data_shape)
    if len(shape) != 3 or min(shape) < 1:
        raise ValueError(f"{who} needs image data (C, H, W), got data_shape {shape}")
    return shape[0], shape[1], shape[2]


def grid_vectors(h: torch.Tensor, batch: torch.Size) -> torch.Tensor:
    """Feature maps ``(B, D, h, w)`` as code vectors ``(*batch, h * w, D)``, positions in raster
    order."""
    return h.permute(0, 2, 3, 1).reshape(*batch, h.shape[2] * h.shape[3], h.shape[1])


def grid_maps(z: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
    """Code vectors ``(..., h * w, D)`` as feature maps ``(B, D, h, w)`` (the inverse of
    :func:`grid_vectors`, the leading dims flattened)."""
    return z.reshape(-1, *grid, z.shape[-1]).permute(0, 3, 1, 2)


class GridEncoder(nn.Module):
    """Images ``(..., C, H, W)`` to a grid of code vectors, flattened to ``(..., h * w * dim)``:
    :func:`downsampler` (``steps`` halvings, ``channels`` channels) then a 1x1 convolution to
    ``dim`` channels. ``grid`` is ``(h, w)``, e.g. 7x7 for 28x28 images and two steps."""

    def __init__(
        self, data_shape: Sequence[int], dim: int, channels: int = 64, steps: int = 2
    ) -> None:
        super().__init__()
        c, height, width = check_image(data_shape, "GridEncoder")
        if dim < 1 or channels < 1 or steps < 0:
            raise ValueError(
                f"need dim, channels >= 1 and steps >= 0, got {dim}, {channels}, {steps}"
            )
        self.data_shape, self.dim = (c, height, width), int(dim)
        self.grid = (halved(height, steps), halved(width, steps))
        self.out_features = self.grid[0] * self.grid[1] * self.dim
        self.net = nn.Sequential(downsampler(c, channels, steps), nn.Conv2d(channels, dim, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if tuple(x.shape[-3:]) != self.data_shape:
            raise ValueError(
                f"encoder expects images of shape {self.data_shape}, got a batch of shape "
                f"{tuple(x.shape)}"
            )
        batch = x.shape[:-3]
        return grid_vectors(self.net(x.reshape(-1, *self.data_shape)), batch).flatten(-2)


class GridDecoder(nn.Module):
    """A grid of code vectors, flattened ``(..., h * w * dim)``, to likelihood parameters
    ``(..., C, H, W)``: :func:`upsampler` (``steps`` doublings), cropped to ``(H, W)``."""

    def __init__(
        self,
        dim: int,
        data_shape: Sequence[int],
        channels: int = 64,
        steps: int = 2,
    ) -> None:
        super().__init__()
        c, height, width = check_image(data_shape, "GridDecoder")
        self.data_shape, self.dim = (c, height, width), int(dim)
        self.grid = (halved(height, steps), halved(width, steps))
        self.net = upsampler(dim, channels, c, steps)

    def forward(self, code: torch.Tensor) -> torch.Tensor:
        batch = code.shape[:-1]
        maps = grid_maps(code.reshape(*batch, -1, self.dim), self.grid)
        c, height, width = self.data_shape
        return self.net(maps)[..., :height, :width].reshape(*batch, c, height, width)


# ------------------------------------------------------------------ the model


class VQVAE(BaseModel):
    """The VQ-VAE from parts: ``encoder`` ``x -> (..., features)``, a linear map to ``P x D``
    (or, with ``features=None``, an encoder that gives the ``P x D`` vectors itself, such as
    :class:`GridEncoder`), the :class:`VectorQuantizer`, and ``decoder``
    ``(..., P * D) -> likelihood parameters``.

    :param beta: the commitment weight (0.25 in the paper).
    :param code_prior: the learned prior over the ``P`` code indices, fitted by
        :meth:`after_fit` (``None``: the uniform prior throughout). Its parameters are frozen
        except while it is fitted, so training the autoencoder leaves them be.
    """

    def __init__(
        self,
        encoder: nn.Module,
        features: int | None,
        decoder: nn.Module,
        likelihood: Likelihood,
        quantizer: VectorQuantizer,
        positions: int,
        *,
        beta: float = 0.25,
        code_prior: CodePrior | None = None,
    ) -> None:
        super().__init__()
        if positions < 1 or beta < 0:
            raise ValueError(f"need positions >= 1 and beta >= 0, got {positions}, {beta}")
        if code_prior is not None and (
            code_prior.positions != positions or code_prior.num_codes != quantizer.num_codes
        ):
            raise ValueError(
                f"code_prior is over {code_prior.positions} positions of {code_prior.num_codes} "
                f"codes; the model has {positions} of {quantizer.num_codes}"
            )
        self.encoder, self.decoder, self.likelihood = encoder, decoder, likelihood
        self.quantizer, self.positions, self.beta = quantizer, positions, float(beta)
        dim = positions * quantizer.dim
        self.head = nn.Linear(features, dim) if features is not None else nn.Identity()
        self.code_prior = code_prior.requires_grad_(False) if code_prior is not None else None

    @property
    def learned_prior(self) -> bool:
        """Whether codes are scored and drawn under the fitted learned prior."""
        return self.code_prior is not None and bool(self.code_prior.fitted)

    def prior(self, uniform: bool = False) -> Codebook:
        """The prior over code vectors: the learned one once fitted (unless ``uniform``), else
        the uniform one."""
        if self.code_prior is not None and self.learned_prior and not uniform:
            return Codebook(self.quantizer.codebook, self.code_prior.distribution())
        return UniformCodebook(self.quantizer.codebook, self.positions)

    def encode_vectors(self, x: torch.Tensor) -> torch.Tensor:
        """:math:`z_e(x)`, shaped ``(..., P, D)``."""
        h = self.head(self.encoder(x))
        return h.reshape(*h.shape[:-1], self.positions, self.quantizer.dim)

    def model(self, x: torch.Tensor | None = None, y: torch.Tensor | None = None) -> None:
        """Codes from the prior, quantised (with the codebook and commitment errors as a
        factor while training) and decoded; ``x=None`` decodes prior draws, which are codebook
        vectors already."""
        self.register_with_pyro()
        with self.data_plate(x, y):
            z = pyro.sample("z", self.prior())
            codes, _ = quantize_site("vq_loss", self.quantizer, z, self.beta, x is not None)
            params = self.decoder(codes.flatten(-2))
            pyro.sample("x", self.likelihood(params, data_event_dim(params, z, 2)), obs=x)

    def guide(self, x: torch.Tensor | None = None, y: torch.Tensor | None = None) -> None:
        self.register_with_pyro()
        x = self.require_x(x)
        with self.data_plate(x):
            pyro.sample("z", dist.Delta(self.encode_vectors(x), event_dim=2))

    @torch.no_grad()
    def codes(self, x: torch.Tensor) -> torch.Tensor:
        """The code index of every position of every datapoint, ``(N, P)``."""
        device = self.quantizer.codebook.device
        return torch.cat(
            [self.quantizer.nearest(self.encode_vectors(b.to(device))) for b in batches(x, 1000)]
        )

    @torch.no_grad()
    def perplexity(self, x: torch.Tensor) -> float:
        """Codebook usage over ``x`` (see :func:`perplexity`)."""
        return perplexity(self.codes(x), self.quantizer.num_codes)

    def after_fit(self, x: torch.Tensor) -> None:
        """The post-training stage (:class:`~pyro_vaes.protocols.PostTraining`): fit the learned
        prior to the codes of the training images ``x`` (nothing without one)."""
        if self.code_prior is not None:
            self.fit_prior(x)

    def fit_prior(self, x: torch.Tensor, **options: Any) -> VQVAE:
        """Fit the learned prior to the code indices of ``x`` (:meth:`codes`);
        ``options`` go to :meth:`CodePrior.fit <pyro_vaes.models.code_prior.CodePrior.fit>`."""
        if self.code_prior is None:
            raise ValueError("this VQ-VAE has no learned prior (built with code_prior=None)")
        was_training = self.training
        self.code_prior.fit(self.codes(x), **options)
        self.train(was_training)
        return self

    @torch.no_grad()
    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """The quantised code of each datapoint, flattened to ``(N, P * D)``."""
        return self.quantizer.codebook[self.codes(x)].flatten(-2)

    @torch.no_grad()
    def decode(self, code: torch.Tensor) -> torch.Tensor:
        """The likelihood's mean at flattened codes ``(N, P * D)``."""
        return self.likelihood.mean(self.decoder(code))

    @torch.no_grad()
    def sample_codes(self, n: int, uniform: bool = False) -> torch.Tensor:
        """``n`` draws of code vectors ``(n, P, D)`` from :meth:`prior`."""
        return self.prior(uniform).sample((n,))

    @torch.no_grad()
    def sample(self, n: int, uniform: bool = False) -> torch.Tensor:
        """``n`` decoded draws of codes from the learned prior once it is fitted (and not
        ``uniform``), else from the uniform prior."""
        return self.decode(self.sample_codes(n, uniform).flatten(-2))
