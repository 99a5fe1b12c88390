"""The public single step: what fit is made of, for users who write their own loop."""

from __future__ import annotations

import pyro
import pytest
import torch

import pyro_vaes as pv
from pyro_vaes.train.step import Step


def test_a_step_returns_the_loss_per_datapoint_before_its_update(digits, small_vae):
    x = digits.x_train[:64]
    pyro.set_rng_seed(3)
    expected = pv.objectives.ELBO().loss(small_vae.model, small_vae.guide, x) / 64
    step = Step(small_vae.model, small_vae.guide)
    step.setup({"x": x})  # traces model and guide once (the first call would, too)
    before = [p.detach().clone() for p in small_vae.parameters()]
    pyro.set_rng_seed(3)
    loss = step(x)
    assert loss.shape == () and not loss.requires_grad
    assert float(loss) == pytest.approx(expected, rel=1e-5)
    assert all(not torch.equal(p, b) for p, b in zip(small_vae.parameters(), before, strict=True))


def test_a_hand_written_loop_of_steps_trains(digits, small_vae):
    step = Step(small_vae.model, small_vae.guide, optim=pyro.optim.Adam({"lr": 3e-3}))
    first = [float(step(x)) for x in digits.x_train[:500].split(100)]
    for _ in range(5):
        last = [float(step(x)) for x in digits.x_train[:500].split(100)]
    assert sum(last) < sum(first) - 5 * len(first)


def test_labels_reach_a_step_by_name(digits, small_vae):
    seen = []

    def model(x, y=None):
        seen.append(y)
        small_vae.model(x)

    step = Step(model, small_vae.guide)
    step(digits.x_train[:10], y=digits.y_train[:10])
    assert all(torch.equal(y, digits.y_train[:10]) for y in seen)


def test_what_is_not_an_objective_is_refused(digits, small_vae):
    with pytest.raises(TypeError, match="not a Pyro ELBO"):
        Step(small_vae.model, small_vae.guide, loss=object())(digits.x_train[:10])
