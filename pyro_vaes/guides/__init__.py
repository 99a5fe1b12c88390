"""Posterior families :math:`q(z \\mid x)`: modules mapping encoder features to a distribution."""

from pyro_vaes.guides.batch_norm_normal import BatchNormNormal
from pyro_vaes.guides.delta import Delta
from pyro_vaes.guides.diagonal_normal import DiagonalNormal
from pyro_vaes.guides.flows import IAF, PlanarFlow, RadialFlow
from pyro_vaes.guides.von_mises_fisher import VonMisesFisher
from pyro_vaes.guides.wrapped_normal import WrappedNormal

__all__ = [
    "IAF",
    "BatchNormNormal",
    "Delta",
    "DiagonalNormal",
    "PlanarFlow",
    "RadialFlow",
    "VonMisesFisher",
    "WrappedNormal",
]
