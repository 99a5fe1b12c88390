"""Distributions Pyro lacks: von Mises-Fisher, uniform on the sphere, wrapped normal, and the
Concrete relaxation with a categorical KL."""

from pyro_vaes.distributions.bessel import bessel_iv_ratio, log_bessel_iv
from pyro_vaes.distributions.concrete import Concrete
from pyro_vaes.distributions.diagonal_normal_mixture import DiagonalNormalMixture
from pyro_vaes.distributions.hyperspherical_uniform import HypersphericalUniform
from pyro_vaes.distributions.von_mises_fisher import VonMisesFisher
from pyro_vaes.distributions.wrapped_normal import WrappedNormal

__all__ = [
    "Concrete",
    "DiagonalNormalMixture",
    "HypersphericalUniform",
    "VonMisesFisher",
    "WrappedNormal",
    "bessel_iv_ratio",
    "log_bessel_iv",
]
