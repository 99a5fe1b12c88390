"""The compiled step: the captured loss equals the eager one, in value, gradients and buffers;
what cannot be captured runs eager after one warning."""

from __future__ import annotations

import functools
import math
import warnings

import pyro
import pytest
import torch

import pyro_vaes as pv
from pyro_vaes.models.base import parameters_managed
from pyro_vaes.train.callbacks import KLAnnealing
from pyro_vaes.train.compiled import CompiledLoss, CompileWarning
from pyro_vaes.train.step import Step

X = torch.bernoulli(torch.rand(16, 8, generator=torch.Generator().manual_seed(0)))


def _uncompiled(graph):
    return graph


def _eager_and_captured(name, **options):
    """Loss, gradients and buffers after one eager evaluation and after one captured one, each
    from the same random state and buffers."""
    torch.manual_seed(0)
    model = pv.variants.build(name, (8,), latent_dim=2, hidden=(8,), **options)
    variant = pv.variants.registry[name]
    step = Step(model.model, model.guide, loss=variant.loss(), compile=True)
    with pyro.validation_enabled(False), parameters_managed(step.owners):
        step.setup({"x": X}, dataset_size=1000)
        assert step.compiled is not None, name
        captured = CompiledLoss(step._differentiable_loss, step.buffers(), _uncompiled)
        step._differentiable_loss({"x": X})  # objectives check some things on their first call
        results = []
        start = [b.clone() for b in step.buffers()]
        for fn in (step._differentiable_loss, captured):
            with torch.no_grad():
                for b, s in zip(step.buffers(), start, strict=True):
                    b.copy_(s)
            model.zero_grad()
            torch.manual_seed(1)
            value = fn({"x": X})
            value.backward()
            grads = [p.grad.clone() for p in model.parameters() if p.grad is not None]
            results.append((value.detach(), grads, [b.clone() for b in step.buffers()]))
        assert captured.active
    return results


@pytest.mark.parametrize(
    "name", ["vae", "bn_vae", "iwae", "piwae", "beta_tcvae", "vamp", "vae_iaf", "free_bits_vae"]
)
def test_the_captured_loss_has_the_eager_value_gradients_and_buffers(name):
    (v1, g1, b1), (v2, g2, b2) = _eager_and_captured(name)
    assert torch.allclose(v1, v2, rtol=1e-5)
    assert len(g1) == len(g2) > 0
    for a, b in zip(g1, g2, strict=True):
        assert torch.allclose(a, b, rtol=1e-4, atol=1e-5)
    for a, b in zip(b1, b2, strict=True):  # BN-VAE's running statistics move alike
        assert torch.allclose(a, b)


def test_a_loss_with_data_dependent_control_flow_is_not_captured():
    """The vMF's rejection sampler loops until its draws are accepted: tracing refuses to read
    a tensor's value, so the S-VAE's step runs eager."""
    torch.manual_seed(0)
    model = pv.variants.build("svae", (8,), latent_dim=3, hidden=(8,))
    step = Step(model.model, model.guide, compile=True)
    message = _fallback(lambda: step(X))
    assert "cannot be captured" in message and "data-dependent control flow" in message
    assert step.compiled is not None and not step.compiled.active
    assert torch.isfinite(step(X))


def test_the_inductor_compiled_step_matches_the_eager_step():
    """With inductor's random numbers drawn as eager draws them, a step of the compiled fit and
    of the eager fit give the same loss and the same parameters."""
    torch._dynamo.reset()
    results = []
    for compile in (False, True):
        torch.manual_seed(0)
        model = pv.variants.build("bn_vae", (8,), latent_dim=2, hidden=(8,))
        # plain SGD: the parameters then differ exactly as the gradients do (Adam divides tiny
        # gradients by their own size, which magnifies rounding)
        sgd = functools.partial(torch.optim.SGD, lr=0.05)
        step = Step(model.model, model.guide, optim=sgd, compile=compile)
        with torch._inductor.config.patch(fallback_random=True), warnings.catch_warnings():
            warnings.simplefilter("error", CompileWarning)
            torch.manual_seed(1)
            losses = [float(step(X)) for _ in range(3)]
        if compile:
            assert step.compiled is not None and step.compiled.active
        results.append((losses, [p.detach().clone() for p in model.parameters()]))
    (l1, p1), (l2, p2) = results
    assert l1 == pytest.approx(l2, rel=1e-5)
    for a, b in zip(p1, p2, strict=True):
        assert torch.allclose(a, b, rtol=1e-4, atol=1e-6)


