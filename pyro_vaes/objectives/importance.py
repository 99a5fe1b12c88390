r"""Importance weights per datapoint and particle, shared by the IWAE-style objectives and the
evaluation.

With :math:`n` draws :math:`z_k \sim q(z \mid x)` taken at once in a particle plate outside the
model's plates, ``log_weights`` returns :math:`\log w_k = \log p(x, z_k) - \log q(z_k \mid x)`
for every particle and datapoint, ``(n, B)``, and :math:`\log p(x \mid z_k)`, from the terms of
:mod:`pyro_vaes.objectives.terms` (log densities at the draws, no closed forms; an auxiliary guide
site adds :math:`-\log q(a)`, as in Pyro's ``Importance``). Each site's log density is summed over
every dim but the particle dim and the data plate's dim.

Two weightings:

* ``scaled=False`` (the default, for the evaluation): the model's and the guide's own densities,
  no ``poutine.scale`` and no ``poutine.mask``: a property of the model, not of a training
  objective.
* ``scaled=True`` (IWAE and MIWAE): the rule of the ELBO inside the log weight -- a latent site's
  scale (beta) multiplies its :math:`\log p(z) - \log q(z)`, a mask removes terms -- so that
  the one-draw bound is the (beta-)ELBO. Only the data plate's subsample factor :math:`N/B`
  (:func:`data_plate_factor`) is kept out: inside a log-sum-exp it would turn the bound into
  something that bounds nothing, so the objectives weigh each datapoint's bound by it instead.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pyro
import torch

from pyro_vaes.objectives.elbo import traces
from pyro_vaes.objectives.terms import log_density_terms, unweighted, weigh

__all__ = [
    "batch_size",
    "data_plate_factor",
    "log_weights",
    "particle_traces",
    "per_datapoint",
    "plate_layout",
    "subsample_factor",
    "vectorised",
    "weights_from_traces",
]

_PARTICLES = "_pyro_vaes_particles"


def batch_size(args: tuple, kwargs: dict) -> int:
    """The number of datapoints in a call ``model(*args, **kwargs)``: the leading dim of the first
    tensor argument, or of ``x`` among the keywords."""
    x = next((a for a in args if isinstance(a, torch.Tensor)), kwargs.get("x"))
    if x is None:
        x = next((v for v in kwargs.values() if isinstance(v, torch.Tensor)), None)
    if not isinstance(x, torch.Tensor) or x.dim() == 0:
        raise ValueError("per-datapoint scores need a batch: a tensor argument x of shape (B, ...)")
    return x.shape[0]


def plate_layout(
    model: Callable[..., Any], guide: Callable[..., Any], args: tuple, kwargs: dict
) -> tuple[int, int]:
    """The model's plate nesting and the dim of the plate that holds the datapoints."""
    model_tr, guide_tr = traces(model, guide, args, kwargs)
    size = batch_size(args, kwargs)
    nesting, data_dim = 0, None
    sites: list[Any] = [*guide_tr.nodes.values(), *model_tr.nodes.values()]
    for site in sites:
        if site["type"] != "sample":
            continue
        for frame in site["cond_indep_stack"]:
            if frame.vectorized:
                nesting = max(nesting, -frame.dim)
                if site["is_observed"] and frame.size == size:
                    data_dim = frame.dim if data_dim is None else max(data_dim, frame.dim)
    if data_dim is None:
        raise ValueError(
            "per-datapoint scores need the model to observe the batch inside a plate of size "
            f"{size} (e.g. `with pyro.plate('data', x.shape[0])`)"
        )
    return nesting, data_dim


def per_datapoint(lp: torch.Tensor, rank: int, data_dim: int, n: int, b: int) -> torch.Tensor:
    """Sum a site's log density over every dim but the particle dim (0) and the data dim."""
    lp = lp.reshape((1,) * (rank - lp.dim()) + tuple(lp.shape))
    keep = {0, rank + data_dim}
    others = [d for d in range(rank) if d not in keep]
    if others:
        lp = lp.sum(dim=others, keepdim=True)
    return lp.reshape(lp.shape[0], lp.shape[rank + data_dim]).expand(n, b)


