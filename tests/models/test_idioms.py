"""The Pyro idioms on every catalogue model: plain SVI with a pyro.optim optimizer, prior
predictive draws with Predictive(model)(None), posterior predictive draws with
Predictive(poutine.uncondition(model), guide=guide), and JitTrace_ELBO refused in one line."""

from __future__ import annotations

import copy

import pyro
import pyro.optim
import pytest
import torch
from pyro import poutine
from pyro.infer import SVI, JitTrace_ELBO, Predictive, Trace_ELBO

import pyro_vaes as pv
from pyro_vaes.models.avb import AVB

NAMES = sorted(pv.variants.registry)


def _data(name, digits):
    """The variant's kind of datapoints: the digits, or the bundled oscillations."""
    images = pv.variants.registry[name].datapoints == "images"
    return digits if images else pv.data.load("oscillator")


def _build(name, digits):
    torch.manual_seed(0)
    variant = pv.variants.registry[name]
    small = {"components": 5} if "components" in variant.defaults else {}
    return pv.variants.build(name, digits.shape, latent_dim=3, hidden=(32,), **small)


def _svi_loss(model):
    """Trace_ELBO, except for a guide without a density (AVB's implicit posterior), which trains
    on its own objective: a critic stands in for log q - log p."""
    return pv.objectives.AVBLoss() if isinstance(model, AVB) else Trace_ELBO()


@pytest.mark.slow
@pytest.mark.parametrize("name", NAMES)
def test_plain_svi_trains_every_catalogue_model(name, digits):
    digits = _data(name, digits)
    model = _build(name, digits)
    trainable = {k for k, v in model.named_parameters() if v.requires_grad}
    before = {k: v.detach().clone() for k, v in model.named_parameters() if k in trainable}
    svi = SVI(model.model, model.guide, pyro.optim.Adam({"lr": 1e-2}), _svi_loss(model))
    x, y = digits.x_train[:100], digits.y_train[:100]  # labels: for the conditional models
    losses = [svi.step(x, y) for _ in range(40)]
    changed = {k: not torch.equal(v, before[k]) for k, v in model.named_parameters() if k in before}
    assert all(changed.values()), [k for k, c in changed.items() if not c]
    assert sum(losses[-5:]) < sum(losses[:5])
    # the parameters Pyro optimised are the module's own
    store = pyro.get_param_store()
    assert {id(store[k]) for k in store} == {id(p) for p in model.parameters() if p.requires_grad}


def test_two_models_never_share_parameters(digits):
    a, b = _build("vae", digits), _build("vae", digits)
    c = copy.deepcopy(a)
    assert len({a.pyro_name, b.pyro_name, c.pyro_name}) == 3
    x = digits.x_train[:50]
    svi = SVI(a.model, a.guide, pyro.optim.Adam({"lr": 1e-2}), Trace_ELBO())
    snapshot = {k: v.detach().clone() for k, v in b.named_parameters()}
    for _ in range(3):
        svi.step(x)
    assert all(torch.equal(v, snapshot[k]) for k, v in b.named_parameters())


@pytest.mark.parametrize("name", NAMES)
def test_prior_and_posterior_predictive_with_pyro_predictive(name, digits):
    digits = _data(name, digits)
    model = _build(name, digits).eval()
    prior = Predictive(model.model, num_samples=4)(None, torch.tensor([3]))  # one, of label 3
    # a sequence model's prior predictive is its first frame from the empty history (TD-VAE's
    # model is jumpy: whole sequences come from its rollouts)
    images = pv.variants.registry[name].datapoints == "images"
    drawn = digits.shape if images else (1, *digits.shape[1:])
    assert prior["x"].shape == (4, 1, *drawn)
    codes = [s for s in model.latent_sites if images or s.startswith("z")]  # no pair drawn
    assert all(site in prior or f"{site}_unobserved" in prior for site in codes)
    x, y = digits.x_test[:6], digits.y_test[:6]
    uncond = poutine.uncondition(model.model)
    replicated = Predictive(uncond, guide=model.guide, num_samples=3)(x, y)
    assert replicated["x"].shape == (3, 6, *digits.shape)
    assert not torch.equal(replicated["x"][0], x)
    # Predictive(model, guide=guide) keeps the observed data, as Pyro defines it
    kept = Predictive(model.model, guide=model.guide, num_samples=2)(x, y)
    assert torch.equal(kept["x"][0], x)


def test_generation_without_data_draws_from_the_likelihood(digits):
    """Bernoulli draws are binary, and their mean over many draws is the decoded mean."""
    model = _build("vae", digits).eval()
    torch.manual_seed(1)
    z = torch.zeros(1, 3)
    x = poutine.condition(model.model, {"z": z.expand(4000, 3)})(None, torch.zeros(4000))
    assert x is None  # models return nothing; the draws are in the trace
    trace = poutine.trace(poutine.condition(model.model, {"z": z.expand(4000, 3)})).get_trace(
        None, torch.zeros(4000)
    )
    draws = trace.nodes["x"]["value"]
    assert set(draws.unique().tolist()) <= {0.0, 1.0}
    torch.testing.assert_close(draws.mean(0), model.decode(z)[0], atol=0.03, rtol=0)


def test_guide_without_data_says_so(digits):
    model = _build("vae", digits)
    with pytest.raises(ValueError, match="needs the data x"):
        model.guide(None)


def test_jit_elbo_is_refused_in_one_line(digits, small_vae):
    with pytest.raises(TypeError, match="JitTrace_ELBO") as info:
        pv.fit(small_vae.model, small_vae.guide, digits.x_train, loss=JitTrace_ELBO(), epochs=1)
    assert "\n" not in str(info.value)
