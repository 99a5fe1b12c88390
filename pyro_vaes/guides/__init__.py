"""Posterior families :math:`q(z \\mid x)`: modules mapping encoder features to a distribution."""

from pyro_vaes.guides.diagonal_normal import DiagonalNormal
from pyro_vaes.guides.flows import IAF, PlanarFlow, RadialFlow

__all__ = ["IAF", "DiagonalNormal", "PlanarFlow", "RadialFlow"]
