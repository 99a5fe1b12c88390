"""posterior_predictive: groups, dims and shapes, netcdf round trip, agreement with
evaluate.scores, draws that match the exact posterior and prior of the linear-Gaussian model,
and posterior predictive checks that catch a mis-specified likelihood."""

from __future__ import annotations

import math

import arviz as az
import numpy as np
import pyro
import pyro.distributions as dist
import pytest
import torch

import pyro_vaes as pv
from pyro_vaes import checks, likelihoods
from pyro_vaes.analysis.predictive import log_marginal, posterior_predictive
from tests import linear_gaussian as lg


@pytest.fixture
def trained(digits, small_vae):
    pv.fit(small_vae.model, small_vae.guide, digits.x_train, epochs=3, progress=False)
    return small_vae


def test_groups_dims_shapes_and_netcdf_round_trip(trained, digits, tmp_path):
    x = digits.x_test[:30]
    idata = posterior_predictive(trained.model, trained.guide, x, num_samples=7, batch_size=8)
    assert set(idata.groups()) == {
        "posterior",
        "posterior_predictive",
        "log_likelihood",
        "sample_stats",
        "observed_data",
        "prior",
        "prior_predictive",
    }
    z = idata["posterior"]["z"]
    assert z.dims == ("chain", "draw", "datapoint", "z_dim") and z.shape == (1, 7, 30, 4)
    image_dims = ("chain", "draw", "datapoint", "channel", "row", "col")
    for group in ("posterior_predictive", "prior_predictive"):
        assert idata[group]["x"].dims == image_dims and idata[group]["x"].shape == (
            1,
            7,
            30,
            1,
            8,
            8,
        )
    assert idata["prior"]["z"].shape == (1, 7, 30, 4)
    assert idata["observed_data"]["x"].dims == image_dims[2:]
    np.testing.assert_array_equal(idata["observed_data"]["x"].values, x.numpy())
    assert idata["log_likelihood"]["x"].dims == ("chain", "draw", "datapoint")
    assert idata["sample_stats"]["log_weight"].shape == (1, 7, 30)
    # binary data, Bernoulli replications
    assert set(np.unique(idata["posterior_predictive"]["x"].values)) <= {0.0, 1.0}

    path = tmp_path / "idata.nc"
    idata.to_netcdf(str(path))
    back = az.from_netcdf(str(path))
    assert set(back.groups()) == set(idata.groups())
    for group in idata.groups():
        for name, var in idata[group].data_vars.items():
            np.testing.assert_array_equal(back[group][name].values, var.values)
            assert back[group][name].dims == var.dims


def test_pointwise_log_likelihood_agrees_with_evaluate(trained, digits):
    x = digits.x_test[:40]
    pyro.set_rng_seed(11)
    idata = posterior_predictive(trained.model, trained.guide, x, 50, batch_size=40, prior=False)
    pyro.set_rng_seed(11)
    s = pv.evaluate.scores(trained.model, trained.guide, x, 50, chunk_size=50, batch_size=40)
    # the same draws: the importance-sampled log p(x) and the reconstruction term agree exactly
    np.testing.assert_allclose(log_marginal(idata), s.log_likelihood.numpy(), rtol=1e-6)
    ll = idata["log_likelihood"]["x"].values.mean((0, 1))
    np.testing.assert_allclose(-ll, s.reconstruction.numpy(), rtol=1e-5)
    # fresh draws: agreement within Monte Carlo error
    fresh = posterior_predictive(trained.model, trained.guide, x, 400, prior=False)
    assert np.abs(log_marginal(fresh) - s.log_likelihood.numpy()).mean() < 0.5


def test_waic_and_loo_run_on_the_pointwise_log_likelihood(trained, digits):
    idata = posterior_predictive(trained.model, trained.guide, digits.x_test[:50], 40, prior=False)
    with pytest.warns(UserWarning):  # local latents: arviz flags the estimates, as documented
        waic = az.waic(idata, pointwise=True)
        loo = az.loo(idata, pointwise=True)
    assert math.isfinite(waic.elpd_waic) and math.isfinite(loo.elpd_loo)
    assert waic.waic_i.shape == (50,) and loo.pareto_k.shape == (50,)


