"""Importance-weighted bounds: IWAE and MIWAE."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import pyro.infer
import torch

from pyro_vaes.objectives.elbo import DifferentiableObjective
from pyro_vaes.objectives.importance import (
    batch_size,
    particle_traces,
    plate_layout,
    subsample_factor,
    weights_from_traces,
)

__all__ = ["IWAE", "MIWAE"]


def _shapes(values: tuple) -> tuple:
    """Trailing shapes of the tensor arguments (the layout does not depend on the batch size)."""
    return tuple(tuple(v.shape[1:]) if isinstance(v, torch.Tensor) else None for v in values)


class MIWAE(DifferentiableObjective, pyro.infer.RenyiELBO):
    r"""The multiply importance weighted bound: the mean of :math:`M` independent IWAE bounds of
    :math:`K` draws each, per datapoint,

    .. math::
        \mathrm{MIWAE}_{M,K}(x) = \frac1M \sum_{m=1}^M \log \frac1K \sum_{k=1}^K
        \frac{p(x, z_{m,k})}{q(z_{m,k} \mid x)}, \qquad z_{m,k} \sim q(z \mid x),

    summed over the batch. The log-sum-exp runs over :math:`K` (the inner draws) and the average
    over :math:`M`; ``MIWAE(1, K)`` is IWAE and ``MIWAE(M, 1)`` the ELBO averaged over
    :math:`M` draws. All :math:`M K` draws are taken at once in a particle plate.

    It is a ``RenyiELBO`` with :math:`\alpha = 0` that also has ``differentiable_loss``, with two
    differences from Pyro's: the bound is computed per datapoint, and a subsampled data plate's
    :math:`N/B` weighs each datapoint's bound instead of entering the log-sum-exp, where it would
    turn the bound into something that bounds nothing; and nothing is read back to the host.

    Scales and masks: inside the log weight every log density is weighed by its site's scale and
    mask, as in the ELBO (:mod:`pyro_vaes.objectives.terms`; ``scaled=True`` in
    :func:`~pyro_vaes.objectives.importance.weights_from_traces`): ``beta`` multiplies the
    latent site's :math:`\log p(z) - \log q(z)`, so ``IWAE(1)`` on a model with ``beta = b`` is
    the beta-ELBO, and a mask removes the masked terms from the weight. (The evaluation uses the
    model's own densities instead.)

    :param m: :math:`M`, the number of bounds averaged.
    :param k: :math:`K`, the draws inside each bound.

    References:
        [1] Rainforth, Kosiorek, Le, Maddison, Igl, Wood, Teh. Tighter Variational Bounds are Not
        Necessarily Better. ICML 2018.
    """

    def __init__(self, m: int = 1, k: int = 5) -> None:
        for name, value in (("m", m), ("k", k)):
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        super().__init__(alpha=0.0, num_particles=m * k, vectorize_particles=True)
        self.m, self.k = m, k
        self._layouts: dict[tuple, tuple[int, int]] = {}

    def _bound(
        self, model: Callable[..., Any], guide: Callable[..., Any], args: tuple, kwargs: dict
    ) -> tuple[torch.Tensor, float]:
        """The bounds ``(B,)`` and the data plate's subsample factor :math:`N/B`."""
        key = (model, guide, _shapes(args), _shapes(tuple(kwargs.values())), tuple(kwargs))
        if key not in self._layouts:  # one extra trace per model, not per step
            self._layouts[key] = plate_layout(model, guide, args, kwargs)
        nesting, data_dim = self._layouts[key]
        n, b = self.m * self.k, batch_size(args, kwargs)
        model_tr, guide_tr = particle_traces(model, guide, args, kwargs, n, nesting)
        log_w, _ = weights_from_traces(model_tr, guide_tr, n, b, nesting, data_dim, scaled=True)
        log_w = log_w.reshape(self.m, self.k, -1)
        bound = (torch.logsumexp(log_w, dim=1) - math.log(self.k)).mean(0)
        return bound, subsample_factor(model_tr, data_dim)

    def bound(
        self, model: Callable[..., Any], guide: Callable[..., Any], *args: Any, **kwargs: Any
    ) -> torch.Tensor:
        """The bound of every datapoint of the batch ``model(*args, **kwargs)``, shape ``(B,)``."""
        return self._bound(model, guide, args, kwargs)[0]

    def differentiable_loss(
        self, model: Callable[..., Any], guide: Callable[..., Any], *args: Any, **kwargs: Any
    ) -> torch.Tensor:
        """Minus the bounds summed over the batch, each weighed by the data plate's subsample
        factor (the sum estimates the whole data set's, as the ELBO's does)."""
        bound, factor = self._bound(model, guide, args, kwargs)
        return -factor * bound.sum()


class IWAE(MIWAE):
    r"""The importance weighted autoencoder bound with :math:`K` draws per datapoint,
    :math:`\log \frac1K \sum_k p(x, z_k) / q(z_k \mid x)`; ``IWAE(1)`` is the ELBO.

    References:
        [1] Burda, Grosse, Salakhutdinov. Importance Weighted Autoencoders. ICLR 2016.
    """

    def __init__(self, k: int = 5) -> None:
        super().__init__(m=1, k=k)
