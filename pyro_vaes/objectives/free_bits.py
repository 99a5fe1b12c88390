r"""Free bits: a floor on the KL term, per latent dimension or per latent site, against
posterior collapse."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pyro.infer
import torch
from pyro.poutine.trace_struct import Trace
from torch.distributions import Independent, kl_divergence

from pyro_vaes.objectives.elbo import DifferentiableObjective, traces
from pyro_vaes.objectives.terms import batch_statistic_site, kl, negative_elbo, weigh

__all__ = ["FreeBitsELBO", "kl_by_dimension"]

_PER = ("dimension", "site")


def kl_by_dimension(model_tr: Trace, guide_tr: Trace, name: str) -> torch.Tensor:
    r""":math:`\mathrm{KL}_j` of each dimension of the latent site ``name``, ``(n, d)`` (every
    batch dim flattened), unweighted: the closed form of the factors where
    ``kl_divergence`` is registered for them, else the one-draw estimate
    :math:`\log q(z_j) - \log p(z_j)`. Both distributions must factorise over the dimensions
    (``Independent`` of a univariate family with one event dim, as the diagonal normal and the
    standard normal prior); the sum over :math:`j` is the site's KL. Otherwise ValueError."""
    q: Any = guide_tr.nodes[name]["fn"]
    p: Any = model_tr.nodes[name]["fn"]
    factors = []
    for fn, side in ((q, "posterior"), (p, "prior")):
        if not (isinstance(fn, Independent) and fn.reinterpreted_batch_ndims == 1):
            raise ValueError(
                f"free bits per dimension need a {side} on {name!r} that factorises over the "
                f"dimensions (an Independent of one event dim), got {type(fn).__name__}; "
                "use per='site'"
            )
        factors.append(fn.base_dist)
    bq, bp = factors
    site: Any = guide_tr.nodes[name]
    z: torch.Tensor = site["value"]
    try:
        value = kl_divergence(bq, bp)
    except NotImplementedError:
        value = bq.log_prob(z) - bp.log_prob(z)
    value = value.expand(z.shape)
    return value.reshape(-1, z.shape[-1])


class FreeBitsELBO(DifferentiableObjective, pyro.infer.ELBO):
    r"""The ELBO with Kingma et al.'s free bits: the KL term of each latent dimension (or of
    each latent site), averaged over the batch, is replaced by
    :math:`\max(\lambda, \cdot)` (eq. 15 of [1], with the batch as the minibatch :math:`\mathcal
    M` and a group :math:`K_j` a dimension or a site):

    .. math::
        -\widetilde{\mathcal L} = -\sum_{i=1}^B \log p(x_i \mid z_i)
        + B \sum_{j} \max\Big(\lambda, \frac1B \sum_{i=1}^B
        \mathrm{KL}\big(q(z_j \mid x_i)\,\|\,p(z_j)\big)\Big).

    A group whose batch-mean KL is below :math:`\lambda` costs :math:`B\lambda` and sends no
    gradient to the encoder, so the code may carry :math:`\lambda` nats per group for free;
    above the floor the term is the ELBO's. With ``lambda_ = 0`` the objective is the ELBO.

    ``per="dimension"`` (the default) floors each coordinate :math:`z_j` of a factorised
    posterior and prior (:func:`kl_by_dimension`: closed form where registered, as for the
    diagonal normal against the standard normal); ``per="site"`` floors the site's whole KL
    (any pair, closed form or the one-draw estimate), as the tutorial's
    ``docs/tutorial/custom_parts.py`` does.

    Scales and masks: the batch means are statistics of the whole batch
    (:func:`~pyro_vaes.objectives.terms.batch_statistic_site`): the floored term takes the latent
    site's scale as one factor (``VAE(beta=b)`` multiplies it by :math:`b`, a subsampled plate
    by :math:`N/B`; ``beta = 0`` removes it) and a mask or scale that varies across datapoints is
    refused. Other sites contribute their ELBO terms.

    :param lambda_: the floor :math:`\lambda` in nats, per dimension or per site.
    :param per: ``"dimension"`` or ``"site"``.
    :param latents: the latent site(s) floored; other latent sites keep their ELBO terms.

    References:
        [1] Kingma, Salimans, Jozefowicz, Chen, Sutskever, Welling. Improved Variational
        Inference with Inverse Autoregressive Flow. NeurIPS 2016 (appendix C.8).
    """

    def __init__(
        self,
        lambda_: float = 0.5,
        per: str = "dimension",
        latents: str | tuple[str, ...] = "z",
    ) -> None:
        if not lambda_ >= 0:
            raise ValueError(f"lambda_ must be >= 0, got {lambda_}")
        if per not in _PER:
            raise ValueError(f"per must be one of {_PER}, got {per!r}")
        super().__init__(num_particles=1)
        self.lambda_, self.per = float(lambda_), per
        self.latents = (latents,) if isinstance(latents, str) else tuple(latents)

    def mean_kl(self, model_tr: Trace, guide_tr: Trace, name: str) -> torch.Tensor:
        """The batch-mean KL of each group of the site ``name``: ``(d,)`` per dimension, ``()``
        per site, unweighted."""
        if self.per == "dimension":
            return kl_by_dimension(model_tr, guide_tr, name).mean(0)
        return kl(model_tr, guide_tr, name).mean()

    def floored_kl(self, model_tr: Trace, guide_tr: Trace) -> torch.Tensor:
        r"""The term that stands in for the latents' KL terms:
        :math:`B \sum_j \max(\lambda, \overline{\mathrm{KL}}_j)` over every group of every
        site in ``latents``, each site's weighed by its scale."""
        out = torch.zeros(())
        for name in self.latents:
            site, codes = batch_statistic_site(model_tr, guide_tr, name, "the free-bits KL")
            floored = self.mean_kl(model_tr, guide_tr, name).clamp_min(self.lambda_).sum()
            out = out + weigh(site, codes.shape[0] * floored)
        return out

    def differentiable_loss(
        self, model: Callable[..., Any], guide: Callable[..., Any], *args: Any, **kwargs: Any
    ) -> torch.Tensor:
        model_tr, guide_tr = traces(model, guide, args, kwargs)
        rest = negative_elbo(model_tr, guide_tr, without=self.latents)
        return rest + self.floored_kl(model_tr, guide_tr)
