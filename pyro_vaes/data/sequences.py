r"""Procedural sequences with known latent trajectories, for sequence models such as TD-VAE.

Both generators are deterministic given ``seed`` and need no download.

**The noisy harmonic oscillator** (:func:`harmonic_oscillator`), after the experiment of Gregor
et al. [1]: a state :math:`s_t = (p_t, q_t)`, position :math:`p` and scaled velocity
:math:`q = \dot p / \omega`, turns by the angle :math:`\omega = 2\pi / P` per step (the exact
discretisation of :math:`\ddot p = -\omega^2 p` with period :math:`P` steps), plus process noise,
and only the position is seen, through observation noise:

.. math::
    s_{t+1} = R(\omega)\, s_t + \sigma_p\, \epsilon_t, \qquad
    x_t = p_t + \sigma_x\, \eta_t, \qquad
    R(\omega) = \begin{pmatrix} \cos\omega & \sin\omega \\ -\sin\omega & \cos\omega \end{pmatrix},

with :math:`\epsilon_t, \eta_t` standard normal. The energy :math:`E_t = (p_t^2 + q_t^2)/2` is
kept by the rotation, so it grows only by the noise: :math:`\mathbb E[E_{t+1} - E_t] =
\sigma_p^2`. Each sequence draws its period from ``periods`` (its label), its amplitude
:math:`\sqrt{2E_0}` uniformly from ``amplitudes`` and its phase uniformly. Predicting
:math:`x_{t+k}` needs the phase, amplitude and period, which one frame does not tell.

**Moving sprites** (:func:`moving_sprites`): one sprite of :mod:`pyro_vaes.data.sprites` (a
square, an ellipse or a heart) moves on the grid of ``positions`` x ``positions`` sprite
centres one cell per step along each axis, bouncing off the frame's edges: the grid coordinate
at step :math:`t` from :math:`u_0` with velocity :math:`v \in \{-1, +1\}` is
:math:`\mathrm{bounce}(u_0 + v t)`, where :math:`\mathrm{bounce}(u) = m - |(u \bmod 2m) - m|`,
:math:`m` = ``positions - 1``. Each frame is exactly the sprite drawn at that centre.

    >>> osc = harmonic_oscillator(100, length=20)
    >>> osc.x.shape, osc.states.shape
    (torch.Size([100, 20, 1]), torch.Size([100, 20, 2]))

References:
    [1] Gregor, Papamakarios, Besse, Buesing, Weber. Temporal Difference Variational
    Auto-Encoder. ICLR 2019, section 5.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from pyro_vaes.data import sprites as _sprites
from pyro_vaes.data.loaders import Splits

__all__ = [
    "MovingSprites",
    "Oscillations",
    "bounce",
    "harmonic_oscillator",
    "moving_sprites",
    "moving_sprites_splits",
    "oscillator_log_predictive",
    "oscillator_splits",
]


@dataclass(frozen=True)
class Oscillations:
    """Observed positions ``x`` ``(N, T, 1)``, the states ``(N, T, 2)`` (position, scaled
    velocity), and each sequence's period index into ``periods`` ``(N,)``."""

    x: torch.Tensor
    states: torch.Tensor
    labels: torch.Tensor
    periods: tuple[float, ...]


@dataclass(frozen=True)
class MovingSprites:
    """Frames ``(N, T, 1, size, size)`` in ``{0, 1}``, the sprite's grid coordinates per frame
    ``(N, T, 2)`` (column ``x``, row ``y``), and each sequence's shape index ``(N,)``."""

    frames: torch.Tensor
    positions: torch.Tensor
    labels: torch.Tensor


def _check_sizes(**sizes: int) -> None:
    for name, value in sizes.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")


def _check_nonnegative(**values: float) -> None:
    for name, value in values.items():
        if not (isinstance(value, int | float) and math.isfinite(value) and value >= 0):
            raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")


