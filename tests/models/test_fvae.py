"""The f-VAE's flow likelihood: its log density is the change of variables computed by hand
(inverse, base density, log|det| of the Jacobian by autograd), draws round-trip through the
inverse, the density integrates to one, no coupling is a Gaussian, and bits per dimension of
dequantised data follow the cube-volume correction."""

from __future__ import annotations

import math

import pytest
import torch
from torch.autograd.functional import jacobian

import pyro_vaes as pv
from pyro_vaes.errors import DataError
from pyro_vaes.models.fvae import FlowLikelihood, bits_per_dim

SHAPE = (1, 2, 2)


def _flow(shape=SHAPE, layers=3) -> FlowLikelihood:
    """A flow with every weight random (the couplings start at the identity otherwise)."""
    torch.manual_seed(0)
    lik = FlowLikelihood(shape, layers=layers, hidden=(8,)).double()
    with torch.no_grad():
        for p in lik.parameters():
            p.copy_(0.4 * torch.randn_like(p))
    return lik


def _inverse(d, x: torch.Tensor) -> torch.Tensor:
    for t in reversed(d.transforms):
        x = t.inv(x)
    return x


def _forward(d, v: torch.Tensor) -> torch.Tensor:
    for t in d.transforms:
        v = t(v)
    return v


def _std_normal(v: torch.Tensor) -> torch.Tensor:
    return (-0.5 * v.pow(2) - 0.5 * math.log(2 * math.pi)).sum(-1)


def test_log_likelihood_is_the_change_of_variables_by_hand():
    lik = _flow()
    context = torch.randn(3, *SHAPE, dtype=torch.float64)
    x = torch.randn(3, *SHAPE, dtype=torch.float64)
    d = lik(context, event_dim=3)
    for i in range(3):
        di = lik(context[i], event_dim=3)

        def f(flat: torch.Tensor, di=di) -> torch.Tensor:  # x -> v, flat
            return _inverse(di, flat.reshape(SHAPE))

        v = f(x[i].reshape(-1))
        jac = jacobian(f, x[i].reshape(-1))
        assert jac.shape == (4, 4) and not torch.allclose(jac, torch.diag(jac.diagonal()))
        by_hand = _std_normal(v) + torch.linalg.slogdet(jac).logabsdet
        assert float(d.log_prob(x)[i].detach()) == pytest.approx(float(by_hand.detach()), abs=1e-9)


def test_draws_round_trip_through_the_inverse_and_score_by_the_forward_jacobian():
    lik = _flow()
    context = torch.randn(4, *SHAPE, dtype=torch.float64)
    d = lik(context, event_dim=3)
    x = d.sample().clone()  # a fresh tensor: no transform's cache holds it
    v = _inverse(d, x)
    torch.testing.assert_close(_forward(d, v), x)
    for i in range(4):
        di = lik(context[i], event_dim=3)
        jac = jacobian(lambda u, di=di: _forward(di, u).reshape(-1), v[i])
        by_hand = _std_normal(v[i]) - torch.linalg.slogdet(jac).logabsdet
        assert float(d.log_prob(x)[i].detach()) == pytest.approx(float(by_hand.detach()), abs=1e-9)


def test_the_density_integrates_to_one():
    lik = _flow(shape=(2,), layers=2)
    context = torch.tensor([0.3, -0.2], dtype=torch.float64)
    grid = torch.linspace(-12, 12, 801, dtype=torch.float64)
    xs = torch.cartesian_prod(grid, grid)
    with torch.no_grad():
        density = lik(context, event_dim=1).log_prob(xs).exp()
    step = float(grid[1] - grid[0])
    assert float(density.sum()) * step**2 == pytest.approx(1.0, abs=2e-3)


def test_without_couplings_the_flow_is_a_gaussian_around_the_decoder_output():
    lik = FlowLikelihood(SHAPE, layers=0, scale=0.3)
    context, x = torch.randn(5, *SHAPE), torch.randn(5, *SHAPE)
    gauss = torch.distributions.Normal(context, 0.3)
    torch.testing.assert_close(
        lik(context, 3).log_prob(x), gauss.log_prob(x).sum((-3, -2, -1)), rtol=1e-5, atol=1e-5
    )
    torch.testing.assert_close(lik.mean(context), context)


