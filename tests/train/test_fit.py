"""The training loop: learning, beta, schedules, resume, isolation of parameters, objectives."""

from __future__ import annotations

import functools
import itertools

import pyro
import pyro.distributions as dist
import pyro.infer
import pyro.optim
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import pyro_vaes as pv
from pyro_vaes.train.callbacks import Callback, FitState
from pyro_vaes.train.step import Step


def _params(module: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


@pytest.mark.slow
def test_training_improves_test_log_likelihood(digits, small_vae):
    vae = small_vae
    before = pv.evaluate.log_likelihood(vae.model, vae.guide, digits.x_test, 100).mean()
    history = pv.fit(
        vae.model,
        vae.guide,
        digits.x_train,
        epochs=15,
        batch_size=50,
        val_data=digits.x_test,
        progress=False,
        seed=0,
    )
    after = pv.evaluate.log_likelihood(vae.model, vae.guide, digits.x_test, 100).mean()
    assert after > before + 10, (float(before), float(after))
    assert len(history) == 15 and all(v is not None for v in history.val_loss)
    assert history.loss[-1] < history.loss[0]
    # the reported loss is -ELBO per datapoint: close to the evaluated ELBO of the same data
    elbo = pv.evaluate.elbo(vae.model, vae.guide, digits.x_test, 50).mean()
    assert abs(history.val_loss[-1] + float(elbo)) < 1.0


def test_beta_one_is_the_vae_and_beta_scales_the_kl(digits, small_vae):
    x = digits.x_train[:64]
    elbo = pyro.infer.TraceMeanField_ELBO()
    losses = {}
    for beta in (1.0, 3.0):
        small_vae.beta = beta
        pyro.set_rng_seed(5)
        losses[beta] = elbo.loss(small_vae.model, small_vae.guide, x)
    plain = pv.variants.build("vae", digits.shape, latent_dim=4, hidden=(64,))
    plain.load_state_dict(small_vae.state_dict())
    pyro.set_rng_seed(5)
    assert elbo.loss(plain.model, plain.guide, x) == pytest.approx(losses[1.0], rel=1e-6)
    # loss(beta) = recon + beta * KL, so the difference is exactly 2 * KL
    q = small_vae.posterior(small_vae.encoder(x))
    kl = float(torch.distributions.kl_divergence(q, small_vae.prior()).sum().detach())
    assert losses[3.0] - losses[1.0] == pytest.approx(2 * kl, rel=1e-4)


def test_kl_annealing_drives_beta(digits, small_vae):
    seen: list[float] = []

    class Record(Callback):
        def on_step_start(self, state: FitState) -> None:
            seen.append(small_vae.beta)

    steps = 1437 // 100 + 1
    anneal = pv.KLAnnealing(small_vae, warmup_epochs=2, start=0.0, end=1.0)
    pv.fit(
        small_vae.model,
        small_vae.guide,
        digits.x_train,
        epochs=3,
        batch_size=100,
        callbacks=[anneal, Record()],
        progress=False,
    )
    assert seen[0] == 0.0
    assert seen[steps] == pytest.approx(0.5)
    assert seen[-1] == 1.0 and small_vae.beta == 1.0
    assert all(a <= b for a, b in itertools.pairwise(seen))


def test_kl_annealing_by_fraction_of_the_fit(small_vae):
    anneal = pv.KLAnnealing(small_vae, warmup_fraction=0.5, start=0.0, end=25.0)
    # 4 epochs of 10 steps: the warm-up ends at step 20
    assert [anneal.value(t, 10, 4) for t in (0, 10, 20, 39)] == [0.0, 12.5, 25.0, 25.0]
    for bad in ({"warmup_fraction": 1.5}, {"warmup_fraction": -0.1}, {}):
        with pytest.raises(ValueError):
            pv.KLAnnealing(small_vae, **bad)
    with pytest.raises(ValueError, match="exactly one"):
        pv.KLAnnealing(small_vae, warmup_steps=3, warmup_fraction=0.5)


def test_early_stopping(digits, small_vae):
    stop = pv.EarlyStopping(patience=1, min_delta=1e9)
    history = pv.fit(
        small_vae.model,
        small_vae.guide,
        digits.x_train,
        epochs=10,
        callbacks=[stop],
        progress=False,
    )
    assert len(history) == 2


def test_resume_matches_uninterrupted_run(digits, tmp_path):
    def run(epochs: int, ckdir, resume: bool) -> pv.VAE:
        torch.manual_seed(0)
        vae = pv.variants.build("vae", digits.shape, latent_dim=4, hidden=(32,))
        pv.fit(
            vae.model,
            vae.guide,
            digits.x_train,
            epochs=epochs,
            batch_size=128,
            seed=3,
            checkpoint_dir=ckdir,
            resume=resume,
            progress=False,
            transform=pv.data.dynamic_binarize,
        )
        return vae

    straight = run(4, tmp_path / "a", False)
    run(2, tmp_path / "b", False)
    resumed = run(4, tmp_path / "b", True)
    for (k, a), b in zip(_params(straight).items(), _params(resumed).values(), strict=False):
        assert torch.equal(a, b), k
    saved = pv.checkpoint.load(tmp_path / "b" / "checkpoint.pt")
    assert saved["epoch"] == 4 and saved["history"]["epoch"] == [1, 2, 3, 4]


def _function_pair(name: str, enc: nn.Module, dec: nn.Module):
    def model(x):
        pyro.module(f"{name}_decoder", dec)
        with pyro.plate("data", x.shape[0]):
            z = pyro.sample("z", dist.Normal(torch.zeros(2), 1.0).to_event(1))
            pyro.sample("x", dist.Bernoulli(logits=dec(z)).to_event(1), obs=x)

    def guide(x):
        pyro.module(f"{name}_encoder", enc)
        scale = pyro.param("scale", torch.ones(2), constraint=dist.constraints.positive)
        with pyro.plate("data", x.shape[0]):
            pyro.sample("z", dist.Normal(enc(x), scale).to_event(1))

    return model, guide


def test_two_models_never_share_parameters():
    """Function models that reuse the same pyro.module/pyro.param names, fitted one after the
    other: each trains its own modules (plain SVI would hand the second one the first's)."""
    x = (torch.rand(200, 6) < 0.5).float()
    nets = [(nn.Linear(6, 2), nn.Linear(2, 6)) for _ in range(2)]
    pairs = [_function_pair("same", enc, dec) for enc, dec in nets]
    init = [[_params(m) for m in pair] for pair in nets]
    pv.fit(*pairs[0], x, epochs=2, progress=False)
    after_first = [_params(m) for m in nets[0]]
    pv.fit(*pairs[1], x, epochs=2, progress=False)
    for i, (enc, dec) in enumerate(nets):
        for m, before in zip((enc, dec), init[i], strict=False):
            assert not torch.equal(m.weight, before["weight"]), f"model {i} did not train"
    for m, before in zip(nets[0], after_first, strict=False):
        assert torch.equal(m.weight.detach(), before["weight"]), "the second fit moved the first"
    # pyro.param values stay reachable after fitting, as in Pyro
    assert "scale" in pyro.get_param_store()


def test_two_vaes_never_share_parameters(digits):
    torch.manual_seed(0)
    a = pv.variants.build("vae", digits.shape, latent_dim=2, hidden=(16,))
    b = pv.variants.build("vae", digits.shape, latent_dim=2, hidden=(16,))
    b_init = _params(b)
    pv.fit(a.model, a.guide, digits.x_train, epochs=1, progress=False)
    assert all(torch.equal(v, b_init[k]) for k, v in _params(b).items())


def test_dataset_dataloader_and_pairs(digits, small_vae):
    ds = TensorDataset(digits.x_train, digits.y_train)
    for data in (
        ds,
        DataLoader(ds, batch_size=200, shuffle=True),
        (digits.x_train, digits.y_train),
    ):
        history = pv.fit(small_vae.model, small_vae.guide, data, epochs=1, progress=False)
        assert len(history) == 1 and history.loss[0] > 0


def test_pyro_optim_and_factories(digits, small_vae):
    for optim in (pyro.optim.Adam({"lr": 1e-2}), functools.partial(torch.optim.SGD, lr=1e-3)):
        history = pv.fit(
            small_vae.model, small_vae.guide, digits.x_train, epochs=1, optim=optim, progress=False
        )
        assert len(history) == 1


def test_elbo_without_differentiable_loss_trains(digits, small_vae):
    """RenyiELBO has only loss_and_grads: fit registers the module's parameters for it and
    averages the gradients over the batch without scaling the log densities."""
    before = _params(small_vae)
    loss = pyro.infer.RenyiELBO(alpha=0, num_particles=2, vectorize_particles=True)
    history = pv.fit(
        small_vae.model, small_vae.guide, digits.x_train, epochs=2, loss=loss, progress=False
    )
    assert history.loss[1] < history.loss[0]
    assert any(not torch.equal(v, before[k]) for k, v in _params(small_vae).items())


def _default_loss(model, guide, x):
    step = Step(model, guide)
    step.setup({"x": x})
    return step.loss


def test_default_loss(digits, small_vae):
    x = digits.x_train[:5]
    assert isinstance(_default_loss(small_vae.model, small_vae.guide, x), pv.objectives.ELBO)

    def discrete_model(x):
        with pyro.plate("data", x.shape[0]):
            c = pyro.sample("c", dist.Bernoulli(0.5))
            pyro.sample(
                "x", dist.Bernoulli(logits=c[:, None, None, None].expand_as(x)).to_event(3), obs=x
            )

    def discrete_guide(x):
        p = pyro.param("p", torch.tensor(0.5), constraint=dist.constraints.unit_interval)
        with pyro.plate("data", x.shape[0]):
            pyro.sample("c", dist.Bernoulli(p))

    assert isinstance(_default_loss(discrete_model, discrete_guide, x), pyro.infer.Trace_ELBO)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_fit_and_evaluate_on_cuda(digits, small_vae):
    history = pv.fit(
        small_vae.model,
        small_vae.guide,
        digits.x_train,
        epochs=2,
        device="cuda",
        val_data=digits.x_test,
        progress=False,
    )
    assert next(small_vae.parameters()).is_cuda and history.loss[1] < history.loss[0]
    ll = pv.evaluate.log_likelihood(small_vae.model, small_vae.guide, digits.x_test, 50)
    assert ll.shape == (360,) and torch.isfinite(ll).all()


def test_fallback_registration_stays_private(digits, small_vae):
    loss = pyro.infer.RenyiELBO(alpha=0, num_particles=2, vectorize_particles=True)
    pv.fit(small_vae.model, small_vae.guide, digits.x_train, epochs=1, loss=loss, progress=False)
    assert not list(pyro.get_param_store().keys())
