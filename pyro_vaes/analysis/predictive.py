r"""Posterior and prior predictive draws of any model/guide pair, as an ``arviz.InferenceData``.

For each datapoint :math:`x_n` and draw :math:`s = 1..S`:

.. math::
    z_{sn} \sim q(z \mid x_n), \qquad x^{rep}_{sn} \sim p(x \mid z_{sn}), \qquad
    \ell_{sn} = \log p(x_n \mid z_{sn}), \qquad
    \log w_{sn} = \log p(x_n, z_{sn}) - \log q(z_{sn} \mid x_n),

and from the prior :math:`\tilde z_{sn} \sim p(z)`, :math:`\tilde x_{sn} \sim p(x \mid \tilde
z_{sn})`. The groups:

* ``posterior``: every latent site of the guide (or those asked for), each flattened per
  datapoint, dims ``(chain, draw, datapoint, <site>_dim)``;
* ``posterior_predictive`` and ``observed_data``: the replicated and the observed data, the data's
  own dims after ``datapoint`` (``channel, row, col`` for images, ``feature`` for vectors);
* ``log_likelihood``: :math:`\ell_{sn}`, ``(chain, draw, datapoint)``;
* ``sample_stats``: ``log_weight``, :math:`\log w_{sn}`; ``log_marginal`` of this module turns it
  into the importance-sampled :math:`\log \hat p_S(x_n)` of :func:`pyro_vaes.evaluate.scores`;
* ``prior`` and ``prior_predictive``: :math:`\tilde z` and :math:`\tilde x`, shaped like the
  posterior ones.

``az.from_pyro`` expects an MCMC run, so the groups are assembled with ``az.from_dict``. The draws
of :math:`z` are of a *local* latent, one per datapoint, so ``az.waic`` and ``az.loo`` on this
``log_likelihood`` compare how well models predict each datapoint from its own code (useful to
rank decoders on one dataset), not a true leave-one-out; their Pareto-k warnings say as much.
There is one chain: the draws are independent.

References:
    [1] Gelman, Meng, Stern. Posterior predictive assessment of model fitness via realized
    discrepancies. Statistica Sinica 1996.
    [2] Kumar, Carroll, Hartikainen, Martin. ArviZ a unified library for exploratory analysis of
    Bayesian models in Python. JOSS 2019.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable, Sequence
from typing import Any

import arviz as az
import numpy as np
import torch
from pyro import poutine
from pyro.poutine.util import prune_subsample_sites
from tqdm.auto import tqdm

from pyro_vaes.analysis.evaluate import check_positive, evaluating
from pyro_vaes.objectives.importance import (
    particle_traces,
    vectorised,
    weights_from_traces,
)

__all__ = ["data_dims", "latent_sites", "log_marginal", "posterior_predictive"]


def data_dims(event_shape: tuple[int, ...]) -> list[str]:
    """Names of a datapoint's dims: ``channel, row, col`` for images, ``feature`` for vectors."""
    if len(event_shape) == 3:
        return ["channel", "row", "col"]
    if len(event_shape) == 1:
        return ["feature"]
    return [f"x_dim_{i}" for i in range(len(event_shape))]


def latent_sites(guide_tr: Any) -> list[str]:
    """The guide's latent sample sites, in the order they were drawn."""
    sites: dict[str, Any] = prune_subsample_sites(guide_tr).nodes
    names = [n for n, s in sites.items() if s["type"] == "sample" and not s["is_observed"]]
    if not names:
        raise ValueError("the guide has no latent sample site")
    return names


def _per_datapoint(value: torch.Tensor, n: int, b: int) -> torch.Tensor:
    """A site's draws ``(n, b, ...)`` flattened to ``(n, b, d)`` (``d = 1`` for scalars)."""
    return value.expand(n, b, *value.shape[2:]).reshape(n, b, -1).cpu()


