"""The capacity-controlled beta-VAE and DIP-VAE I/II."""

from __future__ import annotations

import pyro
import pyro.distributions as dist
import pytest
import torch

import pyro_vaes as pv
from pyro_vaes.objectives import DIPELBO, ELBO, CapacityELBO, dip_penalty
from pyro_vaes.objectives.elbo import negative_elbo, traces
from tests.helpers import seeded_loss


def test_capacity_zero_and_unit_gamma_is_the_elbo(digits, small_vae):
    """With KL >= 0 and C = 0, gamma |mean KL - C| summed over the batch is the KL term."""
    m, g, x = small_vae.model, small_vae.guide, digits.x_train[:32]
    ours = seeded_loss(CapacityELBO(gamma=1.0, capacity=0.0), m, g, x)
    assert ours == pytest.approx(seeded_loss(ELBO(), m, g, x), rel=1e-5)


def test_capacity_term_is_the_distance_to_c(digits, small_vae):
    x = digits.x_train[:32]
    pyro.set_rng_seed(3)
    model_tr, guide_tr = traces(small_vae.model, small_vae.guide, (x,), {})
    q, p = guide_tr.nodes["z"]["fn"], model_tr.nodes["z"]["fn"]
    kl = float(torch.distributions.kl_divergence(q, p).mean().detach())
    recon = float(model_tr.nodes["x"]["fn"].log_prob(x).sum().detach())
    for c in (0.0, kl + 3.0):
        pyro.set_rng_seed(3)
        value = CapacityELBO(gamma=50.0, capacity=c).loss(small_vae.model, small_vae.guide, x)
        assert value == pytest.approx(-recon + 50.0 * 32 * abs(kl - c), rel=1e-4)


@pytest.mark.slow
def test_capacity_grows_with_a_schedule(digits, small_vae):
    objective = CapacityELBO(gamma=100.0)
    schedule = pv.KLAnnealing(objective, attr="capacity", start=0.0, end=5.0, warmup_epochs=2)
    pv.fit(
        small_vae.model,
        small_vae.guide,
        digits.x_train,
        epochs=3,
        loss=objective,
        callbacks=[schedule],
        progress=False,
    )
    assert objective.capacity == 5.0


def test_dip_penalty_is_zero_at_the_identity_only():
    assert float(dip_penalty(torch.eye(3), 10.0, 100.0)) == 0.0
    c = torch.tensor([[1.0, 0.5], [0.5, 2.0]])
    assert float(dip_penalty(c, 10.0, 100.0)) == pytest.approx(10 * 2 * 0.25 + 100 * 1.0)


@pytest.mark.parametrize("kind", ["i", "ii"])
def test_dip_covariances(kind):
    """Posterior means with covariance A and scales s: DIP-I sees A, DIP-II A + mean(s^2)."""
    torch.manual_seed(0)
    a = torch.tensor([[1.0, 0.6], [0.6, 2.0]])
    loc = torch.randn(20000, 2) @ torch.linalg.cholesky(a).T
    scale = torch.full((20000, 2), 0.5)

    def guide(x):
        with pyro.plate("data", x.shape[0]):
            pyro.sample("z", dist.Normal(loc, scale).to_event(1))

    guide_tr = pyro.poutine.trace(guide).get_trace(torch.zeros(20000))
    cov = DIPELBO(kind).covariance(guide_tr)
    expected = a + (0.25 * torch.eye(2) if kind == "ii" else 0)
    torch.testing.assert_close(cov, expected, atol=0.05, rtol=0)


@pytest.mark.slow
def test_dip_vae_adds_the_penalty_to_the_elbo_and_trains(digits, small_vae):
    x = digits.x_train[:64]
    objective = DIPELBO("ii", lambda_od=5.0)
    pyro.set_rng_seed(2)
    model_tr, guide_tr = traces(small_vae.model, small_vae.guide, (x,), {})
    expected = negative_elbo(model_tr, guide_tr) + 64 * dip_penalty(
        objective.covariance(guide_tr), 5.0, 5.0
    )
    pyro.set_rng_seed(2)
    assert objective.loss(small_vae.model, small_vae.guide, x) == pytest.approx(
        float(expected.detach()), rel=1e-5
    )
    history = pv.fit(
        small_vae.model, small_vae.guide, digits.x_train, epochs=3, loss=objective, progress=False
    )
    assert history.loss[-1] < history.loss[0]


def test_bad_settings():
    with pytest.raises(ValueError):
        CapacityELBO(gamma=0.0)
    with pytest.raises(ValueError):
        DIPELBO("iii")
