"""Autoencoders with point-mass or quantised codes, and their ex-post generators."""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial
from typing import Any

from torch import nn

from pyro_vaes import guides as _guides  # noqa: F401  (the posteriors register themselves)
from pyro_vaes import likelihoods
from pyro_vaes import priors as _priors  # noqa: F401  (the priors register themselves)
from pyro_vaes.catalogue.assembly import encoder_decoder, vae_parts
from pyro_vaes.catalogue.variants import register
from pyro_vaes.models.code_prior import CodePrior
from pyro_vaes.models.rae import RAE
from pyro_vaes.models.two_stage import TwoStageVAE
from pyro_vaes.models.vqvae import (
    VQVAE,
    GridDecoder,
    GridEncoder,
    VectorQuantizer,
    check_image,
    halved,
)
from pyro_vaes.models.vqvae2 import VQVAE2


def _rae(
    data_shape: tuple[int, ...],
    *,
    weight_decay: float = 0.0,
    gradient_penalty: float = 0.0,
    expost_components: int = 10,
    **options: Any,
) -> RAE:
    """A regularised autoencoder: the VAE's parts with a point-mass posterior."""
    return RAE(
        **vae_parts(data_shape, **{"posterior": "delta", **options}),
        weight_decay=weight_decay,
        gradient_penalty=gradient_penalty,
        expost_components=expost_components,
    )


#: the code priors the VQ-VAEs take by name: the learned gated PixelCNN, or the uniform prior
CODE_PRIORS = ("pixelcnn", "uniform")


def _check_code_prior(code_prior: str) -> None:
    if code_prior not in CODE_PRIORS:
        raise ValueError(f"code_prior must be one of {CODE_PRIORS}, got {code_prior!r}")


def _vqvae(
    data_shape: tuple[int, ...],
    *,
    latent_dim: int = 8,
    embedding_dim: int = 8,
    codes: int = 64,
    hidden: Sequence[int] = (512,),
    net: str = "mlp",
    likelihood: str = "bernoulli",
    beta: float = 0.25,
    ema: bool = False,
    restart_after: int = 100,
    grid: bool = False,
    channels: int = 32,
    code_prior: str = "uniform",
    prior_channels: int = 32,
    prior_layers: int = 5,
    prior_epochs: int = 10,
) -> VQVAE:
    """A VQ-VAE: ``latent_dim`` code vectors of size ``embedding_dim`` per datapoint, from a
    codebook of ``codes`` entries; with ``grid``, a convolutional code grid instead (one vector
    per cell of the image downsampled twice, 7x7 for 28x28; ``channels`` convolution channels;
    ``latent_dim``, ``net`` and ``hidden`` unused). ``code_prior="pixelcnn"``: a gated PixelCNN
    prior over the codes (``prior_channels``, ``prior_layers``), fitted for ``prior_epochs``
    epochs after training."""
    _check_code_prior(code_prior)
    quantizer = VectorQuantizer(codes, embedding_dim, ema=ema, restart_after=restart_after)
    enc: nn.Module
    dec: nn.Module
    features: int | None
    if grid:
        enc = GridEncoder(data_shape, embedding_dim, channels)
        dec = GridDecoder(embedding_dim, data_shape, channels)
        features, layout = None, enc.grid
    else:
        enc, dec, features = encoder_decoder(data_shape, latent_dim * embedding_dim, net, hidden)
        layout = (1, latent_dim)
    prior = None
    if code_prior == "pixelcnn":
        prior = CodePrior(
            codes, layout, channels=prior_channels, layers=prior_layers, epochs=prior_epochs
        )
    return VQVAE(
        enc,
        features,
        dec,
        likelihoods.get(likelihood),
        quantizer,
        layout[0] * layout[1],
        beta=beta,
        code_prior=prior,
    )


