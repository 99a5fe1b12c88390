"""Priors :math:`p(z)`: modules that return a distribution over the latent code."""

from pyro_vaes.priors.hyperspherical_uniform import HypersphericalUniform
from pyro_vaes.priors.mixture import MixtureOfGaussians
from pyro_vaes.priors.standard_normal import StandardNormal
from pyro_vaes.priors.vamp import VampPrior
from pyro_vaes.priors.wrapped_normal import WrappedNormal

__all__ = [
    "HypersphericalUniform",
    "MixtureOfGaussians",
    "StandardNormal",
    "VampPrior",
    "WrappedNormal",
]
