"""Geodesics and exponential maps of the latent geometries used for pictures."""

from __future__ import annotations

import math

import pytest
import torch

from pyro_vaes import geometry
from pyro_vaes.priors import HypersphericalUniform, StandardNormal, WrappedNormal


def test_each_prior_names_its_geometry():
    assert isinstance(geometry.of(StandardNormal(3)), geometry.Euclidean)
    assert isinstance(geometry.of(HypersphericalUniform(3)), geometry.Sphere)
    assert isinstance(geometry.of(WrappedNormal(2, c=0.5)), geometry.Ball)


def test_slerp_stays_on_the_sphere_at_constant_speed():
    a, b = torch.tensor([1.0, 0.0, 0.0]), torch.tensor([0.0, 0.6, 0.8])
    path = geometry.interpolate(geometry.Sphere(), a, b, 7)
    assert torch.allclose(path.norm(dim=-1), torch.ones(7), atol=1e-6)
    assert torch.allclose(path[0], a, atol=1e-6) and torch.allclose(path[-1], b, atol=1e-6)
    angles = torch.arccos((path[1:] * path[:-1]).sum(-1).clamp(-1, 1))
    assert torch.allclose(angles, torch.full((6,), math.pi / 2 / 6), atol=1e-5)


def test_poincare_geodesic_splits_the_distance():
    geo = geometry.Ball(c=1.0)
    a, b = torch.tensor([0.1, 0.2]), torch.tensor([-0.7, 0.6])  # b near the boundary
    path = geometry.interpolate(geo, a, b, 5)
    assert (path.norm(dim=-1) < 1).all()
    whole = geo.ball.dist(a, b)
    for t, p in zip(torch.linspace(0, 1, 5), path, strict=True):
        assert float(geo.ball.dist(a, p)) == pytest.approx(float(t * whole), rel=1e-4, abs=1e-5)


def test_traversals_follow_the_exponential_map():
    values = torch.linspace(-2.0, 2.0, 5)
    z = torch.tensor([0.3, -0.2, 0.5])
    flat = geometry.traverse(geometry.Euclidean(), z, values)
    assert flat.shape == (3, 5, 3)
    assert torch.allclose(flat[1, :, 1] - z[1], values) and torch.allclose(
        flat[1, :, 0], z[0].expand(5)
    )
    s = z / z.norm()
    sphere = geometry.traverse(geometry.Sphere(), s, values)
    assert torch.allclose(sphere.norm(dim=-1), torch.ones(3, 5), atol=1e-6)
    assert torch.allclose(sphere[:, 2], s.expand(3, 3), atol=1e-6)  # value 0: the code itself
    ball = geometry.traverse(geometry.Ball(), torch.tensor([0.2, 0.1]), values)
    assert (ball.norm(dim=-1) < 1).all() and torch.isfinite(ball).all()


def test_interpolation_needs_two_steps():
    with pytest.raises(ValueError):
        geometry.interpolate(geometry.Euclidean(), torch.zeros(2), torch.ones(2), 1)
