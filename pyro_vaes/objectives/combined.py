r"""Objectives that combine the ELBO, IWAE and MIWAE bounds of the same draws: PIWAE and CIWAE.

Both take their :math:`T` draws per datapoint at once, as :class:`~pyro_vaes.objectives.MIWAE`
does, and weigh every log density by the scale/mask rule inside the log weight
(:mod:`pyro_vaes.objectives.importance`, ``scaled=True``), so each reduces exactly to the bounds
it combines at its limits, draw for draw.

**Routing the gradients (PIWAE).** PIWAE trains the generative network on one bound and the
inference network on another. Rather than splitting the parameters by owner (a VampPrior's
pseudo-inputs run through the encoder inside the *model*), it splits the two ways a parameter
reaches the log weight :math:`\log w = \log p_\theta(x, z) - \log q_\phi(z \mid x)`,
:math:`z = g_\phi(\epsilon, x)`:

* the **generative path**: :math:`\log p_\theta(x, z)` at the draws held fixed. The model is
  replayed a second time on the guide's draws cut from the graph (``detach``), which gives
  :math:`P_\perp = \log p_\theta(x, \bar z)` with gradients for :math:`\theta` only;
* the **inference path**: everything else, through the draws and :math:`\log q_\phi`.

Two tensors with the value of :math:`\log w` each carry one path's gradient,

.. math::
    \log w_\theta = P_\perp - \bar P_\perp + \overline{\log w}, \qquad
    \log w_\phi = \log w - P_\perp + \bar P_\perp

(a bar is ``detach``), and the surrogate :math:`B_1(\log w_\theta) + B_2(\log w_\phi) -
\overline{B_2(\log w_\phi)}` has the value of :math:`B_1` and the gradient of :math:`B_1` along
the generative path and of :math:`B_2` along the inference path. It is an ordinary
``differentiable_loss``: one ``backward`` in :class:`~pyro_vaes.train.Step`, one optimizer, any
Pyro ``SVI``. For a plain VAE (decoder and prior in the model, encoder in the guide) the
decoder gets exactly :math:`\nabla B_1` and the encoder exactly :math:`\nabla B_2`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
from pyro import poutine
from pyro.poutine.trace_struct import Trace
from pyro.poutine.util import prune_subsample_sites

from pyro_vaes.objectives.importance import (
    batch_size,
    data_plate_factor,
    particle_traces,
    per_datapoint,
    plate_layout,
    subsample_factor,
    vectorised,
    weights_from_traces,
)
from pyro_vaes.objectives.iwae import MIWAE, _shapes
from pyro_vaes.objectives.terms import weigh

__all__ = ["CIWAE", "PIWAE", "model_log_density"]


def model_log_density(model_tr: Trace, n: int, b: int, nesting: int, data_dim: int) -> torch.Tensor:
    r""":math:`\log p(x, z)` per particle and datapoint, ``(n, B)``, of a vectorised model trace
    (:func:`~pyro_vaes.objectives.importance.particle_traces`): every sample site's log density
    at its value, weighed by the rule without the data plate's subsample factor, as in the
    importance weights with ``scaled=True``."""
    out = torch.zeros(())
    sites: list[Any] = list(model_tr.nodes.values())
    for site in sites:
        if site["type"] != "sample":
            continue
        lp = site["fn"].log_prob(site["value"])
        lp = weigh(site, lp, factor_out=data_plate_factor(site, data_dim))
        out = out + per_datapoint(lp, nesting + 1, data_dim, n, b)
    return out.expand(n, b)


def _held(trace: Trace) -> Trace:
    """A copy of ``trace`` whose sample sites' values are cut from the graph."""
    held = trace.copy()
    sites: dict[str, Any] = dict(trace.nodes)
    for name, site in sites.items():
        if site["type"] == "sample":
            held.nodes[name] = {**site, "value": site["value"].detach()}
    return held


class _Draws(MIWAE):
    """The log weights of :math:`T = M K` draws per datapoint, as MIWAE takes them."""

    def _layout(
        self, model: Callable[..., Any], guide: Callable[..., Any], args: tuple, kwargs: dict
    ) -> tuple[int, int]:
        key = (model, guide, _shapes(args), _shapes(tuple(kwargs.values())), tuple(kwargs))
        if key not in self._layouts:  # one extra trace per model, not per step
            self._layouts[key] = plate_layout(model, guide, args, kwargs)
        return self._layouts[key]


