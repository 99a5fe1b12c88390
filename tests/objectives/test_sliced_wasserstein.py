"""Sliced Wasserstein: zero for one distribution, the Gaussian closed form, SWAE training."""

from __future__ import annotations

import math

import pytest
import torch

from pyro_vaes.objectives import SlicedWassersteinELBO, sliced_wasserstein
from tests.helpers import aggregate_gap


def test_zero_for_one_distribution_and_gaussian_closed_form():
    """For N(m1, s1^2 I) and N(m2, s2^2 I) in d dimensions, every projection is a 1-D normal
    pair with W2^2 = (theta.(m1 - m2))^2 + (s1 - s2)^2, so SW2^2 = |m1 - m2|^2 / d + (s1 - s2)^2."""
    torch.manual_seed(0)
    d, n = 3, 20_000
    same = sliced_wasserstein(torch.randn(n, d), torch.randn(n, d), projections=200)
    assert float(same) < 5e-3
    delta = torch.tensor([1.0, -0.5, 2.0])
    est = sliced_wasserstein(0.5 * torch.randn(n, d) + delta, 1.5 * torch.randn(n, d), 2000)
    exact = float(delta.pow(2).sum()) / d + 1.0
    assert float(est) == pytest.approx(exact, rel=0.05)


@pytest.mark.slow
def test_swae_pulls_the_aggregate_posterior_to_the_prior(digits):
    """SWAE (lambda = 30) against the same autoencoder with the distance term almost off."""

    def distance(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return sliced_wasserstein(a, b, 200)

    gaps = {
        lam: aggregate_gap(digits, SlicedWassersteinELBO(lam=lam), distance) for lam in (30.0, 1e-3)
    }
    assert math.isfinite(gaps[30.0]) and gaps[30.0] < 0.5 * gaps[1e-3], gaps


def test_bad_arguments():
    with pytest.raises(ValueError):
        sliced_wasserstein(torch.zeros(3, 2), torch.zeros(4, 2))
    with pytest.raises(ValueError):
        SlicedWassersteinELBO(lam=0.0)
