"""Deep hierarchical VAEs: the Ladder VAE and NVAE, with NVAE's stabilisers."""

from __future__ import annotations

import math
from collections.abc import Sequence

from torch import nn

from pyro_vaes import likelihoods
from pyro_vaes.catalogue.variants import register
from pyro_vaes.models.hierarchical import NVAE, LadderVAE
from pyro_vaes.nets.residual import DenseBlock, GaussianHead
from pyro_vaes.objectives.kl_balance import KLBalancedELBO
from pyro_vaes.objectives.spectral import SpectralRegularizedELBO
from pyro_vaes.train.callbacks import KLAnnealing


def _per_group(value: int | Sequence[int], groups: int, name: str) -> tuple[int, ...]:
    """One size per group, bottom first: a single size is repeated."""
    sizes = (value,) if isinstance(value, int) else tuple(value)
    if len(sizes) == 1:
        sizes = sizes * groups
    if len(sizes) != groups or not all(isinstance(s, int) and s >= 1 for s in sizes):
        raise ValueError(
            f"{name} must be one positive size or one per group ({groups}), got {value!r}"
        )
    return sizes


def _check(groups: int, net: str) -> None:
    if not (isinstance(groups, int) and groups >= 1):
        raise ValueError(f"groups must be a positive integer, got {groups!r}")
    if net != "mlp":
        raise ValueError(
            f"the hierarchical models are built of MLP blocks: net must be 'mlp', got {net!r}"
        )


def _lvae(
    data_shape: tuple[int, ...],
    *,
    latent_dim: int | Sequence[int] = 16,
    groups: int = 3,
    hidden: Sequence[int] = (512,),
    net: str = "mlp",
    likelihood: str = "bernoulli",
    beta: float = 1.0,
) -> LadderVAE:
    """A Ladder VAE of ``groups`` groups of ``latent_dim`` each (or one size per group, bottom
    first) over two-layer dense blocks of the ``hidden`` widths (one, or one per group)."""
    _check(groups, net)
    dims = _per_group(latent_dim, groups, "latent_dim")
    widths = _per_group(tuple(hidden), groups, "hidden")
    size = math.prod(data_shape)
    ins = (size, *widths[:-1])
    return LadderVAE(
        data_shape,
        bottom_up=[DenseBlock(a, w) for a, w in zip(ins, widths, strict=True)],
        inference=[GaussianHead(w, d) for w, d in zip(widths, dims, strict=True)],
        priors=[
            nn.Sequential(
                DenseBlock(dims[level + 1], widths[level]), GaussianHead(widths[level], dims[level])
            )
            for level in range(groups - 1)
        ],
        decoder=nn.Sequential(DenseBlock(dims[0], widths[0]), nn.Linear(widths[0], size)),
        latent_dims=dims,
        likelihood=likelihoods.get(likelihood),
        beta=beta,
    )


def _nvae(
    data_shape: tuple[int, ...],
    *,
    latent_dim: int | Sequence[int] = 16,
    groups: int = 3,
    hidden: Sequence[int] = (256,),
    cells: int = 1,
    residual: bool = True,
    net: str = "mlp",
    likelihood: str = "bernoulli",
    beta: float = 1.0,
) -> NVAE:
    """An NVAE of ``groups`` groups of ``latent_dim`` each (or one size per group, bottom
    first), towers of width ``hidden`` (one width) with ``cells`` residual cells per block."""
    _check(groups, net)
    widths = tuple(hidden)
    if len(widths) != 1:
        raise ValueError(f"NVAE's towers have one width: hidden must be one size, got {hidden!r}")
    return NVAE(
        data_shape,
        _per_group(latent_dim, groups, "latent_dim"),
        likelihoods.get(likelihood),
        features=int(widths[0]),
        cells=cells,
        residual=residual,
        beta=beta,
    )


register(
    "lvae",
    "Ladder VAE: 3 Gaussian groups, p(z_l | z_l+1) top-down, q merging bottom-up and top-down "
    "Gaussians by precision; KL warm-up over the first 10% of the fit",
    "Sønderby et al. 2016, Ladder Variational Autoencoders",
    schedule=lambda model, loss: [KLAnnealing(model, warmup_fraction=0.1)],
)(_lvae)

register(
    "nvae",
    "NVAE on MLP towers: residual cells with squeeze-and-excitation, 3 groups, residual normal "
    "posterior, spectral regularisation (lambda 1e-2), KL warm-up over 30% of the fit with KL "
    "balancing",
    "Vahdat & Kautz 2020, NVAE: A Deep Hierarchical Variational Autoencoder",
    objective=lambda: SpectralRegularizedELBO(KLBalancedELBO(), lambda_=1e-2),
    schedule=lambda model, loss: [
        KLAnnealing(loss.objective, attr="beta", start=1e-4, warmup_fraction=0.3)
    ],
)(_nvae)
