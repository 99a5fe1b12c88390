"""TD-VAE: the Pyro loss is eq. (8) of Gregor et al. term by term; the pair sites add nothing
and are drawn from the stated ranges; beliefs are causal and rollouts start from the prefix."""

from __future__ import annotations

import pyro
import pytest
import torch
import torch.nn.functional as F
from pyro import poutine
from torch.distributions import Normal

import pyro_vaes as pv
from pyro_vaes import likelihoods
from pyro_vaes.models.tdvae import TDVAE


def _model(**options) -> TDVAE:
    torch.manual_seed(0)
    lik = likelihoods.get("gaussian", scale=0.3)
    return TDVAE((2,), 6, lik, latent_dim=3, belief_dim=5, hidden=(7,), **options)


def _normal(head: torch.nn.Sequential, inputs: torch.Tensor) -> Normal:
    """A head's diagonal normal, from its layers by hand."""
    trunk, out = head[0], head[1]
    loc, raw = out.head(trunk(inputs)).chunk(2, -1)
    return Normal(loc, F.softplus(raw) + out.min_scale)


def test_the_loss_is_equation_8_by_hand():
    m = _model()
    x = torch.randn(4, 6, 2)
    t1, t2 = torch.tensor([0, 2, 1, 3]), torch.tensor([1, 5, 4, 6])
    pyro.set_rng_seed(1)
    guide_tr = poutine.trace(m.guide).get_trace(x, t1=t1, t2=t2)
    loss = pyro.infer.Trace_ELBO().differentiable_loss(
        poutine.replay(m.model, trace=guide_tr), poutine.replay(m.guide, trace=guide_tr), x,
        t1=t1, t2=t2,
    )  # fmt: skip
    z1, z2 = guide_tr.nodes["z1"]["value"], guide_tr.nodes["z2"]["value"]
    want = torch.zeros(())
    with torch.no_grad():
        for i in range(4):
            a, b = int(t1[i]), int(t2[i])

            def belief(t: int, i: int = i) -> torch.Tensor:  # b_t: the LSTM over x_1..x_t alone
                if t == 0:
                    return torch.zeros(5)
                return m.lstm(m.embed(x[i : i + 1, :t]))[0][0, -1]

            b1, b2 = belief(a), belief(b)
            skip = torch.tensor([(b - a) / 4])
            p_b2 = _normal(m.belief, b2).log_prob(z2[i]).sum()
            q_s = _normal(m.smoothing, torch.cat([z2[i], b1, b2, skip])).log_prob(z1[i]).sum()
            p_b1 = _normal(m.belief, b1).log_prob(z1[i]).sum()
            p_t = _normal(m.transition, torch.cat([z1[i], skip])).log_prob(z2[i]).sum()
            p_d = Normal(m.decoder(z2[i]), 0.3).log_prob(x[i, b - 1]).sum()
            want = want + p_b2 + q_s - p_b1 - p_t - p_d
    assert float(loss.detach()) == pytest.approx(float(want), rel=1e-5, abs=1e-5)


def test_drawn_pairs_add_nothing_and_cover_the_stated_ranges():
    m = _model(max_skip=3, min_context=1)
    x = torch.randn(4000, 6, 2)
    guide_tr = poutine.trace(m.guide).get_trace(x)
    model_tr = poutine.trace(poutine.replay(m.model, trace=guide_tr)).get_trace(x)
    skip, t1 = guide_tr.nodes["skip"]["value"], guide_tr.nodes["t1"]["value"]
    assert set(skip.tolist()) == {1, 2, 3} and int(t1.min()) == 1 and int((t1 + skip).max()) == 6
    assert bool((t1 + skip <= 6).all())
    for k in (1, 2, 3):  # skip uniform on [1, D]; t1 uniform on [1, T - skip] given it
        assert abs(float((skip == k).float().mean()) - 1 / 3) < 0.03
        lo, hi = t1[skip == k].min(), t1[skip == k].max()
        assert (int(lo), int(hi)) == (1, 6 - k)
    for name in ("skip", "t1"):
        q, p = guide_tr.nodes[name], model_tr.nodes[name]
        assert torch.equal(q["fn"].log_prob(q["value"]), p["fn"].log_prob(q["value"]))


def test_the_closed_form_elbo_refuses_the_pair_sites():
    m = _model()
    with pytest.raises(ValueError, match="Trace_ELBO"):
        pv.objectives.ELBO().differentiable_loss(m.model, m.guide, torch.randn(3, 6, 2))


