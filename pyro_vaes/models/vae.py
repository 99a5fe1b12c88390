"""The variational autoencoder as a Pyro model/guide pair built from five parts."""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from typing import Any

import pyro
import torch
from pyro import poutine
from torch import nn

from pyro_vaes.distributions.geometry import Geometry
from pyro_vaes.distributions.geometry import of as geometry_of
from pyro_vaes.likelihoods import Likelihood
from pyro_vaes.models.base import BaseModel, data_event_dim

__all__ = ["VAE"]


class VAE(BaseModel):
    r"""A variational autoencoder from its parts:

    .. math::
        p_\theta(x, z) = p(z)\, p_\theta(x \mid z), \qquad
        q_\phi(z \mid x) = \text{posterior}(\text{encoder}(x)),

    ``model`` samples ``z`` from the prior and scores the observed batch under
    ``likelihood(decoder(z))``; ``guide`` samples ``z`` from the posterior. Both put the batch in the
    plate ``"data"`` (dim -1), so the latent site ``"z"`` and the observed site ``"x"`` carry one
    term per datapoint, and the objective (any Pyro ELBO) handles the rest.

    ``beta`` scales the latent site in both model and guide with :func:`pyro.poutine.scale`, which
    turns the ELBO into the beta-VAE objective
    :math:`\mathbb E_q[\log p(x\mid z)] - \beta\,\mathrm{KL}(q(z\mid x)\,\|\,p(z))`. It is a plain
    attribute, so a schedule (see :class:`pyro_vaes.callbacks.KLAnnealing`) can change it while
    fitting. ``beta = 0`` masks the latent site out (an autoencoder with a noisy code).

    The parameters live in this module and are registered with Pyro under a name unique to the
    instance (:class:`~pyro_vaes.models.base.BaseModel`), so plain ``SVI`` trains them and two
    VAEs in one process never share them. With ``x=None`` the model draws ``x``.

    :param encoder: ``x -> h``.
    :param decoder: ``z -> likelihood parameters``, shaped like ``x``.
    :param prior: ``() -> distribution over z``.
    :param posterior: ``h -> distribution over z``.
    :param likelihood: ``(parameters, event_dim) -> distribution over x``.
    :param beta: the weight of the KL term (1 for the plain VAE).

    References:
        [1] Kingma, Welling. Auto-Encoding Variational Bayes. ICLR 2014.
        [2] Higgins et al. beta-VAE: Learning Basic Visual Concepts with a Constrained Variational
        Framework. ICLR 2017.
    """

    def __init__(
        self,
        encoder: nn.Module,
        decoder: nn.Module,
        prior: nn.Module,
        posterior: nn.Module,
        likelihood: Likelihood,
        *,
        beta: float = 1.0,
    ) -> None:
        super().__init__()
        if not beta >= 0:
            raise ValueError(f"beta must be >= 0, got {beta!r}")
        self.encoder = encoder
        self.decoder = decoder
        self.prior = prior
        self.posterior = posterior
        self.likelihood = likelihood
        self.beta = float(beta)

    def _kl_weight(self) -> AbstractContextManager[Any]:
        if self.beta == 1.0:  # the plain VAE: no handler at all on the hot path
            return nullcontext()
        # poutine.scale takes only positive scales; beta = 0 switches the latent terms off
        return poutine.scale(scale=self.beta) if self.beta > 0 else poutine.mask(mask=False)

    def model(self, x: torch.Tensor | None = None, y: torch.Tensor | None = None) -> None:
        """:math:`z \\sim p(z)`, :math:`x \\sim p(x \\mid z)`, for each datapoint of the batch
        (``x=None``: generate; ``y`` is ignored)."""
        self.register_with_pyro()
        with self.data_plate(x, y):
            z = self.sample_code()
            self.observe(self.decoder(z), z, x)

    def sample_code(self) -> torch.Tensor:
        """The latent site ``z ~ p(z)``, weighted by ``beta``."""
        with self._kl_weight():
            return pyro.sample("z", self.prior())

    def observe(self, params: torch.Tensor, z: torch.Tensor, x: torch.Tensor | None) -> None:
        """The observed site: ``x`` scored (or drawn, when ``None``) under the likelihood of the
        decoder output ``params``, decoded from the code ``z`` (one event dim)."""
        pyro.sample("x", self.likelihood(params, data_event_dim(params, z, 1)), obs=x)

    def guide(self, x: torch.Tensor | None = None, y: torch.Tensor | None = None) -> None:
        """:math:`z \\sim q(z \\mid x)` for each datapoint of the batch."""
        self.register_with_pyro()
        x = self.require_x(x)
        with self.data_plate(x):
            h = self.encoder(x)
            with self._kl_weight():
                pyro.sample("z", self.posterior(h))

    @property
    def geometry(self) -> Geometry:
        """The prior's geometry (straight lines, great circles, geodesics of the ball)."""
        return geometry_of(self.prior)

    @torch.no_grad()
    def decode(self, code: torch.Tensor) -> torch.Tensor:
        return self.likelihood.mean(self.decoder(code))

    @torch.no_grad()
    def sample(self, n: int) -> torch.Tensor:
        """``n`` draws of the likelihood's mean at codes from the prior (for pictures)."""
        return self.decode(self.prior().sample((n,)))

    @torch.no_grad()
    def encode(self, x: torch.Tensor, num_samples: int = 64) -> torch.Tensor:
        """The posterior mean code of each datapoint (a Monte Carlo mean of ``num_samples`` draws
        where the posterior has no closed-form mean, as for flows)."""
        q = self.posterior(self.encoder(x))
        try:
            return q.mean
        except NotImplementedError:
            return q.rsample((num_samples,)).mean(0)
