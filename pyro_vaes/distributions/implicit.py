r"""An implicit distribution: draws :math:`z = g(h, \varepsilon)`, :math:`\varepsilon \sim
\mathcal N(0, I)`, through any network :math:`g`, and no density.

Adversarial Variational Bayes [1] trains such a posterior :math:`q(z \mid x)` with a critic in
place of its density (:class:`pyro_vaes.objectives.AVBLoss`). As a Pyro site it is
reparameterised (``rsample`` draws fresh noise for every sample and every entry of an expanded
batch, so a particle plate draws independent particles), and ``log_prob`` refuses with an
error that says so, where a :class:`~pyro.distributions.Delta` at the draw would score it 0 and
turn an ELBO into something that bounds nothing.

References:
    [1] Mescheder, Nowozin, Geiger. Adversarial Variational Bayes: Unifying Variational
    Autoencoders and Generative Adversarial Networks. ICML 2017.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

import torch
from pyro.distributions import TorchDistribution
from torch.distributions import constraints

__all__ = ["Implicit", "is_implicit"]

Sampler = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
_ShapeLike = torch.Size | list[int] | tuple[int, ...]
_SCALAR = torch.Size()


class Implicit(TorchDistribution):
    r"""Draws :math:`z = g(h, \varepsilon)` with :math:`\varepsilon \sim \mathcal N(0, I_m)`;
    no density (module docstring).

    :param h: the conditioning input ``(..., features)``; its leading dims are the batch shape.
    :param sampler: :math:`g`, ``(h, eps) -> z`` ``(..., event_size)``, broadcasting over
        leading dims.
    :param noise_dim: :math:`m`.
    :param event_size: the size of one draw.
    """

    arg_constraints: ClassVar[dict[str, constraints.Constraint]] = {}
    support = constraints.real_vector
    has_rsample = True

    def __init__(
        self,
        h: torch.Tensor,
        sampler: Sampler,
        noise_dim: int,
        event_size: int,
        validate_args: bool | None = None,
    ) -> None:
        if noise_dim < 1 or event_size < 1:
            raise ValueError(
                f"noise_dim and event_size must be >= 1, got {noise_dim}, {event_size}"
            )
        self.h, self.sampler = h, sampler
        self.noise_dim, self.event_size = int(noise_dim), int(event_size)
        super().__init__(h.shape[:-1], torch.Size([event_size]), validate_args=False)

    def rsample(self, sample_shape: _ShapeLike = _SCALAR) -> torch.Tensor:
        shape = torch.Size(sample_shape) + self.batch_shape
        eps = torch.randn(*shape, self.noise_dim, dtype=self.h.dtype, device=self.h.device)
        return self.sampler(self.h.expand(*shape, self.h.shape[-1]), eps)

    def sample(self, sample_shape: _ShapeLike = _SCALAR) -> torch.Tensor:
        with torch.no_grad():
            return self.rsample(sample_shape)

    def expand(self, batch_shape: _ShapeLike, _instance: object = None) -> Implicit:
        batch_shape = torch.Size(batch_shape)
        h = self.h.expand(*batch_shape, self.h.shape[-1])
        return Implicit(h, self.sampler, self.noise_dim, self.event_size)

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError(
            "an implicit posterior z = g(x, eps) has no density: train it with "
            "pyro_vaes.objectives.AVBLoss, whose critic stands in for log q(z|x) - log p(z), "
            "not with an ELBO that scores the guide; for importance sampling put the model in "
            "eval mode (model.eval()), where its guide proposes from a Gaussian with the "
            "implicit posterior's moments"
        )

    @property
    def mean(self) -> torch.Tensor:
        raise NotImplementedError("an implicit distribution has no closed-form mean")

    @property
    def variance(self) -> torch.Tensor:
        raise NotImplementedError("an implicit distribution has no closed-form variance")


def is_implicit(fn: Any) -> bool:
    """Whether the distribution ``fn`` (a Pyro site's, possibly wrapped by ``expand``,
    ``to_event`` or a mask) is :class:`Implicit`."""
    while not isinstance(fn, Implicit) and hasattr(fn, "base_dist"):
        fn = fn.base_dist
    return isinstance(fn, Implicit)