def test_draws_match_the_exact_posterior_and_prior():
    x = lg.draw(3)
    idata = posterior_predictive(lg.model, lg.exact_guide, x, num_samples=20000)
    mean, cov = lg.posterior(x)
    z = torch.from_numpy(idata["posterior"]["z"].values[0])  # (S, N, K)
    se = (cov.diagonal() / 20000).sqrt()
    assert ((z.mean(0) - mean).abs() < 4 * se).all()
    np.testing.assert_allclose(torch.cov(z[:, 0].T).numpy(), cov.numpy(), atol=0.03)
    # prior and prior predictive: z ~ N(0, I), x ~ N(B, W W^T + sigma^2 I)
    z0 = torch.from_numpy(idata["prior"]["z"].values[0, :, 0])
    np.testing.assert_allclose(torch.cov(z0.T).numpy(), np.eye(lg.K), atol=0.05)
    x0 = torch.from_numpy(idata["prior_predictive"]["x"].values[0, :, 0])
    marginal = lg.W @ lg.W.T + lg.SIGMA**2 * torch.eye(lg.D)
    np.testing.assert_allclose(
        torch.cov(x0.T).numpy(), marginal.numpy(), atol=0.1 * marginal.abs().max()
    )
    # log_weight of the exact posterior is log p(x) for every draw
    log_w = idata["sample_stats"]["log_weight"].values[0]
    np.testing.assert_allclose(log_w, lg.exact_log_px(x).expand(20000, 3).numpy(), rtol=1e-4)


def _linear_gaussian(sigma: float):
    """The linear-Gaussian model with noise ``sigma`` and its exact posterior as guide."""

    def model(x):
        with pyro.plate("data", x.shape[0]):
            z = pyro.sample("z", dist.Normal(torch.zeros(lg.K), 1.0).to_event(1))
            pyro.sample("x", dist.Normal(z @ lg.W.T + lg.B, sigma).to_event(1), obs=x)

    def guide(x):
        prec = torch.eye(lg.K) + lg.W.T @ lg.W / sigma**2
        cov = torch.linalg.inv(prec)
        mean = (x - lg.B) @ lg.W @ cov.T / sigma**2
        with pyro.plate("data", x.shape[0]):
            pyro.sample("z", dist.MultivariateNormal(mean, cov))

    return model, guide


def _extreme(p: np.ndarray) -> float:
    return float(np.mean((p < 0.05) | (p > 0.95)))


def test_pvalues_catch_a_noise_scale_far_too_small_on_the_exact_model():
    x = lg.draw(300)
    # T(x): squared distance of x from the plane B + span(W) that the noise alone leaves
    q = torch.linalg.qr(lg.W)[0]
    off_plane = {"residual": lambda v: ((v - lg.B) - (v - lg.B) @ q @ q.T).pow(2).sum(-1)}
    p_true = checks.pvalues(
        checks.statistics(posterior_predictive(*_linear_gaussian(lg.SIGMA), x, 200), off_plane)
    )["residual"]
    p_small = checks.pvalues(
        checks.statistics(posterior_predictive(*_linear_gaussian(0.05), x, 200), off_plane)
    )["residual"]
    assert _extreme(p_true) < 0.2  # about 0.1 for a well-specified model
    assert np.mean(p_small < 0.05) > 0.9  # the data are far rougher than any replication


