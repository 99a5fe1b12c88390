r"""Deep hierarchical VAEs with bidirectional inference: the Ladder VAE and NVAE.

Both have :math:`L` Gaussian latent groups :math:`z_1, \dots, z_L` (:math:`z_1` nearest the
data) and the same two passes:

* **generative, top-down**: :math:`p(z_L) = \mathcal N(0, I)`, then
  :math:`p(z_l \mid z_{>l}) = \mathcal N(\mu_{p,l}, \sigma_{p,l}^2)` from a top-down state that
  has seen the groups above, and :math:`p(x \mid z)` from the last state;
* **inference, bottom-up then top-down**: a deterministic pass over :math:`x` gives features
  :math:`d_1, \dots, d_L`; the groups are then drawn top-down along the *same* top-down path as
  the prior, each :math:`q(z_l \mid x, z_{>l})` combining :math:`d_l` with the top-down state.

The two models differ in that combination (:func:`precision_weighted` for the Ladder VAE,
:func:`residual_normal` for NVAE) and in their networks (:mod:`pyro_vaes.nets.residual`).

Each group is its own Pyro sample site ``"z1"``, ..., ``"zL"`` in the plate ``"data"``, drawn in
the guide in the order of :attr:`HierarchicalVAE.latent_sites` (top first), so any ELBO has one KL
term per group, :math:`\mathrm{KL}(q(z_l \mid x, z_{>l})\,\|\,p(z_l \mid z_{>l}))`, in closed
form for these Gaussians, and the importance-sampled evaluation weighs all the sites at once:

.. math::
    \log p(x) \ge \mathbb E_q\Big[\log p(x \mid z) - \sum_{l=1}^L
    \log\frac{q(z_l \mid x, z_{>l})}{p(z_l \mid z_{>l})}\Big].

The codes of :meth:`HierarchicalVAE.encode` are the groups' posterior means, drawn top-down at
the means and concatenated in the order of :attr:`~HierarchicalVAE.latent_sites`;
:meth:`~HierarchicalVAE.decode` splits them back.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from typing import Any

import pyro
import pyro.distributions as dist
import torch
from pyro import poutine
from torch import nn

from pyro_vaes.likelihoods import Likelihood
from pyro_vaes.models.base import BaseModel
from pyro_vaes.nets.residual import GaussianHead, ResidualStack

__all__ = ["NVAE", "HierarchicalVAE", "LadderVAE", "precision_weighted", "residual_normal"]

Gaussian = tuple[torch.Tensor, torch.Tensor]  # (loc, scale)
#: how a group's value is chosen in a top-down pass: (level, prior p(z_l | z_>l), state) -> z_l
Pick = Callable[[int, dist.Normal, Any], torch.Tensor]


def precision_weighted(bottom_up: Gaussian, top_down: Gaussian) -> Gaussian:
    r"""The Ladder VAE's merge of a bottom-up and a top-down Gaussian (section 2.2 of [1]): the
    normalised product of the two densities,

    .. math::
        \sigma_q^2 = \frac{1}{\hat\sigma^{-2} + \sigma_p^{-2}}, \qquad
        \mu_q = \frac{\hat\mu\,\hat\sigma^{-2} + \mu_p\,\sigma_p^{-2}}
        {\hat\sigma^{-2} + \sigma_p^{-2}}.

    Each argument is ``(loc, scale)``; they broadcast.

    References:
        [1] Sønderby, Raiko, Maaløe, Sønderby, Winther. Ladder Variational Autoencoders.
        NeurIPS 2016.
    """
    (mu_hat, sigma_hat), (mu_p, sigma_p) = bottom_up, top_down
    prec_hat, prec_p = sigma_hat.pow(-2), sigma_p.pow(-2)
    prec = prec_hat + prec_p
    return (mu_hat * prec_hat + mu_p * prec_p) / prec, prec.rsqrt()


def residual_normal(prior: Gaussian, delta: Gaussian) -> Gaussian:
    r"""NVAE's residual normal posterior (section 3.2 of [1]): relative to the prior
    :math:`p = \mathcal N(\mu_p, \sigma_p^2)`,

    .. math::
        q = \mathcal N(\mu_p + \Delta\mu,\; (\sigma_p \cdot \Delta\sigma)^2), \qquad
        \mathrm{KL}(q\,\|\,p) = \frac12 \sum_i \Big(\frac{\Delta\mu_i^2}{\sigma_{p,i}^2}
        + \Delta\sigma_i^2 - \log \Delta\sigma_i^2 - 1\Big),

    so the KL does not depend on :math:`\mu_p` and shrinks as the encoder's :math:`\Delta\mu,
    \Delta\sigma` approach :math:`0, 1`, however the prior moves. ``prior`` and ``delta`` are
    ``(loc, scale)``; they broadcast.

    References:
        [1] Vahdat, Kautz. NVAE: A Deep Hierarchical Variational Autoencoder. NeurIPS 2020.
    """
    (mu_p, sigma_p), (d_mu, d_sigma) = prior, delta
    return mu_p + d_mu, sigma_p * d_sigma


def _check_dims(latent_dims: Sequence[int]) -> tuple[int, ...]:
    dims = tuple(latent_dims)
    if not dims or not all(isinstance(d, int) and d >= 1 for d in dims):
        raise ValueError(f"latent_dims must be one or more positive integers, got {dims!r}")
    return dims


def _scale(beta: float) -> AbstractContextManager[Any]:
    """The weight of the latent sites: none for ``beta = 1``, ``poutine.scale`` above zero and a
    mask for ``beta = 0`` (``poutine.scale`` takes only positive scales)."""
    if beta == 1.0:
        return nullcontext()
    return poutine.scale(scale=beta) if beta > 0 else poutine.mask(mask=False)


class HierarchicalVAE(BaseModel):
    r"""What the Ladder VAE and NVAE share (see the module docstring): the Pyro model and guide
    over the groups, the top-down pass, codes, decoding and sampling. A subclass gives the
    networks through five methods: :meth:`bottom_up` (:math:`x \to d_1..d_L`), :meth:`prior`
    (:math:`p(z_l \mid z_{>l})` from the state), :meth:`posterior` (:math:`q(z_l \mid x,
    z_{>l})` from :math:`d_l`, the state and the prior), :meth:`update` (the state after
    :math:`z_l`) and :meth:`output` (the likelihood's parameters from the last state).

    ``beta`` weighs every group's KL term with ``poutine.scale`` in model and guide (as
    :class:`pyro_vaes.VAE` does), so ``KLAnnealing(model)`` warms the KL up; ``beta = 0`` masks
    the latent sites out.

    :param data_shape: shape of one datapoint.
    :param latent_dims: the size of each group, :math:`z_1` (bottom) first.
    :param likelihood: ``(parameters, event_dim) -> distribution over x``.
    :param beta: the weight of the KL terms.
    """

    top_loc: torch.Tensor

    def __init__(
        self,
        data_shape: Sequence[int],
        latent_dims: Sequence[int],
        likelihood: Likelihood,
        *,
        beta: float = 1.0,
    ) -> None:
        super().__init__()
        if not beta >= 0:
            raise ValueError(f"beta must be >= 0, got {beta!r}")
        self.data_shape = tuple(int(s) for s in data_shape)
        self.latent_dims = _check_dims(latent_dims)
        self.likelihood = likelihood
        self.beta = float(beta)
        self.latent_sites = tuple(f"z{level + 1}" for level in reversed(range(self.levels)))
        self.register_buffer("top_loc", torch.zeros(self.latent_dims[-1]))

    @property
    def levels(self) -> int:
        """:math:`L`, the number of latent groups."""
        return len(self.latent_dims)

    # ---------------------------------------------------------------- the subclass's networks

    def bottom_up(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The features :math:`d_1, \\dots, d_L` of a batch ``x`` (one per group, bottom first)."""
        raise NotImplementedError

    def prior(self, level: int, state: Any) -> Gaussian:
        """``(loc, scale)`` of :math:`p(z_l \\mid z_{>l})` for ``level`` :math:`l - 1 < L - 1`."""
        raise NotImplementedError

    def posterior(self, level: int, feature: torch.Tensor, state: Any, prior: Gaussian) -> Gaussian:
        """``(loc, scale)`` of :math:`q(z_l \\mid x, z_{>l})` from the group's bottom-up
        ``feature``, the top-down ``state`` (``None`` at the top) and the ``prior``'s
        ``(loc, scale)``."""
        raise NotImplementedError

    def update(self, level: int, state: Any, z: torch.Tensor) -> Any:
        """The top-down state after the group at ``level`` took the value ``z``."""
        raise NotImplementedError

    def output(self, state: Any) -> torch.Tensor:
        """The likelihood's parameters from the state after the last group."""
        raise NotImplementedError

    # ----------------------------------------------------------------------- the top-down pass

    def prior_distribution(self, level: int, state: Any) -> dist.Normal:
        """:math:`p(z_l \\mid z_{>l})` as a ``Normal`` (batch dims; :math:`\\mathcal N(0, I)`
        of no batch dims at the top)."""
        if level == self.levels - 1:
            return dist.Normal(self.top_loc, torch.ones_like(self.top_loc))
        return dist.Normal(*self.prior(level, state))

    def descend(self, pick: Pick) -> Any:
        """One top-down pass, :math:`z_L` first: ``pick(level, prior, state)`` gives each
        group's value; returns the last state."""
        state: Any = None
        for level in reversed(range(self.levels)):
            p = self.prior_distribution(level, state)
            state = self.update(level, state, pick(level, p, state))
        return state

    def _flat(self, x: torch.Tensor) -> torch.Tensor:
        n = len(self.data_shape)
        if tuple(x.shape[x.dim() - n :]) != self.data_shape:
            raise ValueError(
                f"{type(self).__name__} expects datapoints of shape {self.data_shape}, got a "
                f"batch of shape {tuple(x.shape)}"
            )
        return x.reshape(*x.shape[: x.dim() - n], -1)

    def _params(self, state: Any) -> torch.Tensor:
        out = self.output(state)
        return out.reshape(*out.shape[:-1], *self.data_shape)

    # ----------------------------------------------------------------------- model and guide

    def model(self, x: torch.Tensor | None = None, y: torch.Tensor | None = None) -> None:
        """:math:`z_L \\sim p(z_L)`, ..., :math:`z_1 \\sim p(z_1 \\mid z_{>1})`,
        :math:`x \\sim p(x \\mid z)` for each datapoint (``x=None``: generate; ``y`` is
        ignored)."""
        self.register_with_pyro()

        def pick(level: int, p: dist.Normal, state: Any) -> torch.Tensor:
            with _scale(self.beta):
                return pyro.sample(f"z{level + 1}", p.to_event(1))

        with self.data_plate(x, y):
            state = self.descend(pick)
            params = self._params(state)
            pyro.sample("x", self.likelihood(params, len(self.data_shape)), obs=x)

    def guide(self, x: torch.Tensor | None = None, y: torch.Tensor | None = None) -> None:
        """The bottom-up pass over ``x``, then :math:`z_L \\sim q(z_L \\mid x)`, ...,
        :math:`z_1 \\sim q(z_1 \\mid x, z_{>1})` along the top-down path."""
        self.register_with_pyro()
        x = self.require_x(x)
        with self.data_plate(x):
            features = self.bottom_up(self._flat(x))

            def pick(level: int, p: dist.Normal, state: Any) -> torch.Tensor:
                q = self.posterior(level, features[level], state, (p.loc, p.scale))
                with _scale(self.beta):
                    return pyro.sample(f"z{level + 1}", dist.Normal(*q).to_event(1))

            self.descend(pick)

    # ----------------------------------------------------------------- codes and pictures

    @torch.no_grad()
    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """The posterior means of the groups, each given the means above it, concatenated top
        group first: ``(N, sum(latent_dims))``."""
        features = self.bottom_up(self._flat(x))
        means: list[torch.Tensor] = []

        def pick(level: int, p: dist.Normal, state: Any) -> torch.Tensor:
            loc, _ = self.posterior(level, features[level], state, (p.loc, p.scale))
            means.append(loc)
            return loc

        self.descend(pick)
        return torch.cat(means, dim=-1)

    @torch.no_grad()
    def decode(self, code: torch.Tensor) -> torch.Tensor:
        """The likelihood's mean at codes as :meth:`encode` returns them."""
        if code.shape[-1] != sum(self.latent_dims):
            raise ValueError(
                f"codes of {type(self).__name__} have {sum(self.latent_dims)} dims (the groups "
                f"{tuple(reversed(self.latent_dims))}, top first), got shape {tuple(code.shape)}"
            )
        groups = code.split(tuple(reversed(self.latent_dims)), dim=-1)
        state = self.descend(lambda level, p, state: groups[self.levels - 1 - level])
        return self.likelihood.mean(self._params(state))

    @torch.no_grad()
    def sample(self, n: int) -> torch.Tensor:
        """``n`` ancestral draws of the groups from the prior, decoded to the likelihood's
        mean."""

        def pick(level: int, p: dist.Normal, state: Any) -> torch.Tensor:
            return p.sample((n,)) if level == self.levels - 1 else p.sample()

        return self.likelihood.mean(self._params(self.descend(pick)))


class LadderVAE(HierarchicalVAE):
    r"""The Ladder VAE [1]: a Markov chain of Gaussian groups,

    .. math::
        p(z) = p(z_L) \prod_{l=1}^{L-1} p(z_l \mid z_{l+1}), \qquad
        p(z_l \mid z_{l+1}) = \mathcal N(\mu_{p,l}(z_{l+1}), \sigma^2_{p,l}(z_{l+1})), \qquad
        p(x \mid z_1),

    and inference that merges, at every group below the top, the bottom-up estimate
    :math:`(\hat\mu_l, \hat\sigma_l)` of :math:`d_l = \mathrm{MLP}(d_{l-1})` (:math:`d_0 = x`)
    with the *generative* top-down Gaussian at the guide's draw of :math:`z_{l+1}`, by precision
    weighting (:func:`precision_weighted`):

    .. math::
        q(z_L \mid x) = \mathcal N(\hat\mu_L, \hat\sigma_L^2), \qquad
        q(z_l \mid x, z_{l+1}) = \mathcal N\Big(
        \frac{\hat\mu_l \hat\sigma_l^{-2} + \mu_{p,l} \sigma_{p,l}^{-2}}
        {\hat\sigma_l^{-2} + \sigma_{p,l}^{-2}},\;
        \frac{1}{\hat\sigma_l^{-2} + \sigma_{p,l}^{-2}}\Big).

    The top-down networks are shared by the model and the guide, as in the paper. The networks
    are given (the catalogue's builder makes them from :mod:`pyro_vaes.nets.residual`).

    :param data_shape: shape of one datapoint.
    :param bottom_up: :math:`L` modules, :math:`d_l = \text{bottom\_up}[l-1](d_{l-1})`, the
        first taking the flattened datapoint.
    :param inference: :math:`L` modules :math:`d_l \mapsto (\hat\mu_l, \hat\sigma_l)`.
    :param priors: :math:`L - 1` modules :math:`z_{l+1} \mapsto (\mu_{p,l}, \sigma_{p,l})`.
    :param decoder: :math:`z_1 \mapsto` the likelihood's parameters (flat).
    :param latent_dims: the size of each group, bottom first.
    :param likelihood: the likelihood :math:`p(x \mid \cdot)`.
    :param beta: the weight of the KL terms.

    References:
        [1] Sønderby, Raiko, Maaløe, Sønderby, Winther. Ladder Variational Autoencoders.
        NeurIPS 2016.
    """

    def __init__(
        self,
        data_shape: Sequence[int],
        bottom_up: Sequence[nn.Module],
        inference: Sequence[nn.Module],
        priors: Sequence[nn.Module],
        decoder: nn.Module,
        latent_dims: Sequence[int],
        likelihood: Likelihood,
        *,
        beta: float = 1.0,
    ) -> None:
        super().__init__(data_shape, latent_dims, likelihood, beta=beta)
        levels = self.levels
        if not len(bottom_up) == len(inference) == levels or len(priors) != levels - 1:
            raise ValueError(
                f"a Ladder VAE of {levels} groups needs {levels} bottom_up and inference modules "
                f"and {levels - 1} priors, got {len(bottom_up)}, {len(inference)}, {len(priors)}"
            )
        self.bottom_up_nets = nn.ModuleList(bottom_up)
        self.inference = nn.ModuleList(inference)
        self.priors = nn.ModuleList(priors)
        self.decoder = decoder

    def bottom_up(self, x: torch.Tensor) -> list[torch.Tensor]:
        out, d = [], x
        for net in self.bottom_up_nets:
            d = net(d)
            out.append(d)
        return out

    def prior(self, level: int, state: Any) -> Gaussian:
        return self.priors[level](state)  # the state is z_{l+1}

    def posterior(self, level: int, feature: torch.Tensor, state: Any, prior: Gaussian) -> Gaussian:
        estimate = self.inference[level](feature)
        if level == self.levels - 1:  # the top: the bottom-up estimate alone
            return estimate
        return precision_weighted(estimate, prior)

    def update(self, level: int, state: Any, z: torch.Tensor) -> Any:
        return z  # a Markov chain: the next group depends on this draw alone

    def output(self, state: Any) -> torch.Tensor:
        return self.decoder(state)


class NVAE(HierarchicalVAE):
    r"""NVAE [1] on flat features: residual cells with squeeze-and-excitation
    (:class:`~pyro_vaes.nets.residual.ResidualCell`) in both towers and the residual normal
    posterior.

    The bottom-up tower is a stack of cells; the group :math:`l` reads its features
    :math:`d_l` after :math:`l` blocks (the top group the deepest). The top-down tower carries a
    state :math:`s` from a learned constant :math:`h_0`: after each group
    :math:`s \leftarrow \mathrm{cells}(W_s s + W_z z_l)` (NVAE's decoder combiner, a linear map of
    :math:`[s, z_l]`), and

    .. math::
        p(z_l \mid z_{>l}) = \mathcal N(\mu_p(s), \sigma_p(s)^2), \qquad
        q(z_l \mid x, z_{>l}) = \mathcal N\big(\mu_p + \Delta\mu(f_l),\;
        (\sigma_p \cdot \Delta\sigma(f_l))^2\big), \qquad f_l = d_l + W_e s,

    the residual normal of :func:`residual_normal` (section 3.2 of [1]), with :math:`f_l` NVAE's
    encoder combiner; :math:`p(z_L) = \mathcal N(0, I)` and :math:`q(z_L \mid x)` from
    :math:`d_L` alone. Scales are :math:`\exp` of soft-clamped log-scales
    (:class:`~pyro_vaes.nets.residual.GaussianHead` ``link="exp"``). The likelihood's
    parameters come from the last state (every group reaches :math:`x`). With
    ``residual=False`` the posterior is :math:`\mathcal N(\Delta\mu, \Delta\sigma^2)`, not tied
    to the prior (the ablation of [1]).

    NVAE's other stabilisers belong to the objective and the schedule: spectral regularisation
    (:class:`pyro_vaes.objectives.spectral.SpectralRegularizedELBO`), KL warm-up and KL balancing
    (:class:`pyro_vaes.objectives.kl_balance.KLBalancedELBO`).

    :param data_shape: shape of one datapoint.
    :param latent_dims: the size of each group, bottom first.
    :param likelihood: the likelihood :math:`p(x \mid \cdot)`.
    :param features: the width of both towers.
    :param cells: residual cells per block.
    :param residual: the residual normal posterior (else the plain one).
    :param beta: the weight of the KL terms.

    References:
        [1] Vahdat, Kautz. NVAE: A Deep Hierarchical Variational Autoencoder. NeurIPS 2020.
    """

    def __init__(
        self,
        data_shape: Sequence[int],
        latent_dims: Sequence[int],
        likelihood: Likelihood,
        *,
        features: int = 256,
        cells: int = 1,
        residual: bool = True,
        beta: float = 1.0,
    ) -> None:
        super().__init__(data_shape, latent_dims, likelihood, beta=beta)
        if not (isinstance(features, int) and features >= 1):
            raise ValueError(f"features must be a positive integer, got {features!r}")
        size = 1
        for s in self.data_shape:
            size *= s
        dims, f = self.latent_dims, features
        self.residual = bool(residual)
        self.preprocess = ResidualStack(size, f, cells)
        self.encoder_blocks = nn.ModuleList(ResidualStack(f, f, cells) for _ in dims)
        self.posterior_heads = nn.ModuleList(GaussianHead(f, d, link="exp") for d in dims)
        self.encoder_combiners = nn.ModuleList(nn.Linear(f, f) for _ in dims[:-1])
        self.prior_heads = nn.ModuleList(
            nn.Sequential(nn.SiLU(), GaussianHead(f, d, link="exp")) for d in dims[:-1]
        )
        self.h0 = nn.Parameter(torch.zeros(f))
        self.state_combiners = nn.ModuleList(nn.Linear(f, f) for _ in dims)
        self.code_combiners = nn.ModuleList(nn.Linear(d, f, bias=False) for d in dims)
        self.decoder_blocks = nn.ModuleList(ResidualStack(f, f, cells) for _ in dims)
        self.head = nn.Sequential(nn.SiLU(), nn.Linear(f, size))

    def bottom_up(self, x: torch.Tensor) -> list[torch.Tensor]:
        out, d = [], self.preprocess(x)
        for block in self.encoder_blocks:
            d = block(d)
            out.append(d)
        return out

    def prior(self, level: int, state: Any) -> Gaussian:
        return self.prior_heads[level](state)

    def posterior(self, level: int, feature: torch.Tensor, state: Any, prior: Gaussian) -> Gaussian:
        if level == self.levels - 1:  # the top: p = N(0, I), so residual or not is the same
            return self.posterior_heads[level](feature)
        delta = self.posterior_heads[level](feature + self.encoder_combiners[level](state))
        return residual_normal(prior, delta) if self.residual else delta

    def update(self, level: int, state: Any, z: torch.Tensor) -> Any:
        s = self.h0 if state is None else state
        s = self.state_combiners[level](s) + self.code_combiners[level](z)
        return self.decoder_blocks[level](s)

    def output(self, state: Any) -> torch.Tensor:
        return self.head(state)
