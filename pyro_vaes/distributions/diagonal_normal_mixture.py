"""A mixture of diagonal normals whose density is evaluated with matrix products."""

from __future__ import annotations

import math
from typing import ClassVar

import torch
from pyro.distributions import TorchDistribution, constraints

__all__ = ["DiagonalNormalMixture"]

_SCALAR = torch.Size()
_ShapeLike = torch.Size | list[int] | tuple[int, ...]


class DiagonalNormalMixture(TorchDistribution):
    r"""The mixture :math:`p(z) = \sum_k \pi_k \mathcal N(z; \mu_k, \operatorname{diag}\sigma_k^2)`
    of :math:`K` diagonal normals in :math:`d` dimensions.

    ``log_prob`` expands the quadratic form,
    :math:`\sum_j (z_j - \mu_{kj})^2/\sigma_{kj}^2 = z^2 \cdot \sigma_k^{-2}
    - 2 z \cdot (\mu_k \sigma_k^{-2}) + \mu_k^2 \cdot \sigma_k^{-2}`,
    into three matrix products over all components at once (in float64, against cancellation),
    instead of broadcasting an ``(..., K, d)`` tensor as ``MixtureSameFamily`` does: the
    VampPrior with hundreds of components evaluated for many particles is then matmul-bound.

    :param logits: ``(K,)`` unnormalised log weights.
    :param locs: ``(K, d)``.
    :param scales: ``(K, d)``, positive.
    """

    arg_constraints: ClassVar[dict[str, constraints.Constraint]] = {
        "logits": constraints.real_vector,
        "locs": constraints.real,
        "scales": constraints.positive,
    }
    support = constraints.real_vector
    has_rsample = False

    def __init__(
        self,
        logits: torch.Tensor,
        locs: torch.Tensor,
        scales: torch.Tensor,
        batch_shape: _ShapeLike = _SCALAR,
        validate_args: bool | None = None,
    ) -> None:
        if locs.dim() != 2 or scales.shape != locs.shape or logits.shape != locs.shape[:1]:
            raise ValueError(
                "need logits (K,), locs and scales (K, d); got "
                f"{tuple(logits.shape)}, {tuple(locs.shape)}, {tuple(scales.shape)}"
            )
        self.logits, self.locs, self.scales = logits, locs, scales
        super().__init__(torch.Size(batch_shape), locs.shape[1:], validate_args=validate_args)

    def expand(self, batch_shape: _ShapeLike, _instance: object = None) -> DiagonalNormalMixture:
        return DiagonalNormalMixture(self.logits, self.locs, self.scales, batch_shape)

    def component_log_probs(self, value: torch.Tensor) -> torch.Tensor:
        """``log N(value; mu_k, sigma_k)`` for every component, shape ``(..., K)``."""
        z = value.double()
        prec = self.scales.double().pow(-2)  # (K, d)
        locs = self.locs.double()
        quad = z.pow(2) @ prec.T - 2 * z @ (locs * prec).T + (locs.pow(2) * prec).sum(-1)
        log_norm = self.scales.double().log().sum(-1) + 0.5 * self.locs.shape[-1] * math.log(
            2 * math.pi
        )
        return (-0.5 * quad - log_norm).to(value.dtype)

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        if self._validate_args:
            self._validate_sample(value)
        log_w = torch.log_softmax(self.logits, dim=-1)
        out = torch.logsumexp(self.component_log_probs(value) + log_w, dim=-1)
        return out.expand(torch.broadcast_shapes(out.shape, self.batch_shape))

    def sample(self, sample_shape: _ShapeLike = _SCALAR) -> torch.Tensor:
        shape = torch.Size(sample_shape) + self.batch_shape
        with torch.no_grad():
            k = torch.distributions.Categorical(logits=self.logits).sample(shape)
            eps = torch.randn(
                *shape, self.locs.shape[-1], dtype=self.locs.dtype, device=self.locs.device
            )
            return self.locs[k] + self.scales[k] * eps

    @property
    def mean(self) -> torch.Tensor:
        w = torch.softmax(self.logits, -1)
        return (w.unsqueeze(-1) * self.locs).sum(0).expand(self._extended_shape())
