"""The log-cosh distribution: it integrates to one, its log density at known points by hand, its
draws follow the density (KS test, variance), and the likelihood is the paper's loss plus a
constant."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import integrate, special, stats

import pyro_vaes as pv
from pyro_vaes.distributions.log_cosh import LogCosh, log_cosh

SHARPNESS = [0.2, 1.0, 3.0, 10.0, 50.0]


def _sech_power(u: float, b: float) -> float:
    """cosh(u)^-b, without overflow."""
    return math.exp(-b * float(log_cosh(torch.tensor(u, dtype=torch.float64))))


@pytest.mark.parametrize("a", SHARPNESS)
def test_density_integrates_to_one(a):
    d = LogCosh(torch.tensor(0.3, dtype=torch.float64), a, 1.5)

    def density(x: float) -> float:
        return float(d.log_prob(torch.tensor(x, dtype=torch.float64)).exp())

    total, _ = integrate.quad(density, -np.inf, np.inf, limit=500)
    assert total == pytest.approx(1.0, abs=1e-7)


@pytest.mark.parametrize("b", [0.05, 0.5, 1.0, 2.0, 7.0])
def test_integral_of_sech_power_is_a_beta_function(b):
    """The normaliser's identity, int cosh(u)^-b du = B(b/2, 1/2), by quadrature (the density
    is even: twice the half line)."""
    half, _ = integrate.quad(_sech_power, 0, np.inf, args=(b,), limit=500)
    assert 2 * half == pytest.approx(special.beta(b / 2, 0.5), rel=1e-7)


def test_log_prob_by_hand():
    # a = 1, s = 1: p(x) = sech(x - mu) / pi (the hyperbolic secant distribution, Z = B(1/2,1/2))
    d = LogCosh(torch.tensor(0.5, dtype=torch.float64), 1.0)
    x = torch.tensor([0.5, 1.5, -3.0], dtype=torch.float64)
    by_hand = torch.tensor(
        [1 / math.pi, 1 / (math.pi * math.cosh(1.0)), 1 / (math.pi * math.cosh(3.5))]
    )
    torch.testing.assert_close(d.log_prob(x).exp(), by_hand.double())
    # a = 2, s = 3 at x = mu + 3: -(1/2) log cosh(2) - log(B(1/4, 1/2)/2) - log 3
    d = LogCosh(torch.tensor(1.0, dtype=torch.float64), 2.0, 3.0)
    expected = -0.5 * math.log(math.cosh(2.0)) - math.log(special.beta(0.25, 0.5) / 2) - math.log(3)
    assert float(d.log_prob(torch.tensor(4.0, dtype=torch.float64))) == pytest.approx(expected)


def test_log_cosh_is_stable_for_large_arguments():
    u = torch.tensor([0.0, 1.0, -30.0, 1e4, -1e30])
    expected = torch.tensor([0.0, math.log(math.cosh(1.0)), 30.0 - math.log(2), 1e4 - math.log(2)])
    torch.testing.assert_close(log_cosh(u)[:4], expected)
    assert float(log_cosh(u)[4]) == pytest.approx(1e30)


def _z_cdf(u: np.ndarray, b: float) -> np.ndarray:
    """CDF of U = (1/2) logit X, X ~ Beta(b/2, b/2), whose density is cosh(u)^-b / B(b/2, 1/2):
    P(U <= u) = I_{sigmoid(2u)}(b/2, b/2), taken on the left half line (U is symmetric), where
    sigmoid(2u) does not round to 1."""
    u = np.asarray(u, dtype=np.float64)
    left = special.betainc(b / 2, b / 2, special.expit(-2 * np.abs(u)))
    return np.where(u <= 0, left, 1.0 - left)


def test_z_cdf_is_the_integral_of_the_density():
    for b, u in ((0.1, -3.0), (1.0, 0.7), (4.0, 0.2)):
        mass, _ = integrate.quad(_sech_power, -np.inf, u, args=(b,), limit=500)
        assert float(_z_cdf(u, b)) == pytest.approx(mass / special.beta(b / 2, 0.5), rel=1e-6)


@pytest.mark.parametrize("a", SHARPNESS)
def test_draws_follow_the_density(a):
    torch.manual_seed(0)
    d = LogCosh(torch.tensor(0.3, dtype=torch.float64), a, 1.5)
    x = d.sample((20000,)).numpy()
    assert np.isfinite(x).all()
    ks = stats.kstest(x, lambda t: _z_cdf(a * (t - 0.3) / 1.5, 1 / a))
    assert ks.pvalue > 0.01
    # the variance against s^2 psi_1(1/(2a)) / (2 a^2)
    var = 1.5**2 * special.polygamma(1, 0.5 / a) / (2 * a**2)
    assert float(d.variance) == pytest.approx(var)
    assert float(x.var()) == pytest.approx(var, rel=0.06)
    assert float(x.mean()) == pytest.approx(0.3, abs=4 * math.sqrt(var / len(x)))


def test_sharp_draws_stay_finite_in_single_precision():
    """a = 10: a Gamma(0.05) draw underflows float32 about once in a hundred; ours do not, and
    they follow the density."""
    torch.manual_seed(1)
    x = LogCosh(torch.zeros(()), 10.0).sample((100000,))
    assert x.dtype == torch.float32 and torch.isfinite(x).all()
    assert stats.kstest(x.double().numpy(), lambda t: _z_cdf(10.0 * t, 0.1)).pvalue > 0.01


def test_draws_are_reparameterised():
    loc = torch.tensor(0.0, requires_grad=True)
    scale = torch.tensor(2.0, requires_grad=True)
    torch.manual_seed(0)
    x = LogCosh(loc, 1.0, scale).rsample((1000,))
    x.abs().mean().backward()
    # E|x| = s E|U|: d/ds = E|U| > 0, and d/dloc of the mean of |x| is about 0 at loc = 0
    assert float(scale.grad) == pytest.approx(float(x.detach().abs().mean()) / 2.0, rel=1e-5)
    assert abs(float(loc.grad)) < 0.1


def test_likelihood_is_the_papers_loss_plus_the_normaliser():
    lik = pv.likelihoods.get("logcosh")
    assert isinstance(lik, pv.likelihoods.LogCosh) and lik.sharpness == 10.0
    x_hat = torch.tensor([[0.2, 0.5, 0.9]])
    x = torch.tensor([[0.0, 0.5, 1.0]])
    a = 10.0
    loss = sum((1 / a) * math.log(math.cosh(a * float(r))) for r in (x - x_hat)[0])
    log_z = math.log(special.beta(0.5 / a, 0.5) / a)
    assert float(lik(x_hat, 1).log_prob(x)) == pytest.approx(-loss - 3 * log_z, rel=1e-5)
    torch.testing.assert_close(lik.mean(x_hat), x_hat)
    with pytest.raises(ValueError, match="sharpness"):
        pv.likelihoods.LogCosh(sharpness=0.0)
