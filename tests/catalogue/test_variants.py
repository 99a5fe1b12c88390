"""Every variant in the catalogue builds, trains under its own objective and schedule, and
scores; the disentangled beta-VAE's capacity follows its schedule."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

import pyro_vaes as pv
from pyro_vaes.objectives import CapacityELBO
from pyro_vaes.protocols import GenerativeModel
from pyro_vaes.train.callbacks import Callback, FitState


def _data(variant: pv.variants.Variant, digits: pv.data.Splits) -> pv.data.Splits:
    """The variant's kind of datapoints (its declared ``datapoints``): the binarised digits, or
    the bundled oscillations, 32 steps of one position each."""
    return digits if variant.datapoints == "images" else pv.data.load("oscillator")


@pytest.mark.parametrize("name", sorted(pv.variants.registry))
def test_every_variant_trains_with_its_objective_and_schedule(digits, name):
    torch.manual_seed(0)
    variant = pv.variants.registry[name]
    digits = _data(variant, digits)
    small = {"components": 5} if "components" in variant.defaults else {}
    model = pv.variants.build(name, digits.shape, latent_dim=3, hidden=(32,), **small)
    before = [p.detach().clone() for p in model.parameters()]
    history = variant.fit(
        model,
        (digits.x_train[:400], digits.y_train[:400]),  # labels reach the models that take them
        epochs=1,
        batch_size=100,
        progress=False,
    )
    assert math.isfinite(history.loss[-1])
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))
    model.eval()
    test = (digits.x_test[:20], digits.y_test[:20])
    ll = pv.evaluate.log_likelihood(model.model, model.guide, test, 4)
    assert torch.isfinite(ll).all()


_DEVICES = [
    "cpu",
    pytest.param(
        "cuda",
        marks=[
            pytest.mark.cuda,
            pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
        ],
    ),
]


@pytest.mark.parametrize("device", _DEVICES)
@pytest.mark.parametrize("name", sorted(pv.variants.registry))
def test_every_variant_runs_on_the_device(digits, name, device):
    """Fit, score, posterior predictive draws and pictures' codes, all on ``device``."""
    torch.manual_seed(0)
    variant = pv.variants.registry[name]
    digits = _data(variant, digits)
    small = {"components": 5} if "components" in variant.defaults else {}
    model = pv.variants.build(name, digits.shape, latent_dim=3, hidden=(32,), **small)
    data = (digits.x_train[:200], digits.y_train[:200])
    variant.fit(model, data, epochs=1, device=device, progress=False)
    assert all(p.device.type == device for p in model.parameters())
    model.eval()
    x, y = digits.x_test[:10], digits.y_test[:10]
    assert torch.isfinite(pv.evaluate.log_likelihood(model.model, model.guide, (x, y), 3)).all()
    idata = pv.posterior_predictive(model.model, model.guide, (x, y), 2)  # msssim_vae: its
    assert idata["posterior_predictive"]["x"].shape[:3] == (1, 2, 10)  # likelihood part
    codes = model.encode(x.to(device))
    assert isinstance(model, GenerativeModel)
    path = pv.geometry.interpolate(model.geometry, codes[0], codes[1], 4)
    assert path.device.type == device and model.sample(3).shape == (3, *digits.shape)


def test_disentangled_beta_vae_grows_capacity_over_half_the_fit(digits):
    variant = pv.variants.registry["disentangled_beta_vae"]
    model = pv.variants.build("disentangled_beta_vae", digits.shape, latent_dim=3, hidden=(32,))
    loss = variant.loss()
    assert isinstance(loss, CapacityELBO) and loss.gamma == 1000.0
    seen: list[float] = []

    class Record(Callback):
        def on_step_start(self, state: FitState) -> None:
            seen.append(loss.capacity)

    pv.fit(
        model.model,
        model.guide,
        digits.x_train[:400],
        loss=loss,
        callbacks=[*variant.callbacks(model, loss), Record()],
        epochs=4,
        batch_size=100,
        progress=False,
    )
    # 4 epochs of 4 steps: C reaches 25 nats at step 8 and stays
    assert seen == pytest.approx([25.0 * min(1.0, t / 8) for t in range(16)])


def test_a_variant_without_schedule_has_no_callbacks(small_vae):
    assert pv.variants.registry["vae"].callbacks(small_vae, None) == []


def test_readme_lists_every_variant():
    text = (Path(__file__).parents[2] / "README.md").read_text()
    section = text[text.index("## Variants") : text.index("## Command line")]
    listed = {line.split("`")[1] for line in section.splitlines() if line.startswith("| `")}
    assert listed == set(pv.variants.registry)


@pytest.mark.parametrize(("name", "flag"), [("rae_l2", "expost_fitted"), ("two_stage_vae", "second_fitted")])  # fmt: skip
def test_variant_fit_runs_the_post_training_stage(digits, name, flag):
    """The RAE's ex-post mixture and the two-stage VAE's second stage are fitted when the
    variant's fit ends (so the CLI samples through them), on the images as the fit saw them."""
    torch.manual_seed(0)
    model = pv.variants.build(name, digits.shape, latent_dim=2, hidden=(16,))
    assert not bool(getattr(model, flag))
    seen = []
    model.after_fit = lambda x: seen.append(x)  # what the stage is fitted on
    binary = pv.data.dynamic_binarize
    pv.variants.registry[name].fit(model, digits.x_train[:200], epochs=1, progress=False,
                                   transform=binary)  # fmt: skip
    assert seen[0].shape == (200, *digits.shape) and set(seen[0].unique().tolist()) <= {0.0, 1.0}
    del model.after_fit
    pv.variants.registry[name].fit(model, digits.x_train[:200], epochs=1, progress=False)
    assert bool(getattr(model, flag))
