"""Likelihoods, priors, posteriors and networks: densities, shapes and constraints."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

import pyro_vaes as pv
from pyro_vaes import guides, likelihoods, nets, priors


def test_bernoulli_is_binary_cross_entropy():
    logits = torch.randn(4, 1, 3, 3)
    x = (torch.rand(4, 1, 3, 3) < 0.5).float()
    lp = likelihoods.Bernoulli()(logits, 3).log_prob(x)
    expected = -F.binary_cross_entropy_with_logits(logits, x, reduction="none").sum((1, 2, 3))
    torch.testing.assert_close(lp, expected)
    torch.testing.assert_close(likelihoods.Bernoulli().mean(logits), torch.sigmoid(logits))


@pytest.mark.parametrize("learn", [False, True])
def test_gaussian_density_and_scale(learn):
    lik = likelihoods.Gaussian(scale=0.3, learn_scale=learn)
    assert isinstance(lik.log_scale, torch.nn.Parameter) == learn
    mean, x = torch.randn(5, 7), torch.randn(5, 7)
    lp = lik(mean, 1).log_prob(x)
    expected = (-0.5 * ((x - mean) / 0.3) ** 2 - math.log(0.3) - 0.5 * math.log(2 * math.pi)).sum(
        -1
    )
    torch.testing.assert_close(lp, expected)


@pytest.mark.parametrize("bad", [0.0, -1.0, float("nan"), float("inf")])
def test_gaussian_rejects_bad_scale(bad):
    with pytest.raises(ValueError, match="scale"):
        likelihoods.Gaussian(scale=bad)


def test_likelihood_registry():
    assert isinstance(likelihoods.get("gaussian", scale=2.0), likelihoods.Gaussian)
    with pytest.raises(ValueError, match="unknown likelihood"):
        likelihoods.get("poisson-ish")


def test_diagonal_normal_scale_stays_positive():
    post = guides.DiagonalNormal(3, 2)
    with torch.no_grad():
        post.head.bias.fill_(-1e4)
    q = post(torch.randn(6, 3))
    assert q.event_shape == (2,) and q.batch_shape == (6,)
    assert torch.all(q.base_dist.scale > 0) and torch.isfinite(q.log_prob(q.rsample())).all()


def test_standard_normal_prior():
    p = priors.StandardNormal(3)()
    assert p.event_shape == (3,)
    torch.testing.assert_close(
        p.log_prob(torch.zeros(3)), torch.tensor(-1.5 * math.log(2 * math.pi))
    )
    with pytest.raises(ValueError):
        priors.StandardNormal(0)


@pytest.mark.parametrize("shape", [(1, 8, 8), (3, 32, 32), (1, 28, 28)])
def test_networks_keep_leading_dims(shape):
    x = torch.rand(2, 5, *shape)  # (particles, batch, ...)
    for enc, dec in (
        (nets.MLPEncoder(shape, (32,)), nets.MLPDecoder(4, shape, (32,))),
        (nets.ConvEncoder(shape), nets.ConvDecoder(4, shape)),
    ):
        assert enc(x).shape == (2, 5, enc.out_features)
        assert dec(torch.randn(2, 5, 4)).shape == (2, 5, *shape)


def test_encoder_names_a_shape_mismatch():
    with pytest.raises(ValueError, match=r"\(1, 8, 8\)"):
        nets.MLPEncoder((1, 8, 8))(torch.rand(3, 1, 9, 9))
    with pytest.raises(ValueError, match="image"):
        nets.ConvEncoder((64,))


@pytest.mark.slow
def test_conv_vae_and_learned_gaussian_scale_train(digits):
    """A conv VAE with a learned Gaussian sigma on grey-level digits: the loss falls and sigma
    shrinks from its initial 1 towards the scale of the residuals."""
    grey = pv.data.load("digits").x_train
    torch.manual_seed(0)
    vae = pv.variants.build("vae", grey.shape[1:], net="conv", latent_dim=4, likelihood="gaussian")
    vae.likelihood = likelihoods.Gaussian(scale=1.0, learn_scale=True)
    history = pv.fit(
        vae.model,
        vae.guide,
        grey,
        epochs=5,
        batch_size=64,
        progress=False,
        optim=lambda p: torch.optim.Adam(p, lr=1e-2),
    )
    assert history.loss[-1] < history.loss[0]
    assert float(vae.likelihood.scale.detach()) < 0.6


def test_torchvision_datasets_are_read_through_torchvision(monkeypatch, tmp_path):
    import numpy as np
    import torchvision

    class FakeCIFAR:
        def __init__(self, root, train, download):
            assert root == str(tmp_path) and download
            n = 6 if train else 4
            self.data = np.full((n, 32, 32, 3), 255, dtype=np.uint8)
            self.targets = list(range(n))

    monkeypatch.setattr(torchvision.datasets, "CIFAR10", FakeCIFAR)
    s = pv.data.load("cifar10", tmp_path)
    assert s.x_train.shape == (6, 3, 32, 32) and s.x_test.shape == (4, 3, 32, 32)
    assert float(s.x_train.max()) == 1.0 and s.y_test.tolist() == [0, 1, 2, 3]
