r"""Importance weights per datapoint and particle, shared by the IWAE-style objectives and the
evaluation.

With :math:`n` draws :math:`z_k \sim q(z \mid x)` taken at once in a particle plate outside the
model's plates, ``log_weights`` returns :math:`\log w_k = \log p(x, z_k) - \log q(z_k \mid x)`
for every particle and datapoint, ``(n, B)``, and :math:`\log p(x \mid z_k)`. Each site's log
density is summed over every dim but the particle dim and the data plate's dim. The densities are
the sites' own: ``poutine.scale`` factors (a subsampled plate's N/B, beta) stay out, so they never
enter a log-sum-exp.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pyro
import torch

from pyro_vaes.objectives.elbo import traces

__all__ = [
    "batch_size",
    "log_weights",
    "particle_traces",
    "per_datapoint",
    "plate_layout",
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
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(log w, log p(x | z))``, each ``(n, B)``, from ``n`` vectorised draws of the guide."""
    model_tr, guide_tr = particle_traces(model, guide, args, kwargs, n, nesting)
    return weights_from_traces(model_tr, guide_tr, n, batch_size(args, kwargs), nesting, data_dim)


def weights_from_traces(
    model_tr: Any, guide_tr: Any, n: int, b: int, nesting: int, data_dim: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(log w, log p(x | z))``, each ``(n, B)``, from :func:`particle_traces`."""
    rank = nesting + 1
    log_w = torch.zeros(())
    log_lik = torch.zeros(())
    model_sites: dict[str, Any] = model_tr.nodes
    guide_sites: dict[str, Any] = guide_tr.nodes
    for name, site in model_sites.items():
        if site["type"] != "sample":
            continue
        lp = per_datapoint(site["fn"].log_prob(site["value"]), rank, data_dim, n, b)
        log_w = log_w + lp
        if site["is_observed"]:
            log_lik = log_lik + lp
        else:
            g = guide_sites[name]
            log_w = log_w - per_datapoint(g["fn"].log_prob(g["value"]), rank, data_dim, n, b)
    return log_w.expand(n, b), log_lik.expand(n, b)
