"""The uniform distribution on the unit sphere."""

from __future__ import annotations

import math
from typing import ClassVar

import torch
from pyro.distributions import TorchDistribution, constraints

__all__ = ["HypersphericalUniform", "log_sphere_area"]

_SCALAR = torch.Size()
_ShapeLike = torch.Size | list[int] | tuple[int, ...]


def log_sphere_area(m: int) -> float:
    r""":math:`\log |S^{m-1}| = \log 2 + \tfrac m2 \log\pi - \log\Gamma(\tfrac m2)`, the surface
    area of the unit sphere in :math:`\mathbb R^m`."""
    return math.log(2.0) + 0.5 * m * math.log(math.pi) - math.lgamma(0.5 * m)


class HypersphericalUniform(TorchDistribution):
    r"""The uniform distribution on :math:`S^{m-1} \subset \mathbb R^m`, density
    :math:`1 / |S^{m-1}|`; draws are normalised standard normal vectors.

    :param dim: :math:`m \ge 2`, the dimension of the ambient space.
    :param batch_shape: batch shape; ``device`` and ``dtype`` of the draws.
    """

    arg_constraints: ClassVar[dict[str, constraints.Constraint]] = {}
    support = constraints.sphere
    has_rsample = True

    def __init__(
        self,
        dim: int,
        batch_shape: torch.Size = _SCALAR,
        device: torch.device | str | None = None,
        validate_args: bool | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        if not isinstance(dim, int) or dim < 2:
            raise ValueError(f"the sphere needs an ambient dimension dim >= 2, got {dim!r}")
        self.dim = dim
        self._device = torch.device(device) if device is not None else torch.device("cpu")
        self._dtype = dtype or torch.get_default_dtype()
        super().__init__(torch.Size(batch_shape), torch.Size([dim]), validate_args=validate_args)

    def expand(self, batch_shape: _ShapeLike, _instance: object = None) -> HypersphericalUniform:
        return HypersphericalUniform(
            self.dim, torch.Size(batch_shape), self._device, dtype=self._dtype
        )

    def rsample(self, sample_shape: _ShapeLike = _SCALAR) -> torch.Tensor:
        shape = self._extended_shape(torch.Size(sample_shape))
        x = torch.randn(shape, device=self._device, dtype=self._dtype)
        return x / x.norm(dim=-1, keepdim=True)

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        if self._validate_args:
            self._validate_sample(value)
        shape = torch.broadcast_shapes(value.shape[:-1], self.batch_shape)
        return torch.full(shape, -log_sphere_area(self.dim), dtype=value.dtype, device=value.device)

    def entropy(self) -> torch.Tensor:
        return torch.full(
            self.batch_shape, log_sphere_area(self.dim), device=self._device, dtype=self._dtype
        )

    @property
    def mean(self) -> torch.Tensor:
        return torch.zeros(self._extended_shape(), device=self._device, dtype=self._dtype)
