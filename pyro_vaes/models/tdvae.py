r"""The Temporal Difference Variational Auto-Encoder (TD-VAE) as a Pyro model/guide pair.

A recurrent network filters the frames :math:`x_1, \dots, x_t` of a sequence into a belief
state :math:`b_t` (here an LSTM over per-frame MLP features; :math:`b_0 = 0`, the belief before
any frame). The belief defines a distribution over the world's state :math:`p_B(z_t \mid b_t)`,
a transition :math:`p_T(z_{t_2} \mid z_{t_1})` jumps from a state to a later one, and a decoder
:math:`p_D(x_t \mid z_t)` draws the frame. The model is trained on pairs of time points
:math:`t_1 < t_2`, :math:`t_2 - t_1 \in [1, D]`, by the loss of [1], eq. (8):

.. math::
    \mathcal L_{t_1, t_2} = \mathbb E_{z_{t_2} \sim p_B(\cdot \mid b_{t_2}),\;
    z_{t_1} \sim q_S(\cdot \mid z_{t_2}, b_{t_1}, b_{t_2})} \big[
    \log p_B(z_{t_2} \mid b_{t_2}) + \log q_S(z_{t_1} \mid z_{t_2}, b_{t_1}, b_{t_2})
    - \log p_B(z_{t_1} \mid b_{t_1}) - \log p_T(z_{t_2} \mid z_{t_1})
    - \log p_D(x_{t_2} \mid z_{t_2}) \big],

a bound :math:`-\mathcal L_{t_1, t_2} \le \log p(x_{t_2} \mid x_{\le t_1})`. As Pyro
programs:

* the **model** is the generative story given the past: :math:`z_{t_1} \sim p_B(\cdot \mid
  b_{t_1})` (site ``"z1"``), :math:`z_{t_2} \sim p_T(\cdot \mid z_{t_1})` (``"z2"``),
  :math:`x_{t_2} \sim p_D(\cdot \mid z_{t_2})` (``"x"``);
* the **guide** draws :math:`z_{t_2} \sim p_B(\cdot \mid b_{t_2})`, the belief that has seen
  :math:`x_{t_2}`, then :math:`z_{t_1} \sim q_S(\cdot \mid z_{t_2}, b_{t_1}, b_{t_2})`, the
  smoothing posterior.

So :math:`\log p - \log q` of one draw is :math:`-\mathcal L_{t_1, t_2}` term by term, and
``pyro.infer.Trace_ELBO`` is the paper's loss. The pair is part of the program too: the sites
``"skip"`` (:math:`\delta = t_2 - t_1`, uniform on :math:`[1, D]`) and ``"t1"`` (uniform on the
steps that leave room for the skip) are drawn by the guide from the same distribution as the
model's, so they add :math:`\log p - \log q = 0` and the ELBO averages
:math:`-\mathcal L_{t_1, t_2}` over the pairs, one pair per sequence and draw. Passing ``t1`` and
``t2`` (one per sequence) fixes the pair instead: the importance-sampled log-likelihood of
:mod:`pyro_vaes.analysis.evaluate` on ``{"x": x, "t1": t1, "t2": t2}`` then estimates the
jumpy predictive :math:`\log p(x_{t_2} \mid x_{\le t_1})`.

The site ``"z2"``'s prior :math:`p_T(z_{t_2} \mid z_{t_1})` depends on ``"z1"``, which the
guide draws *after* ``"z2"``: a closed-form KL at ``"z2"`` would be wrong, so the variant trains
with ``Trace_ELBO`` (log densities at the draws), and the closed-form objectives refuse the
discrete pair sites.

Two choices beyond eq. (8), both switchable: ``skip_input=True`` feeds :math:`\delta / D` to
:math:`p_T` and :math:`q_S`, so that a rollout chooses its jump (:meth:`TDVAE.rollout` in
steps of one frame); and ``min_context=0`` lets :math:`t_1 = 0`, the empty history, so that
:math:`p_B(z_0 \mid b_0)` learns where sequences start and :meth:`TDVAE.sample` generates
whole sequences (``min_context=1`` keeps the paper's :math:`t_1 \ge 1`).

References:
    [1] Gregor, Papamakarios, Besse, Buesing, Weber. Temporal Difference Variational
    Auto-Encoder. ICLR 2019.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

import pyro
import pyro.distributions as dist
import torch
from pyro.distributions import TorchDistribution
from torch import nn
from torch.distributions import constraints

from pyro_vaes.guides.diagonal_normal import DiagonalNormal
from pyro_vaes.likelihoods import Likelihood
from pyro_vaes.models.base import BaseModel
from pyro_vaes.nets import MLPDecoder, MLPEncoder

__all__ = ["TDVAE", "FrameAt"]

_EMPTY = torch.Size()


class FrameAt(TorchDistribution):
    r"""A distribution over whole sequences that models one frame: the frame at ``index`` (per
    batch entry) follows ``frame``, the other frames are those of ``sequences`` (the condition
    of the pair, not modelled). ``log_prob`` is the frame's :math:`\log p_D(x_{t_2} \mid z)`;
    a draw is ``sequences`` with that frame drawn from ``frame``. It lets TD-VAE's observed
    site ``"x"`` be the whole sequence, as the evaluation and the posterior predictive expect.

    :param frame: the distribution of the frame, event shape ``frame_shape``.
    :param sequences: ``(..., T, *frame_shape)``, broadcastable to the frame's batch shape.
    :param index: the frame's step per batch entry, in ``[0, T)``.
    :param support: the support of one frame's values (the likelihood's).
    """

    arg_constraints: ClassVar[dict[str, constraints.Constraint]] = {}
    has_rsample = False

    def __init__(
        self,
        frame: TorchDistribution,
        sequences: torch.Tensor,
        index: torch.Tensor,
        support: constraints.Constraint,
    ) -> None:
        k = len(frame.event_shape)
        batch = frame.batch_shape
        event = tuple(sequences.shape[sequences.dim() - k - 1 :])
        self.frame = frame
        self.sequences = sequences.expand(*batch, *event)
        self.index = index.expand(batch)
        self._support = constraints.independent(support, k + 1)
        super().__init__(batch, torch.Size(event), validate_args=False)

    @constraints.dependent_property
    def support(self) -> constraints.Constraint:  # type: ignore[override]
        return self._support

    def _positions(self, shape: torch.Size) -> torch.Tensor:
        """``index`` shaped to gather/scatter along the time dim of a tensor of ``shape``."""
        k = len(self.event_shape) - 1
        idx = self.index.reshape(*self.index.shape, 1, *(1,) * k)
        return idx.expand(*shape[: len(shape) - k - 1], 1, *shape[len(shape) - k :])

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        value = value.expand(*self.batch_shape, *self.event_shape)
        dim = len(self.batch_shape)
        frame = value.gather(dim, self._positions(value.shape)).squeeze(dim)
        return self.frame.log_prob(frame)

    def sample(
        self, sample_shape: torch.Size | list[int] | tuple[int, ...] = _EMPTY
    ) -> torch.Tensor:
        shape = torch.Size(sample_shape) + self.batch_shape + self.event_shape
        out = self.sequences.expand(shape).clone()
        frames = self.frame.sample(sample_shape).unsqueeze(len(shape) - len(self.event_shape))
        return out.scatter(
            len(shape) - len(self.event_shape), self._positions(shape).expand_as(frames), frames
        )


def _normal_head(in_features: int, hidden: Sequence[int], latent_dim: int) -> nn.Sequential:
    """An MLP trunk and a diagonal normal over ``latent_dim`` dims: ``h -> N(mu, sigma)``."""
    trunk = MLPEncoder((in_features,), hidden)
    return nn.Sequential(trunk, DiagonalNormal(trunk.out_features, latent_dim))


class TDVAE(BaseModel):
    r"""TD-VAE (module docstring) for sequences ``x`` of shape ``(N, T, *frame_shape)``.

    :param frame_shape: the shape of one frame.
    :param seq_len: the number of frames :meth:`sample` generates (the data's length).
    :param likelihood: :math:`p_D`'s family over a frame.
    :param latent_dim: the size of the state :math:`z`.
    :param belief_dim: the size of the belief :math:`b` (the LSTM's hidden state).
    :param hidden: the hidden sizes of the frame encoder, of the MLPs of :math:`p_B`,
        :math:`p_T`, :math:`q_S`, and (reversed) of the decoder.
    :param max_skip: :math:`D`, the largest jump :math:`t_2 - t_1` trained on.
    :param min_context: the smallest :math:`t_1` (0: the empty history counts).
    :param skip_input: feed :math:`\delta / D` to :math:`p_T` and :math:`q_S`.
    """

    latent_sites = ("skip", "t1", "z2", "z1")

    def __init__(
        self,
        frame_shape: Sequence[int],
        seq_len: int,
        likelihood: Likelihood,
        *,
        latent_dim: int = 8,
        belief_dim: int = 64,
        hidden: Sequence[int] = (64,),
        max_skip: int = 4,
        min_context: int = 0,
        skip_input: bool = True,
    ) -> None:
        super().__init__()
        for name, value, low in (
            ("seq_len", seq_len, 1),
            ("latent_dim", latent_dim, 1),
            ("belief_dim", belief_dim, 1),
            ("max_skip", max_skip, 1),
            ("min_context", min_context, 0),
        ):
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
        if min_context >= seq_len:
            raise ValueError(
                f"min_context {min_context} leaves no pair in sequences of {seq_len} frames"
            )
        if not hidden:
            raise ValueError("hidden needs at least one layer size")
        self.frame_shape = tuple(int(s) for s in frame_shape)
        self.seq_len, self.latent_dim, self.belief_dim = seq_len, latent_dim, belief_dim
        self.max_skip, self.min_context, self.skip_input = max_skip, min_context, skip_input
        s = 1 if skip_input else 0
        self.embed = MLPEncoder(self.frame_shape, hidden)
        self.lstm = nn.LSTM(self.embed.out_features, belief_dim, batch_first=True)
        self.belief = _normal_head(belief_dim, hidden, latent_dim)  # p_B(z | b)
        self.transition = _normal_head(latent_dim + s, hidden, latent_dim)  # p_T(z2 | z1)
        self.smoothing = _normal_head(latent_dim + 2 * belief_dim + s, hidden, latent_dim)  # q_S
        self.decoder = MLPDecoder(latent_dim, self.frame_shape, tuple(reversed(hidden)))
        self.likelihood = likelihood

    # ------------------------------------------------------------------ pieces

    def check_sequences(self, x: torch.Tensor, name: str = "x") -> None:
        """:raises ValueError: unless ``x`` is ``(N, T, *frame_shape)``."""
        k = len(self.frame_shape)
        if x.dim() != k + 2 or tuple(x.shape[2:]) != self.frame_shape:
            raise ValueError(
                f"{name} must be sequences shaped (N, T, *{self.frame_shape}), got a tensor of "
                f"shape {tuple(x.shape)}"
            )

    def beliefs(self, x: torch.Tensor) -> torch.Tensor:
        """The beliefs :math:`b_0, \\dots, b_T` of sequences ``x`` ``(N, T, ...)``, shaped
        ``(N, T + 1, belief_dim)``; :math:`b_t` has seen the frames :math:`x_1 .. x_t` (the first
        ``t`` of ``x``), :math:`b_0 = 0`."""
        self.check_sequences(x)
        b0 = x.new_zeros(x.shape[0], 1, self.belief_dim)
        if x.shape[1] == 0:
            return b0
        out, _ = self.lstm(self.embed(x))
        return torch.cat([b0, out], dim=1)

    def _skip_feature(self, skip: torch.Tensor | int, like: torch.Tensor) -> torch.Tensor:
        """:math:`\\delta / D` as one input column beside ``like`` (empty without skip_input)."""
        if not self.skip_input:
            return like.new_zeros((*like.shape[:-1], 0))
        skip = torch.as_tensor(skip, dtype=like.dtype, device=like.device)
        return (skip / self.max_skip).expand(like.shape[:-1]).unsqueeze(-1)

    def transition_from(self, z1: torch.Tensor, skip: torch.Tensor | int) -> TorchDistribution:
        """:math:`p_T(z_{t_1 + \\delta} \\mid z_{t_1})`."""
        return self.transition(torch.cat([z1, self._skip_feature(skip, z1)], dim=-1))

    def smoothing_posterior(
        self, z2: torch.Tensor, b1: torch.Tensor, b2: torch.Tensor, skip: torch.Tensor
    ) -> TorchDistribution:
        """:math:`q_S(z_{t_1} \\mid z_{t_2}, b_{t_1}, b_{t_2})`."""
        lead = torch.broadcast_shapes(z2.shape[:-1], b1.shape[:-1], b2.shape[:-1])
        inputs = [t.expand(*lead, t.shape[-1]) for t in (z2, b1, b2)]
        return self.smoothing(torch.cat([*inputs, self._skip_feature(skip, inputs[0])], dim=-1))

    def _pair(
        self, x: torch.Tensor, t1: torch.Tensor | None, t2: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The pair ``(t1, t2)`` per sequence: the given one (checked), or the sites ``"skip"``
        and ``"t1"`` (inside the data plate)."""
        n, length = x.shape[0], x.shape[1]
        if (t1 is None) != (t2 is None):
            raise ValueError("pass both t1 and t2 to fix the pair, or neither to draw it")
        if t1 is not None and t2 is not None:
            return self._checked_pair(t1, t2, n, length)
        top = min(self.max_skip, length - self.min_context)
        if top < 1:
            raise ValueError(
                f"x has {length} frames: TD-VAE needs more than min_context={self.min_context}"
            )
        skip_logits = x.new_full((self.max_skip + 1,), -torch.inf)
        skip_logits[1 : top + 1] = 0.0
        skip = pyro.sample("skip", dist.Categorical(logits=skip_logits))
        steps = torch.arange(length, device=x.device)
        room = (steps >= self.min_context) & (steps <= (length - skip).unsqueeze(-1))
        t1 = pyro.sample(
            "t1", dist.Categorical(logits=x.new_zeros(room.shape).masked_fill(~room, -torch.inf))
        )
        return t1, t1 + skip

    def _checked_pair(
        self, t1: torch.Tensor, t2: torch.Tensor, n: int, length: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        for name, t in (("t1", t1), ("t2", t2)):
            if t.dtype.is_floating_point or t.dtype == torch.bool or t.shape != (n,):
                raise ValueError(
                    f"{name} must be integer steps, one per sequence ({n}), got dtype {t.dtype} "
                    f"and shape {tuple(t.shape)}"
                )
        skip = t2 - t1
        bad = (t1 < 0) | (t2 > length) | (skip < 1) | (skip > self.max_skip)
        if bool(bad.any()):
            i = int(bad.nonzero()[0, 0])
            raise ValueError(
                f"t1, t2 must satisfy 0 <= t1 < t2 <= T = {length} and t2 - t1 <= max_skip = "
                f"{self.max_skip}; sequence {i} has t1={int(t1[i])}, t2={int(t2[i])}"
            )
        return t1, t2

    @staticmethod
    def _at(values: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """``values[i, t[..., i]]`` for every sequence ``i`` (``t`` may carry particle dims)."""
        return values[torch.arange(values.shape[0], device=values.device), t]

    # ------------------------------------------------------------------ model and guide

    def model(
        self,
        x: torch.Tensor | None = None,
        y: torch.Tensor | None = None,
        t1: torch.Tensor | None = None,
        t2: torch.Tensor | None = None,
    ) -> None:
        r""":math:`z_{t_1} \sim p_B(\cdot \mid b_{t_1})`, :math:`z_{t_2} \sim p_T(\cdot \mid
        z_{t_1})`, :math:`x_{t_2} \sim p_D(\cdot \mid z_{t_2})` for each sequence. With
        ``x=None``: the first frame from the empty history (:math:`t_1 = 0`, :math:`t_2 = 1`);
        ``y`` is ignored."""
        self.register_with_pyro()
        with self.data_plate(x, y):
            if x is None:
                n = 1 if y is None else y.shape[0]
                if t1 is not None or t2 is not None:
                    raise ValueError("with x=None the model draws the first frame: no t1, t2")
                b1 = torch.zeros(n, self.belief_dim, device=_device(self))
                skip: torch.Tensor | int = 1
                context = b1.new_zeros(n, 1, *self.frame_shape)  # one frame, drawn
                target = torch.zeros(n, dtype=torch.long, device=b1.device)
            else:
                b = self.beliefs(x)
                t1, t2 = self._pair(x, t1, t2)
                b1, skip, context, target = self._at(b, t1), t2 - t1, x, t2 - 1
            z1 = pyro.sample("z1", self.belief(b1))
            z2 = pyro.sample("z2", self.transition_from(z1, skip))
            frame = self.likelihood(self.decoder(z2), len(self.frame_shape))
            support = self.likelihood.support
            pyro.sample("x", FrameAt(frame, context, target, support), obs=x)

    def guide(
        self,
        x: torch.Tensor | None = None,
        y: torch.Tensor | None = None,
        t1: torch.Tensor | None = None,
        t2: torch.Tensor | None = None,
    ) -> None:
        r""":math:`z_{t_2} \sim p_B(\cdot \mid b_{t_2})`, then :math:`z_{t_1} \sim
        q_S(\cdot \mid z_{t_2}, b_{t_1}, b_{t_2})`, for each sequence."""
        self.register_with_pyro()
        x = self.require_x(x)
        b = self.beliefs(x)
        with self.data_plate(x):
            t1, t2 = self._pair(x, t1, t2)
            b1, b2 = self._at(b, t1), self._at(b, t2)
            z2 = pyro.sample("z2", self.belief(b2))
            pyro.sample("z1", self.smoothing_posterior(z2, b1, b2, t2 - t1))

    # ------------------------------------------------------------------ pictures and rollouts

    @torch.no_grad()
    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """The mean state of the belief after the whole sequence,
        :math:`\\mathbb E[z_T \\mid b_T]`, ``(N, latent_dim)``."""
        return self.belief(self.beliefs(x)[:, -1]).mean

    @torch.no_grad()
    def decode(self, code: torch.Tensor) -> torch.Tensor:
        """The mean frame :math:`\\mathbb E[x \\mid z]` of each state."""
        return self.likelihood.mean(self.decoder(code))

    @torch.no_grad()
    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        """Each frame decoded from the mean state of the belief that has seen it,
        :math:`\\mathbb E[x_t \\mid \\mathbb E[z_t \\mid b_t]]`, ``(N, T, *frame_shape)``."""
        return self.decode(self.belief(self.beliefs(x)[:, 1:]).mean)

    @torch.no_grad()
    def rollout(self, prefix: torch.Tensor, steps: int, skip: int = 1) -> torch.Tensor:
        """Imagined futures of the sequences ``prefix`` ``(N, t, *frame_shape)`` (``t = 0``:
        from the empty history): :math:`z_t \\sim p_B(\\cdot \\mid b_t)`, then ``steps`` jumps
        :math:`z \\leftarrow z' \\sim p_T(\\cdot \\mid z)` of ``skip`` frames, each decoded to its
        mean frame: ``(N, steps, *frame_shape)``, the frames :math:`t + \\delta, t + 2\\delta,
        \\dots`.

        :raises ValueError: for a bad ``prefix``, ``steps < 1``, or a ``skip`` outside
            ``[1, max_skip]`` (any skip of the training range when ``skip_input=False``: then
            ``skip`` must be 1 and each jump is one of those the model was trained on).
        """
        if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
            raise ValueError(f"steps must be a positive integer, got {steps!r}")
        if not isinstance(skip, int) or not 1 <= skip <= self.max_skip:
            raise ValueError(
                f"skip must be an integer in [1, max_skip={self.max_skip}], got {skip!r}"
            )
        if not self.skip_input and skip != 1:
            raise ValueError("this TD-VAE takes no skip input (skip_input=False): skip must be 1")
        z = self.belief(self.beliefs(prefix)[:, -1]).sample()
        frames = []
        for _ in range(steps):
            z = self.transition_from(z, skip).sample()
            frames.append(self.decode(z))
        return torch.stack(frames, dim=1)

    @torch.no_grad()
    def sample(self, n: int) -> torch.Tensor:
        """``n`` sequences of ``seq_len`` mean frames rolled out from the empty history,
        ``(n, seq_len, *frame_shape)``."""
        empty = torch.zeros(n, 0, *self.frame_shape, device=_device(self))
        return self.rollout(empty, self.seq_len)


def _device(module: nn.Module) -> torch.device:
    return next(module.parameters()).device
