"""The wrapped normal distribution on the Poincare ball, with geometry from geoopt."""

from __future__ import annotations

import math
import warnings
from typing import TYPE_CHECKING, Any, ClassVar

import torch
from pyro.distributions import TorchDistribution, constraints

if TYPE_CHECKING:
    from geoopt import PoincareBall

__all__ = ["PoincareBall", "WrappedNormal", "log_sinhc", "poincare_ball"]


def _geoopt_ball() -> type[PoincareBall]:
    # geoopt is imported when a ball is first made: it pulls in scipy.optimize (half a second)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # geoopt scripts functions with torch.jit
        from geoopt import PoincareBall

    return PoincareBall


def poincare_ball(c: float) -> PoincareBall:
    """geoopt's Poincare ball of curvature :math:`-c`."""
    return _geoopt_ball()(c=c)


def __getattr__(name: str) -> Any:  # ``PoincareBall`` itself, imported on first use
    if name == "PoincareBall":
        return _geoopt_ball()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


_SCALAR = torch.Size()
_ShapeLike = torch.Size | list[int] | tuple[int, ...]


def log_sinhc(y: torch.Tensor) -> torch.Tensor:
    r""":math:`\log(\sinh(y) / y)` for :math:`y \ge 0`, without overflow for large :math:`y` or
    cancellation for small :math:`y`."""
    small = y < 1e-3
    y_big = torch.where(small, torch.ones_like(y), y)
    big = y_big + torch.log1p(-torch.exp(-2 * y_big)) - math.log(2.0) - torch.log(y_big)
    return torch.where(small, y * y / 6, big)


class WrappedNormal(TorchDistribution):
    r"""The wrapped (Riemannian-pushforward) normal on the Poincare ball
    :math:`\mathbb B^d_c = \{x : c\|x\|^2 < 1\}`:

    .. math::
        v \sim \mathcal N(0, \operatorname{diag}\sigma^2) \text{ in } T_0\mathbb B, \qquad
        z = \exp_\mu\!\big(\mathrm{PT}_{0\to\mu}(v / \lambda_0)\big),

    with the conformal factor :math:`\lambda_x = 2 / (1 - c\|x\|^2)`. Its density with respect
    to the ball's Riemannian volume is exact:

    .. math::
        \log p(z) = \log\mathcal N(v; 0, \operatorname{diag}\sigma^2)
        - (d-1)\log\frac{\sinh(\sqrt c\, r)}{\sqrt c\, r}, \qquad
        r = d_c(\mu, z) = \|v\|,\; v = \lambda_0\,\mathrm{PT}_{\mu\to 0}(\log_\mu z).

    (Against Lebesgue measure in the ball's coordinates, add :math:`d \log\lambda_z`.) The maps
    come from ``geoopt.PoincareBall``; points are projected a float-precision margin inside the
    boundary, so points at the edge give finite densities and gradients. geoopt's own
    ``wrapped_normal`` sampler returns a tensor detached from ``loc`` and ``scale``; this
    ``rsample`` keeps the gradients.

    :param loc: :math:`\mu`, points of the ball ``(..., d)``.
    :param scale: :math:`\sigma > 0`, ``(..., d)`` or broadcastable.
    :param c: the curvature magnitude :math:`c > 0` (curvature :math:`-c`).

    References:
        [1] Mathieu, Le Lan, Maddison, Tomioka, Teh. Continuous Hierarchical Representations with
        Poincare Variational Auto-Encoders. NeurIPS 2019.
        [2] Nagano, Yamaguchi, Fujita, Koyama. A Wrapped Normal Distribution on Hyperbolic Space
        for Gradient-Based Learning. ICML 2019.
    """

    arg_constraints: ClassVar[dict[str, constraints.Constraint]] = {
        "loc": constraints.real_vector,
        "scale": constraints.positive,
    }
    support = constraints.real_vector
    has_rsample = True

    def __init__(
        self,
        loc: torch.Tensor,
        scale: torch.Tensor | float,
        c: float = 1.0,
        validate_args: bool | None = None,
    ) -> None:
        if not c > 0:
            raise ValueError(f"the curvature magnitude c must be > 0, got {c!r}")
        if loc.dim() < 1:
            raise ValueError("loc must have shape (..., d)")
        scale = torch.as_tensor(scale, dtype=loc.dtype, device=loc.device)
        if scale.dim() == 0:
            scale = scale.expand(loc.shape[-1])
        shape = torch.broadcast_shapes(loc.shape, scale.shape)
        self.c = float(c)
        self.ball = poincare_ball(self.c)
        self.loc = self.ball.projx(loc.expand(shape))
        self.scale = scale.expand(shape)
        super().__init__(shape[:-1], shape[-1:], validate_args=validate_args)

    @property
    def dim(self) -> int:
        return self.event_shape[0]

    def _lambda0(self) -> float:
        return 2.0  # the conformal factor at the origin, for every c

    def rsample(self, sample_shape: _ShapeLike = _SCALAR) -> torch.Tensor:
        shape = self._extended_shape(torch.Size(sample_shape))
        v = self.scale * torch.randn(shape, dtype=self.loc.dtype, device=self.loc.device)
        return self.push(v)

    def push(self, v: torch.Tensor) -> torch.Tensor:
        r""":math:`z = \exp_\mu(\mathrm{PT}_{0\to\mu}(v/\lambda_0))` for tangent vectors ``v``."""
        zero = torch.zeros_like(self.loc)
        u = self.ball.transp(zero, self.loc, v / self._lambda0())
        return self.ball.expmap(self.loc, u)

    def pull(self, z: torch.Tensor) -> torch.Tensor:
        r"""The inverse of :meth:`push`: :math:`v = \lambda_0 \mathrm{PT}_{\mu\to0}(\log_\mu z)`."""
        zero = torch.zeros_like(self.loc)
        return self._lambda0() * self.ball.transp(self.loc, zero, self.ball.logmap(self.loc, z))

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        z = self.ball.projx(value)
        v = self.pull(z)
        r = torch.linalg.vector_norm(v, dim=-1)
        sqrt_c = math.sqrt(self.c)
        log_normal = (
            -0.5 * (v / self.scale) ** 2 - torch.log(self.scale) - 0.5 * math.log(2 * math.pi)
        ).sum(-1)
        return log_normal - (self.dim - 1) * log_sinhc(sqrt_c * r)

    def expand(self, batch_shape: _ShapeLike, _instance: object = None) -> WrappedNormal:
        shape = torch.Size(batch_shape) + self.event_shape
        return WrappedNormal(self.loc.expand(shape), self.scale.expand(shape), self.c)

    @property
    def mean(self) -> torch.Tensor:
        raise NotImplementedError("the wrapped normal's Frechet mean is loc; its mean is not")
