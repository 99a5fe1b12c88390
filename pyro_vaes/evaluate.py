r"""Per-datapoint evaluation of any model/guide pair: importance-sampled log-likelihood, ELBO and
reconstruction error, vectorised over datapoints and particles.

With :math:`K` draws :math:`z_k \sim q(z \mid x)` and log weights
:math:`\log w_k = \log p(x, z_k) - \log q(z_k \mid x)`,

.. math::
    \log \hat p_K(x) = \log \frac1K \sum_{k=1}^K w_k \;\le\; \log p(x) \text{ in expectation},
    \qquad \mathrm{ELBO}(x) \approx \frac1K \sum_k \log w_k,

and the reconstruction error is :math:`-\frac1K\sum_k \log p(x \mid z_k)`. The :math:`K` draws are
taken ``chunk_size`` at a time with a running log-sum-exp, so memory stays bounded for
:math:`K = 5000`. The model's ``poutine.scale`` factors (such as beta) are ignored: these are
properties of the model's density, not of the training objective.

References:
    [1] Burda, Grosse, Salakhutdinov. Importance Weighted Autoencoders. ICLR 2016.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pyro
import torch
from tqdm.auto import tqdm

from pyro_vaes.data import as_tensor, batches, check_finite
from pyro_vaes.fit import owners
from pyro_vaes.objectives.elbo import traces

__all__ = ["Scores", "elbo", "log_likelihood", "reconstruction_error", "scores"]

_PARTICLES = "_pyro_vaes_particles"


@dataclass(frozen=True)
class Scores:
    """Per-datapoint scores in nats, each of shape ``(N,)``."""

    log_likelihood: torch.Tensor
    elbo: torch.Tensor
    reconstruction: torch.Tensor


def _plates(
    model: Callable[..., Any], guide: Callable[..., Any], x: torch.Tensor
) -> tuple[int, int]:
    """The model's plate nesting and the dim of the plate that holds the datapoints."""
    model_tr, guide_tr = traces(model, guide, (x,), {})
    nesting, data_dim = 0, None
    sites: list[Any] = [*guide_tr.nodes.values(), *model_tr.nodes.values()]
    for site in sites:
        if site["type"] != "sample":
            continue
        for frame in site["cond_indep_stack"]:
            if frame.vectorized:
                nesting = max(nesting, -frame.dim)
                if site["is_observed"] and frame.size == x.shape[0]:
                    data_dim = frame.dim if data_dim is None else max(data_dim, frame.dim)
    if data_dim is None:
        raise ValueError(
            "per-datapoint scores need the model to observe the batch inside a plate of size "
            f"{x.shape[0]} (e.g. `with pyro.plate('data', x.shape[0])`)"
        )
    return nesting, data_dim


def _per_datapoint(lp: torch.Tensor, rank: int, data_dim: int, n: int, b: int) -> torch.Tensor:
    """Sum a site's log density over every dim but the particle dim (0) and the data dim."""
    lp = lp.reshape((1,) * (rank - lp.dim()) + tuple(lp.shape))
    keep = {0, rank + data_dim}
    others = [d for d in range(rank) if d not in keep]
    if others:
        lp = lp.sum(dim=others, keepdim=True)
    return lp.reshape(lp.shape[0], lp.shape[rank + data_dim]).expand(n, b)


