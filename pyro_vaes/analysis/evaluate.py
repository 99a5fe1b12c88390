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
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import pyro
import torch
from pyro.poutine.util import is_validation_enabled
from tqdm.auto import tqdm

from pyro_vaes.data.batch import (
    Batch,
    accepting,
    as_batch,
    call_args,
    num_datapoints,
    select,
    to_device,
)
from pyro_vaes.models.base import parameters_managed
from pyro_vaes.objectives.importance import log_weights, plate_layout
from pyro_vaes.train.distributed import Group, active
from pyro_vaes.train.step import check_int
from pyro_vaes.train.structure import owners, scoring

__all__ = [
    "Evaluation",
    "Scores",
    "check_positive",
    "elbo",
    "evaluating",
    "log_likelihood",
    "reconstruction_error",
    "scores",
]


def check_positive(**values: int) -> None:
    """Raise ``ValueError`` unless every value is a positive integer (Python's or NumPy's)."""
    for name, value in values.items():
        check_int(name, value, 1)


@dataclass(frozen=True)
class Evaluation:
    """What :func:`evaluating` hands out: the whole data as one checked batch, the models'
    device, and model and guide taking the inputs the data carries."""

    data: Batch
    device: torch.device
    model: Callable[..., Any]
    guide: Callable[..., Any]

    @property
    def size(self) -> int:
        return num_datapoints(self.data)

    def layout(self, batch_size: int) -> tuple[int, int]:
        """The model's plate nesting and data dim (:func:`plate_layout`), from a first run of
        model and guide; where they cannot score the data, a :class:`DataError` that says so."""
        args, kwargs = next(self.batches(batch_size))
        with scoring({"x": args[0]}):
            return plate_layout(self.model, self.guide, args, kwargs)

    def batches(
        self, batch_size: int, rows: tuple[int, int] | None = None
    ) -> Iterator[tuple[tuple, dict[str, torch.Tensor]]]:
        """``(args, kwargs)`` of the model calls on consecutive batches (of ``rows``
        ``[start, stop)``, default all), on the device."""
        lo, hi = rows if rows is not None else (0, self.size)
        for start in range(lo, hi, batch_size):
            part = select(self.data, slice(start, min(start + batch_size, hi)))
            yield call_args(to_device(part, self.device))

    def shard(self, distributed: bool | None) -> tuple[Group | None, tuple[int, int]]:
        """The process group to share the work with and this rank's rows: under
        ``torch.distributed`` (``distributed=None``: when a group of several processes is
        initialised; ``False``: never) each rank takes a contiguous share of at least one row;
        otherwise all the rows."""
        group = active() if distributed is not False else None
        if distributed and group is None:
            raise ValueError("distributed=True, but no torch.distributed group is initialised")
        if group is None or self.size < group.world_size:
            return None, (0, self.size)
        return group, group.shard(self.size)


@contextmanager
def evaluating(
    model: Callable[..., Any], guide: Callable[..., Any], data: Any
) -> Iterator[Evaluation]:
    """The data as a checked batch (``x``, or ``(x, y)``, a dict, a Dataset: see
    :mod:`pyro_vaes.data.batch`), with the models in eval mode for the duration (their modes
    restored afterwards) and their parameters left out of Pyro's parameter store."""
    mods = owners(model, guide)
    device = next((p.device for m in mods for p in m.parameters()), torch.device("cpu"))
    batch = as_batch(data)
    ev = Evaluation(
        batch, device, accepting(model, batch, "model"), accepting(guide, batch, "guide")
    )
    modes = [m.training for m in mods]
    for m in mods:
        m.eval()
    try:
        with parameters_managed(mods):
            yield ev
    finally:
        for m, mode in zip(mods, modes, strict=True):
            m.train(mode)


@dataclass(frozen=True)
class Scores:
    """Per-datapoint scores in nats, each of shape ``(N,)``."""

    log_likelihood: torch.Tensor
    elbo: torch.Tensor
    reconstruction: torch.Tensor


@torch.no_grad()
def scores(
    model: Callable[..., Any],
    guide: Callable[..., Any],
    data: Any,
    num_samples: int = 5000,
    *,
    chunk_size: int = 100,
    batch_size: int = 100,
    progress: bool | None = None,
    distributed: bool | None = None,
) -> Scores:
    """Importance-sampled log-likelihood, ELBO and reconstruction error of every datapoint, from
    the same ``num_samples`` draws of the guide per datapoint.

    :param data: a tensor, an ``(x, y)`` pair, a dict batch or a Dataset; the model and guide
        receive the inputs they take (:mod:`pyro_vaes.data.batch`).
    :param num_samples: :math:`K` draws per datapoint.
    :param chunk_size: draws evaluated at once (memory grows with ``chunk_size * batch_size``).
    :param batch_size: datapoints evaluated at once.
    :param progress: show a progress bar; ``None`` (default): where standard error is a
        terminal.
    :param distributed: under ``torch.distributed`` (``None``: whenever a group of several
        processes is initialised, as under torchrun) every rank scores a contiguous share of the
        data and every rank returns the scores of all of it, gathered in order. Each rank draws
        with its own RNG, so the draws differ from one process's.
    """
    check_positive(num_samples=num_samples, chunk_size=chunk_size, batch_size=batch_size)
    out: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []
    validate = is_validation_enabled()
    with evaluating(model, guide, data) as ev:
        model, guide = ev.model, ev.guide
        nesting, data_dim = ev.layout(batch_size)
        group, rows = ev.shard(distributed)
        total = math.ceil((rows[1] - rows[0]) / batch_size) * math.ceil(num_samples / chunk_size)
        disable = None if progress is None else not progress  # None: tqdm asks the terminal
        if group is not None and not group.is_main:
            disable = True
        with tqdm(total=total, disable=disable, unit="chunk", desc="scoring") as bar:
            for args, kwargs in ev.batches(batch_size, rows):
                x = args[0]
                lse = x.new_full((x.shape[0],), -math.inf)
                sum_w = x.new_zeros(x.shape[0])
                sum_lik = x.new_zeros(x.shape[0])
                for start in range(0, num_samples, chunk_size):
                    n = min(chunk_size, num_samples - start)
                    # Pyro's checks (data in the support, parameters valid) read every value of
                    # a site, expanded over the draws: once per batch, on its first chunk, is
                    # enough (the data does not change between chunks), and saves a fifth of
                    # the time
                    with pyro.validation_enabled(validate and start == 0):
                        log_w, log_lik = log_weights(
                            model, guide, args, kwargs, n, nesting, data_dim
                        )
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
    ll, el, rec = (torch.cat(parts) for parts in zip(*out, strict=True))
    if group is not None:
        ll, el, rec = (group.gather_rows(t, "gathering the scores") for t in (ll, el, rec))
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
