"""VQ-VAE: gradients through the straight-through estimator, the codebook loss reaching the
codebook, batch-size-invariant reduction, EMA updates, dead-code restarts, perplexity, and the
convolutional code grid with the loss under the uniform and under the learned prior."""

from __future__ import annotations

import math

import pytest
import torch

import pyro_vaes as pv
from pyro_vaes.models.vqvae import VectorQuantizer, perplexity
from pyro_vaes.objectives import ELBO


@pytest.fixture(autouse=True)
def _one_thread():
    """The PixelCNNs' convolutions over a few code positions are far too small to share out:
    on two threads with the other core busy they run ten times slower than on one."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _vq(digits, **kw):
    torch.manual_seed(0)
    return pv.variants.build(
        "vqvae", digits.shape, latent_dim=4, embedding_dim=3, codes=8, hidden=(32,), **kw
    )


def test_loss_is_reconstruction_plus_vq_terms_plus_constant_kl(digits):
    vq = _vq(digits)
    x = digits.x_test[:10]
    with torch.no_grad():
        z_e = vq.encode_vectors(x)
        k = vq.quantizer.nearest(z_e)
        e = vq.quantizer.codebook[k]
        recon = vq.likelihood(vq.decoder(e.flatten(-2)), 3).log_prob(x).sum()
        sq = (z_e - e).pow(2).sum()
    expected = -recon + (1 + 0.25) * sq + 10 * 4 * math.log(8)
    assert ELBO().loss(vq.model, vq.guide, x) == pytest.approx(float(expected), rel=1e-5)


def test_straight_through_reaches_the_encoder_and_only_vq_loss_the_codebook(digits):
    vq = _vq(digits, restart_after=0)
    x = digits.x_test[:10]
    ELBO().differentiable_loss(vq.model, vq.guide, x).backward()
    assert vq.encoder.net[0].weight.grad.abs().sum() > 0  # through the quantiser
    # the reconstruction cannot reach the codebook: its gradient is the codebook loss's alone
    with torch.no_grad():
        z_e = vq.encode_vectors(x)
        k = vq.quantizer.nearest(z_e)
    expected = torch.zeros_like(vq.quantizer.codebook)
    expected.index_add_(
        0, k.reshape(-1), 2 * (vq.quantizer.codebook[k] - z_e).reshape(-1, 3).detach()
    )
    torch.testing.assert_close(vq.quantizer.codebook.grad, expected, rtol=1e-4, atol=1e-6)


def test_straight_through_gradient_is_the_decoders_gradient_at_the_code(digits):
    vq = _vq(digits, restart_after=0, beta=0.0)
    vq.quantizer.codebook.requires_grad_(False)
    x = digits.x_test[:6]
    z_e = vq.encode_vectors(x).detach().requires_grad_(True)
    q = vq.quantizer(z_e)
    vq.likelihood(vq.decoder(q.codes.flatten(-2)), 3).log_prob(x).sum().backward()
    e = vq.quantizer.codebook[q.indices].clone().requires_grad_(True)
    vq.likelihood(vq.decoder(e.flatten(-2)), 3).log_prob(x).sum().backward()
    torch.testing.assert_close(z_e.grad, e.grad)


def test_vq_losses_are_reduced_like_the_reconstruction(digits):
    """Per datapoint in the data plate: the per-datapoint loss does not depend on the batch."""
    vq = _vq(digits, restart_after=0)
    x = digits.x_test[:40]
    whole = ELBO().loss(vq.model, vq.guide, x) / 40
    halves = sum(ELBO().loss(vq.model, vq.guide, part) for part in x.split(10)) / 40
    assert whole == pytest.approx(halves, rel=1e-5)


def test_ema_codebook_moves_to_the_mean_of_its_vectors():
    torch.manual_seed(0)
    q = VectorQuantizer(2, 2, ema=True, decay=0.5)
    q.codebook.copy_(torch.tensor([[0.0, 0.0], [10.0, 10.0]]))
    q.sums.copy_(q.codebook)
    z = torch.tensor([[1.0, 1.0], [1.2, 0.8], [9.0, 9.0]]).reshape(3, 1, 2)
    for _ in range(30):
        q(z)
    torch.testing.assert_close(
        q.codebook, torch.tensor([[1.1, 0.9], [9.0, 9.0]]), atol=1e-3, rtol=0
    )
    assert not isinstance(q.codebook, torch.nn.Parameter)


def test_dead_codes_restart_at_encoder_outputs():
    torch.manual_seed(0)
    q = VectorQuantizer(4, 2, restart_after=3)
    with torch.no_grad():
        q.codebook.copy_(torch.tensor([[0.0, 0.0], [50.0, 50.0], [60.0, 60.0], [70.0, 70.0]]))
    z = 0.1 * torch.randn(16, 1, 2)
    for _ in range(3):
        q(z)
    # the three far codes were never used and now sit on encoder outputs
    assert (q.codebook[1:].norm(dim=1) < 1).all()
    assert perplexity(q.nearest(z), 4) > 1.0


def test_perplexity_counts_codebook_usage(digits):
    assert perplexity(torch.arange(8).repeat(5), 8) == pytest.approx(8.0)
    assert perplexity(torch.zeros(20, dtype=torch.long), 8) == pytest.approx(1.0)
    vq = _vq(digits)
    pv.fit(vq.model, vq.guide, digits.x_train, epochs=3, progress=False)
    usage = vq.perplexity(digits.x_test)
    assert 1.0 <= usage <= 8.0
    assert vq.sample(5).shape == (5, *digits.shape)
    assert vq.reconstruct(digits.x_test[:3]).shape == (3, *digits.shape)


def test_quantizer_refuses_impossible_settings():
    with pytest.raises(ValueError):
        VectorQuantizer(1, 2)
    with pytest.raises(ValueError):
        VectorQuantizer(4, 2, decay=1.0)


def test_convolutional_code_grid_and_learned_prior_options(digits):
    from pyro_vaes.models.code_prior import CodePrior
    from pyro_vaes.models.vqvae import VQVAE, GridDecoder, GridEncoder

    enc = GridEncoder((1, 28, 28), 5, channels=8)
    assert enc.grid == (7, 7) and enc(torch.zeros(2, 1, 28, 28)).shape == (2, 7 * 7 * 5)
    assert GridDecoder(5, (1, 28, 28), channels=8)(torch.zeros(3, 2, 245)).shape == (
        3,
        2,
        1,
        28,
        28,
    )
    vq = _vq(digits, grid=True, channels=8, code_prior="pixelcnn", prior_layers=2)
    assert vq.positions == 4 and vq.code_prior.grid == (2, 2)  # 8x8 images, two halvings
    x = digits.x_test[:10]
    # before the prior is fitted the model scores under the uniform prior: -P log K per image
    with torch.no_grad():
        z_e = vq.encode_vectors(x)
        e = vq.quantizer.codebook[vq.quantizer.nearest(z_e)]
        recon = vq.likelihood(vq.decoder(e.flatten(-2)), 3).log_prob(x).sum()
        sq = (z_e - e).pow(2).sum()
    uniform = -recon + 1.25 * sq + 10 * 4 * math.log(8)
    assert ELBO().loss(vq.model, vq.guide, x) == pytest.approx(float(uniform), rel=1e-5)
    vq.fit_prior(digits.x_train[:200], epochs=1, progress=False)
    with torch.no_grad():
        learned = -recon + 1.25 * sq - vq.code_prior.log_prob(vq.codes(x)).sum()
    assert ELBO().loss(vq.model, vq.guide, x) == pytest.approx(float(learned), rel=1e-5)
    with pytest.raises(ValueError, match="code_prior"):
        VQVAE(enc, None, vq.decoder, vq.likelihood, VectorQuantizer(8, 5), 49,
              code_prior=CodePrior(8, (2, 2)))  # fmt: skip
