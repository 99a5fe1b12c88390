"""Importance-sampled log-likelihood on a linear-Gaussian model where log p(x) is exact."""

from __future__ import annotations

import itertools

import pyro
import pyro.distributions as dist
import pytest
import torch

from pyro_vaes import evaluate
from tests.linear_gaussian import (
    D,
    K,
    draw,
    exact_guide,
    exact_log_px,
    model,
    posterior,
    rough_guide,
)


@pytest.fixture
def x() -> torch.Tensor:
    return draw(50)


def test_exact_posterior_gives_exact_log_likelihood(x):
    # with q = p(z|x) every importance weight equals p(x): the estimate is exact even for k=1
    est = evaluate.log_likelihood(model, exact_guide, x, num_samples=3)
    torch.testing.assert_close(est, exact_log_px(x), atol=1e-4, rtol=0)


def test_estimate_bounds_and_approaches_exact_value(x):
    exact = exact_log_px(x).mean()
    gaps = []
    for k in (1, 10, 100, 5000):
        est = evaluate.log_likelihood(model, rough_guide, x, num_samples=k, chunk_size=500).mean()
        assert est <= exact + 0.02, f"k={k}: {est} exceeds the exact log p(x) {exact}"
        gaps.append(float(exact - est))
    # tightens with k (up to Monte Carlo error) and reaches the exact value
    assert all(a >= b - 0.01 for a, b in itertools.pairwise(gaps)), gaps
    assert gaps[0] > 1.0 and abs(gaps[-1]) < 0.01, gaps


def test_iwae_at_least_elbo_and_components_consistent(x):
    s = evaluate.scores(model, rough_guide, x, num_samples=4000, chunk_size=1000)
    assert s.log_likelihood.shape == s.elbo.shape == s.reconstruction.shape == (50,)
    # log-mean-exp >= mean of logs for the very same draws (Jensen), datapoint by datapoint
    assert torch.all(s.log_likelihood >= s.elbo - 1e-5)
    # ELBO = E log p(x|z) - KL(q || p): check against the closed-form KL of the rough guide
    mean, cov = posterior(x)
    q = dist.Normal(mean, 2.0 * cov.diagonal().sqrt()).to_event(1)
    kl = torch.distributions.kl_divergence(q, dist.Normal(torch.zeros(K), 1.0).to_event(1))
    torch.testing.assert_close(s.elbo, -s.reconstruction - kl, atol=0.1, rtol=0)
    assert abs(float((s.elbo + s.reconstruction + kl).mean())) < 0.02


def test_chunking_does_not_change_the_estimate(x):
    a = evaluate.log_likelihood(model, rough_guide, x, num_samples=2000, chunk_size=2000).mean()
    b = evaluate.log_likelihood(model, rough_guide, x, num_samples=2000, chunk_size=7).mean()
    assert abs(float(a - b)) < 0.02


def test_model_without_data_plate_is_refused():
    def flat_model(x):
        pyro.sample("x", dist.Normal(torch.zeros(10, D), 1.0).to_event(2), obs=x)

    def flat_guide(x):
        pass

    with pytest.raises(ValueError, match="plate"):
        evaluate.log_likelihood(flat_model, flat_guide, torch.randn(10, D), num_samples=2)


@pytest.mark.parametrize("bad", [0, -1, 2.5])
def test_bad_num_samples(x, bad):
    with pytest.raises(ValueError, match="num_samples"):
        evaluate.log_likelihood(model, rough_guide, x, num_samples=bad)


def test_data_outside_the_support_is_refused_in_any_batch(digits, small_vae):
    """Pyro's checks run once per batch (on its first chunk of draws), not once per chunk: a
    grey pixel in the second batch is still refused for the Bernoulli likelihood."""
    x = digits.x_test[:150].clone()
    x[120, 0, 3, 3] = 0.5
    with pytest.raises(ValueError, match="support"):
        evaluate.log_likelihood(
            small_vae.model, small_vae.guide, x, 20, chunk_size=5, batch_size=100, progress=False
        )
    ll = evaluate.log_likelihood(
        small_vae.model, small_vae.guide, x[:100], 20, chunk_size=5, progress=False
    )
    assert ll.shape == (100,) and torch.isfinite(ll).all()
