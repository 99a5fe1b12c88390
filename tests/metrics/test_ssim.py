"""SSIM and MS-SSIM: 1 for identical images, falling as noise grows, the closed form for flat
images, finite gradients; and the MS-SSIM VAE that uses it."""

from __future__ import annotations

import itertools

import numpy as np
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


# --- the standard definition (Wang et al. 2003; pytorch-msssim), against an independent
# --- loop-by-loop implementation in numpy and, where installed, pytorch-msssim itself


def _np_window(size: int, sigma: float) -> np.ndarray:
    coords = np.arange(size) - (size - 1) / 2
    g = np.exp(-(coords**2) / (2 * sigma**2))
    g = g / g.sum()
    return np.outer(g, g)


def _np_maps(x: np.ndarray, y: np.ndarray, size: int, sigma: float) -> tuple[float, float]:
    """Means of the SSIM map and of the cs map of two 2-D images, 'valid' windows."""
    win = _np_window(size, sigma)
    c1, c2 = 0.01**2, 0.03**2
    ssim_map, cs_map = [], []
    for i in range(x.shape[0] - size + 1):
        for j in range(x.shape[1] - size + 1):
            a, b = x[i : i + size, j : j + size], y[i : i + size, j : j + size]
            ma, mb = (win * a).sum(), (win * b).sum()
            va = (win * a * a).sum() - ma * ma
            vb = (win * b * b).sum() - mb * mb
            cov = (win * a * b).sum() - ma * mb
            cs = (2 * cov + c2) / (va + vb + c2)
            cs_map.append(cs)
            ssim_map.append((2 * ma * mb + c1) / (ma * ma + mb * mb + c1) * cs)
    return float(np.mean(ssim_map)), float(np.mean(cs_map))


def _repro() -> tuple[torch.Tensor, torch.Tensor]:
    x = torch.full((1, 1, 16, 16), 0.4, dtype=torch.float64)
    x[..., 8:] = 0.8
    x[..., 1::2, :] += 0.2
    y = x.clone()
    y[..., :8] *= 0.05
    return x, y


def test_ssim_is_the_mean_of_the_ssim_map():
    x, y = _repro()
    ref, _ = _np_maps(x[0, 0].numpy(), y[0, 0].numpy(), 11, 1.5)
    assert float(ssim(x, y)) == pytest.approx(ref, abs=1e-12)
    assert float(ssim(x, y)) == pytest.approx(0.5836, abs=1e-4)  # pytorch-msssim's value


def test_ms_ssim_of_a_small_image_is_the_documented_adaptation():
    # 16x16: three scales (16, 8, 4 pixels), windows of 11, 8 and 4 taps, the first three
    # weights renormalised; relu(cs) at the first two scales, relu(SSIM) at the last
    x, y = _repro()
    a, b = x[0, 0].numpy(), y[0, 0].numpy()
    w = np.array([0.0448, 0.2856, 0.3001])
    w = w / w.sum()
    ref = 1.0
    for j, size in enumerate((11, 8, 4)):
        s, cs = _np_maps(a, b, size, 1.5 * size / 11)
        ref *= max(cs if j < 2 else s, 0.0) ** w[j]
        a = a.reshape(a.shape[0] // 2, 2, -1, 2).mean((1, 3))
        b = b.reshape(b.shape[0] // 2, 2, -1, 2).mean((1, 3))
    assert float(ms_ssim(x, y)) == pytest.approx(ref, abs=1e-12)


def test_channels_are_averaged_after_the_product_over_scales():
    torch.manual_seed(2)
    x = torch.rand(2, 3, 32, 32, dtype=torch.float64)
    y = (x + 0.3 * torch.randn_like(x)).clamp(0, 1)
    per_channel = torch.stack([ms_ssim(x[:, c : c + 1], y[:, c : c + 1]) for c in range(3)], -1)
    torch.testing.assert_close(ms_ssim(x, y), per_channel.mean(-1))
    per_channel = torch.stack([ssim(x[:, c : c + 1], y[:, c : c + 1]) for c in range(3)], -1)
    torch.testing.assert_close(ssim(x, y), per_channel.mean(-1))


def test_negative_contrast_structure_is_clipped_with_finite_gradients():
    torch.manual_seed(3)
    x = torch.rand(4, 1, 32, 32, dtype=torch.float64)
    y = (1 - x).requires_grad_(True)  # anti-correlated: cs < 0 at the finest scale
    s = ms_ssim(x, y)
    assert (s == 0).all()
    s.sum().backward()
    assert torch.isfinite(y.grad).all()


@pytest.mark.parametrize("shape", [(2, 3, 192, 192), (2, 3, 171, 183)])
def test_ms_ssim_and_ssim_match_pytorch_msssim(shape):
    pm = pytest.importorskip("pytorch_msssim")
    torch.manual_seed(4)
    x = torch.rand(*shape, dtype=torch.float64)
    blurred = torch.nn.functional.avg_pool2d(x, 3, stride=1, padding=1)
    noisy = (x + 0.1 * torch.randn_like(x)).clamp(0, 1)
    for y in (blurred, noisy):
        ref_ms = pm.ms_ssim(x, y, data_range=1.0, size_average=False)
        ref = pm.ssim(x, y, data_range=1.0, size_average=False)
        # pytorch-msssim builds its window in float32: agreement to about 1e-7
        torch.testing.assert_close(ms_ssim(x, y), ref_ms, atol=1e-5, rtol=0)
        torch.testing.assert_close(ssim(x, y), ref, atol=1e-5, rtol=0)
