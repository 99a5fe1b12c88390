"""Variants that trade reconstruction for disentangled codes."""

from __future__ import annotations

from pyro_vaes import guides as _guides  # noqa: F401  (the posteriors register themselves)
from pyro_vaes import priors as _priors  # noqa: F401  (the priors register themselves)
from pyro_vaes.catalogue.assembly import build_vae
from pyro_vaes.catalogue.variants import register
from pyro_vaes.objectives import (
    DIPELBO,
    TCELBO,
    CapacityELBO,
    FactorVAELoss,
    HierarchicalTCELBO,
)
from pyro_vaes.train.callbacks import KLAnnealing

register(
    "beta_tcvae",
    "the VAE trained on the total-correlation ELBO (alpha=1, beta=6, gamma=1, stratified)",
    "Chen et al. 2018, Isolating Sources of Disentanglement in VAEs",
    objective=lambda: TCELBO(alpha=1.0, beta=6.0, gamma=1.0),
)(build_vae)

register(
    "hfvae",
    "the VAE trained on the hierarchically factorised ELBO: MI, TC between groups, TC within "
    "groups and dimension-wise KL weighted 1, 6, 2, 1; five even groups of latent dimensions",
    "Esmaeili et al. 2019, Structured Disentangled Representations",
    objective=lambda: HierarchicalTCELBO(alpha=1.0, beta=6.0, gamma=2.0),
)(build_vae)

register(
    "dip_vae",
    "DIP-VAE-II: the ELBO plus a penalty pulling Cov_q(z) to the identity (lambda_od = 10)",
    "Kumar et al. 2018, Variational Inference of Disentangled Latent Concepts",
    objective=lambda: DIPELBO("ii", lambda_od=10.0),
)(build_vae)
register(
    "disentangled_beta_vae",
    "gamma |KL - C|, gamma=1000, the capacity C grown from 0 to 25 nats over the first half of "
    "training",
    "Burgess et al. 2018, Understanding disentangling in beta-VAE",
    objective=lambda: CapacityELBO(gamma=1000.0),
    schedule=lambda model, loss: [
        KLAnnealing(loss, attr="capacity", start=0.0, end=25.0, warmup_fraction=0.5)
    ],
)(build_vae)

register(
    "factor_vae",
    "the ELBO + gamma TC, the total correlation from a critic against permuted codes (gamma=10)",
    "Kim & Mnih 2018, Disentangling by Factorising",
    objective=lambda: FactorVAELoss(gamma=10.0),
)(build_vae)
