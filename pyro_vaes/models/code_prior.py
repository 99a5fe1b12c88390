r"""A learned autoregressive prior over a grid of discrete codes: the prior of the VQ-VAE and of
each level of the VQ-VAE-2, fitted after the autoencoder to the code indices of the training
images.

A grid of ``h x w`` code indices :math:`k \in \{0..K-1\}^{h \times w}` is scored in raster order
by a gated PixelCNN (:class:`pyro_vaes.nets.pixelcnn.PixelCNN` over one categorical channel):

.. math::
    \log p_\psi(k \mid c) = \sum_{i=1}^{hw} \log \mathrm{Cat}\big(k_i;\
    \mathrm{softmax}\, f_\psi(k_{<i}, c)_i\big),

one pass for all positions. The condition :math:`c` is, for the VQ-VAE-2's bottom level, the
whole grid of top-level codes: embedded, resized to the bottom grid and passed through a 3x3
convolution, it enters every gated layer as a spatial bias (it is drawn before the bottom, so
every bottom position may see all of it). A draw takes one pass per position.
:meth:`CodePrior.fit` maximises the log-likelihood of the training codes with Adam;
:class:`CodeGrid` is the prior as a distribution over index grids, which
:class:`pyro_vaes.models.vqvae.Codebook` puts in embedding space for the model's latent site.

References:
    [1] van den Oord, Vinyals, Kavukcuoglu. Neural Discrete Representation Learning.
    NeurIPS 2017.
    [2] Razavi, van den Oord, Vinyals. Generating Diverse High-Fidelity Images with VQ-VAE-2.
    NeurIPS 2019.
    [3] van den Oord, Kalchbrenner, Vinyals, Espeholt, Graves, Kavukcuoglu. Conditional Image
    Generation with PixelCNN Decoders. NeurIPS 2016.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import pyro.distributions as dist
import torch
import torch.nn.functional as F
from torch import nn
from torch.distributions import constraints
from tqdm.auto import tqdm

from pyro_vaes.nets import pixelcnn

__all__ = ["CodeGrid", "CodePrior"]

_ShapeLike = torch.Size | list[int] | tuple[int, ...]
_SCALAR = torch.Size()


def _grid(grid: tuple[int, int], name: str) -> tuple[int, int]:
    h, w = (int(s) for s in grid)
    if h < 1 or w < 1:
        raise ValueError(f"{name} must be (h, w) with positive sides, got {tuple(grid)}")
    return h, w


class CodePrior(nn.Module):
    """A gated PixelCNN prior over ``grid`` ``(h, w)`` of indices of ``num_codes`` codes,
    optionally conditioned on a grid of other codes (see the module docstring).

    :param num_codes: :math:`K`.
    :param grid: ``(h, w)``; ``(1, P)`` for a sequence of ``P`` codes.
    :param condition: ``(codes, (h', w'))`` of the conditioning grid, or ``None``.
    :param channels: the PixelCNN's channels.
    :param layers: its gated layers.
    :param kernel_size: its odd kernel size.
    :param epochs: :meth:`fit`'s default passes over the codes.
    :param batch_size: :meth:`fit`'s default minibatch size.
    :param lr: :meth:`fit`'s default Adam learning rate.
    """

    fitted: torch.Tensor

    def __init__(
        self,
        num_codes: int,
        grid: tuple[int, int],
        *,
        condition: tuple[int, tuple[int, int]] | None = None,
        channels: int = 32,
        layers: int = 5,
        kernel_size: int = 3,
        epochs: int = 20,
        batch_size: int = 128,
        lr: float = 3e-3,
    ) -> None:
        super().__init__()
        if num_codes < 2:
            raise ValueError(f"num_codes must be >= 2, got {num_codes}")
        if epochs < 0 or batch_size < 1 or lr <= 0:
            raise ValueError(
                f"need epochs >= 0, batch_size >= 1 and lr > 0, got {epochs}, {batch_size}, {lr}"
            )
        self.num_codes, self.grid = int(num_codes), _grid(grid, "grid")
        self.positions = self.grid[0] * self.grid[1]
        self.epochs, self.batch_size, self.lr = int(epochs), int(batch_size), float(lr)
        self.condition: tuple[int, tuple[int, int]] | None = None
        self.cond_embedding: nn.Embedding | None = None
        self.cond_net: nn.Module | None = None
        if condition is not None:
            codes, cond_grid = int(condition[0]), _grid(condition[1], "the condition's grid")
            if codes < 2:
                raise ValueError(f"the condition's codes must be >= 2, got {codes}")
            self.condition = (codes, cond_grid)
            self.cond_embedding = nn.Embedding(codes, channels)
            self.cond_net = nn.Sequential(
                nn.Conv2d(channels, channels, 3, padding=1),
                nn.ReLU(),
                nn.Upsample(size=self.grid, mode="nearest"),
                nn.Conv2d(channels, channels, 3, padding=1),
            )
        self.net = pixelcnn.PixelCNN(
            1,
            channels=channels,
            layers=layers,
            kernel_size=kernel_size,
            categories=self.num_codes,
            cond_channels=channels if condition is not None else 0,
        )
        self.register_buffer("fitted", torch.zeros((), dtype=torch.bool))

    def _check(self, k: torch.Tensor, cond: torch.Tensor | None) -> None:
        if k.dim() != 2 or k.shape[1] != self.positions or k.is_floating_point():
            raise ValueError(
                f"codes must be integer indices (N, {self.positions}), got {tuple(k.shape)} "
                f"{k.dtype}"
            )
        if self.condition is None:
            if cond is not None:
                raise ValueError("this prior is unconditional: cond must be None")
            return
        codes, (h, w) = self.condition
        if cond is None or cond.shape != (k.shape[0], h * w) or cond.is_floating_point():
            shape = None if cond is None else tuple(cond.shape)
            raise ValueError(
                f"cond must be the conditioning codes ({k.shape[0]}, {h * w}), got {shape}"
            )
        if cond.numel() and (int(cond.min()) < 0 or int(cond.max()) >= codes):
            raise ValueError(f"cond must hold code indices 0 .. {codes - 1}")

    def _cond_map(self, cond: torch.Tensor | None) -> torch.Tensor | None:
        if self.condition is None or cond is None:
            return None
        assert self.cond_embedding is not None and self.cond_net is not None
        h, w = self.condition[1]
        e = self.cond_embedding(cond.reshape(-1, h, w)).permute(0, 3, 1, 2)
        return self.cond_net(e)

    def logits(self, k: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        """The logits ``(N, P, K)`` of :math:`p(k_i \\mid k_{<i}, c)` at every position, from
        codes ``k`` ``(N, P)`` (integer indices, raster order) and the conditioning codes
        ``cond`` ``(N, P')``."""
        self._check(k, cond)
        out = self.net(k.reshape(-1, 1, *self.grid), cond_map=self._cond_map(cond))
        return out.reshape(k.shape[0], self.num_codes, self.positions).transpose(1, 2)

    def log_prob(self, k: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        """:math:`\\log p_\\psi(k \\mid c)` of each grid, ``(N,)``."""
        logits = self.logits(k, cond)
        return -F.cross_entropy(logits.transpose(1, 2), k, reduction="none").sum(-1)

    @torch.no_grad()
    def sample(self, n: int, cond: torch.Tensor | None = None) -> torch.Tensor:
        """``n`` grids of codes ``(n, P)`` drawn position by position (``cond`` ``(n, P')``
        for a conditioned prior)."""
        device = next(self.parameters()).device
        k = torch.zeros(n, self.positions, dtype=torch.long, device=device)
        if n == 0:
            return k
        self._check(k, cond)
        cond_map = self._cond_map(cond)
        for i in range(self.positions):
            out = self.net(k.reshape(n, 1, *self.grid), cond_map=cond_map)
            logits = out.reshape(n, self.num_codes, self.positions)[:, :, i]
            k[:, i] = torch.distributions.Categorical(logits=logits).sample()
        return k

    def distribution(self, cond: torch.Tensor | None = None) -> CodeGrid:
        """The prior as a distribution over index grids, batched like ``cond``'s leading dims."""
        return CodeGrid(self, cond)

    def fit(
        self,
        k: torch.Tensor,
        cond: torch.Tensor | None = None,
        *,
        epochs: int | None = None,
        batch_size: int | None = None,
        lr: float | None = None,
        seed: int = 0,
        progress: bool | None = None,
    ) -> list[float]:
        """Fit to codes ``k`` ``(N, P)`` (given ``cond`` ``(N, P')``) by maximum likelihood:
        Adam with a cosine-decayed learning rate over ``epochs`` shuffled passes (defaults: the
        constructor's). Returns the mean negative log-likelihood per grid of each epoch, in nats.
        The parameters are trainable only while it runs; ``progress``: a tqdm bar (``None``: if
        the terminal is one)."""
        epochs = self.epochs if epochs is None else int(epochs)
        batch_size = self.batch_size if batch_size is None else int(batch_size)
        lr = self.lr if lr is None else float(lr)
        device = next(self.parameters()).device
        k = k.to(device)
        cond = cond.to(device) if cond is not None else None
        self._check(k, cond)
        if not len(k):
            raise ValueError("no codes to fit the prior to")
        gen = torch.Generator().manual_seed(seed)
        steps = epochs * math.ceil(len(k) / batch_size)
        self.requires_grad_(True)
        optimizer = torch.optim.Adam(self.parameters(), lr=lr)
        schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, max(1, steps))
        history: list[float] = []
        was_training = self.training
        self.train()
        try:
            with (
                torch.enable_grad(),
                tqdm(
                    total=steps,
                    disable=None if progress is None else not progress,
                    desc="code prior",
                ) as bar,
            ):
                for _ in range(epochs):
                    total = 0.0
                    for take in torch.randperm(len(k), generator=gen).split(batch_size):
                        take = take.to(device)
                        c = cond[take] if cond is not None else None
                        loss = -self.log_prob(k[take], c).mean()
                        optimizer.zero_grad(set_to_none=True)
                        loss.backward()
                        optimizer.step()
                        schedule.step()
                        total += float(loss.detach()) * len(take)
                        bar.update()
                    history.append(total / len(k))
                    bar.set_postfix(nll=f"{history[-1]:.2f}")
        finally:
            self.requires_grad_(False)
            self.train(was_training)
        self.fitted.fill_(True)
        return history


class CodeGrid(dist.TorchDistribution):
    """:class:`CodePrior` as a distribution over index grids ``(..., P)``; its batch shape is
    that of ``cond``'s leading dims (the datapoints) unless expanded."""

    arg_constraints: ClassVar[dict[str, constraints.Constraint]] = {}

    def __init__(
        self,
        prior: CodePrior,
        cond: torch.Tensor | None = None,
        batch_shape: _ShapeLike | None = None,
    ) -> None:
        if (cond is None) != (prior.condition is None):
            raise ValueError("cond must be given exactly when the prior is conditioned")
        self.prior, self.cond = prior, cond
        own = cond.shape[:-1] if cond is not None else torch.Size()
        shape = torch.Size(batch_shape) if batch_shape is not None else own
        super().__init__(shape, torch.Size((prior.positions,)), validate_args=False)

    @constraints.dependent_property(is_discrete=True, event_dim=1)
    def support(self) -> constraints.Constraint:
        return constraints.independent(constraints.integer_interval(0, self.prior.num_codes - 1), 1)

    def expand(self, batch_shape: _ShapeLike, _instance: Any = None) -> CodeGrid:
        return CodeGrid(self.prior, self.cond, batch_shape)

    def _flat_cond(self, shape: torch.Size) -> torch.Tensor | None:
        if self.cond is None:
            return None
        return self.cond.expand(*shape, self.cond.shape[-1]).reshape(-1, self.cond.shape[-1])

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        shape = torch.broadcast_shapes(value.shape[:-1], self.batch_shape)
        if self.cond is not None:
            shape = torch.broadcast_shapes(shape, self.cond.shape[:-1])
        k = value.expand(*shape, self.prior.positions).reshape(-1, self.prior.positions)
        return self.prior.log_prob(k, self._flat_cond(shape)).reshape(shape)

    def sample(self, sample_shape: _ShapeLike = _SCALAR) -> torch.Tensor:
        shape = torch.Size(sample_shape) + self.batch_shape
        k = self.prior.sample(math.prod(shape), self._flat_cond(shape))
        return k.reshape(*shape, self.prior.positions)
