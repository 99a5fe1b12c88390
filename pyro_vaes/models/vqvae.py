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

References:
    [1] van den Oord, Vinyals, Kavukcuoglu. Neural Discrete Representation Learning.
    NeurIPS 2017.
    [2] Razavi, van den Oord, Vinyals. Generating Diverse High-Fidelity Images with VQ-VAE-2.
    NeurIPS 2019 (EMA updates).
    [3] Dhariwal et al. Jukebox: A Generative Model for Music. 2020 (restarting dead codes).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import pyro
import pyro.distributions as dist
import torch
from torch import nn
from torch.distributions import constraints

from pyro_vaes.data import batches
from pyro_vaes.likelihoods import Likelihood
from pyro_vaes.models.base import BaseModel, data_event_dim

_ShapeLike = torch.Size | list[int] | tuple[int, ...]
_SCALAR = torch.Size()

__all__ = ["VQVAE", "Quantized", "UniformCodebook", "VectorQuantizer", "perplexity"]


def perplexity(indices: torch.Tensor, num_codes: int) -> float:
    r"""Codebook usage :math:`\exp(-\sum_k \bar p_k \log \bar p_k)` of code indices: ``K`` when
    all codes are used equally, 1 when one code takes everything."""
    p = torch.bincount(indices.reshape(-1), minlength=num_codes).double()
    p = p / p.sum()
    nz = p[p > 0]
    return float(torch.exp(-(nz * nz.log()).sum()))


class UniformCodebook(dist.TorchDistribution):
    r"""The uniform prior over codes, in embedding space: each of ``P`` positions takes one of the
    ``K`` codebook vectors with probability :math:`1/K`. ``log_prob`` is that of the codes the
    value quantises to, :math:`-P \log K`; ``sample`` draws codebook vectors."""

    arg_constraints: ClassVar[dict[str, constraints.Constraint]] = {}
    support = constraints.real_vector

    def __init__(
        self, codebook: torch.Tensor, positions: int, batch_shape: _ShapeLike = ()
    ) -> None:
        self.codebook, self.positions = codebook, positions
        event = torch.Size((positions, codebook.shape[1]))
        super().__init__(torch.Size(batch_shape), event, validate_args=False)

    def expand(self, batch_shape: _ShapeLike, _instance: object = None) -> UniformCodebook:
        return UniformCodebook(self.codebook, self.positions, batch_shape)

    def sample(self, sample_shape: _ShapeLike = _SCALAR) -> torch.Tensor:
        shape = torch.Size(sample_shape) + self.batch_shape + (self.positions,)
        k = torch.randint(self.codebook.shape[0], shape, device=self.codebook.device)
        return self.codebook.detach()[k]

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        shape = value.shape[: value.dim() - 2]
        return value.new_full(shape, -self.positions * math.log(self.codebook.shape[0]))


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
        flat = z.reshape(-1, self.dim)
        d2 = (
            flat.pow(2).sum(1, keepdim=True)
            - 2 * flat @ self.codebook.T
            + self.codebook.pow(2).sum(1)
        )
        return d2.argmin(1).reshape(z.shape[:-1])

    def forward(self, z: torch.Tensor) -> Quantized:
        """Quantise ``z`` ``(..., P, dim)``; in training mode also update the EMA codebook and
        restart dead codes."""
        k = self.nearest(z)
        if self.training:
            self._update(z.detach(), k)
        e = self.codebook[k]
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


class VQVAE(BaseModel):
    """The VQ-VAE from parts: ``encoder`` ``x -> (..., features)``, a linear map to ``P x D``,
    the :class:`VectorQuantizer`, and ``decoder`` ``(..., P * D) -> likelihood parameters``.

    :param beta: the commitment weight (0.25 in the paper).
    """

    def __init__(
        self,
        encoder: nn.Module,
        features: int,
        decoder: nn.Module,
        likelihood: Likelihood,
        quantizer: VectorQuantizer,
        positions: int,
        *,
        beta: float = 0.25,
    ) -> None:
        super().__init__()
        if positions < 1 or beta < 0:
            raise ValueError(f"need positions >= 1 and beta >= 0, got {positions}, {beta}")
        self.encoder, self.decoder, self.likelihood = encoder, decoder, likelihood
        self.quantizer, self.positions, self.beta = quantizer, positions, float(beta)
        self.head = nn.Linear(features, positions * quantizer.dim)

    def prior(self) -> UniformCodebook:
        return UniformCodebook(self.quantizer.codebook, self.positions)

    def encode_vectors(self, x: torch.Tensor) -> torch.Tensor:
        """:math:`z_e(x)`, shaped ``(..., P, D)``."""
        h = self.head(self.encoder(x))
        return h.reshape(*h.shape[:-1], self.positions, self.quantizer.dim)

    def model(self, x: torch.Tensor | None = None, y: torch.Tensor | None = None) -> None:
        """Codes from the uniform prior, quantised (with the codebook and commitment errors as a
        factor while training) and decoded; ``x=None`` decodes prior draws, which are codebook
        vectors already."""
        self.register_with_pyro()
        with self.data_plate(x, y):
            z = pyro.sample("z", self.prior())
            codes = z
            if x is not None:
                q = self.quantizer(z)
                if self.training:
                    vq = q.codebook_loss * (0.0 if self.quantizer.ema else 1.0)
                    pyro.factor("vq_loss", -(vq + self.beta * q.commitment_loss))
                codes = q.codes
            params = self.decoder(codes.flatten(-2))
            pyro.sample("x", self.likelihood(params, data_event_dim(params, z, 2)), obs=x)

    def guide(self, x: torch.Tensor | None = None, y: torch.Tensor | None = None) -> None:
        self.register_with_pyro()
        x = self.require_x(x)
        with pyro.plate("data", x.shape[0]):
            pyro.sample("z", dist.Delta(self.encode_vectors(x), event_dim=2))

    @torch.no_grad()
    def codes(self, x: torch.Tensor) -> torch.Tensor:
        """The code index of every position of every datapoint, ``(N, P)``."""
        return torch.cat([self.quantizer.nearest(self.encode_vectors(b)) for b in batches(x, 1000)])

    @torch.no_grad()
    def perplexity(self, x: torch.Tensor) -> float:
        """Codebook usage over ``x`` (see :func:`perplexity`)."""
        return perplexity(self.codes(x), self.quantizer.num_codes)

    @torch.no_grad()
    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """The quantised code of each datapoint, flattened to ``(N, P * D)``."""
        return self.quantizer.codebook[self.codes(x)].flatten(-2)

    @torch.no_grad()
    def decode(self, code: torch.Tensor) -> torch.Tensor:
        """The likelihood's mean at flattened codes ``(N, P * D)``."""
        return self.likelihood.mean(self.decoder(code))

    @torch.no_grad()
    def sample(self, n: int) -> torch.Tensor:
        """``n`` decoded draws of codes from the uniform prior."""
        return self.decode(self.prior().sample((n,)).flatten(-2))
