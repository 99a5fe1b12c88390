"""The total-correlation ELBO of beta-TCVAE, with both minibatch estimators of log q(z)."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import pyro.infer
import torch
from pyro.poutine.trace_struct import Trace

from pyro_vaes.objectives.elbo import DifferentiableObjective, traces
from pyro_vaes.objectives.terms import (
    batch_statistic_site,
    by_datapoint,
    elbo_terms,
    prior_of,
    weigh,
)
from pyro_vaes.protocols import NeedsDatasetSize

__all__ = ["TCELBO", "log_importance_weights"]


def log_importance_weights(batch_size: int, dataset_size: int, stratified: bool) -> torch.Tensor:
    r"""``W[i, j]``, the log weight of datapoint :math:`j` of a minibatch of :math:`M` (from a
    dataset of :math:`N`) in :math:`\log q(z_i) \approx \log\sum_j w_{ij}\, q(z_i \mid x_j)`.

    * Minibatch weighted sampling: :math:`w_{ij} = 1/M` for every pair. (Chen et al. write
      :math:`1/(NM)`; that moves each term's value by a multiple of :math:`\log N` -- the TC of
      :math:`d` dimensions by :math:`(d-1)\log N` -- and leaves every gradient alone. With
      :math:`1/M` the rows sum to one, as the stratified weights do, and the terms' values
      estimate :math:`I`, TC and DWKL themselves.)
    * Minibatch stratified sampling: :math:`w_{ii} = 1/N`, one other entry per row
      :math:`(N - M + 1)/(N (M - 1))`, and :math:`1/(M - 1)` elsewhere.
    """
    n, m = dataset_size, batch_size
    if stratified:
        if m < 2:
            raise ValueError("minibatch stratified sampling needs batches of at least 2")
        k = m - 1
        strat = (n - k) / (n * k)
        w = torch.full((m, m), 1.0 / k)
        w.view(-1)[:: m + 1] = 1.0 / n
        w.view(-1)[1 :: m + 1] = strat
        w[m - 1, 0] = strat
        return w.log()
    return torch.full((m, m), -math.log(m))


class TCELBO(DifferentiableObjective, pyro.infer.ELBO, NeedsDatasetSize):
    r"""The beta-TCVAE objective: the KL term of the ELBO split into index-code mutual
    information, total correlation and dimension-wise KL, each with its own weight,

    .. math::
        \mathcal L = \mathbb E_q[\log p(x\mid z)]
        - \alpha\, \underbrace{\mathbb E[\log q(z\mid x) - \log q(z)]}_{I_q(z; x)}
        - \beta\, \underbrace{\mathbb E[\log q(z) - \textstyle\sum_d \log q(z_d)]}_{\mathrm{TC}}
        - \gamma\, \underbrace{\mathbb E[\textstyle\sum_d \log q(z_d) - \log p(z)]}_{\mathrm{DWKL}},

    with the aggregate posterior :math:`q(z)` and its marginals :math:`q(z_d)` estimated on the
    minibatch, by minibatch weighted sampling (MWS) or minibatch stratified sampling (MSS). Both
    need the dataset size :math:`N`, which :func:`pyro_vaes.fit` supplies
    (``bind_dataset_size``). With :math:`\alpha=\beta=\gamma=1` the three terms add up to
    :math:`\log q(z\mid x) - \log p(z)` exactly and the objective is the ELBO.

    The latent site (``latent``, default ``"z"``) must have a factorised posterior: an
    ``Independent`` whose base distribution has one batch entry per latent dimension (diagonal
    normal, say). Other sites contribute their usual ELBO terms
    (:mod:`pyro_vaes.objectives.terms`).

    Scales and masks: the latent site's scale multiplies all three pieces, so on a model with
    ``beta = b`` (``poutine.scale``) the weights are :math:`b\alpha, b\beta, b\gamma` and
    ``TCELBO(1, 1, 1)`` is the beta-ELBO; ``beta = 0`` (a mask of the whole site) removes them.
    :math:`\log q(z_i)` is estimated from every code of the batch, so a mask or scale that
    varies across datapoints of the latent site is refused (ValueError). Observed sites may be
    masked per datapoint.

    :param alpha: weight of the mutual information.
    :param beta: weight of the total correlation.
    :param gamma: weight of the dimension-wise KL.
    :param estimator: ``"mss"`` or ``"mws"``.
    :param dataset_size: :math:`N` (or left to ``fit``).

    References:
        [1] Chen, Li, Grosse, Duvenaud. Isolating Sources of Disentanglement in Variational
        Autoencoders. NeurIPS 2018.
    """

    def __init__(
        self,
        alpha: float = 1.0,
        beta: float = 6.0,
        gamma: float = 1.0,
        estimator: str = "mss",
        dataset_size: int | None = None,
        latent: str = "z",
    ) -> None:
        if estimator not in ("mss", "mws"):
            raise ValueError(f"estimator must be 'mss' or 'mws', got {estimator!r}")
        if min(alpha, beta, gamma) < 0:
            raise ValueError("alpha, beta and gamma must be >= 0")
        super().__init__(num_particles=1)
        self.alpha, self.beta, self.gamma = float(alpha), float(beta), float(gamma)
        self.estimator, self.latent = estimator, latent
        self.dataset_size = dataset_size

    def bind_dataset_size(self, n: int) -> None:
        """Called by :func:`pyro_vaes.fit` with the number of training datapoints."""
        if self.dataset_size is None:
            self.dataset_size = int(n)

    def terms(self, model_tr: Trace, guide_tr: Trace) -> dict[str, torch.Tensor]:
        """Per-datapoint ``recon``, ``mi``, ``tc``, ``dwkl`` (the latent's pieces, weighed by its
        scale and mask) and ``other_kl`` (the ELBO terms of the other latent and auxiliary
        sites), each ``(M,)``; minus their weighted sum is the loss."""
        if self.dataset_size is None:
            raise ValueError("TCELBO needs the dataset size: pass dataset_size or train with fit")
        what = "TCELBO's estimate of log q(z)"
        site, _ = batch_statistic_site(model_tr, guide_tr, self.latent, what)
        z, q = site["value"], site["fn"]
        base = getattr(q, "base_dist", None)
        if base is None or z.dim() != 2:
            raise ValueError("TCELBO needs a factorised posterior (Independent) over codes (M, d)")
        m = z.shape[0]
        log_w = log_importance_weights(m, self.dataset_size, self.estimator == "mss").to(z)
        log_qz_x = q.log_prob(z)  # (M,)
        pairwise = base.log_prob(z.unsqueeze(1))  # (M, M, d): q(z_i,d | x_j)
        log_qz = torch.logsumexp(pairwise.sum(-1) + log_w, dim=1)
        log_prod_qzd = torch.logsumexp(pairwise + log_w.unsqueeze(-1), dim=1).sum(-1)
        log_pz = prior_of(model_tr, self.latent).log_prob(z)
        terms = elbo_terms(model_tr, guide_tr)
        return {
            "recon": -by_datapoint((t for t in terms.values() if t.kind == "observed"), m),
            "mi": weigh(site, log_qz_x - log_qz),
            "tc": weigh(site, log_qz - log_prod_qzd),
            "dwkl": weigh(site, log_prod_qzd - log_pz),
            "other_kl": by_datapoint(
                (t for t in terms.values() if t.kind != "observed" and t.name != self.latent), m
            ),
        }

    def differentiable_loss(
        self, model: Callable[..., Any], guide: Callable[..., Any], *args: Any, **kwargs: Any
    ) -> torch.Tensor:
        t = self.terms(*traces(model, guide, args, kwargs))
        elbo = (
            t["recon"]
            - self.alpha * t["mi"]
            - self.beta * t["tc"]
            - self.gamma * t["dwkl"]
            - t["other_kl"]
        )
        return -elbo.sum()
