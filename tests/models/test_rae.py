"""Regularised autoencoders: the L2 code penalty from the prior under a point mass, decoder weight
decay and the gradient penalty as factors (checked against finite differences), and the ex-post
density that sampling uses."""

from __future__ import annotations

import math

import pyro
import pytest
import torch

import pyro_vaes as pv
from pyro_vaes.models.rae import RAE, jacobian_frobenius
from pyro_vaes.objectives import ELBO


def _rae(digits, **kw) -> RAE:
    torch.manual_seed(0)
    return pv.variants.build("rae_l2", digits.shape, latent_dim=3, hidden=(32,), **kw)


def test_the_prior_under_a_point_mass_is_the_l2_penalty(digits):
    rae = _rae(digits, weight_decay=0.0)
    x = digits.x_test[:20]
    with torch.no_grad():
        z = rae.encode(x)
        recon = rae.likelihood(rae.decoder(z), 3).log_prob(x).sum()
    expected = -recon + 0.5 * z.pow(2).sum() + 20 * 1.5 * math.log(2 * math.pi)
    assert ELBO().loss(rae.model, rae.guide, x) == pytest.approx(float(expected), rel=1e-5)


def test_decoder_regularisers_enter_as_factors(digits):
    x = digits.x_test[:20]
    base = ELBO().loss(_rae(digits, weight_decay=0.0).model, _rae(digits).guide, x)
    decayed = _rae(digits, weight_decay=0.01)
    norm = sum(float(p.detach().pow(2).sum()) for p in decayed.decoder.parameters())
    assert ELBO().loss(decayed.model, decayed.guide, x) - base == pytest.approx(
        0.01 * 20 * norm, rel=1e-4
    )
    gp = _rae(digits, weight_decay=0.0, gradient_penalty=0.5)
    penalty = float(jacobian_frobenius(gp.decoder, gp.encode(x)).sum().detach())
    assert ELBO().loss(gp.model, gp.guide, x) - base == pytest.approx(0.5 * penalty, rel=1e-4)
    gp.eval()  # the regulariser belongs to training, not to the model's density
    assert ELBO().loss(gp.model, gp.guide, x) == pytest.approx(base, rel=1e-6)


def test_gradient_penalty_equals_finite_differences():
    torch.manual_seed(0)
    dec = torch.nn.Sequential(
        torch.nn.Linear(3, 16), torch.nn.Tanh(), torch.nn.Linear(16, 10)
    ).double()
    z = torch.randn(4, 3, dtype=torch.float64)
    h = 1e-6
    fd = torch.zeros(4, dtype=torch.float64)
    for j in range(3):
        e = torch.zeros(3, dtype=torch.float64)
        e[j] = h
        fd += ((dec(z + e) - dec(z - e)) / (2 * h)).pow(2).sum(-1)
    exact = jacobian_frobenius(dec, z)
    torch.testing.assert_close(exact, fd, rtol=1e-7, atol=1e-9)
    exact.sum().backward()  # differentiable with respect to the decoder (not its output bias)
    for p in (dec[0].weight, dec[0].bias, dec[2].weight):
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0


@pytest.mark.slow
def test_gradient_penalty_smooths_the_decoder(digits):
    x = digits.x_test[:100]
    norms = {}
    for gp in (0.0, 1.0):
        rae = _rae(digits, weight_decay=0.0, gradient_penalty=gp)
        pv.fit(rae.model, rae.guide, digits.x_train, epochs=5, progress=False)
        norms[gp] = float(jacobian_frobenius(rae.decoder, rae.encode(x)).mean().detach())
    assert norms[1.0] < 0.5 * norms[0.0], norms


@pytest.mark.slow
def test_expost_density_fits_the_codes_and_drives_sampling(digits, tmp_path):
    rae = _rae(digits, expost_components=3)
    pv.fit(rae.model, rae.guide, digits.x_train, epochs=3, progress=False)
    codes = rae.encode(digits.x_train)
    before = float(rae.prior().log_prob(codes).mean())
    rae.fit_expost(digits.x_train)
    assert float(rae.expost().log_prob(codes).mean()) > before
    pyro.set_rng_seed(0)
    draws = rae.expost().sample((20000,))
    torch.testing.assert_close(draws.mean(0), codes.mean(0), atol=0.05 * float(codes.std()), rtol=0)
    assert rae.sample(5).shape == (5, *digits.shape)
    # the mixture is part of the state: it survives a checkpoint
    path = tmp_path / "rae.pt"
    pv.checkpoint.save({"params": {f"module0.{k}": v for k, v in rae.state_dict().items()}}, path)
    fresh = _rae(digits, expost_components=3)
    pv.checkpoint.restore(fresh, path)
    assert bool(fresh.expost_fitted)
    torch.testing.assert_close(fresh.expost_loc, rae.expost_loc)


def test_rae_refuses_impossible_settings(digits):
    with pytest.raises(ValueError):
        _rae(digits, weight_decay=-1.0)
    with pytest.raises(ValueError):
        _rae(digits, expost_components=0)
    with pytest.raises(ValueError, match="at least"):
        _rae(digits, expost_components=50).fit_expost(digits.x_train[:10])
