"""The captured step, the default on long fits: after ``CAPTURE_AFTER`` eager steps the loss's
tensor operations are replayed without Pyro's handlers, giving the eager path's results bit for
bit, and the Python state the capture froze is guarded."""

from __future__ import annotations

import warnings

import pyro
import pytest
import torch

import pyro_vaes as pv
import pyro_vaes.train.step as step_module
from pyro_vaes.train.callbacks import KLAnnealing
from pyro_vaes.train.compiled import PythonState
from pyro_vaes.train.step import Step

X = torch.bernoulli(torch.rand(40, 8, generator=torch.Generator().manual_seed(0)))


@pytest.fixture
def capture_after_3(monkeypatch):
    monkeypatch.setattr(step_module, "CAPTURE_AFTER", 3)


def _fit(name, capture, **options):
    torch.manual_seed(0)
    vae = pv.variants.build(name, (8,), latent_dim=2, hidden=(8,), **options)
    history = pv.fit(
        vae.model,
        vae.guide,
        X,
        loss=pv.variants.registry[name].loss(),
        epochs=6,
        batch_size=8,
        seed=0,
        progress=False,
        capture=capture,
    )
    return history.loss, [t.clone() for t in vae.state_dict().values()]


@pytest.mark.parametrize("name", ["vae", "bn_vae", "iwae", "beta_tcvae"])
def test_a_captured_fit_equals_the_eager_fit_bit_for_bit(capture_after_3, name):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the capture is silent
        (l1, s1), (l2, s2) = _fit(name, capture=False), _fit(name, capture=True)
    assert l1 == l2
    for a, b in zip(s1, s2, strict=True):
        assert torch.equal(a, b)


def _step(**kwargs):
    torch.manual_seed(0)
    vae = pv.variants.build("vae", (8,), latent_dim=2, hidden=(8,))
    return vae, Step(vae.model, vae.guide, **kwargs)


def test_the_step_captures_after_its_eager_steps_and_replays(capture_after_3):
    _, step = _step()
    for _ in range(3):
        step(X[:8])
        assert step.compiled is not None and step.compiled.graph is None
    step(X[:8])
    assert step.compiled.active
    calls = []
    step.compiled.loss_fn = lambda batch: calls.append(1)  # the eager loss is not called now
    step(X[:8])
    assert calls == []


def test_a_short_batch_is_not_the_one_captured(capture_after_3):
    _, step = _step()
    for x in (X[:8], X[:8], X[:8], X[:3], X[:8]):
        step(x)
    assert step.compiled is not None and step.compiled.signature[0][1] == (8, 8)
    assert step.compiled.active


def test_a_changed_attribute_after_the_capture_runs_the_step_eager(capture_after_3):
    vae, step = _step()
    for _ in range(4):
        step(X[:8])
    assert step.compiled is not None and step.compiled.active
    vae.beta = 0.5
    before = {k: v.clone() for k, v in vae.state_dict().items()}
    torch.manual_seed(1)
    value = step(X[:8])
    assert (
        not step.compiled.active and step.compiled.fallback == "VAE.beta changed after the capture"
    )
    reference, eager = _step(capture=False)
    eager(X[:8])  # sets up
    reference.load_state_dict(before)
    reference.beta = 0.5
    torch.manual_seed(1)
    assert float(value) == pytest.approx(float(eager(X[:8])), rel=1e-6)


def test_the_python_state_names_what_changed():
    vae = pv.variants.build("vae", (8,), latent_dim=2, hidden=(8,))
    objective = pv.objectives.ELBO()
    state = PythonState([vae, objective])
    assert state.changed() is None
    vae.decoder.training = False
    assert state.changed() is not None and state.changed().endswith("decoder.training")
    vae.decoder.training = True
    objective.num_particles = 2
    assert state.changed() == "ELBO.num_particles"
    objective.num_particles = 1
    vae.prior.loc = torch.zeros(2)  # a new tensor in a buffer slot
    assert state.changed() == "VAE.prior.loc"


def test_plain_functions_and_schedules_that_change_the_model_are_not_captured(capture_after_3):
    vae = pv.variants.build("vae", (8,), latent_dim=2, hidden=(8,))

    def model(x):
        pyro.module("vae", vae)
        vae.model(x)

    def guide(x):
        pyro.module("vae", vae)
        vae.guide(x)

    step = Step(model, guide)
    for _ in range(5):
        step(X[:8])
    assert step.compiled is None  # closures and globals are not guarded
    schedule = KLAnnealing(vae, attr="beta", start=0.0, end=1.0, warmup_steps=4)
    step = Step(vae.model, vae.guide)
    step.setup({"x": X[:8]}, changes_model=[type(schedule).__name__])
    assert step.compiled is None


def test_the_real_threshold_leaves_short_fits_eager():
    _, step = _step()
    for _ in range(5):
        step(X[:8])
    assert step.compiled is not None and step.compiled.graph is None
    assert step_module.CAPTURE_AFTER >= 50
