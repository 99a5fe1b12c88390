r"""NVAE's KL warm-up with KL balancing across latent groups: an ELBO whose KL terms are weighed
by a warm-up coefficient and, while it is below one, by balancing coefficients that give the
groups with little KL less pressure, so that no group collapses early."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import pyro.infer
import torch
from pyro.poutine.trace_struct import Trace

from pyro_vaes.objectives.elbo import DifferentiableObjective, traces
from pyro_vaes.objectives.terms import kl, latent_site, negative_elbo, weigh

__all__ = ["KLBalancedELBO", "kl_balance_coefficients"]


def kl_balance_coefficients(
    mean_kl: torch.Tensor, alpha: torch.Tensor | None = None, offset: float = 0.01
) -> torch.Tensor:
    r"""NVAE's balancing coefficients of :math:`L` groups (appendix A of [1]) from each group's
    batch-mean KL :math:`\overline{\mathrm{KL}}_l`:

    .. math::
        \gamma_l = L\,\frac{k_l / \alpha_l}{\sum_{j=1}^L k_j / \alpha_j}, \qquad
        k_l = |\overline{\mathrm{KL}}_l| + \epsilon,

    proportional to the group's KL (over its size factor :math:`\alpha_l`, 1 by default; NVAE
    uses the spatial size of the group's scale), with mean one, so :math:`\sum_l \gamma_l = L`.
    :math:`\epsilon` (``offset``, NVAE's 0.01) keeps a group with no KL from a zero
    coefficient. The result carries no gradient.

    :param mean_kl: ``(L,)``, the batch-mean KL of each group.
    :param alpha: ``(L,)`` positive size factors, or ``None`` for equal ones.

    References:
        [1] Vahdat, Kautz. NVAE: A Deep Hierarchical Variational Autoencoder. NeurIPS 2020.
    """
    if mean_kl.dim() != 1 or mean_kl.numel() == 0:
        raise ValueError(f"mean_kl must be a non-empty vector, got shape {tuple(mean_kl.shape)}")
    k = mean_kl.detach().abs() + offset
    if alpha is not None:
        if alpha.shape != k.shape or not bool((alpha > 0).all()):
            raise ValueError(
                f"alpha must hold a positive factor per group ({k.numel()}), got {alpha.tolist()}"
            )
        k = k / alpha.to(k)
    return k.numel() * k / k.sum()


class KLBalancedELBO(DifferentiableObjective, pyro.infer.ELBO):
    r"""The ELBO of a model with several latent groups, with NVAE's KL warm-up and KL
    balancing [1]:

    .. math::
        -\widetilde{\mathcal L} = -\sum_{i=1}^B \log p(x_i \mid z_i)
        + \beta \sum_{l=1}^L \gamma_l \sum_{i=1}^B
        \mathrm{KL}\big(q(z_l \mid x_i, z_{>l})\,\|\,p(z_l \mid z_{>l})\big),

    with :math:`\beta` the warm-up coefficient (a plain attribute: anneal it with
    ``KLAnnealing(objective, attr="beta")``) and :math:`\gamma_l` the balancing coefficients of
    :func:`kl_balance_coefficients` from this batch's KLs, applied while :math:`\beta < 1` (as
    NVAE does: during warm-up) and 1 otherwise, so that at :math:`\beta = 1` this is the ELBO.
    The coefficients carry no gradient. Each KL is the closed form where registered, else the
    one-draw estimate, weighed by its site's scale and mask
    (:mod:`pyro_vaes.objectives.terms`); other sites keep their ELBO terms.

    :param latents: the group sites (``None``: every latent site of the guide that the model
        has).
    :param beta: the warm-up coefficient :math:`\beta \ge 0`.
    :param balance: apply the balancing coefficients during warm-up.
    :param alpha: size factors of the groups, in the order of ``latents`` (``None``: equal).

    References:
        [1] Vahdat, Kautz. NVAE: A Deep Hierarchical Variational Autoencoder. NeurIPS 2020
        (section 3.2 and appendix A).
    """

    def __init__(
        self,
        latents: Sequence[str] | None = None,
        beta: float = 1.0,
        balance: bool = True,
        alpha: Sequence[float] | None = None,
    ) -> None:
        if not beta >= 0:
            raise ValueError(f"beta must be >= 0, got {beta!r}")
        if alpha is not None and (latents is None or len(alpha) != len(latents)):
            raise ValueError("alpha needs the latents named, one factor for each")
        super().__init__(num_particles=1)
        self.latents = tuple(latents) if latents is not None else None
        self.beta, self.balance = float(beta), bool(balance)
        self.alpha = torch.tensor([float(a) for a in alpha]) if alpha is not None else None

    def groups(self, model_tr: Trace, guide_tr: Trace) -> tuple[str, ...]:
        """The group sites of these traces: :attr:`latents`, or every latent site of the guide
        that the model has, in the guide's order."""
        if self.latents is not None:
            return self.latents
        return tuple(
            name
            for name, site in guide_tr.nodes.items()
            if site["type"] == "sample"
            and not site["is_observed"]
            and name in model_tr.nodes
            and not model_tr.nodes[name]["is_observed"]
        )

    def coefficients(self, kls: Sequence[torch.Tensor]) -> torch.Tensor:
        r""":math:`\gamma_l` for the groups' KLs (each one entry per batch entry): balanced
        while :math:`\beta < 1` and ``balance`` is on, else ones."""
        if not (self.balance and self.beta < 1.0):
            return torch.ones(len(kls))
        return kl_balance_coefficients(torch.stack([k.mean() for k in kls]), self.alpha)

    def differentiable_loss(
        self, model: Callable[..., Any], guide: Callable[..., Any], *args: Any, **kwargs: Any
    ) -> torch.Tensor:
        model_tr, guide_tr = traces(model, guide, args, kwargs)
        names = self.groups(model_tr, guide_tr)
        sites = [latent_site(model_tr, guide_tr, name) for name in names]
        kls = [kl(model_tr, guide_tr, name) for name in names]
        gamma = self.coefficients(kls)
        loss = negative_elbo(model_tr, guide_tr, without=names)
        for g, site, value in zip(gamma, sites, kls, strict=True):
            loss = loss + self.beta * g * weigh(site, value).sum()
        return loss
