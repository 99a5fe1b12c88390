"""Categorical codes: Gumbel-softmax relaxations, alone or beside continuous codes."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pyro_vaes import guides as _guides  # noqa: F401  (the posteriors register themselves)
from pyro_vaes import likelihoods
from pyro_vaes import priors as _priors  # noqa: F401  (the priors register themselves)
from pyro_vaes.catalogue.assembly import encoder_decoder
from pyro_vaes.catalogue.variants import register
from pyro_vaes.models.joint_vae import JointVAE
from pyro_vaes.objectives import (
    JointCapacityELBO,
)
from pyro_vaes.train.callbacks import KLAnnealing


def _joint_vae(
    data_shape: tuple[int, ...],
    *,
    latent_dim: int = 10,
    variables: int = 1,
    categories: int = 10,
    temperature: float = 0.67,
    hidden: Sequence[int] = (512,),
    net: str = "mlp",
    likelihood: str = "bernoulli",
) -> JointVAE:
    """Continuous (``latent_dim``, 0 for none) and categorical codes (:mod:`pyro_vaes.joint_vae`)."""
    code = latent_dim + variables * categories
    enc, dec, features = encoder_decoder(data_shape, code, net, hidden)
    return JointVAE(
        enc,
        features,
        dec,
        likelihoods.get(likelihood),
        continuous_dim=latent_dim,
        variables=variables,
        categories=categories,
        temperature=temperature,
    )


def _categorical_vae(
    data_shape: tuple[int, ...], *, latent_dim: int = 20, **options: Any
) -> JointVAE:
    """The categorical VAE: ``latent_dim`` categorical variables, no continuous code."""
    return _joint_vae(data_shape, latent_dim=0, variables=latent_dim, **options)


register(
    "categorical_vae",
    "Gumbel-softmax VAE: 20 categorical variables of 10 values, the temperature annealed 1 -> 0.5",
    "Jang et al. 2017, Categorical Reparameterization with Gumbel-Softmax",
    schedule=lambda model, loss: [
        KLAnnealing(model, attr="temperature", start=1.0, end=0.5, warmup_fraction=1.0)
    ],
)(_categorical_vae)
register(
    "joint_vae",
    "JointVAE: 10 continuous dims and one 10-way categorical, capacities 0 -> 5 nats each over "
    "the first half of the fit, gamma=30",
    "Dupont 2018, Learning Disentangled Joint Continuous and Discrete Representations",
    objective=lambda: JointCapacityELBO(gamma=30.0),
    schedule=lambda model, loss: [
        KLAnnealing(loss, attr=attr, start=0.0, end=5.0, warmup_fraction=0.5)
        for attr in ("continuous_capacity", "discrete_capacity")
    ],
)(_joint_vae)
