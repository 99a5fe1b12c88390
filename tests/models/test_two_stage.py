"""The two-stage VAE: the second stage, fitted to codes that do not fill the standard normal,
draws codes that match them far better than N(0, I) does; sampling goes through it once fitted;
it is part of the state."""

from __future__ import annotations

import pytest
import torch
from torch import distributions as D

import pyro_vaes as pv
from pyro_vaes.models.two_stage import TwoStageVAE
from pyro_vaes.objectives import mmd


@pytest.fixture(autouse=True)
def _one_thread():
    """Small networks: a second intra-op thread only waits for a busy core."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _adam(params):
    return torch.optim.Adam(params, lr=1e-2)


def _build(**options) -> TwoStageVAE:
    torch.manual_seed(0)
    model = pv.variants.build(
        "two_stage_vae", (1, 8, 8), latent_dim=2, hidden=(16,), second_hidden=64, **options
    )
    assert isinstance(model, TwoStageVAE)
    return model


def test_second_stage_matches_the_codes_better_than_the_prior():
    # an aggregate posterior that does not fill N(0, I): shifted, narrow, correlated
    codes_law = D.MultivariateNormal(
        torch.tensor([1.0, -0.5]), scale_tril=torch.tensor([[0.5, 0.0], [0.3, 0.2]])
    )
    torch.manual_seed(1)
    codes, held_out = codes_law.sample((2000,)), codes_law.sample((1000,))
    model = _build()
    model.fit_codes(codes, epochs=60, batch_size=100, seed=0, optim=_adam)
    torch.manual_seed(2)
    ours = model.sample_codes(2000)
    prior = torch.randn(2000, 2)
    ours_mmd, prior_mmd = float(mmd(ours, held_out)), float(mmd(prior, held_out))
    assert ours_mmd < 0.1 * prior_mmd, (ours_mmd, prior_mmd)
    # the first two moments: the codes' mean (1, -0.5) and variances (0.25, 0.13)
    torch.testing.assert_close(ours.mean(0), held_out.mean(0), atol=0.05, rtol=0)
    torch.testing.assert_close(ours.var(0), held_out.var(0), atol=0, rtol=0.2)
    assert float(model.second.likelihood.scale) < 0.5  # gamma learned down from 1


def test_sampling_goes_through_the_second_stage_once_fitted(digits):
    model = _build().eval()
    torch.manual_seed(0)
    before = model.sample_codes(5)
    torch.manual_seed(0)
    torch.testing.assert_close(before, model.prior().sample((5,)))
    model.fit_second_stage(digits.x_train[:300], epochs=1, batch_size=100)
    assert bool(model.second_fitted) and model.sample(4).shape == (4, *digits.shape)
    torch.manual_seed(0)
    u = torch.randn(5, 2)
    torch.manual_seed(0)
    torch.testing.assert_close(model.sample_codes(5), model.second.decoder(u))
    # the second stage is part of the state
    fresh = _build()
    fresh.load_state_dict(model.state_dict())
    assert bool(fresh.second_fitted)
    torch.manual_seed(0)
    torch.testing.assert_close(fresh.sample_codes(5), model.second.decoder(u))
