"""The procedural sequences: deterministic, with the statistics their generators promise."""

from __future__ import annotations

import math

import pytest
import torch
from torch.distributions import MultivariateNormal

import pyro_vaes as pv
from pyro_vaes.data import sequences, sprites


def test_oscillator_without_noise_keeps_its_energy_and_period():
    osc = sequences.harmonic_oscillator(
        300, 40, periods=(8.0, 16.0), process_noise=0.0, observation_noise=0.0, seed=3
    )
    assert osc.x.shape == (300, 40, 1) and osc.states.shape == (300, 40, 2)
    energy = 0.5 * osc.states.pow(2).sum(-1)
    assert torch.allclose(energy, energy[:, :1].expand_as(energy), atol=1e-5)
    amplitude = (2 * energy[:, 0]).sqrt()
    assert float(amplitude.min()) >= 0.5 - 1e-5 and float(amplitude.max()) <= 1.5 + 1e-5
    for k, period in enumerate(osc.periods):
        rows = osc.labels == k
        p = osc.x[rows, :, 0]
        assert torch.allclose(p[:, int(period) :], p[:, : 40 - int(period)], atol=1e-5)
        half = int(period) // 2  # half a period later the position is mirrored
        assert torch.allclose(p[:, half:], -p[:, : 40 - half], atol=1e-5)
    assert set(osc.labels.tolist()) == {0, 1}


def test_oscillator_noise_has_the_stated_sizes():
    sp, sx = 0.1, 0.2
    osc = sequences.harmonic_oscillator(4000, 6, process_noise=sp, observation_noise=sx, seed=1)
    energy = 0.5 * osc.states.pow(2).sum(-1)
    growth = (energy[:, 1:] - energy[:, :-1]).mean()  # E[E_{t+1} - E_t] = sigma_p^2
    assert abs(float(growth) - sp**2) < 0.15 * sp**2 + 3e-3
    residual = osc.x[..., 0] - osc.states[..., 0]
    assert abs(float(residual.std()) - sx) < 0.01 and abs(float(residual.mean())) < 0.01


def _oscillator_covariance(period: float, steps: list[int], sp: float, sx: float, v0: float):
    """Cov(x_i, x_j) = cos(w |i - j|) (v0 + (min(i, j) - 1) sp^2) + [i = j] sx^2 by hand: the
    rotation keeps an isotropic state covariance isotropic, and the noise adds sp^2 a step."""
    w = 2 * math.pi / period
    t = torch.tensor(steps, dtype=torch.float64)
    lag, first = (t[:, None] - t[None, :]).abs(), torch.minimum(t[:, None], t[None, :])
    return (w * lag).cos() * (v0 + (first - 1) * sp**2) + sx**2 * torch.eye(len(steps))


@pytest.mark.parametrize(("context", "skip"), [(5, 1), (5, 3), (1, 2), (0, 4)])
def test_the_oscillator_predictive_is_the_gaussian_conditional_mixed_over_periods(context, skip):
    sp, sx, periods, amplitudes = 0.1, 0.2, (6.0, 10.0), (0.5, 1.5)
    osc = sequences.harmonic_oscillator(
        7, 9, periods=periods, amplitudes=amplitudes, process_noise=sp, observation_noise=sx
    )
    v0 = (1.5**3 - 0.5**3) / 3 / 2  # E[A^2] / 2 for A uniform on [0.5, 1.5]
    seen, target = list(range(1, context + 1)), context + skip
    obs = osc.x[..., 0].double()
    joint, past = [], []
    for period in periods:
        cov = _oscillator_covariance(period, [*seen, target], sp, sx, v0)
        values = obs[:, [t - 1 for t in [*seen, target]]]
        joint.append(MultivariateNormal(torch.zeros(len(seen) + 1), cov).log_prob(values))
        if seen:
            sub = MultivariateNormal(torch.zeros(len(seen)), cov[:-1, :-1])
            past.append(sub.log_prob(values[:, :-1]))
    evidence = torch.stack(past).logsumexp(0) if past else math.log(len(periods))
    want = torch.stack(joint).logsumexp(0) - evidence
    got = sequences.oscillator_log_predictive(
        osc.x, context, skip, periods=periods, amplitudes=amplitudes, process_noise=sp,
        observation_noise=sx,
    )  # fmt: skip
    assert got.shape == (7,) and torch.allclose(got.double(), want, atol=1e-4)


