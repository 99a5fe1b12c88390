"""Distributions Pyro lacks: von Mises-Fisher, uniform on the sphere, wrapped normal."""

from pyro_vaes.distributions.bessel import bessel_iv_ratio, log_bessel_iv
from pyro_vaes.distributions.hyperspherical_uniform import HypersphericalUniform
from pyro_vaes.distributions.von_mises_fisher import VonMisesFisher

__all__ = ["HypersphericalUniform", "VonMisesFisher", "bessel_iv_ratio", "log_bessel_iv"]
