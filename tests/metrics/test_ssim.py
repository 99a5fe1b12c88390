"""SSIM and MS-SSIM: 1 for identical images, falling as noise grows, the closed form for flat
images, finite gradients; and the MS-SSIM VAE that uses it."""

from __future__ import annotations

import itertools

import pyro
import pytest
import torch

import pyro_vaes as pv
from pyro_vaes.metrics.ssim import ms_ssim, ssim
from pyro_vaes.objectives import ELBO


@pytest.mark.parametrize("size", [8, 32])
def test_ms_ssim_is_one_for_identical_images_and_falls_with_noise(size, grey_digits):
    torch.manual_seed(0)
    x = torch.nn.functional.interpolate(grey_digits.x_test[:16], size=(size, size))
    assert torch.allclose(ms_ssim(x, x), torch.ones(16), atol=1e-5)
    scores = [
        float(ms_ssim(x, (x + s * torch.randn_like(x)).clamp(0, 1)).mean())
        for s in (0.05, 0.1, 0.2, 0.4)
    ]
    assert all(a > b for a, b in itertools.pairwise(scores)), scores
    assert scores[-1] < 0.9


def test_ssim_of_flat_images_is_the_luminance_formula():
    a, b = 0.3, 0.7
    x = torch.full((1, 1, 16, 16), a, dtype=torch.float64)
    y = torch.full((1, 1, 16, 16), b, dtype=torch.float64)
    c1 = 0.01**2
    assert float(ssim(x, y)) == pytest.approx((2 * a * b + c1) / (a * a + b * b + c1), rel=1e-5)


def test_ms_ssim_is_symmetric_batched_and_differentiable():
    torch.manual_seed(1)
    x, y = torch.rand(3, 2, 1, 28, 28), torch.rand(3, 2, 1, 28, 28)
    s = ms_ssim(x, y)
    assert s.shape == (3, 2)
    torch.testing.assert_close(s, ms_ssim(y, x))
    y.requires_grad_(True)
    ms_ssim(x, y).sum().backward()
    assert torch.isfinite(y.grad).all() and y.grad.abs().sum() > 0
    with pytest.raises(ValueError):
        ms_ssim(torch.rand(1, 1, 3, 3), torch.rand(1, 1, 3, 3))


def test_msssim_vae_loss_is_the_ms_ssim_term_plus_kl(digits, grey_digits):
    torch.manual_seed(0)
    vae = pv.variants.build("msssim_vae", digits.shape, latent_dim=3, hidden=(32,), weight=10.0)
    x = grey_digits.x_test[:8]
    pv.fit(vae.model, vae.guide, grey_digits.x_train, epochs=2, progress=False)
    pyro.set_rng_seed(5)
    loss = ELBO().loss(vae.model, vae.guide, x)
    pyro.set_rng_seed(5)
    q = vae.posterior(vae.encoder(x))
    z = q.rsample()
    with torch.no_grad():
        term = 10.0 * (1 - ms_ssim(x, vae.likelihood.mean(vae.decoder(z)))).sum()
        kl = torch.distributions.kl_divergence(q, vae.prior()).sum()
    assert loss == pytest.approx(float(term + kl), rel=1e-4)
