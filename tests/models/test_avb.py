"""Adversarial Variational Bayes: the critic recovers a known log density ratio, the generator
loss is -log p(x|z) + T(x, z) with the KL's gradient at the optimal critic, the implicit site
refuses a density, and the eval-mode Gaussian proposal scores log p(x) of a linear-Gaussian
model."""

from __future__ import annotations

import pyro
import pyro.distributions as dist
import pytest
import torch
from torch import nn

import pyro_vaes as pv
from pyro_vaes.distributions.implicit import Implicit, is_implicit
from pyro_vaes.models.avb import AVB, ImplicitPosterior
from pyro_vaes.objectives import ELBO
from pyro_vaes.objectives.avb import AVBLoss
from tests import linear_gaussian as lg

Q_SCALE = 0.5


def _gaussian_pair(mu: torch.Tensor, scale: torch.Tensor):
    """Model: z ~ N(0, 1), x ~ N(0, 1) whatever z; guide: the implicit z = x * mu + scale * eps,
    i.e. q(z | x) = N(x mu, scale^2), with no density."""

    def model(x):
        with pyro.plate("data", x.shape[0]):
            pyro.sample("z", dist.Normal(torch.zeros(1), 1.0).to_event(1))
            pyro.sample("x", dist.Normal(torch.zeros(1), 1.0).to_event(1), obs=x)

    def guide(x):
        with pyro.plate("data", x.shape[0]):
            pyro.sample("z", Implicit(x, lambda h, eps: h * mu + scale * eps, 1, 1))

    return model, guide


def _log_ratio(x: torch.Tensor, z: torch.Tensor, mu: float, scale: float) -> torch.Tensor:
    """log q(z | x) - log p(z) for q = N(x mu, scale^2), p = N(0, 1)."""
    return (dist.Normal(x * mu, scale).log_prob(z) - dist.Normal(0.0, 1.0).log_prob(z)).sum(-1)


@pytest.mark.slow
def test_the_critic_recovers_the_log_density_ratio():
    torch.manual_seed(0)
    model, guide = _gaussian_pair(torch.tensor(1.0), torch.tensor(Q_SCALE))
    loss = AVBLoss(hidden=(64, 64))
    loss.adversary_loss(model, guide, torch.zeros(1, 1))  # the lazy first layer
    optim = torch.optim.Adam(loss.adversary.parameters(), lr=1e-2)
    for _ in range(200):
        x = torch.rand(512, 1) * 2 - 1
        optim.zero_grad()
        (loss.adversary_loss(model, guide, x) / 512).backward()
        optim.step()
    xs = torch.linspace(-0.8, 0.8, 5).repeat_interleave(21).unsqueeze(-1)
    zs = xs + torch.linspace(-1.5, 1.5, 21).repeat(5).unsqueeze(-1) * Q_SCALE  # q's +-1.5 sd
    with torch.no_grad():
        t = loss.adversary(xs, zs)
    exact = _log_ratio(xs, zs, 1.0, Q_SCALE)
    assert float(exact.max() - exact.min()) > 1.5  # a ratio that varies over the grid
    assert float((t - exact).abs().mean()) < 0.15  # a constant is 0.4 off on average
    assert float((t - exact).abs().max()) < 0.4


