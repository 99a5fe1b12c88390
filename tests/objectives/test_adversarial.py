"""Adversarial objectives: two optimizers that each touch only their own parameters, a
density-ratio critic that recovers a known total correlation, and an AAE whose aggregate
posterior moves to the prior on a 2-D toy problem."""

from __future__ import annotations

import functools
import math

import pyro
import pyro.distributions as dist
import pytest
import torch
from torch.nn import functional as F

import pyro_vaes as pv
from pyro_vaes.objectives import AdversarialAE, FactorVAELoss, VAEGANLoss, mmd, permute_dims


def _snapshot(module: torch.nn.Module) -> list[torch.Tensor]:
    return [p.detach().clone() for p in module.parameters()]


def _changed(before: list[torch.Tensor], module: torch.nn.Module) -> bool:
    return any(not torch.equal(a, b) for a, b in zip(before, module.parameters(), strict=True))


@pytest.mark.slow
@pytest.mark.parametrize("frozen", ["model", "adversary"])
def test_each_optimizer_updates_only_its_own_parameters(digits, small_vae, frozen):
    loss = FactorVAELoss(latent_dim=4, gamma=5.0, adversary_steps=2)
    vae_before, adv_before = _snapshot(small_vae), _snapshot(loss.adversary)
    still = functools.partial(torch.optim.SGD, lr=0.0)
    pv.fit(
        small_vae.model,
        small_vae.guide,
        digits.x_train[:400],
        loss=loss,
        optim=still if frozen == "model" else None,
        adversary_optim=still if frozen == "adversary" else None,
        epochs=1,
        progress=False,
    )
    assert _changed(vae_before, small_vae) == (frozen != "model")
    assert _changed(adv_before, loss.adversary) == (frozen != "adversary")


def _delta_pair():
    """A guide whose code is the datapoint itself, so the critic sees chosen codes."""

    def model(x):
        with pyro.plate("data", x.shape[0]):
            pyro.sample("z", dist.Normal(torch.zeros(2), 1.0).to_event(1))

    def guide(x):
        with pyro.plate("data", x.shape[0]):
            pyro.sample("z", dist.Delta(x, event_dim=1))

    return model, guide


@pytest.mark.slow
@pytest.mark.parametrize("rho", [0.0, 0.8])
def test_factorvae_critic_recovers_the_total_correlation(rho):
    """For a bivariate normal with correlation rho, TC = -log(1 - rho^2) / 2."""
    torch.manual_seed(0)
    cov = torch.tensor([[1.0, rho], [rho, 1.0]])
    codes = dist.MultivariateNormal(torch.zeros(2), cov)
    model, guide = _delta_pair()
    loss = FactorVAELoss(latent_dim=2, hidden=(64, 64))
    opt = torch.optim.Adam(loss.adversary.parameters(), lr=1e-3)
    for _ in range(1500):
        opt.zero_grad()
        (loss.adversary_loss(model, guide, codes.sample((256,))) / 256).backward()
        opt.step()
    estimate = float(loss.total_correlation(model, guide, codes.sample((20000,))))
    assert estimate == pytest.approx(-0.5 * math.log(1 - rho**2), abs=0.08)


def test_permute_dims_keeps_marginals_and_breaks_dependence():
    torch.manual_seed(0)
    z = torch.randn(5000, 1).expand(5000, 3) + 0.01 * torch.randn(5000, 3)
    p = permute_dims(z)
    for j in range(3):
        assert torch.equal(p[:, j].sort().values, z[:, j].sort().values)
    assert abs(float(torch.corrcoef(p.T)[0, 1])) < 0.05 < float(torch.corrcoef(z.T)[0, 1])


