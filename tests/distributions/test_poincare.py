"""The wrapped normal on the Poincare ball, the gyroplane layer, the tree data and the P-VAE."""

from __future__ import annotations

import math

import pytest
import torch
from torch.autograd.functional import jacobian

import pyro_vaes as pv
from pyro_vaes.distributions import WrappedNormal
from pyro_vaes.distributions.wrapped_normal import PoincareBall, log_sinhc
from pyro_vaes.nets import Gyroplane

D64 = torch.float64


@pytest.mark.parametrize("c", [1.0, 0.5, 2.0])
def test_density_integrates_to_one_on_the_2d_ball(c):
    radius = 1 / math.sqrt(c)
    d = WrappedNormal(
        torch.tensor([0.5, -0.3], dtype=D64) * radius, torch.tensor([0.4, 0.7], dtype=D64), c=c
    )
    n = 1200  # midpoint rule in polar coordinates, against the Riemannian volume lambda_x^2 dx
    r = (torch.arange(n, dtype=D64) + 0.5) / n * radius
    t = (torch.arange(2 * n, dtype=D64) + 0.5) / (2 * n) * 2 * math.pi
    rr, tt = torch.meshgrid(r, t, indexing="ij")
    x = torch.stack([rr * tt.cos(), rr * tt.sin()], -1)
    lam = 2 / (1 - c * (x**2).sum(-1))
    total = (d.log_prob(x).exp() * lam**2 * rr).sum() * (radius / n) * (math.pi / n)
    assert float(total) == pytest.approx(1.0, abs=1e-4)


@pytest.mark.parametrize("c", [1.0, 0.3])
def test_log_prob_of_draws_is_the_pushforward_density(c):
    """log p(z) from the distribution against an independent computation: the Gaussian density
    of the tangent draw over |det| of the map's Jacobian (autograd), moved from Lebesgue to
    Riemannian volume."""
    torch.manual_seed(0)
    loc = torch.tensor([0.4, -0.7], dtype=D64) / math.sqrt(c)
    scale = torch.tensor([0.3, 0.9], dtype=D64)
    d = WrappedNormal(loc, scale, c=c)
    for _ in range(5):
        v = scale * torch.randn(2, dtype=D64)
        z = d.push(v)
        log_normal = torch.distributions.Normal(0.0, scale).log_prob(v).sum()
        log_det = torch.linalg.slogdet(jacobian(d.push, v)).logabsdet
        lam = 2 / (1 - c * (z**2).sum())
        expected = log_normal - log_det - 2 * torch.log(lam)
        # geoopt clamps artanh's argument at 1 - 1e-7, which shows far out on the ball
        torch.testing.assert_close(d.log_prob(z), expected, atol=1e-5, rtol=1e-5)
        # and the closed form written with the geodesic distance r = |v|
        closed = log_normal - log_sinhc(math.sqrt(c) * v.norm())  # (d - 1) = 1
        torch.testing.assert_close(d.log_prob(z), closed, atol=1e-5, rtol=1e-5)


def test_rsample_keeps_gradients_and_matches_geoopt_geometry():
    loc = torch.tensor([[0.1, 0.2, -0.3]], requires_grad=True)
    scale = torch.tensor([[0.5, 0.5, 0.5]], requires_grad=True)
    z = WrappedNormal(loc, scale).rsample((7,))
    z.sum().backward()
    assert loc.grad is not None and scale.grad is not None
    assert torch.all(z.norm(dim=-1) < 1)
    ball = PoincareBall(c=1.0)
    d = WrappedNormal(loc.detach(), scale.detach())
    zz = d.rsample()
    dist = ball.dist(d.loc, zz)
    torch.testing.assert_close(dist, d.pull(zz).norm(dim=-1), atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("dim", [2, 10, 64])
def test_points_at_the_boundary_give_finite_values_and_gradients(dim):
    for dtype, gap in ((torch.float64, 1e-7), (torch.float32, 1e-6)):
        direction = torch.randn(dim, dtype=dtype)
        direction = direction / direction.norm()
        x = ((1 - gap) * direction).requires_grad_(True)
        loc = (0.999999 * -direction).requires_grad_(True)
        raw = torch.zeros(dim, dtype=dtype, requires_grad=True)
        d = WrappedNormal(loc, torch.nn.functional.softplus(raw) + 1e-3)
        lp = d.log_prob(x) + d.log_prob(d.rsample()).sum()
        lp.backward()
        assert torch.isfinite(lp)
        for t in (x, loc, raw):
            assert torch.isfinite(t.grad).all()


def test_gyroplane_is_hyperbolic_mlr():
    torch.manual_seed(0)
    c = 0.7
    layer = Gyroplane(2, 4, c=c)
    with torch.no_grad():
        layer.offsets.mul_(30)
    z = torch.tensor([[0.1, 0.2], [0.5, -0.5]])
    ball = PoincareBall(c=c)
    out = layer(z)
    for k in range(4):
        p, a = ball.expmap0(layer.offsets[k]), layer.normals[k]
        w = ball.mobius_add(-p, z)
        lam = 2 / (1 - c * (p**2).sum())
        arg = 2 * math.sqrt(c) * (w * a).sum(-1) / ((1 - c * (w**2).sum(-1)) * a.norm())
        torch.testing.assert_close(out[:, k], lam * a.norm() / math.sqrt(c) * torch.asinh(arg))
    assert layer(torch.zeros(3, 5, 2)).shape == (3, 5, 4)


def test_tree_data_structure():
    x, depth = pv.data.branching_diffusion(depth=4, branching=3, dim=7, per_node=2)
    assert x.shape == ((3**5 - 1) // 2 * 2, 7)
    assert torch.bincount(depth).tolist() == [2 * 3**k for k in range(5)]
    splits = pv.data.load("tree")
    assert splits.shape == (50,) and len(splits.x_train) + len(splits.x_test) == 127 * 10
    with pytest.raises(ValueError):
        pv.data.branching_diffusion(depth=0)


@pytest.mark.slow
def test_pvae_trains_on_tree_data():
    splits = pv.data.load("tree")
    torch.manual_seed(0)
    vae = pv.variants.build("pvae", splits.shape, latent_dim=2, hidden=(64,), likelihood="gaussian")
    assert isinstance(vae.decoder[0], Gyroplane)
    before = pv.evaluate.log_likelihood(vae.model, vae.guide, splits.x_test, 50).mean()
    history = pv.fit(vae.model, vae.guide, splits.x_train, epochs=10, batch_size=64, progress=False)
    after = pv.evaluate.log_likelihood(vae.model, vae.guide, splits.x_test, 50).mean()
    assert all(math.isfinite(v) for v in history.loss) and after > before + 20
    codes = vae.posterior(vae.encoder(splits.x_test)).loc
    assert torch.all(codes.norm(dim=-1) < 1)


def test_bad_arguments():
    with pytest.raises(ValueError, match="curvature"):
        WrappedNormal(torch.zeros(2), 1.0, c=0.0)
    with pytest.raises(ValueError, match="gyroplane"):
        pv.variants.build("pvae", (1, 8, 8), net="conv")
