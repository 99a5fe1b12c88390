"""MMD: about zero for two samples of one distribution, clearly positive for shifted ones, equal
to its closed form for Gaussians; the InfoVAE/WAE objective's special cases."""

from __future__ import annotations

import functools
import math

import pytest
import torch

from pyro_vaes.objectives import ELBO, MMDELBO, imq_kernel, mmd, rbf_kernel
from tests.helpers import aggregate_gap, seeded_loss


@pytest.mark.parametrize("kernel", [rbf_kernel, imq_kernel])
def test_mmd_is_zero_for_one_distribution_and_positive_for_shifted(kernel):
    torch.manual_seed(0)
    same = torch.stack([mmd(torch.randn(200, 3), torch.randn(200, 3), kernel) for _ in range(50)])
    assert abs(float(same.mean())) < 3 * float(same.std()) / math.sqrt(50)  # unbiased: mean 0
    shifted = torch.stack(
        [mmd(torch.randn(200, 3), torch.randn(200, 3) + 1.0, kernel) for _ in range(10)]
    )
    assert float(shifted.min()) > 10 * float(same.std())


@pytest.mark.parametrize(("d", "shift", "s"), [(2, 1.0, 1.0), (4, 0.5, 0.7), (1, 2.0, 1.5)])
def test_mmd_matches_the_gaussian_closed_form(d, shift, s):
    """For N(m1, t^2 I) and N(m2, t^2 I) and k(x, y) = exp(-|x-y|^2 / (2 sigma^2)):
    MMD^2 = 2 (sigma^2 / (sigma^2 + 2 t^2))^(d/2) (1 - exp(-|m1-m2|^2 / (2 (sigma^2 + 2 t^2))))."""
    torch.manual_seed(1)
    t = 0.8
    sigma2 = s * s * d  # rbf_kernel's bandwidth for scale s
    delta = torch.zeros(d)
    delta[0] = shift
    exact = (
        2
        * (sigma2 / (sigma2 + 2 * t * t)) ** (d / 2)
        * (1 - math.exp(-(shift**2) / (2 * (sigma2 + 2 * t * t))))
    )
    kernel = functools.partial(rbf_kernel, scales=(s,))
    est = torch.stack(
        [mmd(t * torch.randn(500, d), t * torch.randn(500, d) + delta, kernel) for _ in range(40)]
    )
    assert abs(float(est.mean()) - exact) < 4 * float(est.std()) / math.sqrt(40) + 1e-4


def test_alpha_zero_lambda_one_is_the_elbo(digits, small_vae):
    m, g, x = small_vae.model, small_vae.guide, digits.x_train[:32]
    ours = seeded_loss(MMDELBO(alpha=0.0, lam=1.0), m, g, x)
    assert ours == pytest.approx(seeded_loss(ELBO(), m, g, x), rel=1e-5)


@pytest.mark.slow
def test_wae_pulls_the_aggregate_posterior_to_the_prior(digits):
    """WAE-MMD (lambda = 10) against the same autoencoder with the MMD term almost off."""
    gaps = {
        lam: aggregate_gap(digits, MMDELBO(alpha=1.0, lam=lam, kernel=imq_kernel), mmd)
        for lam in (10.0, 1e-3)
    }
    assert gaps[10.0] < 0.5 * gaps[1e-3], gaps


def test_bad_settings():
    with pytest.raises(ValueError):
        MMDELBO(alpha=1.5)
    with pytest.raises(ValueError):
        MMDELBO(lam=0.0)
    with pytest.raises(ValueError, match="two samples"):
        mmd(torch.zeros(1, 2), torch.zeros(5, 2))
