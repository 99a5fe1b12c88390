r"""The log-cosh distribution: the density whose negative log is the log hyperbolic cosine loss.

With location :math:`\mu`, sharpness :math:`a > 0` and scale :math:`s > 0`,

.. math::
    p(x) = \frac{1}{Z(a)\, s} \cosh\!\Big(\frac{a (x - \mu)}{s}\Big)^{-1/a}, \qquad
    -\log p(x) = \frac1a \log\cosh\!\Big(\frac{a (x - \mu)}{s}\Big) + \log Z(a) + \log s,

so that with :math:`s = 1` its negative log density is the reconstruction loss of Chen et al. [1],
:math:`\frac1a \log\cosh(a (x - \hat x))`, plus a constant. It is a proper density for every
:math:`a > 0`: near the mode it is a normal of variance :math:`s^2/a`
(:math:`\log\cosh u \approx u^2/2`), in the tails a Laplace of scale :math:`s`
(:math:`\cosh(u)^{-1/a} \approx 2^{1/a} e^{-|u|/a}`, and :math:`|u|/a = |x - \mu|/s`).

**The normaliser.** With :math:`b > 0`, :math:`\int_{\mathbb R} \cosh(u)^{-b}\, du = B(b/2, 1/2)`
(substitute :math:`t = \tanh^2 u` on each half line), so with :math:`u = a r` and :math:`b = 1/a`,

.. math::
    Z(a) = \int_{\mathbb R} \cosh(a r)^{-1/a}\, dr = \frac{B\big(\frac{1}{2a}, \frac12\big)}{a}.

**Exact, reparameterised draws.** If :math:`X \sim \mathrm{Beta}(b/2, b/2)`, then
:math:`U = \frac12 \log\frac{X}{1 - X}` has the density :math:`2^{1-b} \cosh(u)^{-b} / B(b/2,
b/2)` (:math:`X = \sigma(2u)`, :math:`dX/du = 2X(1-X)`, :math:`X(1-X) = 1/(4\cosh^2 u)`),
which is :math:`\cosh(u)^{-b} / B(b/2, 1/2)` by Legendre's duplication formula: Fisher's
z-distribution. With :math:`X = G_1/(G_1 + G_2)`, :math:`G_i \sim \mathrm{Gamma}(b/2)`,
:math:`U = \frac12(\log G_1 - \log G_2)`, and :math:`x = \mu + s\,U/a`. For the usual sharp losses
(:math:`a = 10`: :math:`b/2 = 0.05`) a Gamma(0.05) draw underflows single precision in about one
draw in a hundred, so :math:`\log G` is drawn as :math:`\log G' + \log V / \alpha` with
:math:`G' \sim \mathrm{Gamma}(\alpha + 1)` and :math:`V \sim \mathcal U(0, 1)` (the shape
augmentation of Marsaglia and Tsang [2]: :math:`G' V^{1/\alpha} \sim \mathrm{Gamma}(\alpha)`),
which stays finite and is reparameterised through ``Gamma.rsample``. Hence
:math:`\mathrm{Var}(x) = s^2\, \psi_1\big(\frac{1}{2a}\big) / (2 a^2)` (:math:`\psi_1` the
trigamma function, :math:`\mathrm{Var} \log G = \psi_1(\alpha)`).

References:
    [1] Chen, Chen, Wang, Lan. Log Hyperbolic Cosine Loss Improves Variational Auto-Encoder.
    OpenReview (ICLR 2019 submission), 2018.
    [2] Marsaglia, Tsang. A Simple Method for Generating Gamma Variables. ACM TOMS 26(3), 2000.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import torch
from pyro.distributions import TorchDistribution
from torch.distributions import constraints
from torch.distributions.utils import broadcast_all

__all__ = ["LogCosh", "log_cosh"]


def log_cosh(u: torch.Tensor) -> torch.Tensor:
    r""":math:`\log\cosh u = |u| + \log(1 + e^{-2|u|}) - \log 2`, finite for every real ``u``."""
    a = u.abs()
    return a + torch.nn.functional.softplus(-2.0 * a) - math.log(2.0)


class LogCosh(TorchDistribution):
    r"""The log-cosh distribution (module docstring):
    :math:`p(x) \propto \cosh(a (x - \mu)/s)^{-1/a}`, reparameterised draws.

    :param loc: the location (and mode, mean, median) :math:`\mu`.
    :param sharpness: :math:`a > 0`; larger is closer to a Laplace of scale :math:`s`, with a
        narrower normal core of variance :math:`s^2/a`.
    :param scale: :math:`s > 0`.
    """

    arg_constraints: ClassVar[dict[str, constraints.Constraint]] = {
        "loc": constraints.real,
        "sharpness": constraints.positive,
        "scale": constraints.positive,
    }
    support = constraints.real
    has_rsample = True

    def __init__(
        self,
        loc: torch.Tensor | float,
        sharpness: torch.Tensor | float = 10.0,
        scale: torch.Tensor | float = 1.0,
        validate_args: bool | None = None,
    ) -> None:
        self.loc, self.sharpness, self.scale = broadcast_all(loc, sharpness, scale)
        super().__init__(self.loc.shape, validate_args=validate_args)

    def expand(self, batch_shape: Any, _instance: Any = None) -> LogCosh:
        new = self._get_checked_instance(LogCosh, _instance)
        batch_shape = torch.Size(batch_shape)
        new.loc = self.loc.expand(batch_shape)
        new.sharpness = self.sharpness.expand(batch_shape)
        new.scale = self.scale.expand(batch_shape)
        super(LogCosh, new).__init__(batch_shape, validate_args=False)
        new._validate_args = self._validate_args
        return new

    def log_normaliser(self) -> torch.Tensor:
        r""":math:`\log Z(a) + \log s`, with :math:`Z(a) = B(\frac{1}{2a}, \frac12)/a`."""
        h = 0.5 / self.sharpness
        log_beta = torch.lgamma(h) + math.lgamma(0.5) - torch.lgamma(h + 0.5)
        return log_beta - self.sharpness.log() + self.scale.log()

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        if self._validate_args:
            self._validate_sample(value)
        u = self.sharpness * (value - self.loc) / self.scale
        return -log_cosh(u) / self.sharpness - self.log_normaliser()

    def _log_gamma(self, alpha: torch.Tensor) -> torch.Tensor:
        """``log G``, ``G ~ Gamma(alpha)``, finite for small ``alpha`` (module docstring)."""
        boosted = torch.distributions.Gamma(alpha + 1.0, torch.ones_like(alpha)).rsample()
        tiny = torch.finfo(alpha.dtype).tiny
        v = torch.rand(alpha.shape, dtype=alpha.dtype, device=alpha.device).clamp_min(tiny)
        return boosted.clamp_min(tiny).log() + v.log() / alpha

    def rsample(self, sample_shape: Any = ()) -> torch.Tensor:
        shape = self._extended_shape(torch.Size(sample_shape))
        alpha = (0.5 / self.sharpness).expand(shape)
        u = 0.5 * (self._log_gamma(alpha) - self._log_gamma(alpha))
        return self.loc + self.scale * u / self.sharpness

    @property
    def mean(self) -> torch.Tensor:
        return self.loc

    @property
    def mode(self) -> torch.Tensor:
        return self.loc

    @property
    def variance(self) -> torch.Tensor:
        a = self.sharpness
        return self.scale.pow(2) * torch.polygamma(1, 0.5 / a) / (2.0 * a.pow(2))