def _vqvae2(
    data_shape: tuple[int, ...],
    *,
    latent_dim: int = 16,
    codes: int = 64,
    channels: int = 32,
    net: str = "conv",
    hidden: Sequence[int] = (),
    likelihood: str = "bernoulli",
    beta: float = 0.25,
    ema: bool = True,
    restart_after: int = 100,
    code_prior: str = "pixelcnn",
    prior_channels: int = 32,
    prior_layers: int = 5,
    prior_epochs: int = 10,
) -> VQVAE2:
    """A VQ-VAE-2: top and bottom codebooks of ``codes`` entries of size ``latent_dim`` on
    convolutional grids (``channels`` channels; ``hidden`` unused), updated as moving averages
    as in the paper (``ema``), gated PixelCNN priors
    (``code_prior="pixelcnn"``; ``"uniform"`` for none) fitted after training."""
    _check_code_prior(code_prior)
    if net != "conv":
        raise ValueError(f"vqvae2's code grids are convolutional: net must be 'conv', got {net!r}")
    check_image(data_shape, "vqvae2")
    top = VectorQuantizer(codes, latent_dim, ema=ema, restart_after=restart_after)
    bottom = VectorQuantizer(codes, latent_dim, ema=ema, restart_after=restart_after)
    priors: dict[str, CodePrior] = {}
    if code_prior == "pixelcnn":
        _, height, width = data_shape
        top_grid = (halved(height, 3), halved(width, 3))
        prior = partial(
            CodePrior, codes, channels=prior_channels, layers=prior_layers, epochs=prior_epochs
        )
        bottom_grid = (halved(height, 2), halved(width, 2))
        priors = {
            "top_prior": prior(top_grid),
            "bottom_prior": prior(bottom_grid, condition=(codes, top_grid)),
        }
    return VQVAE2(
        data_shape,
        likelihoods.get(likelihood),
        top,
        bottom,
        channels=channels,
        beta=beta,
        **priors,
    )


register(
    "rae_l2",
    "regularised autoencoder: point-mass posterior, L2 on the code, decoder weight decay 1e-3",
    "Ghosh et al. 2020, From Variational to Deterministic Autoencoders",
    weight_decay=1e-3,
)(_rae)
register(
    "rae_gp",
    "regularised autoencoder: point-mass posterior, L2 on the code, decoder gradient penalty 0.1",
    "Ghosh et al. 2020, From Variational to Deterministic Autoencoders",
    gradient_penalty=0.1,
)(_rae)
register(
    "vqvae",
    "VQ-VAE: 8 code vectors of size 8 from a 64-entry codebook, straight-through estimator, "
    "commitment beta=0.25, dead codes restarted after 100 idle steps, uniform prior over codes "
    "(options: grid=True for a convolutional code grid, code_prior='pixelcnn' for a learned prior)",
    "van den Oord et al. 2017, Neural Discrete Representation Learning",
)(_vqvae)
register(
    "vqvae2",
    "VQ-VAE-2: 64-entry top (4x4 for 28x28) and bottom (7x7) codebooks of 16-dim codes (EMA "
    "updates), the bottom quantised given the top, a decoder reading both; gated PixelCNN priors over the top "
    "codes and over the bottom codes given the top, fitted after training",
    "Razavi et al. 2019, Generating Diverse High-Fidelity Images with VQ-VAE-2",
)(_vqvae2)


def _two_stage_vae(
    data_shape: tuple[int, ...], *, second_hidden: int = 256, **options: Any
) -> TwoStageVAE:
    """A VAE with a second-stage VAE over its codes (:mod:`pyro_vaes.models.two_stage`)."""
    return TwoStageVAE(**vae_parts(data_shape, **options), second_hidden=second_hidden)


register(
    "two_stage_vae",
    "a VAE, then a second VAE (learned Gaussian scale) fitted to its codes after training; "
    "samples go through the second stage's prior",
    "Dai & Wipf 2019, Diagnosing and Enhancing VAE Models",
)(_two_stage_vae)
