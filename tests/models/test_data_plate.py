"""The data plate: every sample site carries what ``pyro.plate`` gives it (frames, scale, batch
shape, log densities), without the broadcasts that change nothing."""

from __future__ import annotations

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro import poutine
from pyro.poutine.util import prune_subsample_sites

import pyro_vaes as pv
from pyro_vaes.models.data_plate import DataPlate
from pyro_vaes.objectives import ELBO

N, D = 5, 3


def _program(plate, loc, x):
    """A prior without batch dims, a posterior-like site of the batch's shape, an observation."""

    def model():
        with plate("data", N):
            z = pyro.sample("z", dist.Normal(torch.zeros(D), 1.0).to_event(1))
            w = pyro.sample("w", dist.Normal(loc, 1.0).to_event(1))
            pyro.sample("x", dist.Normal(z + w, 1.0).to_event(1), obs=x)

    return model


def _trace(plate, loc, x):
    torch.manual_seed(0)
    return poutine.trace(_program(plate, loc, x)).get_trace()


def test_sites_carry_what_pyro_plate_gives_them():
    loc, x = torch.randn(N, D), torch.randn(N, D)
    ours, pyros = _trace(DataPlate, loc, x), _trace(pyro.plate, loc, x)
    assert list(ours.nodes) == list(pyros.nodes)
    assert torch.equal(ours.nodes["data"]["value"], torch.arange(N))
    ours, pyros = prune_subsample_sites(ours), prune_subsample_sites(pyros)
    for name in ("z", "w", "x"):
        a, b = ours.nodes[name], pyros.nodes[name]
        assert a["cond_indep_stack"] == b["cond_indep_stack"]
        assert a["cond_indep_stack"][0].full_size == N
        assert a["scale"] == b["scale"] == 1.0
        assert a["fn"].batch_shape == b["fn"].batch_shape == (N,)
        assert torch.equal(a["value"], b["value"])
    ours.compute_log_prob()
    pyros.compute_log_prob()
    for name in ("z", "w", "x"):
        assert torch.equal(ours.nodes[name]["log_prob"], pyros.nodes[name]["log_prob"])


def test_only_a_distribution_of_another_batch_shape_is_expanded():
    loc = torch.randn(N, D, requires_grad=True)
    q = dist.Normal(loc, 1.0).to_event(1)
    prior = dist.Normal(torch.zeros(D), 1.0).to_event(1)
    with poutine.trace() as tr, DataPlate("data", N):
        pyro.sample("w", q)
        pyro.sample("z", prior)
    assert tr.trace.nodes["w"]["fn"] is q  # already (N,): left as it is, no expand node
    assert tr.trace.nodes["z"]["fn"] is not prior
    assert tr.trace.nodes["z"]["fn"].batch_shape == (N,)


def test_a_batch_shape_that_disagrees_with_the_plate_is_refused_as_pyro_refuses_it():
    with pytest.raises(ValueError, match="Shape mismatch inside plate"), DataPlate("data", N):
        pyro.sample("z", dist.Normal(torch.zeros(N + 1), 1.0))


def test_a_subsample_drawn_by_the_guide_is_replayed_and_scaled_as_by_pyro_plate():
    def guide():
        with pyro.plate("data", 100, subsample_size=N):
            pyro.sample("w", dist.Normal(torch.zeros(N), 1.0))

    def model():
        with DataPlate("data", 100) as idx:
            pyro.sample("w", dist.Normal(0.0, 1.0))
        return idx

    guide_tr = poutine.trace(guide).get_trace()
    model_tr = poutine.trace(poutine.replay(model, trace=guide_tr)).get_trace()
    assert torch.equal(model_tr.nodes["_RETURN"]["value"], guide_tr.nodes["data"]["value"])
    assert model_tr.nodes["w"]["scale"] == 100 / N
    assert model_tr.nodes["w"]["fn"].batch_shape == (N,)


def test_inside_a_vectorised_particle_plate_the_draws_broadcast_as_with_pyro_plate():
    loc = torch.randn(N, D)
    shapes = []
    for plate in (DataPlate, pyro.plate):
        with pyro.plate("particles", 4, dim=-2), plate("data", N):
            shapes.append(pyro.sample("w", dist.Normal(loc, 1.0).to_event(1)).shape)
    assert shapes[0] == shapes[1] == (4, N, D)


def test_the_elbo_and_its_gradients_are_those_of_pyro_plate():
    x = torch.bernoulli(torch.rand(N, 8, generator=torch.Generator().manual_seed(0)))
    vae = pv.variants.build("vae", (8,), latent_dim=2, hidden=(8,))

    def with_pyro_plate(fn):
        def run(x):
            original = vae.data_plate

            def plate(x, y=None):
                return pyro.plate("data", x.shape[0])

            vae.data_plate = plate  # type: ignore[method-assign]
            try:
                fn(x)
            finally:
                vae.data_plate = original  # type: ignore[method-assign]

        return run

    results = []
    for model, guide in [
        (vae.model, vae.guide),
        (with_pyro_plate(vae.model), with_pyro_plate(vae.guide)),
    ]:
        vae.zero_grad()
        torch.manual_seed(1)
        loss = ELBO().differentiable_loss(model, guide, x)
        loss.backward()
        results.append((loss.detach(), [p.grad.clone() for p in vae.parameters()]))
    (l1, g1), (l2, g2) = results
    assert torch.equal(l1, l2)
    for a, b in zip(g1, g2, strict=True):
        assert torch.allclose(a, b, rtol=1e-6, atol=1e-7)
