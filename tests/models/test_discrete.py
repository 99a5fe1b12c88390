"""Categorical latents: the Concrete relaxation, its categorical KL, the categorical VAE's
temperature schedule, and JointVAE's two capacities."""

from __future__ import annotations

import itertools

import pyro
import pytest
import torch
from torch.distributions import kl_divergence

import pyro_vaes as pv
from pyro_vaes.distributions import Concrete
from pyro_vaes.objectives import ELBO, JointCapacityELBO
from pyro_vaes.objectives.elbo import traces
from pyro_vaes.train.callbacks import Callback, FitState


def test_concrete_kl_is_the_categorical_kl():
    torch.manual_seed(0)
    a, b = torch.randn(5, 4), torch.randn(5, 4)
    kl = kl_divergence(Concrete(torch.tensor(0.5), logits=a), Concrete(torch.tensor(0.5), logits=b))
    exact = kl_divergence(
        torch.distributions.Categorical(logits=a), torch.distributions.Categorical(logits=b)
    )
    torch.testing.assert_close(kl, exact)


def test_concrete_draws_approach_one_hot_categories():
    torch.manual_seed(0)
    probs = torch.tensor([0.1, 0.2, 0.3, 0.4])
    draws = Concrete(torch.tensor(0.05), probs=probs).rsample((20000,))
    assert float(draws.max(-1).values.mean()) > 0.97  # nearly one-hot at low temperature
    freq = torch.bincount(draws.argmax(-1), minlength=4).float() / 20000
    torch.testing.assert_close(freq, probs, atol=0.015, rtol=0)  # argmax ~ Cat(probs)
    soft = Concrete(torch.tensor(5.0), probs=probs).rsample((2000,))
    assert float(soft.max(-1).values.mean()) < 0.5  # spread out at high temperature


def test_categorical_vae_elbo_uses_the_closed_form_kl(digits):
    torch.manual_seed(0)
    vae = pv.variants.build("categorical_vae", digits.shape, latent_dim=3, hidden=(32,))
    x = digits.x_test[:10]
    pyro.set_rng_seed(2)
    loss = ELBO().loss(vae.model, vae.guide, x)
    pyro.set_rng_seed(2)
    model_tr, guide_tr = traces(vae.model, vae.guide, (x,), {})
    recon = model_tr.nodes["x"]["fn"].log_prob(x).sum()
    logits = guide_tr.nodes["c"]["fn"].base_dist.logits
    log_p = torch.log_softmax(logits, -1)
    kl = (log_p.exp() * (log_p + torch.log(torch.tensor(10.0)))).sum()
    assert loss == pytest.approx(float((-recon + kl).detach()), rel=1e-5)


def test_categorical_vae_anneals_its_temperature(digits):
    variant = pv.variants.registry["categorical_vae"]
    vae = pv.variants.build("categorical_vae", digits.shape, latent_dim=3, hidden=(32,))
    seen: list[float] = []

    class Record(Callback):
        def on_step_start(self, state: FitState) -> None:
            seen.append(vae.temperature)

    variant.fit(vae, digits.x_train[:400], callbacks=[Record()], epochs=2, progress=False)
    assert seen[0] == 1.0 and seen[-1] == pytest.approx(1.0 - 0.5 * 7 / 8)
    assert all(a >= b for a, b in itertools.pairwise(seen))
    codes = vae.encode(digits.x_test[:5])
    assert codes.shape == (5, 30)
    torch.testing.assert_close(codes.reshape(5, 3, 10).sum(-1), torch.ones(5, 3))


def test_joint_vae_objective_by_hand(digits):
    torch.manual_seed(0)
    vae = pv.variants.build("joint_vae", digits.shape, latent_dim=2, hidden=(32,))
    x = digits.x_test[:10]
    objective = JointCapacityELBO(gamma=7.0)
    objective.continuous_capacity, objective.discrete_capacity = 0.5, 1.5
    pyro.set_rng_seed(4)
    loss = objective.loss(vae.model, vae.guide, x)
    pyro.set_rng_seed(4)
    model_tr, guide_tr = traces(vae.model, vae.guide, (x,), {})
    recon = model_tr.nodes["x"]["fn"].log_prob(x).sum()
    kl_z = kl_divergence(guide_tr.nodes["z"]["fn"], model_tr.nodes["z"]["fn"]).mean()
    kl_c = kl_divergence(guide_tr.nodes["c"]["fn"], model_tr.nodes["c"]["fn"]).mean()
    expected = -recon + 7.0 * 10 * ((kl_z - 0.5).abs() + (kl_c - 1.5).abs())
    assert loss == pytest.approx(float(expected.detach()), rel=1e-5)


def test_joint_vae_capacities_follow_the_schedule(digits):
    variant = pv.variants.registry["joint_vae"]
    vae = pv.variants.build("joint_vae", digits.shape, latent_dim=2, hidden=(32,))
    loss = variant.loss()
    pv.fit(
        vae.model,
        vae.guide,
        digits.x_train[:400],
        loss=loss,
        callbacks=variant.callbacks(vae, loss),
        epochs=4,
        progress=False,
    )
    assert loss.continuous_capacity == loss.discrete_capacity == 5.0
    assert vae.sample(4).shape == (4, *digits.shape)
    assert vae.reconstruct(digits.x_test[:3]).shape == (3, *digits.shape)


def test_discrete_settings_are_checked(digits):
    with pytest.raises(ValueError):
        pv.variants.build("joint_vae", digits.shape, categories=1)
    with pytest.raises(ValueError):
        JointCapacityELBO(gamma=0.0)
