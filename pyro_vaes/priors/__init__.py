"""Priors :math:`p(z)`: modules that return a distribution over the latent code."""

from pyro_vaes.priors.standard_normal import StandardNormal

__all__ = ["StandardNormal"]
