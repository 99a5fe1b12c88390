"""Discrete latent sites enumerated by TraceEnum_ELBO go through fit, evaluate and
posterior_predictive. The model is a mixture of linear Gaussians, where log p(x) and the
posterior are exact: c ~ Cat(pi), z ~ N(0, I), x | c, z ~ N(mu_c + W z, sigma^2 I)."""

from __future__ import annotations

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro.infer import TraceEnum_ELBO, config_enumerate

import pyro_vaes as pv

D, K, C = 2, 1, 3
SIGMA = 0.3
W = torch.tensor([[1.0], [0.5]])
MU = torch.tensor([[-3.0, 0.0], [3.0, 0.0], [0.0, 4.0]])
LOGITS = torch.tensor([0.0, 0.5, -0.5])
COV = W @ W.T + SIGMA**2 * torch.eye(D)


def model(x, logits=None):
    logits = pyro.param("logits", LOGITS.clone()) if logits is None else logits
    with pyro.plate("data", x.shape[0]):
        c = pyro.sample("c", dist.Categorical(logits=logits))
        z = pyro.sample("z", dist.Normal(torch.zeros(K), 1.0).to_event(1))
        pyro.sample("x", dist.Normal(MU[c] + z @ W.T, SIGMA).to_event(1), obs=x)


def exact_log_px(x, logits=LOGITS):
    comp = dist.MultivariateNormal(MU, COV).log_prob(x[:, None, :])  # (N, C)
    return torch.logsumexp(comp + logits.log_softmax(-1), -1)


@config_enumerate
def exact_guide(x, logits=None):
    logits = pyro.param("logits", LOGITS.clone()) if logits is None else logits
    comp = dist.MultivariateNormal(MU, COV).log_prob(x[:, None, :])
    post_c = comp + logits.detach().log_softmax(-1)  # p(c | x)
    prec = torch.eye(K) + W.T @ W / SIGMA**2
    cov = torch.linalg.inv(prec)
    with pyro.plate("data", x.shape[0]):
        c = pyro.sample("c", dist.Categorical(logits=post_c))
        mean = (x - MU[c]) @ W @ cov.T / SIGMA**2
        pyro.sample("z", dist.MultivariateNormal(mean, cov))


def draw(n, seed=0):
    gen = torch.Generator().manual_seed(seed)
    c = torch.multinomial(LOGITS.softmax(-1), n, replacement=True, generator=gen)
    z = torch.randn(n, K, generator=gen)
    return MU[c] + z @ W.T + SIGMA * torch.randn(n, D, generator=gen)


X = draw(400)


def test_enumerated_objective_equals_the_sum_over_the_discrete_site():
    """TraceEnum_ELBO sums c out of the guide exactly; with the exact posterior the bound is
    log p(x) up to the Monte Carlo draw of z (which is exact here too)."""
    elbo = TraceEnum_ELBO(max_plate_nesting=1)
    loss = elbo.differentiable_loss(model, exact_guide, X[:50])
    torch.testing.assert_close(loss, -exact_log_px(X[:50]).sum(), rtol=1e-4, atol=1e-3)


@pytest.mark.slow
def test_fit_with_traceenum_learns_the_mixture_weights():
    start = torch.zeros(C)
    pyro.get_param_store()["logits"] = start

    def m(x):
        return model(x)

    def g(x):
        return exact_guide(x)

    pv.fit(
        m,
        g,
        X,
        loss=TraceEnum_ELBO(max_plate_nesting=1),
        epochs=30,
        seed=0,
        progress=False,
        optim=pyro.optim.Adam({"lr": 0.05}),
    )
    learned = pyro.param("logits").detach().softmax(-1)
    counts = torch.stack(
        [
            dist.MultivariateNormal(MU, COV).log_prob(X[:, None, :]).argmax(-1).eq(k).float().mean()
            for k in range(C)
        ]
    )
    torch.testing.assert_close(learned, counts, atol=0.05, rtol=0)


def test_evaluate_and_predictive_sample_the_enumerated_site():
    ll = pv.evaluate.log_likelihood(model, exact_guide, X[:30], num_samples=10)
    torch.testing.assert_close(ll, exact_log_px(X[:30]), atol=1e-4, rtol=0)
    idata = pv.posterior_predictive(model, exact_guide, X[:30], num_samples=20, prior=False)
    assert sorted(idata["posterior"].data_vars) == ["c", "z"]
    c = idata["posterior"]["c"].values  # (1, 20, 30, 1): categories drawn from p(c | x)
    assert set(c.ravel().tolist()) <= {0, 1, 2}
    assert idata["posterior"]["z"].shape == (1, 20, 30, K)


def test_a_model_side_enumerated_site_is_named_in_evaluate():
    @config_enumerate
    def marginal_model(x):
        model(x)

    def z_only_guide(x):
        with pyro.plate("data", x.shape[0]):
            pyro.sample("z", dist.Normal(torch.zeros(K), 1.0).to_event(1))

    with pytest.raises(ValueError, match="'c'"):
        pv.evaluate.log_likelihood(marginal_model, z_only_guide, X[:10], num_samples=4)
