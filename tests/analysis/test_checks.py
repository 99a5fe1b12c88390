"""Test statistics of the posterior predictive checks: what each measures, and that on binary
images no two of them carry the same information (the issue: three of four p-value histograms
were identical)."""

from __future__ import annotations

import itertools

import arviz as az
import numpy as np
import pytest
import torch

from pyro_vaes.analysis import checks


def _image(*rows: str) -> torch.Tensor:
    return torch.tensor([[float(c) for c in r] for r in rows]).reshape(1, len(rows), len(rows[0]))


@pytest.mark.parametrize(
    ("rows", "euler", "neighbour_on"),
    [
        (("00000", "01110", "01010", "01110", "00000"), 0.0, 4 / 12),  # a ring: 1 stroke, 1 hole
        (("0110", "1001", "0110", "1001", "0110"), -1.0, 3 / 29),  # an eight: 1 stroke, 2 holes
        (("100", "010", "001"), 1.0, 0.0),  # a diagonal stroke is one 8-connected stroke
        (("10001", "00000", "00000", "00000", "10001"), 4.0, 0.0),  # four specks
        (("0000", "0000"), 0.0, 0.0),  # empty
    ],
)
def test_binary_statistics_by_hand(rows: tuple[str, ...], euler: float, neighbour_on: float):
    x = _image(*rows)
    stats = checks.image_statistics(binary=True)
    assert float(stats["euler_number"](x)) == euler
    assert float(stats["neighbour_on"](x)) == pytest.approx(neighbour_on)
    assert float(stats["on_fraction"](x)) == pytest.approx(x.mean().item())


def test_row_centre_and_gradient_by_hand():
    stats = checks.image_statistics()
    x = torch.zeros(2, 1, 4, 4)
    x[0, 0, 3] = 1.0  # the bottom row
    assert stats["row_centre"](x).tolist() == [3.0, 1.5]  # the empty image: the middle
    # 4 vertical changes of 1 among 12 vertical pairs, no horizontal ones
    assert stats["gradient"](x)[0].item() == pytest.approx(4 / 12)
    assert stats["gradient"](x)[1].item() == 0.0


def _binary_idata(grey_digits, draws: int = 60) -> az.InferenceData:
    """Observed: 200 binarised test digits. Replicated: Bernoulli draws around the grey image,
    as a model would make them."""
    gen = torch.Generator().manual_seed(0)
    grey = grey_digits.x_test[:200]
    obs = torch.bernoulli(grey, generator=gen)
    rep = torch.bernoulli(grey.expand(1, draws, *grey.shape), generator=gen)
    return az.from_dict(
        posterior_predictive={"x": rep.numpy()},
        observed_data={"x": obs.numpy()},
        coords={"datapoint": np.arange(len(grey))},
        dims={"x": ["datapoint", "c", "h", "w"]},
    )


def test_binary_statistics_are_not_redundant(grey_digits):
    idata = _binary_idata(grey_digits)
    for binary, names in [
        (True, ("on_fraction", "neighbour_on", "row_centre", "euler_number")),
        (False, ("mean_intensity", "pixel_std", "gradient", "row_centre")),
    ]:
        stat_idata = checks.statistics(idata, checks.image_statistics(binary=binary))
        pvalues = checks.pvalues(stat_idata)
        assert tuple(pvalues) == names
        if not binary:
            # the continuous set on binary data: the std is sqrt(m (1 - m)) of the mean m
            np.testing.assert_allclose(pvalues["mean_intensity"], pvalues["pixel_std"])
            continue
        observed = {n: stat_idata["observed_data"][n].values for n in names}
        for a, b in itertools.combinations(names, 2):
            histograms = [np.histogram(pvalues[n], bins=20, range=(0, 1))[0] for n in (a, b)]
            assert not np.array_equal(*histograms), (a, b)
            assert np.abs(pvalues[a] - pvalues[b]).mean() > 0.1, (a, b)
            ranks = [np.argsort(np.argsort(observed[n], kind="stable")) for n in (a, b)]
            assert abs(np.corrcoef(*ranks)[0, 1]) < 0.9, (a, b)  # Spearman's rho