def test_beliefs_are_causal_and_rollouts_start_from_the_prefix():
    m = _model()
    x = torch.randn(3, 6, 2)
    later = x.clone()
    later[:, 3:] = torch.randn(3, 3, 2)
    b, b_later = m.beliefs(x), m.beliefs(later)
    assert torch.equal(b[:, :4], b_later[:, :4]) and not torch.allclose(b[:, 4:], b_later[:, 4:])
    assert torch.equal(b[:, 0], torch.zeros(3, 5))
    torch.manual_seed(5)
    out = m.rollout(x[:, :3], steps=4, skip=2)
    torch.manual_seed(5)  # by hand: z_3 ~ p_B(b_3), then four jumps of p_T with skip 2
    z = m.belief(b[:, 3]).sample()
    frames = []
    for _ in range(4):
        z = m.transition(torch.cat([z, torch.full((3, 1), 0.5)], -1)).sample()
        frames.append(m.decoder(z))
    assert out.shape == (3, 4, 2) and torch.allclose(out, torch.stack(frames, 1))
    torch.manual_seed(5)
    assert torch.allclose(m.rollout(later[:, :3], 4, skip=2), out)  # only the prefix counts
    torch.manual_seed(5)
    assert not torch.allclose(m.rollout(x[:, :4], 4, skip=2), out)
    assert m.sample(2).shape == (2, 6, 2)  # from the empty history
    assert m.reconstruct(x).shape == (3, 6, 2) and m.encode(x).shape == (3, 3)


def test_the_belief_at_t_depends_on_every_frame_before_t_and_none_after():
    """p_B(z | b_t) is a function of the whole past x_1 .. x_t: its mean has a gradient with
    respect to every earlier frame (a belief that saw only the last frame would predict no
    better than a model of frames), and none with respect to later ones."""
    m = _model()
    x = torch.randn(2, 6, 2, requires_grad=True)
    for t in range(1, 7):
        (grad,) = torch.autograd.grad(m.belief(m.beliefs(x)[:, t]).mean.sum(), x)
        seen = grad[:, :t].abs().sum(-1)
        assert bool((seen > 1e-6).all()), (t, seen)
        assert torch.equal(grad[:, t:], torch.zeros_like(grad[:, t:]))


def _belief_information(m: TDVAE, x: torch.Tensor, t: int) -> float:
    """A Gaussian-channel estimate of what b_t tells about z: sum over dims of
    0.5 log(1 + Var_seq(E[z | b_t]) / E_seq[Var(z | b_t)]), nats (0: the same belief for all)."""
    with torch.no_grad():
        belief = m.belief(m.beliefs(x)[:, t]).base_dist
    ratio = belief.loc.var(0) / belief.scale.pow(2).mean(0)
    return float(0.5 * ratio.log1p().sum())


@pytest.mark.slow
def test_the_catalogue_start_turns_the_beliefs_on_where_sigma_1_leaves_them_off():
    """From a Gaussian scale of 1 on the oscillator, an epoch of eq. (8) leaves the beliefs one
    distribution for every history (the collapse the benchmark met: the KL terms go to 0); from
    the catalogue's start (scale 0.1) the beliefs carry the history after the same epoch."""
    x = pv.data.load("oscillator").x_train[:1800]
    info = {}
    for scale in (1.0, 0.1):
        torch.manual_seed(0)
        m = pv.variants.build("tdvae", tuple(x.shape[1:]), scale=scale)
        pv.variants.registry["tdvae"].fit(m, x, epochs=1, batch_size=64, progress=False, seed=0)
        info[scale] = _belief_information(m, x[:500], 16)
    assert info[1.0] < 0.05 and info[0.1] > 0.5, info


def test_fixed_pairs_give_the_predictive_log_likelihood():
    """With t1, t2 fixed the importance-sampled bound estimates log p(x_t2 | x_<=t1): it is
    above the one-draw ELBO on average and, for the frame at t2, ignores frames after t2."""
    m = _model().eval()
    x = torch.randn(6, 6, 2)
    t1, t2 = torch.full((6,), 2), torch.full((6,), 4)
    data = {"x": x, "t1": t1, "t2": t2}
    s = pv.evaluate.scores(m.model, m.guide, data, 200, progress=False)
    assert bool((s.log_likelihood >= s.elbo).all())
    after = x.clone()
    after[:, 4:] = 10.0
    torch.manual_seed(0)
    a = pv.evaluate.log_likelihood(m.model, m.guide, data, 50)
    torch.manual_seed(0)
    b = pv.evaluate.log_likelihood(m.model, m.guide, {**data, "x": after}, 50)
    assert torch.allclose(a, b)


def test_generating_without_data_draws_a_first_frame():
    m = _model()
    draws = pyro.infer.Predictive(m.model, num_samples=2)(None)
    assert draws["x"].shape == (2, 1, 1, 2)


@pytest.mark.parametrize(
    ("t1", "t2", "match"),
    [
        ([0, 1], [5, 2], "max_skip"),
        ([-1, 1], [1, 2], "t1, t2 must"),
        ([0.0, 1.0], [1.0, 2.0], "integer steps"),
        ([0], [1], "one per sequence"),
    ],
)
def test_bad_pairs_are_refused(t1, t2, match):
    m = _model()
    with pytest.raises(ValueError, match=match):
        m.guide(torch.randn(2, 6, 2), t1=torch.tensor(t1), t2=torch.tensor(t2))


def test_bad_input_is_refused():
    m = _model()
    with pytest.raises(ValueError, match="sequences shaped"):
        m.guide(torch.randn(2, 6, 3))
    with pytest.raises(ValueError, match="skip"):
        m.rollout(torch.randn(2, 3, 2), 2, skip=5)
    with pytest.raises(ValueError, match="min_context"):
        TDVAE((2,), 3, likelihoods.get("gaussian"), min_context=3)
    with pytest.raises(ValueError, match="data_shape"):
        pv.variants.build("tdvae", (8,))
