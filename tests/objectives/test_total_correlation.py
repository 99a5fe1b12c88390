"""The total-correlation ELBO: the decomposition adds up to the ELBO, the TC estimate is about
zero for a factorised aggregate posterior and clearly positive for a correlated one, for both
estimators."""

from __future__ import annotations

import pyro
import pyro.distributions as dist
import pytest
import torch

import pyro_vaes as pv
from pyro_vaes.objectives import TCELBO
from pyro_vaes.objectives.elbo import traces
from pyro_vaes.objectives.total_correlation import log_importance_weights


@pytest.mark.parametrize("estimator", ["mss", "mws"])
def test_unit_weights_recover_the_elbo(digits, small_vae, estimator):
    x = digits.x_train[:64]
    objective = TCELBO(1.0, 1.0, 1.0, estimator=estimator, dataset_size=len(digits.x_train))
    pyro.set_rng_seed(0)
    model_tr, guide_tr = traces(small_vae.model, small_vae.guide, (x,), {})
    t = objective.terms(model_tr, guide_tr)
    q, p = guide_tr.nodes["z"], model_tr.nodes["z"]
    mc_kl = q["fn"].log_prob(q["value"]) - p["fn"].log_prob(q["value"])
    torch.testing.assert_close(t["mi"] + t["tc"] + t["dwkl"], mc_kl, atol=1e-4, rtol=1e-5)
    pyro.set_rng_seed(0)
    ours = objective.loss(small_vae.model, small_vae.guide, x)
    pyro.set_rng_seed(0)
    trace_elbo = pyro.infer.Trace_ELBO().loss(small_vae.model, small_vae.guide, x)
    assert ours == pytest.approx(trace_elbo, rel=1e-5)


def _toy(correlated: bool, n: int = 2000):
    """Posteriors q(z|x_n) = N(mu_n, 0.5^2) with the means of the two coordinates independent
    (a factorised aggregate posterior) or equal (a correlated one)."""
    gen = torch.Generator().manual_seed(0)
    mu = torch.rand(n, 2, generator=gen) * 4 - 2
    if correlated:
        mu[:, 1] = mu[:, 0]

    def model(idx):
        with pyro.plate("data", idx.shape[0]):
            pyro.sample("z", dist.Normal(torch.zeros(2), 1.0).to_event(1))

    def guide(idx):
        with pyro.plate("data", idx.shape[0]):
            pyro.sample("z", dist.Normal(mu[idx], 0.5).to_event(1))

    return model, guide, n


@pytest.mark.parametrize("estimator", ["mss", "mws"])
def test_tc_is_zero_for_a_factorised_aggregate_and_positive_otherwise(estimator):
    torch.manual_seed(0)
    tcs = {}
    for correlated in (False, True):
        model, guide, n = _toy(correlated)
        objective = TCELBO(estimator=estimator, dataset_size=n)
        values = []
        for _ in range(5):
            idx = torch.randperm(n)[:500]
            values.append(objective.terms(*traces(model, guide, (idx,), {}))["tc"].mean())
        tcs[correlated] = float(torch.stack(values).mean())
    assert abs(tcs[False]) < 0.15, tcs
    assert tcs[True] > 0.3, tcs  # z1 and z2 share their mean: about 0.6 nats of TC


def test_importance_weights_sum_to_one_per_row():
    """Each row estimates q(z_i) = (1/N) sum_n q(z_i | x_n): its weights sum to one, and the
    stratified scheme gives the datapoint's own term 1/N."""
    for stratified in (True, False):
        w = log_importance_weights(10, 1000, stratified=stratified).exp()
        torch.testing.assert_close(w.sum(1), torch.ones(10), atol=2e-3, rtol=0)
    assert torch.allclose(
        log_importance_weights(10, 1000, True).exp().diagonal(), torch.full((10,), 1e-3)
    )
    with pytest.raises(ValueError):
        log_importance_weights(1, 10, stratified=True)


def test_fit_supplies_the_dataset_size(digits, small_vae):
    objective = TCELBO(beta=4.0)
    history = pv.fit(
        small_vae.model, small_vae.guide, digits.x_train, epochs=2, loss=objective, progress=False
    )
    assert objective.dataset_size == len(digits.x_train)
    assert history.loss[1] < history.loss[0]


def test_refuses_missing_dataset_size_and_bad_settings(digits, small_vae):
    with pytest.raises(ValueError, match="dataset size"):
        TCELBO().loss(small_vae.model, small_vae.guide, digits.x_train[:8])
    with pytest.raises(ValueError, match="estimator"):
        TCELBO(estimator="exact")
    with pytest.raises(ValueError):
        TCELBO(beta=-1.0)