def vectorised(fn: Callable[..., Any], n: int, nesting: int) -> Callable[..., Any]:
    """``fn`` run inside a plate of ``n`` particles outside its own ``nesting`` plates."""

    def wrapped(*args: Any, **kwargs: Any) -> Any:
        with pyro.plate(_PARTICLES, n, dim=-(nesting + 1)):
            return fn(*args, **kwargs)

    return wrapped


def particle_traces(
    model: Callable[..., Any],
    guide: Callable[..., Any],
    args: tuple,
    kwargs: dict,
    n: int,
    nesting: int,
) -> tuple[Any, Any]:
    """The model trace (replayed on the guide's draws) and the guide trace, for ``n`` draws per
    datapoint taken at once: every site gains a leading particle dim of size ``n``."""
    return traces(vectorised(model, n, nesting), vectorised(guide, n, nesting), args, kwargs)


def log_weights(
    model: Callable[..., Any],
    guide: Callable[..., Any],
    args: tuple,
    kwargs: dict,
    n: int,
    nesting: int,
    data_dim: int,
    *,
    scaled: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(log w, log p(x | z))``, each ``(n, B)``, from ``n`` vectorised draws of the guide
    (``scaled``: as in :func:`weights_from_traces`)."""
    model_tr, guide_tr = particle_traces(model, guide, args, kwargs, n, nesting)
    b = batch_size(args, kwargs)
    return weights_from_traces(model_tr, guide_tr, n, b, nesting, data_dim, scaled=scaled)


def data_plate_factor(site: Any, data_dim: int) -> float:
    """The subsample factor :math:`N/B` of the data plate (dim ``data_dim``) on ``site``: 1 where
    the site is outside it or the plate is not subsampled."""
    for frame in site["cond_indep_stack"]:
        if frame.dim == data_dim and frame.full_size is not None:
            return frame.full_size / frame.size
    return 1.0


def subsample_factor(model_tr: Any, data_dim: int) -> float:
    """The data plate's subsample factor :math:`N/B` in a model trace (1 without subsampling):
    the weight of each datapoint's bound, applied outside the log-sum-exp."""
    for site in model_tr.nodes.values():
        if site["type"] == "sample" and site["is_observed"]:
            factor = data_plate_factor(site, data_dim)
            if factor != 1.0:
                return factor
    return 1.0


def _inside(data_dim: int) -> Callable[[Any, torch.Tensor], torch.Tensor]:
    """The scale/mask rule without the data plate's subsample factor."""

    def weigh_inside(site: Any, value: torch.Tensor) -> torch.Tensor:
        return weigh(site, value, factor_out=data_plate_factor(site, data_dim))

    return weigh_inside


def weights_from_traces(
    model_tr: Any,
    guide_tr: Any,
    n: int,
    b: int,
    nesting: int,
    data_dim: int,
    *,
    scaled: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(log w, log p(x | z))``, each ``(n, B)``, from :func:`particle_traces`.

    ``scaled=False`` (the evaluation): the model's and guide's own densities, no scale, no mask.
    ``scaled=True`` (the training bounds): each log density weighed by its site's scale and mask,
    as in the ELBO, but for the data plate's subsample factor, which stays outside."""
    rank = nesting + 1
    weight = _inside(data_dim) if scaled else unweighted
    log_w = torch.zeros(())
    log_lik = torch.zeros(())
    for t in log_density_terms(model_tr, guide_tr, weight).values():
        lp = -per_datapoint(t.loss, rank, data_dim, n, b)
        log_w = log_w + lp
        if t.kind == "observed":
            log_lik = log_lik + lp
    return log_w.expand(n, b), log_lik.expand(n, b)