@torch.no_grad()
def posterior_predictive(
    model: Callable[..., Any],
    guide: Callable[..., Any],
    data: Any,
    num_samples: int = 100,
    *,
    latent: str | Sequence[str] | None = None,
    observed: str = "x",
    batch_size: int = 100,
    prior: bool = True,
    progress: bool | None = None,
    distributed: bool | None = None,
) -> az.InferenceData:
    """Posterior (and prior) predictive draws for every datapoint of ``data``; see the module
    docstring for the groups.

    :param data: a tensor, an ``(x, y)`` pair, a dict batch or a Dataset; the model and guide
        receive the inputs they take (:mod:`pyro_vaes.data.batch`), and inputs besides ``x`` go
        to the ``constant_data`` group.
    :param num_samples: :math:`S` draws per datapoint.
    :param latent: the latent site(s) to record (default: every latent site of the guide, each a
        variable of its own with dims ``(chain, draw, datapoint, <site>_dim)``).
    :param observed: the observed site (the model must observe the batch there, inside a plate).
    :param batch_size: datapoints drawn at once (memory grows with ``num_samples * batch_size``).
    :param prior: add the ``prior`` and ``prior_predictive`` groups.
    :param progress: show a progress bar over the batches; ``None`` (default): where standard
        error is a terminal.
    :param distributed: under ``torch.distributed`` (``None``: whenever a group of several
        processes is initialised) every rank draws for a contiguous share of the datapoints and
        every rank returns the whole InferenceData, gathered in order.
    """
    check_positive(num_samples=num_samples, batch_size=batch_size)
    wanted = [latent] if isinstance(latent, str) else list(latent) if latent is not None else None
    parts: dict[str, list[torch.Tensor]] = defaultdict(list)
    with evaluating(model, guide, data) as ev:
        model, guide = ev.model, ev.guide
        nesting, data_dim = ev.layout(batch_size)
        group, rows = ev.shard(distributed)
        steps = math.ceil((rows[1] - rows[0]) / batch_size)
        disable = None if progress is None else not progress
        if group is not None and not group.is_main:
            disable = True
        for args, kwargs in tqdm(
            ev.batches(batch_size, rows), total=steps, disable=disable, unit="batch"
        ):
            x = args[0]
            n, b = num_samples, x.shape[0]
            model_tr, guide_tr = particle_traces(model, guide, args, kwargs, n, nesting)
            if wanted is None:
                wanted = latent_sites(guide_tr)
            for site in wanted:
                if site not in guide_tr.nodes:
                    raise ValueError(f"the guide has no site {site!r}")
            if observed not in model_tr.nodes:
                raise ValueError(f"the model has no site {observed!r}")
            obs = model_tr.nodes[observed]
            if not obs["is_observed"]:
                raise ValueError(f"the model's site {observed!r} is not observed")
            log_w, log_lik = weights_from_traces(model_tr, guide_tr, n, b, nesting, data_dim)
            parts["log_w"].append(log_w.cpu())
            parts["log_lik"].append(log_lik.cpu())
            parts["x_rep"].append(obs["fn"].sample().reshape(n, *x.shape).cpu())
            for site in wanted:
                parts[f"posterior.{site}"].append(
                    _per_datapoint(guide_tr.nodes[site]["value"], n, b)
                )
            if prior:
                unconditioned = poutine.uncondition(vectorised(model, n, nesting))
                prior_tr: Any = poutine.trace(unconditioned).get_trace(*args, **kwargs)
                parts["x_prior"].append(
                    prior_tr.nodes[observed]["value"].reshape(n, *x.shape).cpu()
                )
                for site in wanted:
                    if site in prior_tr.nodes:
                        parts[f"prior.{site}"].append(
                            _per_datapoint(prior_tr.nodes[site]["value"], n, b)
                        )
        inputs = {k: v.cpu().numpy() for k, v in ev.data.items()}
    assert wanted is not None

    def cat(key: str) -> np.ndarray:
        draws = torch.cat(parts[key], dim=1)  # (draw, datapoint, ...)
        if group is not None:  # every rank's datapoints, in order
            draws = group.gather_rows(draws.transpose(0, 1).contiguous(), f"gathering {key}")
            draws = draws.transpose(0, 1)
        return draws.unsqueeze(0).numpy()  # leading chain dim

    x_all = inputs.pop("x")
    event = tuple(x_all.shape[1:])
    xdims = ["datapoint", *data_dims(event)]
    coords: dict[str, Any] = {
        "datapoint": np.arange(x_all.shape[0]),
        **{d: np.arange(s) for d, s in zip(xdims[1:], event, strict=True)},
    }
    dims: dict[str, list[str]] = {observed: xdims, "log_weight": ["datapoint"]}
    posterior, prior_group = {}, {}
    for site in wanted:
        posterior[site] = cat(f"posterior.{site}")
        dims[site] = ["datapoint", f"{site}_dim"]
        coords[f"{site}_dim"] = np.arange(posterior[site].shape[-1])
        if parts[f"prior.{site}"]:
            prior_group[site] = cat(f"prior.{site}")
    for key, value in inputs.items():
        dims[key] = ["datapoint", *(f"{key}_dim_{i}" for i in range(value.ndim - 1))]
    groups: dict[str, Any] = {
        "posterior": posterior,
        "posterior_predictive": {observed: cat("x_rep")},
        "log_likelihood": {observed: cat("log_lik")},
        "sample_stats": {"log_weight": cat("log_w")},
        "observed_data": {observed: x_all},
    }
    if inputs:
        groups["constant_data"] = inputs
    if prior:
        groups["prior"] = prior_group
        groups["prior_predictive"] = {observed: cat("x_prior")}
    return az.from_dict(**groups, coords=coords, dims=dims)


def log_marginal(idata: az.InferenceData) -> np.ndarray:
    r"""The importance-sampled :math:`\log \hat p_S(x_n) = \log \frac1S \sum_s w_{sn}` of each
    datapoint, from ``sample_stats.log_weight``, shape ``(N,)``."""
    log_w = idata["sample_stats"]["log_weight"].values  # (chain, draw, datapoint)
    flat = torch.from_numpy(log_w.reshape(-1, log_w.shape[-1]))
    return (torch.logsumexp(flat, 0) - math.log(flat.shape[0])).numpy()
