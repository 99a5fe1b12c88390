"""Amortised normalizing-flow posteriors: planar, radial and inverse autoregressive flows.

Each posterior draws :math:`z_0` from a diagonal normal given by the encoder's features
:math:`h` and pushes it through :math:`K` invertible steps whose parameters are functions of
:math:`h` as well (amortised), so that

.. math::
    \\log q(z_K \\mid x) = \\log q_0(z_0 \\mid x) - \\sum_{k=1}^K \\log\\left|\\det
    \\frac{\\partial z_k}{\\partial z_{k-1}}\\right|.

The returned ``TransformedDistribution`` scores its own draws through the transforms' cache (the
planar and radial steps have no closed-form inverse), which is all an ELBO or an importance
sampler needs. Pyro's conditioned transforms do the arithmetic: the planar step uses
:math:`\\hat u` and the radial step :math:`\\beta > -\\alpha`, which keep every step invertible.
"""

from __future__ import annotations

from collections.abc import Callable

import pyro.distributions as dist
import torch
from pyro.distributions.transforms import ConditionalAffineAutoregressive
from pyro.distributions.transforms.planar import ConditionedPlanar
from pyro.distributions.transforms.radial import ConditionedRadial
from pyro.nn import ConditionalAutoRegressiveNN
from torch import nn

from pyro_vaes.guides.diagonal_normal import DiagonalNormal
from pyro_vaes.parts import PartContext, posteriors

__all__ = ["IAF", "PlanarFlow", "RadialFlow"]


def _check_steps(steps: int) -> int:
    if not isinstance(steps, int) or steps < 1:
        raise ValueError(f"a flow needs steps >= 1, got {steps!r}")
    return steps


class AmortisedFlow(nn.Module):
    """A diagonal normal base ``self.base`` and per-datapoint transforms ``self.transforms(h)``."""

    def __init__(self, in_features: int, latent_dim: int, steps: int) -> None:
        super().__init__()
        self.latent_dim, self.steps = latent_dim, _check_steps(steps)
        self.base = DiagonalNormal(in_features, latent_dim)

    def transforms(self, h: torch.Tensor) -> list[dist.transforms.Transform]:
        raise NotImplementedError

    def forward(self, h: torch.Tensor) -> dist.TransformedDistribution:
        return dist.TransformedDistribution(self.base(h), self.transforms(h))


class PlanarFlow(AmortisedFlow):
    r"""Planar steps :math:`z_k = z_{k-1} + \hat u_k \tanh(w_k^\top z_{k-1} + b_k)` with
    :math:`(u_k, w_k, b_k)` linear in the encoder's features and
    :math:`\hat u = u + (m(w^\top u) - w^\top u)\, w / \|w\|^2`, :math:`m(a) = -1 + \log(1+e^a)`,
    so that :math:`w^\top \hat u \ge -1` and every step is invertible. This is the "linear
    normalizing flow" VAE (VAE_LinNF).

    :param in_features: size of the encoder's features.
    :param latent_dim: :math:`d`.
    :param steps: :math:`K`.

    References:
        [1] Rezende, Mohamed. Variational Inference with Normalizing Flows. ICML 2015.
    """

    def __init__(self, in_features: int, latent_dim: int, steps: int = 8) -> None:
        super().__init__(in_features, latent_dim, steps)
        self.hyper = nn.Linear(in_features, steps * (2 * latent_dim + 1))

    def transforms(self, h: torch.Tensor) -> list[dist.transforms.Transform]:
        d = self.latent_dim
        params = self.hyper(h).reshape(*h.shape[:-1], self.steps, 2 * d + 1)
        return [
            ConditionedPlanar((p[..., :1], p[..., 1 : d + 1], p[..., d + 1 :]))
            for p in params.unbind(-2)
        ]


class RadialFlow(AmortisedFlow):
    r"""Radial steps :math:`z_k = z_{k-1} + \beta_k h(\alpha_k, r)(z_{k-1} - z_{0,k})`,
    :math:`h = 1/(\alpha + r)`, :math:`r = \|z_{k-1} - z_{0,k}\|`, with :math:`\alpha > 0` and
    :math:`\beta > -\alpha` (softplus reparameterisations) so that every step is invertible;
    :math:`(z_{0,k}, \alpha_k, \beta_k)` are linear in the encoder's features.

    References:
        [1] Rezende, Mohamed. Variational Inference with Normalizing Flows. ICML 2015.
    """

    def __init__(self, in_features: int, latent_dim: int, steps: int = 8) -> None:
        super().__init__(in_features, latent_dim, steps)
        self.hyper = nn.Linear(in_features, steps * (latent_dim + 2))

    def transforms(self, h: torch.Tensor) -> list[dist.transforms.Transform]:
        d = self.latent_dim
        params = self.hyper(h).reshape(*h.shape[:-1], self.steps, d + 2)
        return [
            ConditionedRadial((p[..., :d], p[..., d : d + 1], p[..., d + 1 :]))
            for p in params.unbind(-2)
        ]


class IAF(AmortisedFlow):
    r"""Inverse autoregressive flow steps
    :math:`z_k = \sigma_k \odot z_{k-1} + (1 - \sigma_k) \odot m_k` with
    :math:`(m_k, \sigma_k)` from a MADE network of :math:`z_{k-1}` *and the encoder's context*
    :math:`h` (amortised, as in the paper), :math:`\sigma_k` a sigmoid gate (the numerically
    stable form). Each step's made network orders the dimensions by a fresh random permutation.

    :param in_features: size of the encoder's features (the context :math:`h`).
    :param latent_dim: :math:`d`.
    :param steps: :math:`K`.
    :param hidden: hidden sizes of each step's autoregressive network.

    References:
        [1] Kingma, Salimans, Jozefowicz, Chen, Sutskever, Welling. Improved Variational Inference
        with Inverse Autoregressive Flow. NeurIPS 2016.
    """

    def __init__(
        self, in_features: int, latent_dim: int, steps: int = 4, hidden: tuple[int, ...] = (128,)
    ) -> None:
        super().__init__(in_features, latent_dim, steps)
        if latent_dim < 2:
            raise ValueError("an autoregressive flow needs latent_dim >= 2")
        self.flows = nn.ModuleList(
            ConditionalAffineAutoregressive(
                ConditionalAutoRegressiveNN(latent_dim, in_features, list(hidden)), stable=True
            )
            for _ in range(steps)
        )

    def transforms(self, h: torch.Tensor) -> list[dist.transforms.Transform]:
        flows: list = list(self.flows)
        return [flow.condition(h) for flow in flows]


def _builder(flow: type[AmortisedFlow]) -> Callable[[PartContext], AmortisedFlow]:
    def build(ctx: PartContext) -> AmortisedFlow:
        return flow(ctx.features, ctx.latent_dim, ctx.flow_steps)

    return build


for _name, _flow in (("iaf", IAF), ("planar", PlanarFlow), ("radial", RadialFlow)):
    posteriors.register(_name, _builder(_flow))
