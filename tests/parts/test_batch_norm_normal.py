"""BN-VAE's posterior: batch-normalised means with a fixed scale keep the batch-mean KL at or
above d gamma^2 / 2."""

from __future__ import annotations

import pytest
import torch
from torch.distributions import kl_divergence

import pyro_vaes as pv
from pyro_vaes.guides import BatchNormNormal


def _prior(d: int) -> torch.distributions.Distribution:
    return torch.distributions.Independent(torch.distributions.Normal(torch.zeros(d), 1.0), 1)


@pytest.mark.parametrize("gamma", [0.3, 0.5, 1.0])
def test_the_batch_mean_kl_respects_the_bound_on_random_batches(gamma):
    torch.manual_seed(0)
    d = 6
    post = BatchNormNormal(10, d, gamma=gamma)
    with torch.no_grad():
        post.beta.copy_(torch.linspace(-1.0, 1.0, d))
    for trial in range(5):
        h = 3.0 * torch.randn(64, 10) + trial  # any location and spread of the features
        q = post(h)
        loc = q.base_dist.loc
        # per dimension the mean of mu^2 over the batch is gamma^2 + beta^2 (up to BN's eps)
        torch.testing.assert_close(
            loc.pow(2).mean(0), gamma**2 + post.beta.detach() ** 2, rtol=1e-3, atol=1e-4
        )
        torch.testing.assert_close(loc.mean(0), post.beta.detach(), rtol=0, atol=1e-5)
        mean_kl = float(kl_divergence(q, _prior(d)).mean().detach())
        bound = 0.5 * d * gamma**2
        sharper = 0.5 * float((gamma**2 + post.beta.detach() ** 2).sum())
        assert mean_kl >= sharper * (1 - 1e-3) and sharper > bound


def test_leading_dims_are_normalised_together_and_eval_uses_running_stats():
    torch.manual_seed(0)
    post = BatchNormNormal(5, 3, gamma=0.5)
    h = torch.randn(4, 8, 5)
    loc = post(h).base_dist.loc
    assert loc.shape == (4, 8, 3)
    torch.testing.assert_close(
        loc.reshape(-1, 3).pow(2).mean(0), torch.full((3,), 0.25), atol=1e-4, rtol=0
    )
    post.eval()
    one = post(h[0, :1]).base_dist.loc  # a single datapoint: the running averages
    expected = (
        0.5
        * (post.head(h[0, :1])[..., :3] - post.running_mean)
        / (post.running_var + post.eps).sqrt()
    )
    torch.testing.assert_close(one, expected.detach())
    post.train()
    assert torch.isfinite(post(h[0, :1]).base_dist.loc).all()  # batch of one in training


def test_bn_vae_builds_with_its_gamma(digits):
    vae = pv.variants.build("bn_vae", digits.shape, latent_dim=3, hidden=(16,), gamma=0.7)
    assert isinstance(vae.posterior, BatchNormNormal) and vae.posterior.gamma == 0.7
    assert pv.variants.build("bn_vae", digits.shape, latent_dim=3).posterior.gamma == 0.5


@pytest.mark.slow
def test_after_a_fit_the_kl_stays_above_the_bound(digits):
    torch.manual_seed(0)
    d, gamma = 8, 0.5
    vae = pv.variants.build("bn_vae", digits.shape, latent_dim=d, hidden=(64,), gamma=gamma)
    pv.variants.registry["bn_vae"].fit(
        vae, digits.x_train, epochs=5, batch_size=100, seed=0, progress=False
    )
    vae.train()  # the bound is for batch statistics
    x = digits.x_train[:200]
    with torch.no_grad():
        q = vae.posterior(vae.encoder(x))
        per_dim = kl_divergence(q.base_dist, vae.prior().base_dist).mean(0)
    assert float(per_dim.sum()) >= 0.5 * d * gamma**2 * (1 - 1e-3)
    assert float(per_dim.min()) >= 0.5 * gamma**2 * (1 - 1e-3)  # every dimension