def test_a_fresh_flow_starts_as_that_gaussian_and_its_picture_is_the_base_mean_pushed():
    torch.manual_seed(0)
    lik = FlowLikelihood(SHAPE, layers=2)
    context, x = torch.randn(5, *SHAPE), torch.randn(5, *SHAPE)
    gauss = torch.distributions.Normal(context, 1.0).log_prob(x).sum((-3, -2, -1))
    torch.testing.assert_close(lik(context, 3).log_prob(x), gauss, rtol=1e-5, atol=1e-5)
    flow = _flow()
    c = torch.randn(2, *SHAPE, dtype=torch.float64)
    d = flow(c, 3)
    torch.testing.assert_close(flow.mean(c), _forward(d, torch.zeros(2, 4, dtype=torch.float64)))


def test_bad_options_are_refused_by_name():
    with pytest.raises(ValueError, match="event_dim"):
        FlowLikelihood(SHAPE)(torch.zeros(2, *SHAPE), event_dim=1)
    with pytest.raises(ValueError, match="context"):
        FlowLikelihood(SHAPE)(torch.zeros(2, 4), event_dim=3)
    with pytest.raises(ValueError, match="layers"):
        FlowLikelihood(SHAPE, layers=-1)
    with pytest.raises(ValueError, match="2 dimensions"):
        FlowLikelihood((1,), layers=1)
    with pytest.raises(ValueError, match="levels"):
        bits_per_dim(torch.zeros(1), SHAPE, levels=1)


def test_bits_per_dim_by_hand():
    # the uniform density on [0, 1)^D: log p = 0, so each dimension costs log2 L bits
    assert float(bits_per_dim(torch.zeros(()), (1, 28, 28), levels=256)) == pytest.approx(8.0)
    assert float(bits_per_dim(torch.zeros(()), SHAPE, levels=17)) == pytest.approx(math.log2(17))
    # -log p = 100 nats over D = 4 dims of 17 levels: (100 + 4 ln 17) / (4 ln 2)
    expected = (100 + 4 * math.log(17)) / (4 * math.log(2))
    assert float(bits_per_dim(torch.tensor(-100.0), SHAPE, 17)) == pytest.approx(expected)
    assert float(bits_per_dim(torch.tensor(-100.0), SHAPE)) == pytest.approx(100 / 4 / math.log(2))


def test_dequantize_fills_each_grey_levels_cell():
    k = torch.arange(17.0).repeat(200).reshape(-1, 1, 1, 17)
    y = pv.data.dequantize(k / 16, levels=17)
    assert torch.equal(torch.floor(y * 17), k)  # inside the cell [k/L, (k+1)/L)
    u = y * 17 - k
    assert 0.45 < float(u.mean()) < 0.55 and float(u.min()) >= 0 and float(u.max()) < 1
    with pytest.raises(DataError, match="17 grey levels"):
        pv.data.dequantize(torch.full((1, 4), 0.03), levels=17)
    with pytest.raises(ValueError, match="levels"):
        pv.data.dequantize(k / 16, levels=1)


@pytest.mark.slow
def test_fvae_trains_on_dequantised_digits_and_scores_in_bits_per_dim():
    torch.manual_seed(0)
    digits = pv.data.load("digits")
    model = pv.variants.build("fvae", digits.shape, latent_dim=4, hidden=(32,), coupling_layers=2,
                              coupling_hidden=(32,))  # fmt: skip
    assert isinstance(model.likelihood, FlowLikelihood)

    def dequantize(x: torch.Tensor) -> torch.Tensor:
        return pv.data.dequantize(x, levels=17)

    history = pv.variants.registry["fvae"].fit(
        model, digits.x_train[:300], epochs=3, batch_size=100, transform=dequantize,
        progress=False,
    )  # fmt: skip
    assert history.loss[-1] < history.loss[0]
    model.eval()
    test = pv.data.dequantize(digits.x_test[:50], levels=17, seed=1)
    ll = pv.evaluate.log_likelihood(model.model, model.guide, test, 16)
    bpd = bits_per_dim(ll, digits.shape, levels=17)
    assert torch.isfinite(bpd).all() and float(bpd.mean()) > 0
    torch.testing.assert_close(bpd, (-ll / 64 + math.log(17)) / math.log(2))
