"""The structure of a model/guide pair, found by tracing them once on a batch: their parameters,
their observed sites and supports, whether the guide is reparameterised; and the checks made
once, before training, with Pyro's validation on (site names and shapes, data supports)."""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import pyro
import pyro.infer
import torch
from pyro import poutine
from pyro.poutine.util import prune_subsample_sites
from pyro.util import check_model_guide_match
from torch import nn
from torch.distributions import constraints

from pyro_vaes.data.batch import Batch, call_args
from pyro_vaes.errors import DataError
from pyro_vaes.objectives.elbo import ELBO, traces

__all__ = [
    "Structure",
    "check_sites",
    "check_support",
    "default_loss",
    "owners",
    "scoring",
    "trace_structure",
]


def owners(*fns: Callable[..., Any]) -> list[nn.Module]:
    """The ``nn.Module``\\ s that own ``fns`` (a module itself, or a bound method's ``self``)."""
    found: list[nn.Module] = []
    for fn in fns:
        owner = fn if isinstance(fn, nn.Module) else getattr(fn, "__self__", None)
        if isinstance(owner, nn.Module) and all(owner is not o for o in found):
            found.append(owner)
    return found


@dataclass
class Structure:
    """What one trace of model and guide tells."""

    params: dict[str, torch.Tensor]  # every tensor a checkpoint holds, by name
    trainable: list[torch.Tensor]
    observed: dict[str, constraints.Constraint]  # observed site -> support, for data checks
    reparameterized: bool  # every latent guide site has rsample


def _sample_sites(trace: Any) -> dict[str, Any]:
    nodes: dict[str, Any] = prune_subsample_sites(trace).nodes
    return {name: site for name, site in nodes.items() if site["type"] == "sample"}


@contextmanager
def scoring(batch: Batch, name: str = "data") -> Iterator[None]:
    """Errors raised by model or guide on ``batch`` as a :class:`DataError` about the data."""
    try:
        yield
    except (RuntimeError, ValueError, IndexError) as err:
        if isinstance(err, DataError):
            raise
        first = (str(err).strip().splitlines() or [""])[0]  # Pyro appends a table of shapes
        raise DataError(
            f"the model and guide cannot score a batch of {name} of shape "
            f"{tuple(batch['x'].shape)}; does the data match the model? "
            f"({type(err).__name__}: {first})"
        ) from err


def check_sites(model: Callable[..., Any], guide: Callable[..., Any], batch: Batch) -> None:
    """Model and guide, each run on its own, agree on their latent sites and their shapes.

    :raises ValueError: naming the site, where a latent site of the model is missing from the
        guide (and not enumerated), or where their shapes disagree (Pyro's own check).
    """
    args, kwargs = call_args(batch)
    with scoring(batch), pyro.validation_enabled(True), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        guide_tr = poutine.trace(guide).get_trace(*args, **kwargs)
        model_tr = poutine.trace(model).get_trace(*args, **kwargs)
    guide_sites, model_sites = _sample_sites(guide_tr), _sample_sites(model_tr)
    missing = [
        name
        for name, site in model_sites.items()
        if not site["is_observed"]
        and name not in guide_sites
        and not site["infer"].get("enumerate")
    ]
    if missing:
        latent = [n for n, s in guide_sites.items() if not s["is_observed"]]
        raise ValueError(
            f"the model's latent site(s) {missing} have no counterpart in the guide, whose "
            f"sites are {latent}: model and guide must name their latent sites alike"
        )
    try:
        check_model_guide_match(model_tr, guide_tr)
    except ValueError as err:
        raise ValueError(f"model and guide disagree: {err}") from err


def trace_structure(
    model: Callable[..., Any], guide: Callable[..., Any], batch: Batch
) -> Structure:
    """Run guide and model (replayed) once on ``batch`` to find their parameters and observed
    sites.

    :raises DataError: where they cannot score the batch (wrong shapes for the model).
    """
    args, kwargs = call_args(batch)
    with scoring(batch):
        model_tr, guide_tr = traces(model, guide, args, kwargs)

    params: dict[str, torch.Tensor] = {}
    seen: set[int] = set()
    for i, module in enumerate(owners(model, guide)):
        for key, tensor in module.state_dict(keep_vars=True).items():
            params[f"module{i}.{key}"] = tensor
            seen.add(id(tensor))
    model_sites: dict[str, Any] = model_tr.nodes
    guide_sites: dict[str, Any] = guide_tr.nodes
    for sites in (guide_sites, model_sites):
        for name, site in sites.items():
            if site["type"] == "param":
                unconstrained = site["value"].unconstrained()
                if id(unconstrained) not in seen:
                    params[f"param_store.{name}"] = unconstrained
                    seen.add(id(unconstrained))
    trainable = [p for p in params.values() if p.requires_grad]
    if not trainable:
        raise ValueError(
            "the model and guide have no trainable parameters: use nn.Module methods, "
            "pyro.module or pyro.param"
        )

    x = batch["x"]
    observed = {
        name: site["fn"].support
        for name, site in model_sites.items()
        if site["type"] == "sample"
        and site["is_observed"]
        and site["mask"] is not False
        and isinstance(site["value"], torch.Tensor)
        and site["value"].shape == x.shape
    }
    reparameterized = all(
        site["fn"].has_rsample
        for site in guide_sites.values()
        if site["type"] == "sample" and not site["is_observed"]
    )
    return Structure(params, trainable, observed, reparameterized)


def default_loss(structure: Structure) -> Any:
    """:class:`pyro_vaes.objectives.ELBO` (closed-form KL terms where registered, no host
    synchronisation) when every latent site of the guide is reparameterised, else Pyro's
    ``Trace_ELBO`` with its score-function terms."""
    return ELBO() if structure.reparameterized else pyro.infer.Trace_ELBO()


def check_support(
    x: torch.Tensor, observed: dict[str, constraints.Constraint], name: str, offset: int = 0
) -> None:
    """Check that ``x`` lies in the support of every observed site.

    :raises DataError: where ``x`` holds values outside the support of an observed site,
        naming the first such datapoint (its index plus ``offset``, for a part of a dataset).
    """
    for site, support in observed.items():
        if support is constraints.real or isinstance(support, type(constraints.real)):
            continue
        ok = support.check(x)
        ok = ok.reshape(ok.shape[0], -1).all(dim=1) if ok.dim() > 0 else ok.reshape(1)
        if not bool(ok.all()):
            idx = int((~ok).nonzero()[0, 0]) + offset
            raise DataError(
                f"{name} holds values outside the support of observed site {site!r} ({support}): "
                f"{int((~ok).sum())} datapoint(s), the first at index {idx}; binary likelihoods "
                "need binarised data (pyro_vaes.data.binarize or dynamic_binarize)"
            )
