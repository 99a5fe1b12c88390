"""PIWAE and CIWAE: their limits are IWAE, MIWAE and the ELBO draw for draw, CIWAE is the
weighted sum of the two bounds written out by hand, and PIWAE routes the IWAE gradient to the
generative network and the MIWAE gradient to the inference network."""

from __future__ import annotations

import math

import pyro
import pytest
import torch

import pyro_vaes as pv
from pyro_vaes.objectives import CIWAE, IWAE, MIWAE, PIWAE
from pyro_vaes.objectives.importance import log_weights, plate_layout
from tests.linear_gaussian import draw, model, rough_guide


@pytest.fixture
def x() -> torch.Tensor:
    return draw(30)


def _bound(objective, x, seed=3):
    objective.bound(model, rough_guide, x)  # the plate layout, cached
    pyro.set_rng_seed(seed)
    return objective.bound(model, rough_guide, x)


def test_ciwae_limits_are_the_elbo_and_iwae(x):
    torch.testing.assert_close(_bound(CIWAE(6, beta=1.0), x), _bound(MIWAE(6, 1), x))
    torch.testing.assert_close(_bound(CIWAE(6, beta=0.0), x), _bound(IWAE(6), x))


def test_ciwae_is_beta_elbo_plus_one_minus_beta_iwae_of_the_same_draws(x):
    nesting, data_dim = plate_layout(model, rough_guide, (x,), {})
    pyro.set_rng_seed(3)
    log_w, _ = log_weights(model, rough_guide, (x,), {}, 5, nesting, data_dim)
    by_hand = 0.3 * log_w.mean(0) + 0.7 * (torch.logsumexp(log_w, 0) - math.log(5))
    torch.testing.assert_close(_bound(CIWAE(5, beta=0.3), x), by_hand)
    # Jensen: the ELBO part lies below the IWAE part for every datapoint
    assert (log_w.mean(0) < torch.logsumexp(log_w, 0) - math.log(5)).all()


def test_piwae_value_is_the_iwae_bound_of_all_draws(x):
    torch.testing.assert_close(_bound(PIWAE(3, 4), x), _bound(IWAE(12), x))


@pytest.mark.parametrize("bad", [-0.1, 1.5, True])
def test_ciwae_refuses_beta_outside_the_unit_interval(bad):
    with pytest.raises(ValueError, match="beta"):
        CIWAE(4, beta=bad)


def _vae(**options):
    torch.manual_seed(0)
    return pv.variants.build(
        "vae", (6,), latent_dim=2, hidden=(8,), likelihood="gaussian", **options
    )


def _grads(objective, vae, x, seed=7):
    """The gradient of ``objective``'s loss at a fixed seed, by parameter name."""
    objective.loss(vae.model, vae.guide, x)  # the plate layout, cached: same draws for all
    vae.zero_grad(set_to_none=True)
    pyro.set_rng_seed(seed)
    value = objective.differentiable_loss(vae.model, vae.guide, x)
    value.backward()
    grads = {n: p.grad.clone() for n, p in vae.named_parameters() if p.grad is not None}
    return float(value.detach()), grads


@pytest.fixture
def data() -> torch.Tensor:
    return torch.randn(16, 6, generator=torch.Generator().manual_seed(4))


def test_piwae_routes_iwae_to_the_decoder_and_miwae_to_the_encoder(data):
    vae = _vae()
    value, piwae = _grads(PIWAE(3, 4), vae, data)
    iwae_value, iwae = _grads(IWAE(12), vae, data)
    _, miwae = _grads(MIWAE(3, 4), vae, data)
    assert value == pytest.approx(iwae_value, rel=1e-6)
    decoder = [n for n in piwae if n.startswith("decoder.")]
    guide = [n for n in piwae if n.startswith(("encoder.", "posterior."))]
    assert decoder and guide and set(piwae) == set(decoder) | set(guide)
    for n in decoder:
        torch.testing.assert_close(piwae[n], iwae[n])
    for n in guide:
        torch.testing.assert_close(piwae[n], miwae[n])
    # the two objectives do differ, so the routing is seen
    assert any(not torch.allclose(iwae[n], miwae[n], rtol=1e-3) for n in guide)


def test_piwae_with_one_group_is_iwae_in_value_and_gradient(data):
    vae = _vae()
    value, piwae = _grads(PIWAE(1, 5), vae, data)
    iwae_value, iwae = _grads(IWAE(5), vae, data)
    assert value == pytest.approx(iwae_value, rel=1e-6)
    assert set(piwae) == set(iwae)
    for n in piwae:
        torch.testing.assert_close(piwae[n], iwae[n])


def test_piwae_with_single_draw_groups_trains_the_encoder_on_the_elbo(data):
    """PIWAE(T, 1): the inference network gets the gradient of the T-draw ELBO (MIWAE(T, 1))."""
    vae = _vae()
    _, piwae = _grads(PIWAE(6, 1), vae, data)
    _, elbo = _grads(MIWAE(6, 1), vae, data)
    for n in piwae:
        if n.startswith(("encoder.", "posterior.")):
            torch.testing.assert_close(piwae[n], elbo[n])


def test_piwae_routes_by_path_the_vampprior_pseudo_inputs_get_the_iwae_gradient(data):
    """The VampPrior's pseudo-inputs live in the model (the prior), though they run through the
    guide's encoder: they get the IWAE gradient."""
    vae = _vae(prior="vamp", components=3)
    _, piwae = _grads(PIWAE(2, 3), vae, data)
    _, iwae = _grads(IWAE(6), vae, data)
    pseudo = [n for n in piwae if n.startswith("prior.")]
    assert pseudo
    for n in pseudo:
        torch.testing.assert_close(piwae[n], iwae[n])
