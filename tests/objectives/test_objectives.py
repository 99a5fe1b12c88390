"""pyro_vaes.objectives.ELBO against Pyro's own ELBOs: same values, same gradients."""

from __future__ import annotations

import pyro
import pyro.distributions as dist
import pyro.infer
import pytest
import torch

import pyro_vaes as pv


def _value_and_grads(loss, vae, x, seed=7):
    vae.zero_grad()
    pyro.set_rng_seed(seed)
    value = loss.differentiable_loss(vae.model, vae.guide, x)
    value.backward()
    return float(value.detach()), [p.grad.clone() for p in vae.parameters()]


@pytest.mark.parametrize("beta", [1.0, 0.3])
def test_matches_trace_mean_field_elbo(digits, small_vae, beta):
    small_vae.beta = beta
    x = digits.x_train[:32]
    ours, g_ours = _value_and_grads(pv.objectives.ELBO(), small_vae, x)
    ref, g_ref = _value_and_grads(pyro.infer.TraceMeanField_ELBO(), small_vae, x)
    assert ours == pytest.approx(ref, rel=1e-5)
    for a, b in zip(g_ours, g_ref, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


def test_matches_trace_elbo_without_closed_form(digits, small_vae):
    """A Student-t posterior has no registered KL against the normal prior: Monte Carlo term."""

    def guide(x):
        with pyro.plate("data", x.shape[0]):
            q = small_vae.posterior(small_vae.encoder(x)).base_dist
            pyro.sample("z", dist.StudentT(4.0, q.loc, q.scale).to_event(1))

    x = digits.x_train[:32]
    values = []
    for loss in (pv.objectives.ELBO(), pyro.infer.Trace_ELBO()):
        pyro.set_rng_seed(3)
        values.append(float(loss.differentiable_loss(small_vae.model, guide, x).detach()))
    assert values[0] == pytest.approx(values[1], rel=1e-5)


def test_masked_latent_and_particles(digits, small_vae):
    small_vae.beta = 0.0  # masks the latent site: only the reconstruction term is left
    x = digits.x_train[:16]
    pyro.set_rng_seed(1)
    value = pv.objectives.ELBO(num_particles=3).loss(small_vae.model, small_vae.guide, x)
    pyro.set_rng_seed(1)
    recon = 0.0
    for _ in range(3):
        z = small_vae.posterior(small_vae.encoder(x)).rsample()
        recon -= float(small_vae.likelihood(small_vae.decoder(z), 3).log_prob(x).sum().detach()) / 3
    assert value == pytest.approx(recon, rel=1e-5)
    with pytest.raises(ValueError, match="num_particles"):
        pv.objectives.ELBO(num_particles=0)


def test_refuses_non_reparameterised_latents():
    def model(x):
        with pyro.plate("data", x.shape[0]):
            pyro.sample("c", dist.Bernoulli(0.5))

    def guide(x):
        with pyro.plate("data", x.shape[0]):
            pyro.sample("c", dist.Bernoulli(0.3))

    with pytest.raises(ValueError, match="reparameterisable"):
        pv.objectives.ELBO().loss(model, guide, torch.zeros(3))
