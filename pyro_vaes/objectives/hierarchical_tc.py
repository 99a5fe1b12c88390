r"""The hierarchically factorised ELBO of HFVAE: the total correlation split between and within
groups of latent dimensions."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import pyro.infer
import torch
from pyro.poutine.trace_struct import Trace

from pyro_vaes.objectives.elbo import DifferentiableObjective, traces
from pyro_vaes.objectives.terms import batch_statistic_site, weigh
from pyro_vaes.objectives.total_correlation import TCELBO, log_importance_weights
from pyro_vaes.protocols import NeedsDatasetSize

__all__ = ["HierarchicalTCELBO", "even_groups", "log_group_marginals"]


def even_groups(latent_dim: int, num_groups: int) -> tuple[int, ...]:
    """``latent_dim`` dimensions in ``num_groups`` consecutive groups whose sizes differ by at
    most one, the larger first: ``even_groups(10, 5) == (2, 2, 2, 2, 2)``,
    ``even_groups(16, 5) == (4, 3, 3, 3, 3)``; fewer groups where there are fewer dimensions."""
    if latent_dim < 1 or num_groups < 1:
        raise ValueError(
            f"need latent_dim >= 1 and num_groups >= 1, got {latent_dim} and {num_groups}"
        )
    k = min(latent_dim, num_groups)
    size, extra = divmod(latent_dim, k)
    return tuple(size + 1 if g < extra else size for g in range(k))


def log_group_marginals(
    pairwise: torch.Tensor, log_w: torch.Tensor, groups: Sequence[int]
) -> torch.Tensor:
    r"""The minibatch estimate of each group's aggregate posterior at each code,

    .. math::
        \log q(z_{i,g}) \approx \log \sum_j w_{ij} \prod_{d \in g} q(z_{i,d} \mid x_j),

    ``(M, G)``, from the per-dimension log densities ``pairwise[i, j, d]``
    :math:`= \log q(z_{i,d} \mid x_j)` ``(M, M, d)``, the log weights ``log_w`` ``(M, M)``
    (:func:`~pyro_vaes.objectives.total_correlation.log_importance_weights`) and the sizes of
    consecutive groups of dimensions. One group of all dimensions gives :math:`\log q(z_i)`,
    one group per dimension the marginals :math:`\log q(z_{i,d})` (the estimates of
    :class:`~pyro_vaes.objectives.TCELBO`).
    """
    sizes = [int(s) for s in groups]
    if min(sizes, default=0) < 1 or sum(sizes) != pairwise.shape[-1]:
        raise ValueError(
            f"groups must be positive sizes adding up to the {pairwise.shape[-1]} latent "
            f"dimensions, got {tuple(groups)}"
        )
    grouped = torch.stack([p.sum(-1) for p in pairwise.split(sizes, dim=-1)], dim=-1)
    return torch.logsumexp(grouped + log_w.unsqueeze(-1), dim=1)


class HierarchicalTCELBO(DifferentiableObjective, pyro.infer.ELBO, NeedsDatasetSize):
    r"""The HFVAE objective: the KL term of the ELBO, averaged over the data, split into four
    pieces with their own weights, for the latent dimensions in groups :math:`z = (z_1, \dots,
    z_G)`, :math:`z_g = (z_{g,1}, \dots, z_{g,D_g})`,

    .. math::
        \mathcal L = \mathbb E_q[\log p(x \mid z)]
        - \alpha\, \underbrace{\mathbb E\Big[\log \frac{q(z \mid x)}{q(z)}\Big]}_{I_q(x; z)}
        - \beta\, \underbrace{\mathbb E\Big[\log \frac{q(z)}{\prod_g q(z_g)}
          - \log \frac{p(z)}{\prod_g p(z_g)}\Big]}_{\text{between groups}}
        - \gamma \sum_g \underbrace{\mathbb E\Big[\log \frac{q(z_g)}{\prod_d q(z_{g,d})}
          - \log \frac{p(z_g)}{\prod_d p(z_{g,d})}\Big]}_{\text{within group } g}
        - \sum_{g,d} \underbrace{\mathrm{KL}(q(z_{g,d}) \,\|\, p(z_{g,d}))}_{\text{dimension-wise}},

    Esmaeili et al.'s objective [1] (the terms of :math:`x` alone, :math:`\log p(x)` and
    :math:`\mathrm{KL}(q(x)\,\|\,p(x))`, do not depend on the encoder and are left out, as in
    the reference code). The between-group term asks the groups to be independent of one another,
    the within-group term the dimensions of a group; with :math:`\gamma < \beta` a group may
    keep correlated dimensions (two for a position, say) while the groups disentangle. With
    one group of all dimensions the between-group term vanishes and :math:`\gamma` is the
    total-correlation weight of beta-TCVAE; with one dimension per group the within-group terms
    vanish and :math:`\beta` is. With :math:`\alpha = \beta = \gamma = 1` the four pieces add up
    to :math:`\log q(z \mid x) - \log p(z)` exactly and the objective is the ELBO. The defaults
    :math:`\alpha = 1`, :math:`\beta = 6` (the total-correlation weight of the catalogue's
    ``beta_tcvae``) and :math:`\gamma = 2` are this library's choice; the paper sets the weights
    per experiment.

    The aggregate posterior and its marginals are estimated on the minibatch as in
    :class:`~pyro_vaes.objectives.TCELBO` (minibatch stratified or weighted sampling, the same
    estimator for every piece: :func:`log_group_marginals`), which needs the dataset size
    :math:`N` (``bind_dataset_size``, called by :func:`pyro_vaes.fit`). The prior's terms vanish
    for a prior that factorises over dimensions (the standard normal); for one that does not,
    its total correlation stays in the dimension-wise piece, :math:`\sum_d \log q(z_d) - \log
    p(z)`, so the pieces still add up to the KL. The latent site's posterior must factorise
    (``Independent`` over codes ``(M, d)``); scales and masks follow :class:`TCELBO`'s rule: the
    site's scale multiplies every piece (``VAE(beta=b)`` makes the weights :math:`b\alpha,
    b\beta, b\gamma, b`), and one that varies across datapoints is refused.

    :param alpha: weight of the index-code mutual information.
    :param beta: weight of the total correlation between groups.
    :param gamma: weight of the total correlation within groups.
    :param groups: the sizes of consecutive groups of latent dimensions, adding up to the
        latent size; ``None``: five groups as even as possible (:func:`even_groups`), one per
        generative factor of the sprites (:mod:`pyro_vaes.data.sprites`).
    :param estimator: ``"mss"`` or ``"mws"``.
    :param dataset_size: :math:`N` (or left to ``fit``).
    :param latent: the latent site.

    References:
        [1] Esmaeili, Wu, Jain, Bozkurt, Siddharth, Paige, Brooks, Dy, van de Meent. Structured
        Disentangled Representations. AISTATS 2019.
        [2] Chen, Li, Grosse, Duvenaud. Isolating Sources of Disentanglement in Variational
        Autoencoders. NeurIPS 2018.
    """

    #: the number of groups when ``groups`` is not given: the sprites' five factors
    default_num_groups = 5

    def __init__(
        self,
        alpha: float = 1.0,
        beta: float = 6.0,
        gamma: float = 2.0,
        groups: Sequence[int] | None = None,
        estimator: str = "mss",
        dataset_size: int | None = None,
        latent: str = "z",
    ) -> None:
        if min(alpha, beta, gamma) < 0:
            raise ValueError(f"alpha, beta and gamma must be >= 0, got {alpha}, {beta}, {gamma}")
        if groups is not None and (not len(groups) or min(int(g) for g in groups) < 1):
            raise ValueError(f"groups must be positive group sizes, got {groups!r}")
        super().__init__(num_particles=1)
        # the mutual information, the total correlation and the dimension-wise KL, unweighted
        self._tc = TCELBO(1.0, 1.0, 1.0, estimator, dataset_size, latent)
        self.alpha, self.beta, self.gamma = float(alpha), float(beta), float(gamma)
        self.groups = None if groups is None else tuple(int(g) for g in groups)
        self.latent = latent

    @property
    def dataset_size(self) -> int | None:
        """:math:`N`, the number of training datapoints."""
        return self._tc.dataset_size

    def bind_dataset_size(self, n: int) -> None:
        """Called by :func:`pyro_vaes.fit` with the number of training datapoints."""
        self._tc.bind_dataset_size(n)

    def group_sizes(self, latent_dim: int) -> tuple[int, ...]:
        """The groups' sizes for codes of ``latent_dim`` dimensions (``groups``, or the default
        :func:`even_groups`)."""
        if self.groups is None:
            return even_groups(latent_dim, self.default_num_groups)
        if sum(self.groups) != latent_dim:
            raise ValueError(
                f"groups {self.groups} add up to {sum(self.groups)} dimensions, but the codes of "
                f"{self.latent!r} have {latent_dim}"
            )
        return self.groups

    def terms(self, model_tr: Trace, guide_tr: Trace) -> dict[str, torch.Tensor]:
        """Per-datapoint ``recon``, ``mi``, ``tc_between``, ``tc_within``, ``dwkl`` (the
        latent's pieces, weighed by its scale and mask) and ``other_kl`` (the ELBO terms of the
        other latent and auxiliary sites), each ``(M,)``; minus their weighted sum is the
        loss."""
        t = self._tc.terms(model_tr, guide_tr)  # checks the site, its posterior and N
        site, z = batch_statistic_site(model_tr, guide_tr, self.latent, "HFVAE's log q(z)")
        m, d = z.shape
        assert self.dataset_size is not None  # checked by TCELBO.terms
        log_w = log_importance_weights(m, self.dataset_size, self._tc.estimator == "mss").to(z)
        pairwise = site["fn"].base_dist.log_prob(z.unsqueeze(1))  # (M, M, d): q(z_i,d | x_j)
        log_q_groups = log_group_marginals(pairwise, log_w, self.group_sizes(d)).sum(-1)
        log_q_dims = log_group_marginals(pairwise, log_w, (1,) * d).sum(-1)
        within = weigh(site, log_q_groups - log_q_dims)
        return {
            "recon": t["recon"],
            "mi": t["mi"],
            "tc_between": t["tc"] - within,
            "tc_within": within,
            "dwkl": t["dwkl"],
            "other_kl": t["other_kl"],
        }

    def differentiable_loss(
        self, model: Callable[..., Any], guide: Callable[..., Any], *args: Any, **kwargs: Any
    ) -> torch.Tensor:
        t = self.terms(*traces(model, guide, args, kwargs))
        elbo = (
            t["recon"]
            - self.alpha * t["mi"]
            - self.beta * t["tc_between"]
            - self.gamma * t["tc_within"]
            - t["dwkl"]
            - t["other_kl"]
        )
        return -elbo.sum()