def test_batches_of_another_shape_run_eager():
    torch.manual_seed(0)
    model = pv.variants.build("vae", (8,), latent_dim=2, hidden=(8,))
    calls = []
    step = Step(model.model, model.guide)
    with pyro.validation_enabled(False), parameters_managed(step.owners):
        step.setup({"x": X})

        def eager(batch):
            calls.append(batch["x"].shape[0])
            return step._differentiable_loss(batch)

        loss = CompiledLoss(eager, compiler=_uncompiled)
        loss({"x": X})  # captures: the capture, the check's eager run
        calls.clear()
        loss({"x": X})
        loss({"x": X[:5]})
    assert calls == [5]  # the captured shape replays the graph; the short batch runs eager


def _fallback(step_or_fit):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        step_or_fit()
    messages = [str(w.message) for w in caught if issubclass(w.category, CompileWarning)]
    assert len(messages) == 1, messages
    return messages[0]


def test_objectives_and_schedules_it_cannot_capture_run_eager_after_one_warning(digits):
    x = torch.bernoulli(torch.rand(64, 8))
    for name, reason in [("aae", "adversary"), ("m2", "cannot be captured")]:
        torch.manual_seed(0)
        model = pv.variants.build(name, (8,), latent_dim=2, hidden=(8,))
        loss = pv.variants.registry[name].loss()
        y = torch.randint(10, (64,))

        def run(model=model, loss=loss, y=y):
            return pv.fit(
                model.model,
                model.guide,
                (x, y),
                loss=loss,
                epochs=1,
                batch_size=32,
                progress=False,
                compile=True,
            )

        assert reason in _fallback(run)
    vae = pv.variants.build("vae", (8,), latent_dim=2, hidden=(8,))
    renyi = pyro.infer.RenyiELBO(alpha=0.5, num_particles=2)
    step = Step(vae.model, vae.guide, loss=renyi, compile=True)
    assert "RenyiELBO has no differentiable_loss" in _fallback(lambda: step(x))
    schedule = KLAnnealing(vae, attr="beta", start=0.0, end=1.0, warmup_steps=4)

    def annealed():
        return pv.fit(
            vae.model,
            vae.guide,
            x,
            epochs=1,
            batch_size=32,
            progress=False,
            callbacks=[schedule],
            compile=True,
        )

    assert "KLAnnealing" in _fallback(annealed)


def test_a_model_that_decides_in_python_on_every_call_is_caught_by_the_check():
    """A capture freezes Python's decisions; a model whose Python state moves on every call (a
    counter here) gives a graph that disagrees with the eager loss, and the step runs eager."""
    net = torch.nn.Linear(8, 1)
    calls = [0]

    def model(x):
        pyro.module("net", net)
        calls[0] += 1
        with pyro.plate("data", x.shape[0]):
            pyro.factor("f", -calls[0] * net(x).squeeze(-1) ** 2)

    def guide(x):
        pass

    step = Step(model, guide, loss=pv.objectives.ELBO(), compile=True)
    with pyro.validation_enabled(False):
        step.setup({"x": X})
        assert step.compiled is not None
        message = _fallback(lambda: step(X))
    assert "differs from the eager one" in message and not step.compiled.active
    before = calls[0]
    step(X)
    assert calls[0] == before + 1  # eager from now on: the model runs


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_the_compiled_step_on_a_gpu_replays_cuda_graphs_and_keeps_each_loss():
    """On a GPU the compiled step replays CUDA graphs, which reuse their output memory: every
    step's loss must stay as it was returned."""
    torch.manual_seed(0)
    x = torch.bernoulli(torch.rand(256, 8))
    vae = pv.variants.build("vae", (8,), latent_dim=2, hidden=(8,))
    history = pv.fit(
        vae.model,
        vae.guide,
        x,
        epochs=3,
        batch_size=32,
        device="cuda",
        progress=False,
        compile=True,
        seed=0,
    )
    assert len(set(history.loss)) == 3 and all(map(math.isfinite, history.loss))
    step = Step(vae.model, vae.guide, compile=True)
    xb = x[:32].cuda()
    losses = [step(xb) for _ in range(4)]
    assert step.compiled is not None and step.compiled.active
    assert len({float(v) for v in losses}) == 4  # four values, not the last one four times