@pytest.mark.slow
def test_pvalues_catch_a_vae_whose_fixed_sigma_is_far_too_small(digits, grey_digits):
    x_test = grey_digits.x_test[:100]
    extreme = {}
    for name, lik in (
        ("too small", likelihoods.Gaussian(0.01)),
        ("learned", likelihoods.Gaussian(0.3, learn_scale=True)),
    ):
        torch.manual_seed(0)
        vae = pv.variants.build("vae", digits.shape, latent_dim=4, hidden=(128,))
        vae.likelihood = lik
        pv.fit(vae.model, vae.guide, grey_digits.x_train, epochs=10, progress=False)
        idata = posterior_predictive(vae.model, vae.guide, x_test, 50, prior=False)
        extreme[name] = _extreme(
            checks.pvalues(checks.statistics(idata, checks.image_statistics()))["pixel_std"]
        )
    assert extreme["too small"] > 0.9
    assert extreme["learned"] < 0.4


def test_mid_p_values_by_hand():
    rep = np.array([[[1.0, 0.0], [2.0, 0.0], [3.0, 5.0], [2.0, 1.0]]])  # (chain, draw, N)
    obs = np.array([2.0, 0.0])
    stat = az.from_dict(
        posterior_predictive={"t": rep}, observed_data={"t": obs}, dims={"t": ["datapoint"]}
    )
    p = checks.pvalues(stat)["t"]
    # datapoint 0: one draw above, two equal -> 1/4 + 1/2 * 2/4; datapoint 1: two above, two equal
    np.testing.assert_allclose(p, [0.5, 0.75])


def _binary_idata(p_true: np.ndarray, p_model: np.ndarray, draws: int = 200) -> az.InferenceData:
    rng = np.random.default_rng(0)
    obs = (rng.random(p_true.shape) < p_true).astype(float)
    rep = (rng.random((1, draws, *p_model.shape)) < p_model).astype(float)
    return az.from_dict(posterior_predictive={"x": rep}, observed_data={"x": obs})


def test_calibration_of_pixel_probabilities():
    p = np.random.default_rng(1).random((400, 1, 8, 8))
    good = checks.calibration(_binary_idata(p, p))
    assert good.ece < 0.02 and good.count.sum() == p.size
    bad = checks.calibration(_binary_idata(p, p**3))  # predictions far too low
    assert bad.ece > 0.15
    assert (bad.observed[bad.count > 0] >= bad.predicted[bad.count > 0] - 0.02).all()
    with pytest.raises(ValueError, match="binary"):
        checks.calibration(
            az.from_dict(posterior_predictive={"x": p[None, None]}, observed_data={"x": p})
        )


@pytest.mark.slow
def test_class_statistic_counts_what_the_classifier_sees(digits, grey_digits):
    clf = pv.classifier.train_classifier(grey_digits.x_train, digits.y_train, epochs=8)
    assert pv.classifier.accuracy(clf, grey_digits.x_test, digits.y_test) > 0.9
    stat = checks.class_statistic(clf)
    x = grey_digits.x_test[:12]
    labels = stat(x.expand(2, 3, *x.shape))  # leading (chain, draw) dims are kept
    assert labels.shape == (2, 3, 12)
    assert torch.equal(labels[1, 2], clf.predict(x))


def test_posterior_predictive_refuses_bad_input(trained, digits):
    with pytest.raises(ValueError, match="num_samples"):
        posterior_predictive(trained.model, trained.guide, digits.x_test[:5], 0)
    with pytest.raises(ValueError, match="no site 'w'"):
        posterior_predictive(trained.model, trained.guide, digits.x_test[:5], 2, latent="w")
    bad = digits.x_test[:5].clone()
    bad[0, 0, 0, 0] = float("nan")
    with pytest.raises(pv.DataError):
        posterior_predictive(trained.model, trained.guide, bad, 2)


def test_classifier_refuses_bad_input(digits, grey_digits):
    x = grey_digits.x_test[:10]
    with pytest.raises(ValueError, match="integer labels"):
        pv.classifier.train_classifier(x, torch.zeros(10))  # float labels
    with pytest.raises(ValueError, match="images"):
        pv.classifier.train_classifier(x.flatten(1), torch.zeros(10, dtype=torch.long))
    bad = x.clone()
    bad[3, 0, 0, 0] = float("nan")
    with pytest.raises(pv.DataError):
        pv.classifier.train_classifier(bad, torch.zeros(10, dtype=torch.long))
