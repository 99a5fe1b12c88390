"""The captured step, the default on long fits: after ``CAPTURE_AFTER`` eager steps the loss's
tensor operations are replayed without Pyro's handlers, giving the eager path's results bit for
bit, and the Python state the capture froze is guarded."""

from __future__ import annotations

import functools
import warnings

import pyro
import pytest
import torch

import pyro_vaes as pv
import pyro_vaes.train.step as step_module
from pyro_vaes.train.callbacks import KLAnnealing
from pyro_vaes.train.compiled import CompileWarning, PythonState
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


def _catalogue_fit(name, data, capture):
    variant = pv.variants.registry[name]
    small = {"components": 5} if "components" in variant.defaults else {}
    torch.manual_seed(0)
    model = pv.variants.build(name, data.shape, latent_dim=3, hidden=(32,), **small)
    steps = []
    with warnings.catch_warnings(), pytest.MonkeyPatch.context() as mp:
        warnings.simplefilter("ignore")
        mp.setattr(step_module, "CAPTURE_AFTER", 2)
        setup = Step.setup

        def recording(self, *args, **kwargs):
            steps.append(self)
            return setup(self, *args, **kwargs)

        mp.setattr(Step, "setup", recording)
        history = variant.fit(
            model,
            (data.x_train[:96], data.y_train[:96]),
            epochs=2,
            batch_size=32,
            seed=0,
            progress=False,
            capture=capture,
        )
    return history.loss, list(model.state_dict().values()), steps[-1].compiled


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(pv.variants.registry))
def test_every_variant_fits_alike_captured_or_eager(name, digits):
    """Every catalogue variant: the default fit (captured after 2 steps here) gives the eager
    fit's losses and parameters, bit for bit where the capture replays; where it falls back the
    capture attempt leaves no trace (a scripted function's own re-optimisation after a number
    of calls, geoopt's in pvae, may move the last bit)."""
    images = pv.variants.registry[name].datapoints == "images"
    data = digits if images else pv.data.load("oscillator")
    l1, s1, _ = _catalogue_fit(name, data, capture=False)
    l2, s2, captured = _catalogue_fit(name, data, capture=True)
    assert l1 == l2
    exact = captured is not None and captured.active
    for a, b in zip(s1, s2, strict=True):
        assert torch.equal(a, b) if exact else torch.allclose(a, b, rtol=1e-5, atol=1e-6)


class _Tricky(torch.nn.Module):
    """A model whose loss routes gradients with detach, keeps a running mean updated under
    no_grad, and (``masked``) scores only the entries a boolean mask selects."""

    def __init__(self, masked=False):
        super().__init__()
        self.net = torch.nn.Linear(8, 8)
        self.register_buffer("mean", torch.zeros(8))
        self.masked = masked

    def model(self, x):
        h = self.net(x)
        with torch.no_grad():
            self.mean.mul_(0.9).add_(0.1 * h.mean(0))
        straight_through = h + (torch.round(h) - h).detach()
        value = straight_through - self.mean
        if self.masked:
            value = value[x > 0.5]
        pyro.factor("f", -(value**2).sum() - (h.detach() * h).sum())

    def guide(self, x):
        pass


def _tricky_steps(capture, masked=False):
    torch.manual_seed(0)
    net = _Tricky(masked)
    step = Step(net.model, net.guide, loss=pv.objectives.ELBO(), capture=capture)
    losses = [float(step(X[:8])) for _ in range(6)]
    return losses, [t.clone() for t in net.state_dict().values()], net, step


def test_detach_and_no_grad_regions_replay_as_they_run_eager(capture_after_3):
    l1, s1, _, _ = _tricky_steps(capture=False)
    l2, s2, net, step = _tricky_steps(capture=True)
    assert step.compiled is not None and step.compiled.active
    assert l1 == l2
    for a, b in zip(s1, s2, strict=True):
        assert torch.equal(a, b)
    assert net.mean.grad_fn is None  # the running mean never joins the autograd graph


def test_shapes_that_depend_on_the_data_are_not_captured(capture_after_3):
    l1, s1, _, _ = _tricky_steps(capture=False, masked=True)
    l2, s2, _, step = _tricky_steps(capture=True, masked=True)
    assert all(torch.equal(a, b) for a, b in zip(s1, s2, strict=True))
    assert step.compiled is not None and not step.compiled.active
    assert "boolean mask" in step.compiled.fallback
    assert l1 == l2


def test_a_gradient_taken_inside_the_loss_is_not_captured(capture_after_3, digits):
    torch.manual_seed(0)
    model = pv.variants.build("rae_gp", digits.shape, latent_dim=3, hidden=(16,))
    step = Step(model.model, model.guide, loss=pv.variants.registry["rae_gp"].loss())
    for _ in range(4):
        step(digits.x_train[:16])
    assert step.compiled is not None and "gradient history" in step.compiled.fallback


@pytest.mark.slow
def test_the_compiled_step_keeps_detach_and_no_grad_regions():
    """torch.compile of the captured graph: the same losses and parameters as eager (inductor
    drawing no random numbers here), the running mean outside the autograd graph."""
    torch._dynamo.reset()
    results = []
    for compile in (False, True):
        torch.manual_seed(0)
        net = _Tricky()
        sgd = functools.partial(torch.optim.SGD, lr=0.05)
        step = Step(net.model, net.guide, loss=pv.objectives.ELBO(), optim=sgd, compile=compile)
        with warnings.catch_warnings():
            warnings.simplefilter("error", CompileWarning)
            losses = [float(step(X[:8])) for _ in range(4)]
        assert net.mean.grad_fn is None
        results.append((losses, [t.clone() for t in net.state_dict().values()]))
    (l1, s1), (l2, s2) = results
    assert l1 == pytest.approx(l2, rel=1e-6)
    for a, b in zip(s1, s2, strict=True):
        assert torch.allclose(a, b, rtol=1e-5, atol=1e-6)


def test_a_loss_that_draws_python_random_numbers_is_not_captured(capture_after_3):
    """A graph cannot hold Python's draws: a model that decides by random.random() would have
    one decision frozen into every replay."""
    import random

    net = torch.nn.Linear(8, 1)

    class Model(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.net = net

        def model(self, x):
            noise = 1.0 if random.random() < 0.5 else 0.0
            pyro.factor("f", -((self.net(x) + noise) ** 2).sum())

        def guide(self, x):
            pass

    m = Model()
    step = Step(m.model, m.guide, loss=pv.objectives.ELBO())
    for _ in range(5):
        step(X[:8])
    assert step.compiled is not None and "Python's or NumPy's random" in step.compiled.fallback


def test_capture_and_compile_take_only_true_or_false():
    vae = pv.variants.build("vae", (8,), latent_dim=2, hidden=(8,))
    for bad in ({"capture": "false"}, {"compile": 1}):
        with pytest.raises(TypeError, match="must be True or False"):
            pv.fit(vae.model, vae.guide, X, epochs=1, progress=False, **bad)