def _ring(n: int, seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    angle = 2 * math.pi * torch.rand(n, generator=gen)
    radius = 2.0 + 0.1 * torch.randn(n, generator=gen)
    return torch.stack([radius * angle.cos(), radius * angle.sin()], 1)


@pytest.mark.slow
def test_aae_moves_the_aggregate_posterior_to_the_prior():
    """2-D ring data, 2-D code: the AAE's codes against the same autoencoder with the
    adversarial term almost off."""
    x = _ring(2000)
    gaps = {}
    for lam in (1.0, 1e-4):
        torch.manual_seed(0)
        vae = pv.variants.build("vae", (2,), latent_dim=2, hidden=(64,), likelihood="gaussian")
        loss = AdversarialAE(latent_dim=2, lam=lam, hidden=(64, 64))
        slow = functools.partial(torch.optim.Adam, lr=3e-4)  # steadier adversarial dynamics
        pv.fit(
            vae.model,
            vae.guide,
            x,
            loss=loss,
            optim=slow,
            adversary_optim=slow,
            epochs=40,
            batch_size=100,
            progress=False,
        )
        with torch.no_grad():
            codes = vae.posterior(vae.encoder(x)).rsample()
        torch.manual_seed(1)
        gaps[lam] = float(mmd(codes, torch.randn_like(codes)))
    assert gaps[1.0] < 0.3 * gaps[1e-4], gaps


def test_resume_restores_the_adversary(digits, tmp_path):
    def run(epochs: int, ckdir, resume: bool):
        torch.manual_seed(0)
        vae = pv.variants.build("vae", digits.shape, latent_dim=4, hidden=(32,))
        loss = FactorVAELoss(latent_dim=4, hidden=(16,))
        pv.fit(
            vae.model,
            vae.guide,
            digits.x_train[:500],
            loss=loss,
            epochs=epochs,
            seed=3,
            checkpoint_dir=ckdir,
            resume=resume,
            progress=False,
        )
        return vae, loss.adversary

    straight = run(3, tmp_path / "a", False)
    run(1, tmp_path / "b", False)
    resumed = run(3, tmp_path / "b", True)
    for a, b in zip(straight, resumed, strict=True):
        assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters(), strict=True))
    saved = pv.checkpoint.load(tmp_path / "b" / "checkpoint.pt")
    assert "adversary_optimizer" in saved
    assert any(k.startswith("adversary.") for k in saved["params"])


def test_bad_adversarial_settings(digits, small_vae):
    with pytest.raises(ValueError):
        AdversarialAE(latent_dim=2, lam=0.0)
    with pytest.raises(ValueError):
        FactorVAELoss(latent_dim=2, adversary_steps=0)
    with pytest.raises(ValueError, match="no adversary"):
        pv.fit(
            small_vae.model,
            small_vae.guide,
            digits.x_train[:100],
            adversary_optim=torch.optim.Adam,
            epochs=1,
            progress=False,
        )


def test_vaegan_reconstructs_in_the_critics_feature_space(digits, small_vae):
    """Model side: KL + 0.5 |D_l(x) - D_l(x~)|^2 + lambda (softplus(-D(x~)) + softplus(-D(x_p)))."""
    loss = VAEGANLoss(lam=2.0, hidden=(16, 8))
    x = digits.x_test[:12]
    loss.adversary_loss(small_vae.model, small_vae.guide, x)  # sizes the critic
    pyro.set_rng_seed(3)
    value = loss.loss(small_vae.model, small_vae.guide, x)
    pyro.set_rng_seed(3)
    with torch.no_grad():
        q = small_vae.posterior(small_vae.encoder(x))
        z = q.rsample()
        recon = torch.sigmoid(small_vae.decoder(z)).reshape(12, -1)
        sample = torch.sigmoid(small_vae.decoder(small_vae.prior().sample((12,)))).reshape(12, -1)
        d = loss.adversary
        flat = x.reshape(12, -1)
        expected = (
            torch.distributions.kl_divergence(q, small_vae.prior()).sum()
            + 0.5 * (d.features(flat) - d.features(recon)).pow(2).sum()
            + 2.0 * (F.softplus(-d(recon)) + F.softplus(-d(sample))).sum()
        )
    assert value == pytest.approx(float(expected), rel=1e-5)
