"""Ex-post samplers: on codes from a known 2-D mixture the Gaussian mixture and the masked
autoregressive flow score held-out codes close to the truth and far above the prior, and their
draws have the codes' mean and covariance; ``pyro-vaes sample --sampler``."""

from __future__ import annotations

import json

import pyro
import pytest
import torch
from torch import distributions as D

import pyro_vaes as pv
from pyro_vaes.app import cli, runs
from pyro_vaes.models import expost
from tests.app.test_run_folder import refused_unchanged, write_run


@pytest.fixture(autouse=True)
def _one_thread():
    """The flows here are tiny: a second intra-op thread only waits for a busy core (on a
    shared two-core machine it makes a four-second fit take a minute)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _truth() -> D.MixtureSameFamily:
    means = torch.tensor([[-1.5, 0.0], [1.5, 1.0]])
    tril = torch.tensor([[0.6, 0.0], [0.3, 0.5]]).expand(2, 2, 2)
    return D.MixtureSameFamily(
        D.Categorical(torch.tensor([0.4, 0.6])), D.MultivariateNormal(means, scale_tril=tril)
    )


@pytest.fixture(scope="module")
def codes() -> tuple[torch.Tensor, torch.Tensor]:
    torch.manual_seed(1)
    truth = _truth()
    return truth.sample((2000,)), truth.sample((1000,))


@pytest.mark.parametrize(
    ("name", "options", "gap"),
    [("gmm", {"components": 2}, 0.02), ("maf", {"steps": 500}, 0.06)],
)
def test_samplers_fit_a_known_mixture(codes, name, options, gap):
    train, test = codes
    torch.manual_seed(0)
    sampler = expost.fit(name, train, **options)
    with torch.no_grad():
        fitted = float(sampler.log_prob(test).mean())
    exact = float(_truth().log_prob(test).mean())  # -2.30 nats
    prior = float(D.MultivariateNormal(torch.zeros(2), torch.eye(2)).log_prob(test).mean())
    assert fitted > prior + 1.0  # the prior: -3.56 nats
    assert exact - gap < fitted < exact + 0.02  # held out: no better than the truth
    draws = sampler.sample(20000)
    assert draws.shape == (20000, 2) and not draws.requires_grad
    torch.testing.assert_close(draws.mean(0), train.mean(0), atol=0.06, rtol=0)
    torch.testing.assert_close(torch.cov(draws.T), torch.cov(train.T), atol=0.1, rtol=0.05)


def test_gmm_sampler_is_the_raes_mixture(codes):
    """The RAE's ex-post mixture and the gmm sampler are one fit (the same EM, same seed)."""
    train, _ = codes
    sampler = expost.fit("gmm", train, components=2, seed=3)
    logits, loc, _ = expost.fit_gaussian_mixture(train, 2, seed=3)
    torch.testing.assert_close(sampler.loc, loc.float())
    torch.testing.assert_close(sampler.logits, logits.float())
    # the state is in buffers: it survives a state_dict round trip
    fresh = expost.GaussianMixtureSampler(2, components=2)
    fresh.load_state_dict(sampler.state_dict())
    torch.testing.assert_close(fresh.log_prob(train[:5]), sampler.log_prob(train[:5]))


def test_names_and_bad_codes_are_refused(codes):
    train, _ = codes
    assert expost.NAMES == ("prior", "gmm", "maf")
    with pytest.raises(ValueError, match="prior"):
        expost.fit("prior", train)
    with pytest.raises(ValueError, match="unknown sampler"):
        expost.fit("kde", train)
    with pytest.raises(ValueError, match=r"\(N, 2\)"):
        expost.GaussianMixtureSampler(2).fit(train[:, :1].expand(-1, 3))
    with pytest.raises(ValueError, match="finite"):
        expost.MAFSampler(2).fit(torch.full((10, 2), float("nan")))
    with pytest.raises(ValueError, match="at least 10"):
        expost.fit("gmm", train[:5])


def test_codes_of_a_model_are_its_encodings(digits):
    vae = pv.variants.build("vae", digits.shape, latent_dim=3, hidden=(16,)).eval()
    x = digits.x_train[:250]
    pyro.set_rng_seed(0)
    codes = expost.codes_of(vae, x, batch_size=100)
    assert codes.shape == (250, 3)
    pyro.set_rng_seed(0)
    torch.testing.assert_close(codes[:100], vae.encode(x[:100]))


@pytest.mark.parametrize("sampler", ["gmm", "maf"])
def test_cli_samples_from_an_expost_density(tmp_path, monkeypatch, sampler):
    run = write_run(tmp_path / "run")
    out = tmp_path / f"{sampler}.png"
    argv = ["sample", str(run), "-n", "16", "--sampler", sampler, "--out", str(out)]
    fitted = []
    fit = expost.fit

    def short_fit(name, codes, seed=0):  # a short flow: its training is tested above
        fitted.append((name, codes.shape))
        return fit(name, codes, seed, **({"steps": 50} if name == "maf" else {}))

    monkeypatch.setattr(expost, "fit", short_fit)
    assert cli.main(argv) == 0
    assert fitted == [(sampler, (1437, 2))]  # the codes of the training images
    assert out.read_bytes().startswith(b"\x89PNG") and out.stat().st_size > 500


def test_cli_refuses_unknown_samplers_and_codes_off_r_d(tmp_path, capsys):
    run = write_run(tmp_path / "run")
    refused_unchanged(["sample", run, "--sampler", "kde"], capsys, tmp_path, "--sampler", "kde")
    svae = pv.variants.build("svae", (1, 8, 8), latent_dim=3, hidden=(16,))
    with pytest.raises(ValueError, match="sphere"):
        cli._check_sampler(svae, run, "gmm")
    cli._check_sampler(svae, run, "prior")  # the prior is always there
    cvae = pv.variants.build("cvae", (1, 8, 8), latent_dim=3, hidden=(16,))
    with pytest.raises(ValueError, match="conditional"):
        cli._check_sampler(cvae, run, "maf")


def test_cli_refuses_an_expost_sampler_for_data_that_are_not_images(tmp_path, capsys):
    run = write_run(tmp_path / "run")
    config = json.loads((run / runs.CONFIG).read_text())
    config["data"], config["data_shape"] = "tree", [50]
    (run / runs.CONFIG).write_text(json.dumps(config))
    refused_unchanged(["sample", run, "--sampler", "gmm"], capsys, tmp_path, "not images")
