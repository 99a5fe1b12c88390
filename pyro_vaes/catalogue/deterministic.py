"""Autoencoders with point-mass or quantised codes, and their ex-post generators."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pyro_vaes import guides as _guides  # noqa: F401  (the posteriors register themselves)
from pyro_vaes import likelihoods
from pyro_vaes import priors as _priors  # noqa: F401  (the priors register themselves)
from pyro_vaes.catalogue.assembly import encoder_decoder, vae_parts
from pyro_vaes.catalogue.variants import register
from pyro_vaes.models.rae import RAE
from pyro_vaes.models.two_stage import TwoStageVAE
from pyro_vaes.models.vqvae import VQVAE, VectorQuantizer


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
) -> VQVAE:
    """A VQ-VAE: ``latent_dim`` code vectors of size ``embedding_dim`` per datapoint, from a
    codebook of ``codes`` entries."""
    enc, dec, features = encoder_decoder(data_shape, latent_dim * embedding_dim, net, hidden)
    quantizer = VectorQuantizer(codes, embedding_dim, ema=ema, restart_after=restart_after)
    return VQVAE(enc, features, dec, likelihoods.get(likelihood), quantizer, latent_dim, beta=beta)


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
    "commitment beta=0.25, dead codes restarted after 100 idle steps, uniform prior over codes",
    "van den Oord et al. 2017, Neural Discrete Representation Learning",
)(_vqvae)


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
