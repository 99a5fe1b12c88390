r"""The geometry of a latent space, for pictures: geodesic interpolation and traversals.

A prior that lives on a curved space says so through a ``geometry`` attribute; every other prior
is Euclidean. Each geometry has the geodesic :math:`\gamma(t)` from :math:`a` to :math:`b` and the
exponential map :math:`\exp_z(v)` (the point reached from :math:`z` along the geodesic with
initial velocity :math:`v`):

* Euclidean: :math:`\gamma(t) = a + t(b - a)`, :math:`\exp_z(v) = z + v`;
* unit sphere: :math:`\gamma(t) = \frac{\sin((1-t)\omega)}{\sin\omega} a +
  \frac{\sin(t\omega)}{\sin\omega} b` with :math:`\cos\omega = a^\top b` (slerp), and
  :math:`\exp_z(v) = \cos\lVert v\rVert z + \sin\lVert v\rVert\, v / \lVert v\rVert` for
  :math:`v` in the tangent space at :math:`z`;
* Poincare ball of curvature :math:`-c`: geoopt's ``geodesic`` and ``expmap``.

References:
    [1] Shoemake. Animating rotation with quaternion curves. SIGGRAPH 1985.
    [2] Mathieu et al. Continuous Hierarchical Representations with Poincare Variational
    Auto-Encoders. NeurIPS 2019 (geodesic interpolations on the ball).
"""

from __future__ import annotations

from typing import Any, Protocol

import torch

from pyro_vaes.distributions.wrapped_normal import poincare_ball

__all__ = ["Ball", "Euclidean", "Geometry", "Sphere", "interpolate", "of", "traverse"]


class Geometry(Protocol):
    name: str

    def geodesic(self, a: torch.Tensor, b: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """Points ``(T, d)`` at times ``t`` ``(T,)`` on the geodesic from ``a`` to ``b``."""
        ...

    def exp(self, z: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """:math:`\\exp_z(v)` for rows ``v`` ``(T, d)`` at one point ``z`` ``(d,)``."""
        ...


class Euclidean:
    name = "euclidean"

    def geodesic(self, a: torch.Tensor, b: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return a + t[:, None] * (b - a)

    def exp(self, z: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        return z + v


class Sphere:
    name = "sphere"

    def geodesic(self, a: torch.Tensor, b: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        a, b = a / a.norm(), b / b.norm()
        omega = torch.arccos((a @ b).clamp(-1.0, 1.0))
        if float(omega) < 1e-6:  # the same point: nothing to interpolate
            return a.expand(len(t), -1).clone()
        t = t[:, None]
        return (torch.sin((1 - t) * omega) * a + torch.sin(t * omega) * b) / torch.sin(omega)

    def exp(self, z: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        z = z / z.norm()
        v = v - (v @ z)[:, None] * z  # into the tangent space at z
        norm = v.norm(dim=-1, keepdim=True)
        direction = v / norm.clamp_min(1e-12)
        return torch.cos(norm) * z + torch.sin(norm) * direction


class Ball:
    name = "poincare_ball"

    def __init__(self, c: float = 1.0) -> None:
        self.ball = poincare_ball(c)

    def geodesic(self, a: torch.Tensor, b: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return self.ball.geodesic(t[:, None], a, b)

    def exp(self, z: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        return self.ball.expmap(z.expand_as(v), v)


def of(prior: Any) -> Geometry:
    """The geometry of ``prior``'s space: its ``geometry`` attribute, else Euclidean."""
    return getattr(prior, "geometry", None) or Euclidean()


def interpolate(geometry: Geometry, a: torch.Tensor, b: torch.Tensor, steps: int) -> torch.Tensor:
    """``steps`` evenly timed points ``(steps, d)`` on the geodesic from ``a`` to ``b``."""
    if steps < 2:
        raise ValueError(f"an interpolation needs steps >= 2, got {steps}")
    return geometry.geodesic(a, b, torch.linspace(0.0, 1.0, steps, dtype=a.dtype, device=a.device))


def traverse(geometry: Geometry, z: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    r"""Latent traversals from the code ``z`` ``(d,)``: for each dimension :math:`j` and value
    :math:`t`, :math:`\exp_z(t e_j)`. Returns ``(d, len(values), d)``."""
    d = z.shape[-1]
    eye = torch.eye(d, dtype=z.dtype, device=z.device)
    v = eye[:, None, :] * values.to(z)[None, :, None]  # (d, T, d)
    return geometry.exp(z, v.reshape(-1, d)).reshape(d, len(values), d)