def test_the_oscillator_predictive_refuses_bad_arguments():
    x = torch.zeros(2, 6, 1)
    with pytest.raises(ValueError, match="context"):
        sequences.oscillator_log_predictive(x, -1, 1)
    with pytest.raises(ValueError, match="skip"):
        sequences.oscillator_log_predictive(x, 2, 0)
    with pytest.raises(ValueError, match="exceeds"):
        sequences.oscillator_log_predictive(x, 4, 3)
    with pytest.raises(ValueError, match="shaped"):
        sequences.oscillator_log_predictive(torch.zeros(2, 6), 1, 1)


def test_sequences_are_deterministic_given_the_seed():
    a, b = (
        sequences.harmonic_oscillator(5, 10, seed=7),
        sequences.harmonic_oscillator(5, 10, seed=7),
    )
    c = sequences.harmonic_oscillator(5, 10, seed=8)
    assert torch.equal(a.x, b.x) and not torch.equal(a.x, c.x)
    s, t = sequences.moving_sprites(4, 5, seed=2), sequences.moving_sprites(4, 5, seed=2)
    assert torch.equal(s.frames, t.frames) and torch.equal(s.positions, t.positions)


def test_bounce_reflects_at_both_ends():
    u = torch.arange(-3, 12)
    assert sequences.bounce(u, 4).tolist() == [3, 2, 1, 0, 1, 2, 3, 4, 3, 2, 1, 0, 1, 2, 3]


def test_moving_sprites_follow_their_bouncing_trajectories():
    s = sequences.moving_sprites(50, 20, size=16, positions=5, seed=0)
    assert s.frames.shape == (50, 20, 1, 16, 16) and s.positions.shape == (50, 20, 2)
    step = (s.positions[:, 1:] - s.positions[:, :-1]).abs()
    assert bool((step == 1).all())  # one cell per step along each axis, never still
    assert int(s.positions.min()) == 0 and int(s.positions.max()) == 4
    # the velocity flips exactly at the walls
    v = s.positions[:, 1:] - s.positions[:, :-1]
    flips = v[:, 1:] != v[:, :-1]
    at_wall = (s.positions[:, 1:-1] == 0) | (s.positions[:, 1:-1] == 4)
    assert torch.equal(flips, at_wall)
    table = sprites.generate(size=16, scales=1, rotations=1, positions=5)
    for i in (0, 17, 49):
        for t in (0, 9, 19):
            x, y = s.positions[i, t].tolist()
            want = (table.factors == torch.tensor([int(s.labels[i]), 0, 0, x, y])).all(1)
            assert torch.equal(s.frames[i, t], table.images[want.nonzero()[0, 0]])
    # the frame's centre of mass follows the trajectory's column and row
    frames = s.frames[:, :, 0]
    mass = frames.sum((-1, -2))
    cols = (frames.sum(-2) * torch.arange(16.0)).sum(-1) / mass
    assert (
        torch.corrcoef(torch.stack([cols.flatten(), s.positions[..., 0].flatten().float()]))[0, 1]
        > 0.95
    )


def test_the_sequence_datasets_are_registered():
    osc = pv.data.load("oscillator", val_fraction=0.1)
    assert osc.shape == (32, 1) and osc.x_val is not None
    assert osc.x_train.shape[0] + osc.x_val.shape[0] == 2000 and osc.x_test.shape[0] == 500
    ms = pv.data.load("moving_sprites")
    assert ms.shape == (12, 1, 16, 16) and set(ms.x_train.unique().tolist()) == {0.0, 1.0}
    assert math.isclose(float(ms.y_train.float().mean()), 1.0, abs_tol=0.1)


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"n": 0}, "n"),
        ({"n": 2, "length": 0}, "length"),
        ({"n": 2, "process_noise": -1.0}, "process_noise"),
        ({"n": 2, "periods": ()}, "periods"),
        ({"n": 2, "amplitudes": (2.0, 1.0)}, "amplitudes"),
    ],
)
def test_oscillator_refuses_bad_parameters(kwargs, name):
    with pytest.raises(ValueError, match=name):
        sequences.harmonic_oscillator(**kwargs)
