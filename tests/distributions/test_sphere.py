"""von Mises-Fisher and the uniform distribution on the sphere: accuracy against scipy and
mpmath, the closed-form KL against Monte Carlo, sampling, and no NaN at the edges."""

from __future__ import annotations

import math
import warnings

import mpmath
import numpy as np
import pytest
import torch
from torch.distributions import kl_divergence

from pyro_vaes.distributions import HypersphericalUniform, VonMisesFisher, log_bessel_iv

scipy_stats = pytest.importorskip("scipy.stats")

DIMS = [3, 10, 64, 256]
KAPPAS = [1e-4, 1.0, 1e3, 1e5]


def _unit(m: int, seed: int = 0) -> torch.Tensor:
    mu = torch.randn(m, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    return mu / mu.norm()


def _mp_log_iv(v: float, x: float) -> float:
    mpmath.mp.dps = 50
    return float(mpmath.log(mpmath.besseli(v, x)))


@pytest.mark.parametrize("v", [0.0, 0.5, 1.0, 4.5, 31.0, 127.0, 511.0])
@pytest.mark.parametrize("x", [1e-4, 0.3, 7.0, 19.9, 20.1, 300.0, 1e5])
def test_log_bessel_matches_mpmath(v, x):
    got = float(log_bessel_iv(v, torch.tensor(x, dtype=torch.float64)))
    ref = _mp_log_iv(v, x)
    assert abs(got - ref) <= 1e-9 * max(1.0, abs(ref))


def _mp_entropy(m: int, k: float) -> float:
    """-log C_m(k) - k A_m(k), in 50-digit arithmetic."""
    mpmath.mp.dps = 50
    v = mpmath.mpf(m) / 2 - 1
    k = mpmath.mpf(k)
    log_c = (
        v * mpmath.log(k)
        - (mpmath.mpf(m) / 2) * mpmath.log(2 * mpmath.pi)
        - mpmath.log(mpmath.besseli(v, k))
    )
    a = mpmath.besseli(v + 1, k) / mpmath.besseli(v, k)
    return float(-log_c - k * a)


@pytest.mark.parametrize("m", DIMS)
@pytest.mark.parametrize("kappa", KAPPAS)
def test_log_prob_and_entropy_match_references(m, kappa):
    mu = _unit(m)
    d = VonMisesFisher(mu, torch.tensor(kappa, dtype=torch.float64))
    z = torch.cat([d.sample((4,)), mu[None]])
    ours_lp, ours_h = d.log_prob(z).numpy(), float(d.entropy())
    assert np.isfinite(ours_lp).all() and math.isfinite(ours_h)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = scipy_stats.vonmises_fisher(mu.numpy(), kappa)
        ref_lp, ref_h = ref.logpdf(z.numpy()), ref.entropy()
    if np.isfinite(ref_lp).all():
        np.testing.assert_allclose(ours_lp, ref_lp, rtol=1e-9, atol=1e-9)
    else:  # scipy fails here (m=256, tiny kappa): the normaliser from mpmath instead
        log_c = (
            (m / 2 - 1) * math.log(kappa)
            - m / 2 * math.log(2 * math.pi)
            - _mp_log_iv(m / 2 - 1, kappa)
        )
        np.testing.assert_allclose(ours_lp, log_c + kappa * (z @ mu).numpy(), rtol=1e-9)
    assert abs(ours_h - _mp_entropy(m, kappa)) < 1e-6 * max(1.0, abs(ours_h))
    if np.isfinite(ref_h):
        assert abs(ours_h - ref_h) < 1e-5 * max(1.0, abs(ref_h))


@pytest.mark.parametrize(("m", "kappa"), [(3, 1.0), (10, 50.0), (64, 5.0)])
def test_closed_form_kl_to_uniform_matches_monte_carlo(m, kappa):
    torch.manual_seed(0)
    q = VonMisesFisher(_unit(m), torch.tensor(kappa, dtype=torch.float64))
    p = HypersphericalUniform(m, dtype=torch.float64)
    z = q.sample((100_000,))
    mc = (q.log_prob(z) - p.log_prob(z)).mean()
    se = (q.log_prob(z) - p.log_prob(z)).std() / math.sqrt(len(z))
    exact = kl_divergence(q, p)
    assert abs(float(mc - exact)) < 4 * float(se) + 1e-6


@pytest.mark.parametrize(("m", "kappa"), [(3, 2.0), (5, 20.0), (64, 100.0)])
def test_samples_have_the_right_mean_and_lie_on_the_sphere(m, kappa):
    torch.manual_seed(1)
    d = VonMisesFisher(_unit(m), torch.tensor(kappa, dtype=torch.float64))
    z = d.rsample((50_000,))
    torch.testing.assert_close(z.norm(dim=-1), torch.ones(50_000, dtype=torch.float64))
    torch.testing.assert_close(z.mean(0), d.mean, atol=0.01, rtol=0)


def test_density_integrates_to_one_on_the_circle_and_sphere():
    # S^1: quadrature over the angle
    theta = torch.linspace(0, 2 * math.pi, 20001, dtype=torch.float64)[:-1]
    z = torch.stack([theta.cos(), theta.sin()], -1)
    d = VonMisesFisher(
        torch.tensor([0.6, 0.8], dtype=torch.float64), torch.tensor(7.0, dtype=torch.float64)
    )
    assert float(d.log_prob(z).exp().sum() * (2 * math.pi / 20000)) == pytest.approx(1.0, abs=1e-9)
    # S^2: importance sampling from the uniform distribution
    torch.manual_seed(2)
    u = HypersphericalUniform(3, dtype=torch.float64)
    z = u.sample((400_000,))
    d = VonMisesFisher(_unit(3), torch.tensor(3.0, dtype=torch.float64))
    assert float((d.log_prob(z) - u.log_prob(z)).exp().mean()) == pytest.approx(1.0, abs=0.01)


@pytest.mark.parametrize("m", DIMS)
@pytest.mark.parametrize("kappa", KAPPAS)
def test_no_nan_or_inf_in_loss_or_gradients(m, kappa):
    torch.manual_seed(3)
    raw_loc = torch.randn(4, m, requires_grad=True)
    raw_kappa = torch.full((4,), math.log(kappa), requires_grad=True)
    q = VonMisesFisher(raw_loc / raw_loc.norm(dim=-1, keepdim=True), raw_kappa.exp())
    z = q.rsample()
    loss = -(q.log_prob(z) + z.sum(-1)).sum() + kl_divergence(q, HypersphericalUniform(m)).sum()
    loss.backward()
    assert torch.isfinite(loss)
    assert torch.isfinite(raw_loc.grad).all() and torch.isfinite(raw_kappa.grad).all()


def test_bad_arguments():
    with pytest.raises(ValueError, match="m >= 2"):
        VonMisesFisher(torch.ones(1), 1.0)
    with pytest.raises(ValueError, match="dim >= 2"):
        HypersphericalUniform(1)
    with pytest.raises(ValueError):
        VonMisesFisher(torch.tensor([1.0, 0.0]), -1.0, validate_args=True)


@pytest.mark.slow
def test_svae_trains_with_the_closed_form_kl(digits):
    import pyro_vaes as pv
    from pyro_vaes.objectives.elbo import negative_elbo, traces

    torch.manual_seed(0)
    vae = pv.variants.build("svae", digits.shape, latent_dim=5, hidden=(64,))
    assert isinstance(vae.posterior, pv.guides.VonMisesFisher)
    x = digits.x_test[:50]
    before = pv.evaluate.log_likelihood(vae.model, vae.guide, x, 50).mean()
    history = pv.fit(vae.model, vae.guide, digits.x_train, epochs=8, progress=False)
    after = pv.evaluate.log_likelihood(vae.model, vae.guide, x, 50).mean()
    assert all(math.isfinite(v) for v in history.loss) and after > before + 5
    # the objective's KL term is the registered closed form, not a Monte Carlo draw
    model_tr, guide_tr = traces(vae.model, vae.guide, (x,), {})
    q, p = guide_tr.nodes["z"]["fn"], model_tr.nodes["z"]["fn"]
    recon = -model_tr.nodes["x"]["fn"].log_prob(x).sum()
    torch.testing.assert_close(negative_elbo(model_tr, guide_tr), recon + kl_divergence(q, p).sum())


def _mp_dmean_resultant_length(m: int, kappa: float) -> float:
    r""":math:`A_m'(\kappa) = 1 - A_m^2 - \frac{m-1}{\kappa} A_m`, in 30-digit arithmetic."""
    mpmath.mp.dps = 30
    v, k = mpmath.mpf(m) / 2 - 1, mpmath.mpf(kappa)
    a = mpmath.besseli(v + 1, k) / mpmath.besseli(v, k)
    return float(1 - a * a - (m - 1) / k * a)


def _grad_of_mean_direction_component(
    m: int, kappa: float, n: int, corrected: bool
) -> tuple[float, float]:
    """Per-draw estimates of d/dkappa E[mu^T z]: their mean and standard error."""
    mu = _unit(m)
    k = torch.full((n,), kappa, dtype=torch.float64, requires_grad=True)
    d = VonMisesFisher(mu, k)
    z = d.rsample()
    f = z @ mu
    surrogate = f + f.detach() * d.rejection_score(z) if corrected else f
    (g,) = torch.autograd.grad(surrogate.sum(), k)
    return float(g.mean()), float(g.std()) / math.sqrt(n)


@pytest.mark.parametrize("m", [3, 10, 64])
@pytest.mark.parametrize("kappa", [0.5, 2.0, 5.0, 20.0, 100.0])
def test_gradient_of_the_mean_resultant_length_is_unbiased(m, kappa):
    torch.manual_seed(4)
    got, se = _grad_of_mean_direction_component(m, kappa, 40_000, corrected=True)
    assert abs(got - _mp_dmean_resultant_length(m, kappa)) < 4 * se


def test_without_the_rejection_correction_the_gradient_is_biased():
    # the reparameterised term alone: about -31% at m=3, kappa=2
    torch.manual_seed(5)
    got, se = _grad_of_mean_direction_component(3, 2.0, 40_000, corrected=False)
    exact = _mp_dmean_resultant_length(3, 2.0)
    assert got < exact - 20 * se and got < 0.8 * exact


def test_rejection_score_is_a_score_and_reaches_pyro_objectives():
    from pyro.distributions.util import is_identically_zero

    torch.manual_seed(6)
    k = torch.full((50_000,), 3.0, dtype=torch.float64, requires_grad=True)
    d = VonMisesFisher(_unit(5), k)
    z = d.rsample()
    (score,) = torch.autograd.grad(d.rejection_score(z).sum(), k)
    # E[d/dkappa log pi(eps | kappa)] = 0 for the density of the accepted draws
    assert abs(float(score.mean())) < 4 * float(score.std()) / math.sqrt(len(score))
    log_prob, score_function, entropy_term = d.score_parts(z)
    torch.testing.assert_close(log_prob, d.log_prob(z))
    torch.testing.assert_close(entropy_term, log_prob)
    assert not is_identically_zero(score_function)
    # a value that is not this distribution's latest draw has no known Beta draw
    assert is_identically_zero(d.score_parts(z.detach().clone()).score_function)


def test_pyro_trace_elbo_carries_the_correction():
    import pyro
    from pyro.infer import Trace_ELBO

    mu = _unit(3)
    kappa = torch.tensor(2.0, dtype=torch.float64, requires_grad=True)
    n = 20_000

    def model():
        with pyro.plate("n", n):
            pyro.sample("z", HypersphericalUniform(3, dtype=torch.float64))
            pyro.factor("f", 0.0 * mu[0])

    def guide():
        with pyro.plate("n", n):
            pyro.sample("z", VonMisesFisher(mu, kappa).expand([n]))

    # the objective's gradient equals d/dkappa (-KL(q || uniform)) = -kappa A'_m(kappa)
    torch.manual_seed(7)
    loss = Trace_ELBO().differentiable_loss(model, guide) / n
    (g,) = torch.autograd.grad(loss, kappa)
    exact = 2.0 * _mp_dmean_resultant_length(3, 2.0)
    assert float(g) == pytest.approx(exact, rel=0.1)


@pytest.mark.slow
def test_svae_objective_gradient_matches_finite_differences(digits):
    """The gradient of the S-VAE's expected negative ELBO with respect to the bias of the
    concentration head (which reaches the objective only through the vMF draw) against a
    central difference of the expectation, with common random numbers."""
    import statistics

    import pyro_vaes as pv
    from pyro_vaes.objectives.elbo import negative_elbo, traces

    torch.manual_seed(0)
    vae = pv.variants.build("svae", digits.shape, latent_dim=3, hidden=(16,)).double()
    reps, n = 2500, 4
    x = digits.x_train[:n].double().repeat(reps, 1, 1, 1)
    bias = vae.posterior.head.bias

    def objective(seed: int) -> tuple[torch.Tensor, torch.Tensor]:
        torch.manual_seed(seed)
        model_tr, guide_tr = traces(vae.model, vae.guide, (x,), {})
        q, z = guide_tr.nodes["z"]["fn"], guide_tr.nodes["z"]["value"]
        recon = -model_tr.nodes["x"]["fn"].log_prob(x).detach()
        # leave-one-out baseline over the copies of each digit: unbiased, lower variance
        per = recon.view(reps, n)
        baseline = ((per.sum(0, keepdim=True) - per) / (reps - 1)).reshape(-1)
        loss = negative_elbo(model_tr, guide_tr) / len(x)  # carries f * grad(l) itself
        # minus the leave-one-out baseline times the score: zero in expectation, less variance
        return loss, loss - (baseline * q.rejection_score(z)).sum() / len(x)

    grads, diffs, delta = [], [], 0.2
    for seed in range(1, 5):
        _, surrogate = objective(seed)
        grads.append(float(torch.autograd.grad(surrogate, bias)[0][-1]))
        with torch.no_grad():
            bias[-1] += delta
            plus = float(objective(seed)[0])
            bias[-1] -= 2 * delta
            minus = float(objective(seed)[0])
            bias[-1] += delta
        diffs.append((plus - minus) / (2 * delta))
    se = math.hypot(statistics.stdev(grads), statistics.stdev(diffs)) / 2
    assert abs(statistics.mean(grads) - statistics.mean(diffs)) < 4 * se + 1e-3


def test_the_projects_elbo_carries_the_correction():
    """objectives.ELBO (fit's default) adds the score part of the vMF site: with the closed-form
    KL to the uniform sphere and a per-datapoint reward f = mu^T z, the gradient of the negative
    ELBO is kappa A'_m(kappa) - A'_m(kappa); the pathwise part alone is 31% off in A'_3(2)."""
    import pyro

    from pyro_vaes.objectives import ELBO

    mu = _unit(3)
    kappa = torch.tensor(2.0, dtype=torch.float64, requires_grad=True)
    n = 40_000

    def model():
        with pyro.plate("n", n):
            z = pyro.sample("z", HypersphericalUniform(3, dtype=torch.float64))
            pyro.factor("f", (z * mu).sum(-1))

    def guide():
        with pyro.plate("n", n):
            pyro.sample("z", VonMisesFisher(mu, kappa).expand([n]))

    torch.manual_seed(11)
    loss = ELBO().differentiable_loss(model, guide) / n
    (g,) = torch.autograd.grad(loss, kappa)
    a_prime = _mp_dmean_resultant_length(3, 2.0)
    assert float(g) == pytest.approx((2.0 - 1.0) * a_prime, rel=0.05)


@pytest.mark.parametrize("kappa", [0.5, 5.0])
def test_the_circle_m_2_samples_with_the_right_mean_and_both_sides(kappa):
    """On the circle the tangent direction is a sign: draws stay on S^1, cover both sides of mu,
    and their mean resultant length is A_2(kappa) = I_1(kappa) / I_0(kappa)."""
    import scipy.special

    torch.manual_seed(3)
    mu = _unit(2)
    z = VonMisesFisher(mu, torch.tensor(kappa, dtype=torch.float64)).rsample((100_000,))
    torch.testing.assert_close(z.norm(dim=-1), torch.ones(100_000, dtype=torch.float64))
    cross = mu[0] * z[:, 1] - mu[1] * z[:, 0]  # the signed side of mu
    assert 0.48 < float((cross > 0).double().mean()) < 0.52
    expected = scipy.special.i1(kappa) / scipy.special.i0(kappa)
    assert float((z @ mu).mean()) == pytest.approx(expected, abs=0.01)


@pytest.mark.parametrize("m", [2, 3, 10])
def test_float32_draws_lie_in_the_support_for_every_direction_and_concentration(m):
    """Draws in float32 pass the sphere support check (|norm - 1| < 10 eps sqrt(m)) that Pyro's
    validation applies when scoring them. Without the final renormalisation one in a million
    draws at m = 2 drifted to 1.8e-6 (the tolerance is 1.7e-6), and an S-VAE's importance-sampled
    evaluation (2,000 images x 1,000 draws) failed."""
    from pyro.distributions import constraints

    torch.manual_seed(5)
    loc = torch.nn.functional.normalize(torch.randn(2000, m), dim=-1)
    loc[0] = -torch.eye(m)[0]  # the reflection's worst case
    kappa = torch.logspace(-1, 4, 2000)
    z = VonMisesFisher(loc, kappa).rsample((500,))
    assert bool(constraints.sphere.check(z).all())
    VonMisesFisher(loc, kappa, validate_args=True).log_prob(z)  # no support error