def harmonic_oscillator(
    n: int,
    length: int = 32,
    *,
    periods: Sequence[float] = (8.0, 12.0, 16.0),
    amplitudes: tuple[float, float] = (0.5, 1.5),
    process_noise: float = 0.02,
    observation_noise: float = 0.05,
    seed: int = 0,
) -> Oscillations:
    """``n`` sequences of ``length`` noisy observations of harmonic oscillators (module
    docstring).

    :param periods: the periods in steps to draw from (uniformly); a sequence's label is the
        index of its period.
    :param amplitudes: the range ``(low, high)`` of the initial amplitude.
    :param process_noise: :math:`\\sigma_p`, the state noise per step.
    :param observation_noise: :math:`\\sigma_x`, the noise of the observed position.
    :raises ValueError: naming the parameter out of range.
    """
    _check_sizes(n=n, length=length)
    _check_nonnegative(process_noise=process_noise, observation_noise=observation_noise)
    periods = tuple(float(p) for p in periods)
    if not periods or not all(math.isfinite(p) and p > 0 for p in periods):
        raise ValueError(f"periods must be positive numbers of steps, got {periods!r}")
    low, high = amplitudes
    if not 0 <= low <= high or not math.isfinite(high):
        raise ValueError(f"amplitudes must be a range 0 <= low <= high, got {amplitudes!r}")
    gen = torch.Generator().manual_seed(seed)
    labels = torch.randint(len(periods), (n,), generator=gen)
    omega = 2 * math.pi / torch.tensor(periods, dtype=torch.float64)[labels]
    amplitude = low + (high - low) * torch.rand(n, generator=gen, dtype=torch.float64)
    phase = 2 * math.pi * torch.rand(n, generator=gen, dtype=torch.float64)
    state = torch.stack([amplitude * phase.cos(), amplitude * phase.sin()], dim=-1)
    cos, sin = omega.cos(), omega.sin()
    states = [state]
    for _ in range(length - 1):
        p, q = state.unbind(-1)
        state = torch.stack([cos * p + sin * q, -sin * p + cos * q], dim=-1)
        state = state + process_noise * torch.randn(state.shape, generator=gen, dtype=torch.float64)
        states.append(state)
    s = torch.stack(states, dim=1)  # (n, T, 2)
    x = s[..., :1] + observation_noise * torch.randn(
        (n, length, 1), generator=gen, dtype=torch.float64
    )
    return Oscillations(x.float(), s.float(), labels, periods)


