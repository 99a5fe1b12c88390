"""The von Mises-Fisher distribution on the unit sphere, with reparameterised draws."""

from __future__ import annotations

import math
from typing import ClassVar

import torch
from pyro.distributions import TorchDistribution, constraints
from torch.distributions import Beta, register_kl

from pyro_vaes.distributions.bessel import bessel_iv_ratio, log_bessel_iv
from pyro_vaes.distributions.hyperspherical_uniform import HypersphericalUniform, log_sphere_area

__all__ = ["VonMisesFisher"]

_SCALAR = torch.Size()
_ShapeLike = torch.Size | list[int] | tuple[int, ...]


class VonMisesFisher(TorchDistribution):
    r"""The von Mises-Fisher distribution on :math:`S^{m-1}`,

    .. math::
        q(z; \mu, \kappa) = C_m(\kappa)\, e^{\kappa \mu^\top z}, \qquad
        \log C_m(\kappa) = v\log\kappa - \tfrac m2 \log(2\pi) - \log I_v(\kappa),
        \quad v = \tfrac m2 - 1,

    with :math:`\log I_v` from :func:`~pyro_vaes.distributions.bessel.log_bessel_iv`, finite and
    accurate for :math:`m` in the hundreds and :math:`\kappa` from :math:`10^{-4}` to
    :math:`10^{5}` and beyond.

    ``rsample`` follows Wood (1994): the component :math:`w = \mu^\top z` by rejection from a
    Beta proposal, :math:`w = \frac{1 - (1+b)\epsilon}{1 - (1-b)\epsilon}`,
    :math:`\epsilon \sim \mathrm{Beta}(\frac{m-1}2, \frac{m-1}2)`, accepted when
    :math:`\kappa w + (m-1)\log(1 - x_0 w) - c \ge \log u`; then a uniform tangent direction and a
    Householder reflection of :math:`e_1` onto :math:`\mu`. Gradients reach :math:`\kappa`
    through the reparameterised Beta draw and :math:`b(\kappa)` of the accepted proposals, and
    :math:`\mu` through the reflection, as in Davidson et al. (2018) without the rejection
    correction term.

    :param loc: mean direction :math:`\mu`, unit vectors ``(..., m)``.
    :param concentration: :math:`\kappa > 0`, shape ``(...)``.

    References:
        [1] Davidson, Falorsi, De Cao, Kipf, Tomczak. Hyperspherical Variational Auto-Encoders.
        UAI 2018.
        [2] Wood. Simulation of the von Mises Fisher distribution. Communications in Statistics,
        1994.
    """

    arg_constraints: ClassVar[dict[str, constraints.Constraint]] = {
        "loc": constraints.sphere,
        "concentration": constraints.positive,
    }
    support = constraints.sphere
    has_rsample = True

    def __init__(
        self,
        loc: torch.Tensor,
        concentration: torch.Tensor | float,
        validate_args: bool | None = None,
    ) -> None:
        if loc.dim() < 1 or loc.shape[-1] < 2:
            raise ValueError(f"loc must have shape (..., m) with m >= 2, got {tuple(loc.shape)}")
        concentration = torch.as_tensor(concentration, dtype=loc.dtype, device=loc.device)
        batch_shape = torch.broadcast_shapes(loc.shape[:-1], concentration.shape)
        self.loc = loc.expand(*batch_shape, loc.shape[-1])
        self.concentration = concentration.expand(batch_shape)
        self.m = loc.shape[-1]
        super().__init__(batch_shape, torch.Size([self.m]), validate_args=validate_args)

    @property
    def _v(self) -> float:
        return self.m / 2 - 1

    def log_normalizer(self) -> torch.Tensor:
        r""":math:`\log C_m(\kappa)`."""
        k = self.concentration
        return (
            self._v * torch.log(k)
            - (self.m / 2) * math.log(2 * math.pi)
            - log_bessel_iv(self._v, k)
        )

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        if self._validate_args:
            self._validate_sample(value)
        return self.log_normalizer() + self.concentration * (self.loc * value).sum(-1)

    def mean_resultant_length(self) -> torch.Tensor:
        r""":math:`A_m(\kappa) = I_{m/2}(\kappa) / I_{m/2-1}(\kappa) = \|\mathbb E z\|`."""
        return bessel_iv_ratio(self._v, self.concentration)

    @property
    def mean(self) -> torch.Tensor:
        return self.mean_resultant_length().unsqueeze(-1) * self.loc

    def entropy(self) -> torch.Tensor:
        return -self.log_normalizer() - self.concentration * self.mean_resultant_length()

    def expand(self, batch_shape: _ShapeLike, _instance: object = None) -> VonMisesFisher:
        batch_shape = torch.Size(batch_shape)
        return VonMisesFisher(
            self.loc.expand(*batch_shape, self.m), self.concentration.expand(batch_shape)
        )

    def _sample_w(self, shape: torch.Size) -> tuple[torch.Tensor, torch.Tensor]:
        """Wood's rejection sampler for :math:`w`; returns ``(w, 1 - w)`` (the latter computed
        without cancellation, for large concentrations)."""
        k = self.concentration.expand(shape)
        m1 = self.m - 1.0
        # b = (m-1) / (2k + sqrt(4k^2 + (m-1)^2)): the cancellation-free form
        b = m1 / (2 * k + torch.sqrt(4 * k * k + m1 * m1))
        x0 = (1 - b) / (1 + b)
        c = k * x0 + m1 * torch.log1p(-x0 * x0)
        beta = Beta(torch.full_like(k, m1 / 2), torch.full_like(k, m1 / 2))
        w = torch.zeros_like(k)
        one_minus_w = torch.zeros_like(k)
        todo = torch.ones_like(k, dtype=torch.bool)
        for _ in range(1000):
            eps = beta.rsample()
            denom = 1 - (1 - b) * eps
            w_new = (1 - (1 + b) * eps) / denom
            omw_new = 2 * b * eps / denom
            u = torch.rand_like(k)
            accept = (k * w_new + m1 * torch.log1p(-x0 * w_new) - c >= torch.log(u)) & todo
            w = torch.where(accept, w_new, w)
            one_minus_w = torch.where(accept, omw_new, one_minus_w)
            todo = todo & ~accept
            if not bool(todo.any()):
                return w, one_minus_w
        raise RuntimeError("von Mises-Fisher rejection sampler did not accept in 1000 rounds")

    def rsample(self, sample_shape: _ShapeLike = _SCALAR) -> torch.Tensor:
        shape = torch.Size(sample_shape) + self.batch_shape
        w, one_minus_w = self._sample_w(shape)
        tangent = HypersphericalUniform(self.m - 1, shape, self.loc.device, dtype=w.dtype).sample()
        radius = torch.sqrt((one_minus_w * (1 + w)).clamp_min(0))
        z = torch.cat([w.unsqueeze(-1), radius.unsqueeze(-1) * tangent], dim=-1)
        # Householder reflection taking e1 to loc: H = I - 2 u u^T, u = (e1 - loc) / |e1 - loc|
        e1 = torch.zeros_like(self.loc)
        e1[..., 0] = 1.0
        u = e1 - self.loc
        u = u / u.norm(dim=-1, keepdim=True).clamp_min(1e-12)
        return z - 2 * (z * u).sum(-1, keepdim=True) * u


@register_kl(VonMisesFisher, HypersphericalUniform)
def _kl_vmf_uniform(p: VonMisesFisher, q: HypersphericalUniform) -> torch.Tensor:
    r""":math:`\mathrm{KL}(\mathrm{vMF}(\mu,\kappa)\,\|\,U(S^{m-1})) = -H(\mathrm{vMF}) +
    \log|S^{m-1}|`, with the Bessel ratio from log-Bessel differences."""
    if p.m != q.dim:
        raise ValueError(f"KL between spheres of different dimensions ({p.m} and {q.dim})")
    return -p.entropy() + log_sphere_area(p.m)
