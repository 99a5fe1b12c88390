"""Posterior families :math:`q(z \\mid x)`: modules mapping encoder features to a distribution."""

from pyro_vaes.guides.diagonal_normal import DiagonalNormal

__all__ = ["DiagonalNormal"]
