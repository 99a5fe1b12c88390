"""The von Mises-Fisher distribution on the unit sphere, with reparameterised draws."""

from __future__ import annotations

import math
from typing import ClassVar

import torch
from pyro.distributions import TorchDistribution, constraints
from pyro.distributions.score_parts import ScoreParts
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
    Beta proposal, :math:`w = h(\epsilon, \kappa) = \frac{1 - (1+b)\epsilon}{1 - (1-b)\epsilon}`,
    :math:`\epsilon \sim s = \mathrm{Beta}(\frac{m-1}2, \frac{m-1}2)`,
    :math:`b = \frac{m-1}{2\kappa + \sqrt{4\kappa^2 + (m-1)^2}}`, accepted when
    :math:`\kappa w + (m-1)\log(1 - x_0 w) - c \ge \log u`; then a uniform tangent direction and a
    Householder reflection of :math:`e_1` onto :math:`\mu`. The pathwise part of the gradient
    reaches :math:`\kappa` through :math:`b(\kappa)` in :math:`h` (the Beta draw itself does not
    depend on :math:`\kappa`) and :math:`\mu` through the reflection.

    **The rejection correction.** The accepted :math:`\epsilon` is not Beta distributed: its
    density is the target density of :math:`w` pulled back through :math:`h` [3],

    .. math::
        \pi(\epsilon \mid \kappa) = s(\epsilon)\,\frac{g(h(\epsilon,\kappa)\mid\kappa)}
        {r(h(\epsilon,\kappa)\mid\kappa)}
        = g(h(\epsilon,\kappa)\mid\kappa)\,\Bigl|\frac{\partial h}{\partial\epsilon}\Bigr|,
        \qquad g(w\mid\kappa) = \frac{e^{\kappa w}(1-w^2)^{(m-3)/2}}{Z(\kappa)},
        \quad Z(\kappa) \propto \kappa^{-v} I_v(\kappa),

    where :math:`r` is the proposal's density of :math:`w` (the acceptance constant cancels).
    Hence :math:`\nabla_\kappa \mathbb E[f(z)] = \mathbb E_\pi[\nabla_\kappa f(h(\epsilon,
    \kappa))] + \mathbb E_\pi[f(z)\, \nabla_\kappa \log \pi(\epsilon\mid\kappa)]`: the
    reparameterised term :math:`g_{rep}` plus the correction :math:`g_{cor}` of [1, 3]. With
    :math:`D = 1 - (1-b)\epsilon`, :math:`1 - w = 2b\epsilon/D`, :math:`1 - w^2 =
    4b\epsilon(1-\epsilon)/D^2` and :math:`|\partial h/\partial\epsilon| = 2b/D^2`, the part of
    :math:`\log\pi` that depends on :math:`\kappa` is

    .. math::
        \ell(\epsilon, \kappa) = \kappa\,h(\epsilon, \kappa) - \log I_v(\kappa) + v\log\kappa
        + \tfrac{m-1}2 \log b(\kappa) - (m-1)\log D(\epsilon, \kappa),

    differentiated at fixed :math:`\epsilon` (:meth:`rejection_score`). The correction multiplies
    the value of the downstream cost, so no sample-level autograd rule can carry it for an
    arbitrary :math:`f` (a pathwise rule only sees :math:`\partial f/\partial z`; the only
    pathwise gradient unbiased for every :math:`f` is the implicit one through the CDF of
    :math:`w`). It is therefore given the Pyro way: :meth:`score_parts` returns
    :math:`\ell` as the score-function part of a partially reparameterised site, so
    ``Trace_ELBO``, ``TraceGraph_ELBO`` and every objective that builds its surrogate from
    ``score_parts`` add :math:`f \cdot \nabla\ell`, while an objective that only differentiates
    values gets :math:`g_{rep}` alone. Outside Pyro, differentiate
    ``f(z) + f(z).detach() * d.rejection_score(z)``.

    :param loc: mean direction :math:`\mu`, unit vectors ``(..., m)``.
    :param concentration: :math:`\kappa > 0`, shape ``(...)``.

    References:
        [1] Davidson, Falorsi, De Cao, Kipf, Tomczak. Hyperspherical Variational Auto-Encoders.
        UAI 2018.
        [2] Wood. Simulation of the von Mises Fisher distribution. Communications in Statistics,
        1994.
        [3] Naesseth, Ruiz, Linderman, Blei. Reparameterization Gradients through
        Acceptance-Rejection Sampling Algorithms. AISTATS 2017.
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

    def _b(self, k: torch.Tensor) -> torch.Tensor:
        # b = (m-1) / (2k + sqrt(4k^2 + (m-1)^2)): the cancellation-free form
        m1 = self.m - 1.0
        return m1 / (2 * k + torch.sqrt(4 * k * k + m1 * m1))

    def _sample_w(self, shape: torch.Size) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Wood's rejection sampler for :math:`w`; returns ``(w, 1 - w, eps)`` (``1 - w``
        computed without cancellation, for large concentrations; ``eps`` the accepted Beta
        draws, which do not depend on the parameters)."""
        k = self.concentration.expand(shape)
        m1 = self.m - 1.0
        b = self._b(k)
        x0 = (1 - b) / (1 + b)
        c = k * x0 + m1 * torch.log1p(-x0 * x0)
        beta = Beta(torch.full_like(k, m1 / 2), torch.full_like(k, m1 / 2))
        w = torch.zeros_like(k)
        one_minus_w = torch.zeros_like(k)
        eps_acc = torch.full_like(k, 0.5).detach()
        todo = torch.ones_like(k, dtype=torch.bool)
        for _ in range(1000):
            eps = beta.rsample().detach()
            denom = 1 - (1 - b) * eps
            w_new = (1 - (1 + b) * eps) / denom
            omw_new = 2 * b * eps / denom
            u = torch.rand_like(k)
            accept = (k * w_new + m1 * torch.log1p(-x0 * w_new) - c >= torch.log(u)) & todo
            w = torch.where(accept, w_new, w)
            one_minus_w = torch.where(accept, omw_new, one_minus_w)
            eps_acc = torch.where(accept, eps, eps_acc)
            todo = todo & ~accept
            if not bool(todo.any()):
                return w, one_minus_w, eps_acc
        raise RuntimeError("von Mises-Fisher rejection sampler did not accept in 1000 rounds")

    def _tangent(self, shape: torch.Size) -> torch.Tensor:
        r"""A uniform direction orthogonal to :math:`e_1`: on :math:`S^{m-2}`, which for the
        circle (:math:`m = 2`) is the two points :math:`\pm 1`."""
        if self.m == 2:
            sign = torch.randint(0, 2, (*shape, 1), device=self.loc.device)
            return (2 * sign - 1).to(self.loc.dtype)
        return HypersphericalUniform(
            self.m - 1, shape, self.loc.device, dtype=self.loc.dtype
        ).sample()

    def rsample(self, sample_shape: _ShapeLike = _SCALAR) -> torch.Tensor:
        shape = torch.Size(sample_shape) + self.batch_shape
        # the tangent direction first, so that the random stream after it does not depend on
        # how many proposals were rejected (common random numbers across parameter values)
        tangent = self._tangent(shape)
        w, one_minus_w, eps = self._sample_w(shape)
        radius = torch.sqrt((one_minus_w * (1 + w)).clamp_min(0))
        z = torch.cat([w.unsqueeze(-1), radius.unsqueeze(-1) * tangent], dim=-1)
        # Householder reflection taking e1 to loc: H = I - 2 u u^T, u = (e1 - loc) / |e1 - loc|
        e1 = torch.zeros_like(self.loc)
        e1[..., 0] = 1.0
        u = e1 - self.loc
        u = u / u.norm(dim=-1, keepdim=True).clamp_min(1e-12)
        z = z - 2 * (z * u).sum(-1, keepdim=True) * u
        # back onto the sphere to the last bit: the float32 reflection drifts up to ~1e-6, past
        # the support's tolerance. The exact map's derivatives are tangent to the sphere (the
        # reflection is orthogonal; d/dw moves along the great circle), and at |z| = 1 the
        # projection of z / |z| keeps tangent vectors, so the gradients are unchanged.
        z = z / z.norm(dim=-1, keepdim=True)
        self._last_draw = (z, eps)
        return z

    def _log_accepted_density(self, eps: torch.Tensor) -> torch.Tensor:
        r""":math:`\ell(\epsilon, \kappa)`: the part of the log density of the accepted Beta
        draw that depends on :math:`\kappa` (see the class docstring)."""
        k = self.concentration.expand(eps.shape)
        m1 = self.m - 1.0
        b = self._b(k)
        denom = 1 - (1 - b) * eps
        w = 1 - 2 * b * eps / denom
        return (
            k * w
            - log_bessel_iv(self._v, k)
            + self._v * torch.log(k)
            + (m1 / 2) * torch.log(b)
            - m1 * torch.log(denom)
        )

    def rejection_score(self, value: torch.Tensor) -> torch.Tensor | int:
        r"""The score of the rejection step, :math:`\ell(\epsilon, \kappa)`, for ``value``
        the latest :meth:`rsample` of this distribution (``0`` for any other tensor, whose
        Beta draw is unknown). Its gradient times the downstream cost is the correction
        :math:`g_{cor}`; its value carries no meaning."""
        last = getattr(self, "_last_draw", None)
        if last is None or value is not last[0]:
            return 0
        return self._log_accepted_density(last[1])

    def score_parts(self, value: torch.Tensor) -> ScoreParts:
        """Partially reparameterised: the pathwise ``entropy_term`` is the log density, the
        ``score_function`` the rejection step's score (:meth:`rejection_score`)."""
        log_prob = self.log_prob(value)
        score = self.rejection_score(value)
        return ScoreParts(log_prob, score, log_prob)  # type: ignore[arg-type]  # 0: no score


@register_kl(VonMisesFisher, HypersphericalUniform)
def _kl_vmf_uniform(p: VonMisesFisher, q: HypersphericalUniform) -> torch.Tensor:
    r""":math:`\mathrm{KL}(\mathrm{vMF}(\mu,\kappa)\,\|\,U(S^{m-1})) = -H(\mathrm{vMF}) +
    \log|S^{m-1}|`, with the Bessel ratio from log-Bessel differences."""
    if p.m != q.dim:
        raise ValueError(f"KL between spheres of different dimensions ({p.m} and {q.dim})")
    return -p.entropy() + log_sphere_area(p.m)
