"""Flow posteriors, VampPrior and mixture prior: densities by hand, invertibility, normalisation,
sampling, and every prior with every posterior."""

from __future__ import annotations

import math

import pyro.distributions as dist
import pytest
import torch
from torch.autograd.functional import jacobian

import pyro_vaes as pv
from pyro_vaes.guides import IAF, DiagonalNormal, PlanarFlow, RadialFlow
from pyro_vaes.priors import MixtureOfGaussians, StandardNormal, VampPrior

FLOWS = [IAF, PlanarFlow, RadialFlow]


def _step_log_dets(transforms, z0: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Push z0 (B, d) through the steps, and the log |det| of each step's Jacobian, computed
    datapoint by datapoint with autograd (block diagonal of the full Jacobian)."""
    total = torch.zeros(z0.shape[0])
    z = z0
    for t in transforms:
        full = jacobian(lambda v, t=t: t(v), z)  # (B, d, B, d)
        blocks = torch.stack([full[i, :, i, :] for i in range(z.shape[0])])
        total = total + torch.linalg.slogdet(blocks).logabsdet
        z = t(z)
    return z, total


@pytest.mark.parametrize("flow", FLOWS)
def test_log_prob_is_the_change_of_variables(flow):
    torch.manual_seed(0)
    post = flow(5, 3, steps=3)
    h = torch.randn(4, 5)
    q = post(h)
    z0 = q.base_dist.rsample()
    z = z0
    for t in q.transforms:
        z = t(z)
    log_q = q.log_prob(z)  # scored through the transforms' cache
    z_again, log_det = _step_log_dets(post(h).transforms, z0)
    torch.testing.assert_close(z_again, z)
    torch.testing.assert_close(log_q, q.base_dist.log_prob(z0) - log_det, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("flow", FLOWS)
def test_flow_draws_and_densities_are_finite_under_particles(flow):
    q = flow(5, 3, steps=2)(torch.randn(4, 5)).expand((6, 4))
    z = q.rsample()
    assert z.shape == (6, 4, 3) and torch.isfinite(q.log_prob(z)).all()


def test_planar_flow_stays_invertible_for_any_encoder_output():
    torch.manual_seed(1)
    post = PlanarFlow(4, 2, steps=4)
    with torch.no_grad():  # push w^T u far below -1 before the u-hat correction
        post.hyper.weight.mul_(50.0)
    for scale in (1.0, 10.0, 100.0):
        h = scale * torch.randn(8, 4)
        q = post(h)
        z0 = q.base_dist.sample()
        z = z0
        for t in q.transforms:
            full = jacobian(lambda v, t=t: t(v), z)
            dets = torch.stack([torch.linalg.det(full[i, :, i, :]) for i in range(8)])
            assert torch.all(dets > 0), (scale, dets)
            z = t(z)


@pytest.mark.parametrize(
    "make",
    [
        lambda: MixtureOfGaussians(2, 5),
        lambda: VampPrior(
            pv.nets.MLPEncoder((6,), (16,)), DiagonalNormal(16, 2), (6,), components=7
        ),
    ],
)
def test_prior_density_normalises(make):
    """E_{z ~ r}[p(z) / r(z)] = 1 for a broad proposal r (importance-sampled integral)."""
    torch.manual_seed(2)
    p = make()()
    r = dist.Normal(torch.zeros(2), 4.0).to_event(1)
    z = r.sample((200_000,))
    with torch.no_grad():
        integral = (p.log_prob(z) - r.log_prob(z)).exp().mean()
    assert abs(float(integral) - 1.0) < 0.02


def test_vamp_prior_is_the_mixture_of_posteriors_at_the_pseudo_inputs(digits):
    torch.manual_seed(3)
    enc, post = pv.nets.MLPEncoder(digits.shape, (32,)), DiagonalNormal(32, 2)
    prior = VampPrior(enc, post, digits.shape, components=5, init=digits.x_train)
    u = prior.pseudo_inputs
    assert u.shape == (5, *digits.shape) and u.min() >= 0 and u.max() <= 1
    z = torch.randn(11, 2)
    with torch.no_grad():
        comps = post(enc(u))  # batch (5,)
        by_hand = torch.logsumexp(comps.log_prob(z[:, None, :]), dim=-1) - math.log(5)
        torch.testing.assert_close(prior().log_prob(z), by_hand)
        # samples: a component uniformly at random, then a draw from it: compare the moments
        s = prior().sample((200_000,))
        loc, var = comps.base_dist.loc, comps.base_dist.scale**2
        mean = loc.mean(0)
        cov = torch.diag(var.mean(0)) + (loc.T @ loc) / 5 - torch.outer(mean, mean)
    torch.testing.assert_close(s.mean(0), mean, atol=0.02, rtol=0)
    torch.testing.assert_close(torch.cov(s.T), cov, atol=0.03, rtol=0)


@pytest.mark.slow
def test_vamp_pseudo_inputs_stay_in_range_while_training(digits):
    torch.manual_seed(0)
    vae = pv.variants.build("vamp", digits.shape, latent_dim=2, hidden=(32,), components=20)
    pv.fit(
        vae.model,
        vae.guide,
        digits.x_train,
        epochs=3,
        progress=False,
        optim=lambda p: torch.optim.Adam(p, lr=0.1),
    )
    u = vae.prior.pseudo_inputs.detach()
    assert float(u.min()) >= 0.0 and float(u.max()) <= 1.0


PRIORS = ["standard_normal", "mog", "vamp"]
POSTERIORS = ["diagonal_normal", "iaf", "planar", "radial"]


@pytest.mark.parametrize("prior", PRIORS)
@pytest.mark.parametrize("posterior", POSTERIORS)
def test_every_prior_with_every_posterior(digits, prior, posterior):
    torch.manual_seed(0)
    vae = pv.variants.build(
        "vae",
        digits.shape,
        latent_dim=3,
        hidden=(32,),
        prior=prior,
        posterior=posterior,
        flow_steps=2,
        components=10,
    )
    before = {k: v.clone() for k, v in vae.state_dict().items()}
    history = pv.fit(
        vae.model, vae.guide, digits.x_train[:200], epochs=1, batch_size=100, progress=False
    )
    assert math.isfinite(history.loss[0])
    assert any(not torch.equal(v, before[k]) for k, v in vae.state_dict().items())
    ll = pv.evaluate.log_likelihood(vae.model, vae.guide, digits.x_test[:20], 8)
    assert torch.isfinite(ll).all()
    assert vae.reconstruct(digits.x_test[:4]).shape == (4, *digits.shape)


def test_monte_carlo_kl_matches_closed_form(digits):
    """Where a closed form exists (diagonal normal against the standard normal), the Monte Carlo
    estimate the objective falls back to elsewhere agrees with it."""
    torch.manual_seed(4)
    vae = pv.variants.build("vae", digits.shape, latent_dim=3, hidden=(32,))
    with torch.no_grad():
        q = vae.posterior(vae.encoder(digits.x_test[:10]))
        p = vae.prior()
        exact = torch.distributions.kl_divergence(q, p)
        z = q.sample((100_000,))
        mc = (q.log_prob(z) - p.log_prob(z)).mean(0)
    torch.testing.assert_close(mc, exact, atol=0.02, rtol=0)


def test_flow_arguments_are_checked():
    with pytest.raises(ValueError, match="steps"):
        PlanarFlow(4, 2, steps=0)
    with pytest.raises(ValueError, match="latent_dim"):
        IAF(4, 1)
    with pytest.raises(ValueError, match="unknown prior"):
        pv.variants.build("vae", (1, 8, 8), prior="flat")
    with pytest.raises(ValueError, match="data_range"):
        VampPrior(torch.nn.Identity(), torch.nn.Identity(), (3,), data_range=(1.0, 0.0))
    assert isinstance(StandardNormal(2)(), dist.Independent)


def test_diagonal_normal_mixture_matches_mixture_same_family():
    from pyro_vaes.distributions import DiagonalNormalMixture

    torch.manual_seed(5)
    logits, locs, scales = torch.randn(7), 3 * torch.randn(7, 4), torch.rand(7, 4) + 0.05
    ours = DiagonalNormalMixture(logits, locs, scales)
    ref = dist.MixtureSameFamily(
        dist.Categorical(logits=logits), dist.Normal(locs, scales).to_event(1)
    )
    z = 3 * torch.randn(6, 5, 4)
    torch.testing.assert_close(ours.log_prob(z), ref.log_prob(z), atol=1e-4, rtol=1e-5)
    s = ours.sample((100_000,))
    torch.testing.assert_close(s.mean(0), ref.mean, atol=0.05, rtol=0)
    assert ours.expand((3,)).log_prob(torch.randn(2, 3, 4)).shape == (2, 3)
    with pytest.raises(ValueError):
        DiagonalNormalMixture(logits, locs, scales[:, :2])
