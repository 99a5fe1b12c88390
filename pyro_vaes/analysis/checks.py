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
    [3] Gray. Local properties of binary images in two dimensions. IEEE Transactions on
    Computers C-20(5), 1971.
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


def _mean_intensity(x: torch.Tensor) -> torch.Tensor:
    return _flat(x, 3).mean(-1)


def _pixel_std(x: torch.Tensor) -> torch.Tensor:
    return _flat(x, 3).std(-1)


def _row_centre(x: torch.Tensor) -> torch.Tensor:
    """Centre of mass of the intensity along the rows, in pixels from the top; the middle row
    ``(H - 1) / 2`` for an empty image."""
    rows = x.sum((-3, -1))  # (..., H)
    h = rows.shape[-1]
    index = torch.arange(h, dtype=rows.dtype, device=rows.device)
    mass = rows.sum(-1)
    centre = (rows * index).sum(-1) / mass.clamp_min(torch.finfo(rows.dtype).tiny)
    return torch.where(mass > 0, centre, torch.full_like(centre, (h - 1) / 2))


def _gradient(x: torch.Tensor) -> torch.Tensor:
    """Mean absolute difference between horizontally and between vertically adjacent pixels."""
    dx = (x[..., :, 1:] - x[..., :, :-1]).abs().flatten(-3).mean(-1)
    dy = (x[..., 1:, :] - x[..., :-1, :]).abs().flatten(-3).mean(-1)
    return dx + dy


def _on(x: torch.Tensor, threshold: float) -> torch.Tensor:
    """On-pixels ``(..., H, W)``: a pixel is on if any of its channels exceeds ``threshold``."""
    return (x > threshold).any(-3)


def _neighbour_on(x: torch.Tensor, threshold: float) -> torch.Tensor:
    """Of the adjacent pixel pairs (horizontal and vertical) with at least one pixel on, the
    fraction with both on: 0 for scattered single pixels, near 1 for thick solid blobs, 0 for an
    empty image."""
    on = _on(x, threshold)
    right, below = (on[..., :, 1:], on[..., :, :-1]), (on[..., 1:, :], on[..., :-1, :])
    both = torch.zeros(on.shape[:-2], dtype=torch.float64)
    either = torch.zeros_like(both)
    for a, b in (right, below):
        both += (a & b).flatten(-2).sum(-1)
        either += (a | b).flatten(-2).sum(-1)
    return both / either.clamp_min(1.0)


def _euler_number(x: torch.Tensor, threshold: float) -> torch.Tensor:
    r"""The Euler number of the on-pixels, 8-connected: connected strokes minus the holes they
    enclose, from Gray's bit-quad counts [3] over the 2x2 windows of the zero-padded image,

    .. math:: E_8 = \tfrac14 (Q_1 - Q_3 - 2 Q_D),

    with :math:`Q_k` the windows with exactly :math:`k` on-pixels and :math:`Q_D` those with two
    on-pixels on a diagonal."""
    on = torch.nn.functional.pad(_on(x, threshold).to(torch.int8), (1, 1, 1, 1))
    a, b = on[..., :-1, :-1], on[..., :-1, 1:]
    c, d = on[..., 1:, :-1], on[..., 1:, 1:]
    count = a + b + c + d
    q1 = (count == 1).flatten(-2).sum(-1)
    q3 = (count == 3).flatten(-2).sum(-1)
    qd = ((count == 2) & (a == d)).flatten(-2).sum(-1)
    return (q1 - q3 - 2 * qd).double() / 4


def image_statistics(*, binary: bool = False, threshold: float = 0.5) -> dict[str, Statistic]:
    r"""Four test statistics for images ``(..., C, H, W)``, chosen so that no one is a function
    of another for the data type: each checks something the others cannot.

    **Binary images** (``binary=True``; a pixel is on above ``threshold``). The mean intensity,
    the number of on-pixels and the pixel standard deviation (:math:`\sqrt{m(1-m)}` up to
    :math:`n/(n-1)`, for a fraction :math:`m < 1/2` on) are one statistic three times: their
    p-values coincide. Instead:

    - ``on_fraction``: how much ink, :math:`m`;
    - ``neighbour_on``: of the adjacent pairs with a pixel on, the fraction with both on: thick
      connected strokes against salt-and-pepper noise (pixels sampled independently given
      :math:`z` are less clumped than pen strokes), independent of how much ink;
    - ``row_centre``: where the ink is, the centre of mass of the rows (a shift or a mode the
      model puts too high or too low);
    - ``euler_number``: strokes minus holes, the topology (a 0 against a 6 against a 1, a
      broken stroke, speckles), a count the other three do not determine.

    **Continuous images** (the default): ``mean_intensity``, ``pixel_std`` (contrast: a
    Gaussian likelihood whose scale is wrong widens or narrows it), ``gradient`` (mean
    absolute difference of neighbouring pixels: sharpness, blur against pixel noise, which the
    standard deviation cannot tell apart) and ``row_centre``.

    All are vectorised over any leading dimensions (``chain, draw, datapoint``) and cost a few
    passes over the pixels.
    """
    if binary:
        return {
            "on_fraction": lambda x: _on(x, threshold).flatten(-2).double().mean(-1),
            "neighbour_on": lambda x: _neighbour_on(x, threshold),
            "row_centre": _row_centre,
            "euler_number": lambda x: _euler_number(x, threshold),
        }
    return {
        "mean_intensity": _mean_intensity,
        "pixel_std": _pixel_std,
        "gradient": _gradient,
        "row_centre": _row_centre,
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
