r"""Discrete latent variables: the categorical (Gumbel-softmax) VAE and JointVAE.

The code is an optional continuous part :math:`z \in \mathbb R^{d}` and ``variables``
categorical variables :math:`c_i` of ``categories`` values each, relaxed with
:class:`pyro_vaes.distributions.Concrete` at temperature :math:`\tau` (a plain attribute, so a
schedule can anneal it):

.. math::
    p(z) = \mathcal N(0, I), \quad p(c_i) = \mathrm{Cat}(1/K), \quad
    q(z \mid x) = \mathcal N(\mu(h), \sigma(h)^2), \quad
    q(c_i \mid x) = \mathrm{Concrete}(\pi_i(h), \tau),

and the decoder reads :math:`[z, c_1, \dots, c_n]`. With no continuous part this is the
categorical VAE of Jang et al. (trained on the ELBO, the temperature annealed); with both parts
and :class:`pyro_vaes.objectives.JointCapacityELBO` it is JointVAE.

References:
    [1] Jang, Gu, Poole. Categorical Reparameterization with Gumbel-Softmax. ICLR 2017.
    [2] Dupont. Learning Disentangled Joint Continuous and Discrete Representations.
    NeurIPS 2018.
"""

from __future__ import annotations

import pyro
import pyro.distributions as dist
import torch
import torch.nn.functional as F
from torch import nn

from pyro_vaes.distributions import Concrete
from pyro_vaes.likelihoods import Likelihood
from pyro_vaes.models.base import BaseModel, data_event_dim

__all__ = ["JointVAE"]


class JointVAE(BaseModel):
    """Continuous ``"z"`` (if ``continuous_dim > 0``) and categorical ``"c"`` latent sites.

    :param encoder: ``x -> h`` with ``features`` outputs.
    :param decoder: ``(continuous_dim + variables * categories) -> likelihood parameters``.
    :param temperature: :math:`\\tau` of the relaxation.
    """

    def __init__(
        self,
        encoder: nn.Module,
        features: int,
        decoder: nn.Module,
        likelihood: Likelihood,
        *,
        continuous_dim: int,
        variables: int,
        categories: int,
        temperature: float = 0.67,
    ) -> None:
        super().__init__()
        if continuous_dim < 0 or variables < 1 or categories < 2 or not temperature > 0:
            raise ValueError(
                "need continuous_dim >= 0, variables >= 1, categories >= 2, temperature > 0; got "
                f"{continuous_dim}, {variables}, {categories}, {temperature}"
            )
        self.encoder, self.decoder, self.likelihood = encoder, decoder, likelihood
        self.continuous_dim, self.variables, self.categories = continuous_dim, variables, categories
        self.temperature = float(temperature)
        self.continuous = nn.Linear(features, 2 * continuous_dim) if continuous_dim else None
        self.discrete = nn.Linear(features, variables * categories)

    @property
    def latent_sites(self) -> tuple[str, ...]:  # type: ignore[override]
        return ("z", "c") if self.continuous is not None else ("c",)

    def _tau(self) -> torch.Tensor:
        like = self.discrete.weight
        return torch.tensor(self.temperature, dtype=like.dtype, device=like.device)

    def _decode(self, z: torch.Tensor | None, c: torch.Tensor) -> torch.Tensor:
        codes = c.flatten(-2) if z is None else torch.cat([z, c.flatten(-2)], -1)
        return self.decoder(codes)

    def model(self, x: torch.Tensor | None = None, y: torch.Tensor | None = None) -> None:
        self.register_with_pyro()
        z = None
        like = self.discrete.weight
        with self.data_plate(x, y):
            if self.continuous is not None:
                loc = like.new_zeros(self.continuous_dim)
                z = pyro.sample("z", dist.Normal(loc, 1.0).to_event(1))
            logits = like.new_zeros(self.variables, self.categories)
            c = pyro.sample("c", Concrete(self._tau(), logits=logits).to_event(1))
            params = self._decode(z, c)
            pyro.sample("x", self.likelihood(params, data_event_dim(params, c, 2)), obs=x)

    def _posteriors(self, x: torch.Tensor) -> tuple[dist.Normal | None, torch.Tensor]:
        h = self.encoder(x)
        normal = None
        if self.continuous is not None:
            loc, raw = self.continuous(h).chunk(2, dim=-1)
            normal = dist.Normal(loc, F.softplus(raw) + 1e-5)
        logits = self.discrete(h).reshape(*h.shape[:-1], self.variables, self.categories)
        return normal, logits

    def guide(self, x: torch.Tensor | None = None, y: torch.Tensor | None = None) -> None:
        self.register_with_pyro()
        x = self.require_x(x)
        normal, logits = self._posteriors(x)
        with self.data_plate(x):
            if normal is not None:
                pyro.sample("z", normal.to_event(1))
            pyro.sample("c", Concrete(self._tau(), logits=logits).to_event(1))

    @torch.no_grad()
    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """The posterior mean of the continuous part and the category probabilities, flat."""
        normal, logits = self._posteriors(x)
        probs = logits.softmax(-1).flatten(-2)
        return probs if normal is None else torch.cat([normal.mean, probs], -1)

    @torch.no_grad()
    def decode(self, code: torch.Tensor) -> torch.Tensor:
        """The likelihood's mean at flat codes ``[z, category probabilities]`` (as from
        :meth:`encode`)."""
        return self.likelihood.mean(self.decoder(code))

    @torch.no_grad()
    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        """Decoded from the posterior mean and the most probable category of each variable."""
        normal, logits = self._posteriors(x)
        c = F.one_hot(logits.argmax(-1), self.categories).to(logits)
        return self.likelihood.mean(self._decode(None if normal is None else normal.mean, c))

    @torch.no_grad()
    def sample(self, n: int) -> torch.Tensor:
        """``n`` decoded draws from the prior, with one-hot categories."""
        device = self.discrete.weight.device
        k = torch.randint(self.categories, (n, self.variables), device=device)
        c = F.one_hot(k, self.categories).float()
        z = torch.randn(n, self.continuous_dim, device=device) if self.continuous else None
        return self.likelihood.mean(self._decode(z, c))
