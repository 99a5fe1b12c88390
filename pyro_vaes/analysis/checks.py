r"""Posterior predictive checks on the InferenceData of :func:`pyro_vaes.posterior_predictive`.

A test statistic :math:`T` maps each datapoint (observed or replicated) to a number. The
posterior predictive p-value of datapoint :math:`n` is

.. math::
    p_n = \Pr\big(T(x^{rep}_n) > T(x_n)\big) + \tfrac12 \Pr\big(T(x^{rep}_n) = T(x_n)\big),

estimated over the draws (the mid-p value, so that discrete statistics are not biased upwards).
For a model that fits, :math:`p_n` spreads over :math:`(0, 1)`; piled up near 0 or 1 it says the
replications are systematically smaller or larger in :math:`T` than the data.

:func:`statistics` turns an InferenceData into one whose ``posterior_predictive`` and
``observed_data`` hold the statistics, ready for ``az.plot_ppc`` and ``az.plot_bpv``.
:func:`calibration` compares the predictive probability of each binary pixel being on with how
often it is.

References:
    [1] Gelman, Meng, Stern. Posterior predictive assessment of model fitness via realized
    discrepancies. Statistica Sinica 1996.
    [2] Gelman et al. Bayesian Data Analysis, 3rd ed., chapter 6.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import arviz as az
import numpy as np
import torch

__all__ = [
    "Calibration",
    "Statistic",
    "calibration",
    "class_statistic",
    "image_statistics",
    "pvalues",
    "statistics",
]

#: a test statistic: data ``(..., *datapoint shape)`` -> one number per datapoint ``(...)``
Statistic = Callable[[torch.Tensor], torch.Tensor]


def _flat(x: torch.Tensor, event_dims: int) -> torch.Tensor:
    return x.flatten(start_dim=x.dim() - event_dims)


def image_statistics(event_dims: int = 3, threshold: float = 0.5) -> dict[str, Statistic]:
    """Statistics that suit images: mean intensity, number of on-pixels (above ``threshold``),
    and the standard deviation of the pixel values within the image."""
    return {
        "mean_intensity": lambda x: _flat(x, event_dims).mean(-1),
        "on_pixels": lambda x: (_flat(x, event_dims) > threshold).sum(-1).double(),
        "pixel_std": lambda x: _flat(x, event_dims).std(-1),
    }


def class_statistic(classifier: torch.nn.Module, batch_size: int = 2000) -> Statistic:
    """The class a classifier (such as :class:`pyro_vaes.classifier.Classifier`) assigns to each
    image: ``az.plot_ppc`` of it compares the class frequencies of data and replications."""

    @torch.no_grad()
    def predicted_class(x: torch.Tensor) -> torch.Tensor:
        lead = x.shape[:-3]
        flat = x.reshape(-1, *x.shape[-3:]).float()
        labels = [classifier(b).argmax(-1) for b in flat.split(batch_size)]
        return torch.cat(labels).reshape(lead)

    return predicted_class


def statistics(
    idata: az.InferenceData, stats: dict[str, Statistic], observed: str = "x"
) -> az.InferenceData:
    """An InferenceData with each statistic of the replicated data (``posterior_predictive``,
    dims ``chain, draw, datapoint``) and of the observed data (``observed_data``)."""
    x_rep = torch.from_numpy(idata["posterior_predictive"][observed].values)
    x_obs = torch.from_numpy(idata["observed_data"][observed].values)
    rep = {name: fn(x_rep).numpy() for name, fn in stats.items()}
    obs = {name: fn(x_obs).numpy() for name, fn in stats.items()}
    dims = {name: ["datapoint"] for name in stats}
    coords = {"datapoint": idata["observed_data"]["datapoint"].values}
    return az.from_dict(posterior_predictive=rep, observed_data=obs, dims=dims, coords=coords)


def pvalues(stat_idata: az.InferenceData) -> dict[str, np.ndarray]:
    """The mid-p posterior predictive p-value of every datapoint, ``(N,)`` per statistic."""
    out = {}
    for name in stat_idata["observed_data"].data_vars:
        rep = stat_idata["posterior_predictive"][name].values  # (chain, draw, N)
        obs = stat_idata["observed_data"][name].values  # (N,)
        out[str(name)] = (rep > obs).mean((0, 1)) + 0.5 * (rep == obs).mean((0, 1))
    return out


@dataclass(frozen=True)
class Calibration:
    """Reliability of binary pixel predictions: per bin of predicted probability, the mean
    prediction, the observed frequency of on-pixels and the pixel count; and the expected
    calibration error :math:`\\sum_b \\frac{n_b}{n} |\\bar p_b - \\bar o_b|`."""

    predicted: np.ndarray
    observed: np.ndarray
    count: np.ndarray
    ece: float


def calibration(idata: az.InferenceData, bins: int = 10, observed: str = "x") -> Calibration:
    """Calibration of the predictive pixel probabilities: each pixel's predicted probability of
    being on is the mean of its replications over the draws; binary data only."""
    if bins < 1:
        raise ValueError(f"bins must be >= 1, got {bins}")
    obs = idata["observed_data"][observed].values.reshape(-1)
    if not np.isin(obs, (0.0, 1.0)).all():
        raise ValueError("calibration of pixel probabilities needs binary data")
    prob = idata["posterior_predictive"][observed].values.mean((0, 1)).reshape(-1)
    which = np.minimum((prob * bins).astype(int), bins - 1)
    count = np.bincount(which, minlength=bins)
    safe = np.maximum(count, 1)
    predicted = np.bincount(which, weights=prob, minlength=bins) / safe
    frequency = np.bincount(which, weights=obs, minlength=bins) / safe
    ece = float((count / count.sum() * np.abs(predicted - frequency)).sum())
    return Calibration(predicted, frequency, count, ece)
