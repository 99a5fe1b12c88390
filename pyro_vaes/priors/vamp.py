"""The VampPrior: a mixture of variational posteriors at learned pseudo-inputs."""

from __future__ import annotations

import math
from collections.abc import Sequence

import pyro.distributions as dist
import torch
from torch import nn

from pyro_vaes.distributions import DiagonalNormalMixture
from pyro_vaes.guides.flows import AmortisedFlow
from pyro_vaes.parts import PartContext, priors


class VampPrior(nn.Module):
    r"""The variational mixture of posteriors prior

    .. math::
        p_\lambda(z) = \frac1K \sum_{k=1}^K q_\phi(z \mid u_k),
        \qquad \log p_\lambda(z) = \operatorname{logsumexp}_k \log q_\phi(z \mid u_k) - \log K,

    with :math:`K` learned pseudo-inputs :math:`u_k` passed through the *same* encoder and
    posterior head as the data, so the prior follows the aggregate posterior. Sampling picks a
    component uniformly at random. The pseudo-inputs stay in the data's range: they are stored
    unconstrained and mapped through a sigmoid onto ``(low, high)``.

    With a flow posterior, whose density cannot be evaluated away from its own draws, pass its
    Gaussian base head (``posterior.base``) as ``posterior``: the components are then the flow's
    base distributions.

    :param encoder: the VAE's encoder (shared, not copied).
    :param posterior: the head that maps features to :math:`q(z \mid u)` (shared).
    :param data_shape: shape of one datapoint (and one pseudo-input).
    :param components: :math:`K`.
    :param init: data to initialise the pseudo-inputs from (``K`` random rows), or ``None`` for
        values near the middle of the range.
    :param data_range: ``(low, high)`` of the data.

    References:
        [1] Tomczak, Welling. VAE with a VampPrior. AISTATS 2018.
    """

    def __init__(
        self,
        encoder: nn.Module,
        posterior: nn.Module,
        data_shape: Sequence[int],
        components: int = 500,
        init: torch.Tensor | None = None,
        data_range: tuple[float, float] = (0.0, 1.0),
    ) -> None:
        super().__init__()
        if components < 1:
            raise ValueError(f"components must be >= 1, got {components}")
        low, high = data_range
        if not high > low:
            raise ValueError(f"data_range must have high > low, got {data_range}")
        # held without registering them as submodules: the VAE owns and trains them
        self._parts = (encoder, posterior)
        self.low, self.high = float(low), float(high)
        shape = (components, *data_shape)
        if init is None:
            raw = 0.01 * torch.randn(shape)
        else:
            if tuple(init.shape[1:]) != tuple(data_shape):
                raise ValueError(
                    f"init rows must have shape {tuple(data_shape)}, got {tuple(init.shape[1:])}"
                )
            rows = init[torch.randint(init.shape[0], (components,))].float()
            p = ((rows - self.low) / (self.high - self.low)).clamp(1e-3, 1 - 1e-3)
            raw = torch.log(p) - torch.log1p(-p)
        self.raw_pseudo_inputs = nn.Parameter(raw)
        self.components = components

    @property
    def pseudo_inputs(self) -> torch.Tensor:
        """The pseudo-inputs :math:`u_k`, in ``(low, high)``."""
        return self.low + (self.high - self.low) * torch.sigmoid(self.raw_pseudo_inputs)

    def forward(self) -> dist.TorchDistribution:
        encoder, posterior = self._parts
        q = posterior(encoder(self.pseudo_inputs))  # batch (K,), event (d,)
        weights = torch.zeros(self.components, device=self.raw_pseudo_inputs.device)
        base = getattr(q, "base_dist", None)
        if isinstance(base, dist.Normal):  # diagonal components: the matmul-based mixture
            return DiagonalNormalMixture(weights, base.loc, base.scale)
        return dist.MixtureSameFamily(dist.Categorical(logits=weights), q)

    def extra_repr(self) -> str:
        return f"components={self.components}, log K={math.log(self.components):.3f}"


@priors.register("vamp")
def _build(ctx: PartContext) -> VampPrior:
    if ctx.posterior is None:
        raise ValueError("the VampPrior is built from the posterior, which is missing")
    # a flow's density is known only at its own draws: the VampPrior mixes its Gaussian base
    base = ctx.posterior.base if isinstance(ctx.posterior, AmortisedFlow) else ctx.posterior
    return VampPrior(ctx.encoder, base, ctx.data_shape, ctx.components)