def _log_weights(
    model: Callable[..., Any],
    guide: Callable[..., Any],
    x: torch.Tensor,
    n: int,
    nesting: int,
    data_dim: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(log w, log p(x | z))``, each ``(n, B)``, from ``n`` vectorised draws of the guide."""

    def vectorised(fn: Callable[..., Any]) -> Callable[..., Any]:
        def wrapped(*args: Any) -> Any:
            with pyro.plate(_PARTICLES, n, dim=-(nesting + 1)):
                return fn(*args)

        return wrapped

    model_tr, guide_tr = traces(vectorised(model), vectorised(guide), (x,), {})
    rank, b = nesting + 1, x.shape[0]
    log_w = x.new_zeros(n, b)
    log_lik = x.new_zeros(n, b)
    model_sites: dict[str, Any] = model_tr.nodes
    guide_sites: dict[str, Any] = guide_tr.nodes
    for name, site in model_sites.items():
        if site["type"] != "sample":
            continue
        lp = _per_datapoint(site["fn"].log_prob(site["value"]), rank, data_dim, n, b)
        log_w = log_w + lp
        if site["is_observed"]:
            log_lik = log_lik + lp
        else:
            g = guide_sites[name]
            log_w = log_w - _per_datapoint(g["fn"].log_prob(g["value"]), rank, data_dim, n, b)
    return log_w, log_lik


@torch.no_grad()
def scores(
    model: Callable[..., Any],
    guide: Callable[..., Any],
    data: Any,
    num_samples: int = 5000,
    *,
    chunk_size: int = 100,
    batch_size: int = 100,
    progress: bool = False,
) -> Scores:
    """Importance-sampled log-likelihood, ELBO and reconstruction error of every datapoint, from
    the same ``num_samples`` draws of the guide per datapoint.

    :param data: a tensor, ``(x, y)`` pair or Dataset (labels are ignored).
    :param num_samples: :math:`K` draws per datapoint.
    :param chunk_size: draws evaluated at once (memory grows with ``chunk_size * batch_size``).
    :param batch_size: datapoints evaluated at once.
    """
    for name, value in (
        ("num_samples", num_samples),
        ("chunk_size", chunk_size),
        ("batch_size", batch_size),
    ):
        if not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    mods = owners(model, guide)
    device = next((p.device for m in mods for p in m.parameters()), torch.device("cpu"))
    x_all = as_tensor(data)
    check_finite(x_all)
    modes = [m.training for m in mods]
    for m in mods:
        m.eval()
    out: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []
    try:
        nesting, data_dim = _plates(model, guide, x_all[:batch_size].to(device))
        total = math.ceil(x_all.shape[0] / batch_size) * math.ceil(num_samples / chunk_size)
        with tqdm(total=total, disable=not progress, unit="chunk") as bar:
            for x in batches(x_all, batch_size):
                x = x.to(device)
                lse = x.new_full((x.shape[0],), -math.inf)
                sum_w = x.new_zeros(x.shape[0])
                sum_lik = x.new_zeros(x.shape[0])
                for start in range(0, num_samples, chunk_size):
                    n = min(chunk_size, num_samples - start)
                    log_w, log_lik = _log_weights(model, guide, x, n, nesting, data_dim)
                    lse = torch.logaddexp(lse, torch.logsumexp(log_w, dim=0))
                    sum_w += log_w.sum(0)
                    sum_lik += log_lik.sum(0)
                    bar.update(1)
                out.append(
                    (
                        (lse - math.log(num_samples)).cpu(),
                        (sum_w / num_samples).cpu(),
                        (-sum_lik / num_samples).cpu(),
                    )
                )
    finally:
        for m, mode in zip(mods, modes, strict=True):
            m.train(mode)
    ll, el, rec = (torch.cat(parts) for parts in zip(*out, strict=True))
    return Scores(ll, el, rec)


def log_likelihood(
    model: Callable[..., Any],
    guide: Callable[..., Any],
    data: Any,
    num_samples: int = 5000,
    **kwargs: Any,
) -> torch.Tensor:
    """Per-datapoint importance-sampled estimate of :math:`\\log p(x)` (the IWAE bound with
    ``num_samples`` draws), shape ``(N,)``. See :func:`scores` for the keywords."""
    return scores(model, guide, data, num_samples, **kwargs).log_likelihood


def elbo(
    model: Callable[..., Any],
    guide: Callable[..., Any],
    data: Any,
    num_samples: int = 100,
    **kwargs: Any,
) -> torch.Tensor:
    """Per-datapoint Monte Carlo ELBO, shape ``(N,)``."""
    return scores(model, guide, data, num_samples, **kwargs).elbo


def reconstruction_error(
    model: Callable[..., Any],
    guide: Callable[..., Any],
    data: Any,
    num_samples: int = 10,
    **kwargs: Any,
) -> torch.Tensor:
    """Per-datapoint :math:`-\\mathbb E_q[\\log p(x \\mid z)]` in nats, shape ``(N,)``."""
    return scores(model, guide, data, num_samples, **kwargs).reconstruction