class _FixedCritic(nn.Module):
    """T(x, z) = log q0(z | x) - log p(z) for q0 = N(x mu0, scale0^2): the optimal critic at
    (mu0, scale0), with no parameters of its own."""

    def __init__(self, mu0: float, scale0: float) -> None:
        super().__init__()
        self.mu0, self.scale0 = mu0, scale0

    def forward(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        return _log_ratio(x, z, self.mu0, self.scale0)


def test_the_generator_loss_is_the_reconstruction_plus_the_critic():
    model, guide = _gaussian_pair(torch.tensor(0.7), torch.tensor(0.6))
    loss = AVBLoss()
    loss.adversary = _FixedCritic(0.2, 1.3)  # type: ignore[assignment]
    x = torch.randn(8, 1)
    pyro.set_rng_seed(3)
    value = loss.differentiable_loss(model, guide, x)
    pyro.set_rng_seed(3)
    z = 0.7 * x + 0.6 * torch.randn(8, 1)  # the guide's draw with the same noise
    by_hand = -dist.Normal(0.0, 1.0).log_prob(x).sum() + _log_ratio(x, z, 0.2, 1.3).sum()
    assert float(value) == pytest.approx(float(by_hand), rel=1e-6)


def test_at_the_optimal_critic_the_gradient_is_the_kls():
    """Mescheder et al., Prop. 2: with T = T* held fixed, the gradient of E_q[T] in the
    posterior's parameters is that of KL(q || p), whose closed form for q = N(mu, s^2) and
    p = N(0, 1) is (mu, s - 1/s); the sign: the loss grows with the KL."""
    torch.manual_seed(0)
    mu = torch.tensor(0.7, requires_grad=True)
    scale = torch.tensor(0.6, requires_grad=True)
    model, guide = _gaussian_pair(mu, scale)
    loss = AVBLoss()
    loss.adversary = _FixedCritic(0.7, 0.6)  # type: ignore[assignment]
    n = 200_000
    (loss.differentiable_loss(model, guide, torch.ones(n, 1)) / n).backward()
    assert mu.grad is not None and scale.grad is not None
    assert float(mu.grad) == pytest.approx(0.7, abs=0.01)
    assert float(scale.grad) == pytest.approx(0.6 - 1 / 0.6, abs=0.01)


def test_the_implicit_site_draws_fresh_noise_and_refuses_a_density():
    q = Implicit(torch.zeros(3, 2), lambda h, eps: h[..., :1] + eps, 1, 1)
    assert q.batch_shape == (3,) and q.event_shape == (1,)
    draws = q.expand((4, 3)).rsample()
    assert draws.shape == (4, 3, 1) and draws.unique().numel() == 12  # particles differ
    assert is_implicit(q.expand((4, 3)).to_event(1)) and not is_implicit(dist.Normal(0, 1))
    with pytest.raises(NotImplementedError, match="AVBLoss"):
        q.log_prob(torch.zeros(3, 1))
    avb = pv.variants.build("avb", (1, 8, 8), latent_dim=2, hidden=(16,))
    avb_loss = AVBLoss()
    x = torch.bernoulli(torch.full((5, 1, 8, 8), 0.5))
    with pytest.raises(NotImplementedError, match="no density"):
        ELBO().loss(avb.model, avb.guide, x)
    avb.eval()  # the Gaussian proposal: a density, and AVBLoss is then the plain ELBO
    pyro.set_rng_seed(1)
    plain = ELBO().loss(avb.model, avb.guide, x)
    pyro.set_rng_seed(1)
    assert avb_loss.loss(avb.model, avb.guide, x) == pytest.approx(plain, rel=1e-6)


def test_avb_refuses_other_posteriors_by_name():
    with pytest.raises(ValueError, match="posterior"):
        pv.variants.build("avb", (1, 8, 8), posterior="iaf")
    parts = pv.variants.build("vae", (1, 8, 8), latent_dim=2, hidden=(16,))
    with pytest.raises(TypeError, match="ImplicitPosterior"):
        AVB(parts.encoder, parts.decoder, parts.prior, parts.posterior, parts.likelihood)
    with pytest.raises(ValueError, match="proposal_draws"):
        ImplicitPosterior(4, 2, proposal_draws=1)


def test_the_eval_mode_proposal_scores_the_exact_log_likelihood():
    """The exact posterior of the linear-Gaussian model as an implicit posterior (z = m(x) +
    L eps): in eval mode the guide proposes from a Gaussian with its moments, and importance
    sampling recovers log p(x)."""
    torch.manual_seed(0)
    post = ImplicitPosterior(lg.D, lg.K, noise_dim=lg.K, hidden=(), proposal_draws=4000)
    _, cov = lg.posterior(torch.zeros(1, lg.D))
    gain = cov @ lg.W.T / lg.SIGMA**2  # m(x) = gain (x - B)
    linear = post.net.net[0]
    with torch.no_grad():
        linear.weight.copy_(torch.cat([gain, torch.linalg.cholesky(cov)], dim=1))
        linear.bias.copy_(-gain @ lg.B)

    def guide(x):
        with pyro.plate("data", x.shape[0]):
            pyro.sample("z", post(x))

    x = torch.randn(6, lg.D) * 2
    post.eval()
    ll = pv.evaluate.log_likelihood(lg.model, guide, x, 2000, progress=False)
    torch.testing.assert_close(ll, lg.exact_log_px(x), atol=0.05, rtol=0)
    post.train()
    with pytest.raises(Exception, match="no density"):
        pv.evaluate.log_likelihood(lg.model, guide, x, 10, progress=False)
