"""Variants that change the bound: importance weighting and free bits."""

from __future__ import annotations

from pyro_vaes import guides as _guides  # noqa: F401  (the posteriors register themselves)
from pyro_vaes import priors as _priors  # noqa: F401  (the priors register themselves)
from pyro_vaes.catalogue.assembly import build_vae
from pyro_vaes.catalogue.variants import register
from pyro_vaes.objectives import (
    CIWAE,
    IWAE,
    MIWAE,
    PIWAE,
    FreeBitsELBO,
)

register(
    "iwae",
    "the VAE trained on the importance weighted bound, K=5 draws per datapoint",
    "Burda et al. 2016, Importance Weighted Autoencoders",
    objective=lambda: IWAE(5),
)(build_vae)

register(
    "miwae",
    "the VAE trained on the mean of M=4 IWAE bounds of K=4 draws",
    "Rainforth et al. 2018, Tighter Variational Bounds are Not Necessarily Better",
    objective=lambda: MIWAE(4, 4),
)(build_vae)
register(
    "piwae",
    "the decoder trained on the IWAE bound of T=16 draws, the encoder on the MIWAE bound of the "
    "same draws in M=4 groups of K=4",
    "Rainforth et al. 2018, Tighter Variational Bounds are Not Necessarily Better",
    objective=lambda: PIWAE(4, 4),
)(build_vae)
register(
    "ciwae",
    "the VAE trained on beta ELBO + (1 - beta) IWAE of the same K=16 draws, beta=0.5",
    "Rainforth et al. 2018, Tighter Variational Bounds are Not Necessarily Better",
    objective=lambda: CIWAE(16, beta=0.5),
)(build_vae)

register(
    "free_bits_vae",
    "the VAE trained with free bits: each latent dimension's batch-mean KL floored at "
    "lambda=0.5 nats",
    "Kingma et al. 2016, Improved Variational Inference with Inverse Autoregressive Flow",
    objective=lambda: FreeBitsELBO(lambda_=0.5, per="dimension"),
)(build_vae)