class CIWAE(_Draws):
    r"""The combination of the ELBO and the IWAE bound of the same :math:`K` draws,

    .. math::
        \mathrm{CIWAE}_\beta(x) = \beta\,\frac1K \sum_{k=1}^K \log w_k
        + (1 - \beta) \log \frac1K \sum_{k=1}^K w_k, \qquad
        w_k = \frac{p(x, z_k)}{q(z_k \mid x)},\; z_k \sim q(z \mid x),

    summed over the batch (eq. 9 of [1]). ``beta = 1`` is the ELBO estimated from :math:`K`
    draws (``MIWAE(K, 1)``), ``beta = 0`` is ``IWAE(K)``; both parameter sets train on it. The
    ELBO term is the average log weight (no closed-form KL), so that both terms see the same
    draws.

    :param k: :math:`K`, the draws per datapoint.
    :param beta: the ELBO's weight, in :math:`[0, 1]`.

    References:
        [1] Rainforth, Kosiorek, Le, Maddison, Igl, Wood, Teh. Tighter Variational Bounds are Not
        Necessarily Better. ICML 2018.
    """

    def __init__(self, k: int = 5, beta: float = 0.5) -> None:
        super().__init__(m=1, k=k)
        if isinstance(beta, bool) or not (0.0 <= float(beta) <= 1.0):
            raise ValueError(f"beta must be in [0, 1], got {beta!r}")
        self.beta = float(beta)

    def _bound(
        self, model: Callable[..., Any], guide: Callable[..., Any], args: tuple, kwargs: dict
    ) -> tuple[torch.Tensor, float]:
        nesting, data_dim = self._layout(model, guide, args, kwargs)
        n, b = self.k, batch_size(args, kwargs)
        model_tr, guide_tr = particle_traces(model, guide, args, kwargs, n, nesting)
        log_w, _ = weights_from_traces(model_tr, guide_tr, n, b, nesting, data_dim, scaled=True)
        elbo = log_w.mean(0)
        iwae = torch.logsumexp(log_w, 0) - math.log(n)
        return self.beta * elbo + (1.0 - self.beta) * iwae, subsample_factor(model_tr, data_dim)


class PIWAE(_Draws):
    r"""The partially importance weighted objective: from the same :math:`T = M K` draws per
    datapoint, the generative network :math:`\theta` ascends the IWAE bound of all :math:`T`
    draws and the inference network :math:`\phi` the MIWAE bound of :math:`M` groups of
    :math:`K` (section 5 of [1]),

    .. math::
        \Delta\theta \propto \nabla_\theta\, \mathrm{IWAE}_{T}(x), \qquad
        \Delta\phi \propto \nabla_\phi\, \mathrm{MIWAE}_{M,K}(x), \qquad
        \mathrm{MIWAE}_{M,K}(x) = \frac1M \sum_{m=1}^M \log \frac1K \sum_{k=1}^K w_{m,k}.

    The gradients are routed by path (the module docstring): :math:`\theta`'s along
    :math:`\log p_\theta(x, z)` at the draws, :math:`\phi`'s through the draws and
    :math:`\log q_\phi`. The loss's value is minus the IWAE bound of the :math:`T` draws
    (:meth:`bound` gives it per datapoint). ``PIWAE(1, K)`` is ``IWAE(K)`` in value and
    gradients; ``PIWAE(T, 1)`` trains the inference network on the ELBO. The model runs twice
    per step (once on the draws cut from the graph).

    :param m: :math:`M`, the MIWAE bounds the inference network averages.
    :param k: :math:`K`, the draws inside each of them (:math:`T = M K` in all).

    References:
        [1] Rainforth, Kosiorek, Le, Maddison, Igl, Wood, Teh. Tighter Variational Bounds are Not
        Necessarily Better. ICML 2018.
    """

    def __init__(self, m: int = 4, k: int = 4) -> None:
        super().__init__(m=m, k=k)

    def _bound(
        self, model: Callable[..., Any], guide: Callable[..., Any], args: tuple, kwargs: dict
    ) -> tuple[torch.Tensor, float]:
        nesting, data_dim = self._layout(model, guide, args, kwargs)
        n, b = self.m * self.k, batch_size(args, kwargs)
        model_tr, guide_tr = particle_traces(model, guide, args, kwargs, n, nesting)
        log_w, _ = weights_from_traces(model_tr, guide_tr, n, b, nesting, data_dim, scaled=True)
        replay = poutine.replay(vectorised(model, n, nesting), trace=_held(guide_tr))
        held_tr = prune_subsample_sites(poutine.trace(replay).get_trace(*args, **kwargs))
        p_held = model_log_density(held_tr, n, b, nesting, data_dim)  # grads: theta only
        generative = p_held - p_held.detach() + log_w.detach()
        inference = log_w - p_held + p_held.detach()
        iwae = torch.logsumexp(generative, 0) - math.log(n)
        groups = inference.reshape(self.m, self.k, b)
        miwae = (torch.logsumexp(groups, 1) - math.log(self.k)).mean(0)
        return iwae + (miwae - miwae.detach()), subsample_factor(model_tr, data_dim)