def oscillator_log_predictive(
    x: torch.Tensor,
    context: int,
    skip: int,
    *,
    periods: Sequence[float] = (8.0, 12.0, 16.0),
    amplitudes: tuple[float, float] = (0.5, 1.5),
    process_noise: float = 0.02,
    observation_noise: float = 0.05,
) -> torch.Tensor:
    r"""The predictive :math:`\log p(x_{t + \delta} \mid x_{\le t})` of observed oscillations
    ``x`` ``(N, T, 1)`` under the generator's own dynamics (module docstring): a Kalman filter per
    period over the first ``context`` frames, jumped ``skip`` steps ahead, mixed over the
    periods by their posterior weights (each period a priori equally likely). The initial
    state's prior is the Gaussian with the true moments, mean 0 and covariance
    :math:`\mathbb E[A^2]/2 \cdot I` for the amplitude :math:`A` uniform on ``amplitudes`` (the
    true prior, uniform phase and amplitude, is not Gaussian: this is the Kalman filter's
    near-oracle, not the exact predictive). It is the ceiling a model of these sequences can
    approach; ``context = 0`` gives the marginal of the frame ``skip``.

    :returns: ``(N,)`` log densities of the frames ``x[:, context + skip - 1]``, in nats.
    :raises ValueError: naming the parameter out of range.
    """
    if x.dim() != 3 or x.shape[-1] != 1:
        raise ValueError(f"x must be oscillations shaped (N, T, 1), got {tuple(x.shape)}")
    if isinstance(context, bool) or not isinstance(context, int) or context < 0:
        raise ValueError(f"context must be an integer >= 0, got {context!r}")
    _check_sizes(skip=skip)
    if context + skip > x.shape[1]:
        raise ValueError(f"context + skip = {context + skip} exceeds the {x.shape[1]} frames of x")
    _check_nonnegative(process_noise=process_noise, observation_noise=observation_noise)
    low, high = amplitudes
    mean_square = low**2 if high == low else (high**3 - low**3) / (3 * (high - low))
    obs = x[..., 0].double()
    n = obs.shape[0]
    eye = torch.eye(2, dtype=torch.float64)

    def jump(m: torch.Tensor, c: torch.Tensor, rot: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return m @ rot.T, rot @ c @ rot.T + process_noise**2 * eye

    def frame(m: torch.Tensor, c: torch.Tensor) -> torch.distributions.Normal:
        return torch.distributions.Normal(m[:, 0], (c[:, 0, 0] + observation_noise**2).sqrt())

    evidence, predictive = [], []
    for period in periods:
        w = 2 * math.pi / float(period)
        rot = torch.tensor([[math.cos(w), math.sin(w)], [-math.sin(w), math.cos(w)]]).double()
        m = obs.new_zeros(n, 2)
        c = (mean_square / 2 * eye).expand(n, 2, 2)
        log_evidence = obs.new_zeros(n)
        for t in range(context):
            if t > 0:
                m, c = jump(m, c, rot)
            step = frame(m, c)
            log_evidence = log_evidence + step.log_prob(obs[:, t])
            gain = c[:, :, 0] / step.scale.pow(2).unsqueeze(-1)
            m = m + gain * (obs[:, t] - m[:, 0]).unsqueeze(-1)
            c = c - gain.unsqueeze(-1) * c[:, :1, :]
        for _ in range(skip if context > 0 else skip - 1):
            m, c = jump(m, c, rot)
        evidence.append(log_evidence)
        predictive.append(frame(m, c).log_prob(obs[:, context + skip - 1]))
    log_weights = torch.stack(evidence).log_softmax(0)
    return (log_weights + torch.stack(predictive)).logsumexp(0).to(x.dtype)


def bounce(u: torch.Tensor, top: int) -> torch.Tensor:
    """Fold the integer coordinates ``u`` into ``[0, top]`` by reflection at both ends:
    ``top - |(u mod 2 top) - top|`` (the identity on ``[0, top]``)."""
    if top < 1:
        return torch.zeros_like(u)
    return top - ((u % (2 * top)) - top).abs()


def moving_sprites(
    n: int, length: int = 12, *, size: int = 16, positions: int = 8, seed: int = 0
) -> MovingSprites:
    """``n`` sequences of ``length`` frames of a sprite bouncing on a grid of ``positions`` x
    ``positions`` centres (module docstring); shape, start cell and the velocity's signs are
    drawn uniformly.

    :param size: frame height and width in pixels (at least 16, as for
        :func:`pyro_vaes.data.sprites.generate`).
    :raises ValueError: naming the parameter out of range.
    """
    _check_sizes(n=n, length=length, positions=positions)
    table = _sprites.generate(size=size, scales=1, rotations=1, positions=positions)
    gen = torch.Generator().manual_seed(seed)
    labels = torch.randint(len(_sprites.SHAPES), (n,), generator=gen)
    start = torch.randint(positions, (n, 2), generator=gen)
    velocity = 2 * torch.randint(2, (n, 2), generator=gen) - 1
    t = torch.arange(length)
    coords = bounce(start[:, None, :] + velocity[:, None, :] * t[None, :, None], positions - 1)
    # generate() lists sprites in row-major factor order (shape, scale, rotation, x, y)
    index = (labels[:, None] * positions + coords[..., 0]) * positions + coords[..., 1]
    return MovingSprites(table.images[index], coords, labels)


def _split(name: str, x: torch.Tensor, y: torch.Tensor, n_train: int) -> Splits:
    return Splits(name, x[:n_train], y[:n_train], x[n_train:], y[n_train:])


def oscillator_splits(root: object = None) -> Splits:
    """The dataset ``"oscillator"``: 2,500 oscillations of 32 steps (defaults of
    :func:`harmonic_oscillator`, seed 0), 2,000 for training and 500 for testing; ``x`` is
    ``(N, 32, 1)``, the label the period's index."""
    osc = harmonic_oscillator(2500, 32, seed=0)
    return _split("oscillator", osc.x, osc.labels, 2000)


def moving_sprites_splits(root: object = None) -> Splits:
    """The dataset ``"moving_sprites"``: 3,000 sequences of 12 binary 16x16 frames (defaults of
    :func:`moving_sprites`, seed 0), 2,400 for training and 600 for testing; ``x`` is
    ``(N, 12, 1, 16, 16)``, the label the sprite's shape."""
    s = moving_sprites(3000, 12, seed=0)
    return _split("moving_sprites", s.frames, s.labels, 2400)
