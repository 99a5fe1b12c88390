"""Priors and posteriors by name: the registries the catalogue, the CLI and
:func:`pyro_vaes.variants.build` choose from, and the context every part is built from.

Each part registers its builder in its own file (see :mod:`pyro_vaes.registry`); a builder takes
a :class:`PartContext` and returns the module. Priors are built after the posterior, so that a
prior made of the posterior (the VampPrior) can use it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from torch import nn

from pyro_vaes.registry import Registry

__all__ = ["PartContext", "posteriors", "priors"]


@dataclass(frozen=True)
class PartContext:
    """What a part may be built from.

    :param data_shape: the shape of one datapoint.
    :param latent_dim: the size of the code.
    :param features: the encoder's output size (a posterior's input).
    :param encoder: the encoder ``x -> h``.
    :param posterior: the posterior module (for priors; ``None`` while building posteriors).
    :param flow_steps: the number of flow steps (flow posteriors).
    :param components: the number of mixture components (mixture priors, VampPrior).
    :param curvature: the curvature of the Poincare ball.
    """

    data_shape: tuple[int, ...]
    latent_dim: int
    features: int
    encoder: nn.Module
    posterior: nn.Module | None = None
    flow_steps: int = 4
    components: int = 100
    curvature: float = 1.0


Builder = Callable[[PartContext], nn.Module]

#: prior family name -> builder
priors: Registry[Builder] = Registry("prior")
#: posterior family name -> builder
posteriors: Registry[Builder] = Registry("posterior")
