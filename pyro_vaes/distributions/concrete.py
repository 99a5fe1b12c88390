r"""The Concrete (Gumbel-softmax) relaxation of a categorical variable, with the KL of the
categoricals it relaxes.

:class:`Concrete` is Pyro's ``RelaxedOneHotCategorical``: a reparameterised draw
:math:`\mathrm{softmax}((\log\pi + g)/\tau)` with Gumbel noise :math:`g`, which approaches a
one-hot vector as the temperature :math:`\tau \to 0`. Between two of them the registered KL is
that of the underlying categoricals, :math:`\sum_k \pi_k (\log\pi_k - \log\rho_k)`, the choice of
Jang et al. (the relaxed densities' KL has no closed form and a high-variance estimate).

References:
    [1] Jang, Gu, Poole. Categorical Reparameterization with Gumbel-Softmax. ICLR 2017.
    [2] Maddison, Mnih, Teh. The Concrete Distribution. ICLR 2017.
"""

from __future__ import annotations

import pyro.distributions as dist
import torch
from torch.distributions import register_kl

__all__ = ["Concrete"]


class Concrete(dist.RelaxedOneHotCategorical):
    """``RelaxedOneHotCategorical`` whose KL to another is the categorical KL (module docstring)."""

    def expand(self, batch_shape: torch.Size, _instance: object = None) -> Concrete:  # type: ignore[override]
        new = self._get_checked_instance(Concrete, _instance)
        return super().expand(batch_shape, _instance=new)  # type: ignore[return-value]


@register_kl(Concrete, Concrete)
def _kl_concrete(p: Concrete, q: Concrete) -> torch.Tensor:
    log_p = torch.log_softmax(p.logits, dim=-1)
    log_q = torch.log_softmax(q.logits, dim=-1)
    return (log_p.exp() * (log_p - log_q)).sum(-1)
