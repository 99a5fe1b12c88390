"""IWAE and MIWAE: identities, the bound on a model with exact log p(x), the axes of MIWAE, and
the subsampling pitfall."""

from __future__ import annotations

import itertools
import math

import pyro
import pyro.distributions as dist
import pyro.infer
import pytest
import torch

import pyro_vaes as pv
from pyro_vaes.objectives import ELBO, IWAE, MIWAE
from pyro_vaes.objectives.importance import log_weights, plate_layout
from tests.helpers import seeded_loss
from tests.linear_gaussian import SIGMA, B, W, draw, exact_log_px, model, posterior, rough_guide


@pytest.fixture
def x() -> torch.Tensor:
    return draw(40)


def test_iwae_with_one_draw_is_trace_elbo(x):
    ours = seeded_loss(IWAE(1), model, rough_guide, x)
    pyro.set_rng_seed(11)
    assert ours == pytest.approx(pyro.infer.Trace_ELBO().loss(model, rough_guide, x), rel=1e-6)


def test_miwae_one_bound_is_iwae(x):
    assert seeded_loss(MIWAE(1, 7), model, rough_guide, x) == pytest.approx(
        seeded_loss(IWAE(7), model, rough_guide, x), rel=1e-6
    )


def test_miwae_averages_over_m_and_normalises_over_k(x):
    """MIWAE(2, 3) from the very same six draws, written out: log-mean-exp over K, mean over M."""
    nesting, data_dim = plate_layout(model, rough_guide, (x,), {})
    pyro.set_rng_seed(5)
    log_w, _ = log_weights(model, rough_guide, (x,), {}, 6, nesting, data_dim)
    by_hand = sum(torch.logsumexp(log_w[3 * i : 3 * i + 3], 0) - math.log(3) for i in range(2)) / 2
    objective = MIWAE(2, 3)
    objective.bound(model, rough_guide, x)
    pyro.set_rng_seed(5)
    torch.testing.assert_close(objective.bound(model, rough_guide, x), by_hand)


@pytest.mark.slow
def test_miwae_with_one_draw_per_bound_is_the_elbo(x):
    """MIWAE(M, 1) is the ELBO averaged over M draws: the same expectation as the ELBO."""
    torch.manual_seed(0)
    miwae = torch.stack([MIWAE(1000, 1).bound(model, rough_guide, x) for _ in range(4)]).mean()
    elbo = -ELBO(num_particles=4000).loss(model, rough_guide, x) / len(x)
    assert abs(float(miwae) - elbo) < 0.03
    assert float(IWAE(1000).bound(model, rough_guide, x).mean()) > float(miwae) + 1.0


def test_iwae_bound_tightens_with_k_and_stays_below_log_px(x):
    exact = float(exact_log_px(x).mean())
    torch.manual_seed(0)
    bounds = []
    for k in (1, 4, 32, 256):
        objective = IWAE(k)
        value = torch.stack(
            [objective.bound(model, rough_guide, x).mean() for _ in range(10)]
        ).mean()
        assert float(value) <= exact + 0.01
        bounds.append(float(value))
    assert all(a < b for a, b in itertools.pairwise(bounds)), bounds
    assert exact - bounds[-1] < 0.05


def test_subsample_scale_stays_out_of_the_logsumexp(x):
    """A subsampled data plate scales log densities by N/B. Inside Pyro's RenyiELBO that scale
    enters the log-sum-exp and the value is no longer a bound; IWAE keeps it out: the
    per-datapoint bound is the same with and without subsampling, and the loss weighs each
    datapoint's bound by N/B (so that IWAE(1) is still Pyro's Trace_ELBO, which scales by N/B)."""
    n_total = 1000

    def subsampled_model(xb):
        with pyro.plate("data", n_total, subsample=torch.arange(xb.shape[0])):
            z = pyro.sample("z", dist.Normal(torch.zeros(2), 1.0).to_event(1))

            pyro.sample("x", dist.Normal(z @ W.T + B, SIGMA).to_event(1), obs=xb)

    def subsampled_guide(xb):
        mean, cov = posterior(xb)
        with pyro.plate("data", n_total, subsample=torch.arange(xb.shape[0])):
            pyro.sample("z", dist.Normal(mean, 2.0 * cov.diagonal().sqrt()).to_event(1))

    factor = n_total / x.shape[0]
    objective = IWAE(8)
    objective.bound(subsampled_model, subsampled_guide, x)  # learns the layouts
    objective.bound(model, rough_guide, x)
    pyro.set_rng_seed(11)
    ours = objective.bound(subsampled_model, subsampled_guide, x)
    pyro.set_rng_seed(11)
    torch.testing.assert_close(ours, objective.bound(model, rough_guide, x))
    loss = seeded_loss(IWAE(8), subsampled_model, subsampled_guide, x)
    plain = seeded_loss(IWAE(8), model, rough_guide, x)
    assert loss == pytest.approx(factor * plain, rel=1e-5)
    one = seeded_loss(IWAE(1), subsampled_model, subsampled_guide, x)
    pyro.set_rng_seed(11)
    trace_elbo = pyro.infer.Trace_ELBO().loss(subsampled_model, subsampled_guide, x)
    assert one == pytest.approx(trace_elbo, rel=1e-5)
    pyro.set_rng_seed(11)
    renyi = pyro.infer.RenyiELBO(alpha=0, num_particles=8, vectorize_particles=True)
    scaled = renyi.loss(subsampled_model, subsampled_guide, x)
    assert abs(scaled - loss) > factor  # the scale inside the logsumexp changed the value


@pytest.mark.slow
def test_fit_with_iwae_and_miwae(digits, small_vae):
    for objective in (IWAE(3), MIWAE(2, 2)):
        history = pv.fit(
            small_vae.model,
            small_vae.guide,
            digits.x_train,
            epochs=2,
            loss=objective,
            progress=False,
        )
        assert history.loss[1] < history.loss[0]


@pytest.mark.parametrize(("m", "k"), [(0, 1), (1, 0), (1.5, 2)])
def test_bad_arguments(m, k):
    with pytest.raises(ValueError):
        MIWAE(m, k)


def test_iwae_variants_carry_their_objective():
    assert isinstance(pv.variants.registry["iwae"].loss(), IWAE)
    miwae = pv.variants.registry["miwae"].loss()
    assert isinstance(miwae, MIWAE) and (miwae.m, miwae.k) == (4, 4)
    assert pv.variants.registry["vae"].loss() is None
