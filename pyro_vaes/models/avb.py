r"""Adversarial Variational Bayes: a VAE whose posterior is implicit, :math:`z = g(x,
\varepsilon)`, trained with a critic in place of the posterior's density.

The encoder takes noise with the datapoint, so :math:`q(z \mid x)` can be any distribution a
network can push a Gaussian to, with no density to evaluate. The objective
(:class:`pyro_vaes.objectives.AVBLoss`) trains a critic :math:`T(x, z)` whose optimum is
:math:`T^*(x, z) = \log q(z \mid x) - \log p(z)` and maximises
:math:`\mathbb E_{p_D(x)} \mathbb E_\varepsilon[-T(x, g(x, \varepsilon)) + \log p(x \mid
g(x, \varepsilon))]`, the ELBO with the critic in place of the log ratio [1].

**Evaluation.** The importance-sampled :math:`\log p(x)` needs :math:`q`'s density. In eval
mode (``model.eval()``, as :func:`pyro_vaes.evaluate.scores`, the CLI and a fit's validation
put it), the guide proposes instead from a diagonal Gaussian with the mean and the standard
deviation of ``proposal_draws`` draws of the implicit posterior of each datapoint. Any
proposal with a density gives a valid importance-sampled estimate (a stochastic lower bound of
:math:`\log p(x)` that tightens with more samples), so :func:`pyro_vaes.evaluate.log_likelihood`
scores AVB as it scores every other model; the ELBO it reports is the Gaussian proposal's, not
the implicit posterior's. In train mode the guide's site refuses ``log_prob`` (a clear error
instead of a Delta's silent 0).

References:
    [1] Mescheder, Nowozin, Geiger. Adversarial Variational Bayes: Unifying Variational
    Autoencoders and Generative Adversarial Networks. ICML 2017.
"""

from __future__ import annotations

from collections.abc import Sequence

import pyro.distributions as dist
import torch
from torch import nn

from pyro_vaes.distributions.implicit import Implicit
from pyro_vaes.likelihoods import Likelihood
from pyro_vaes.models.vae import VAE
from pyro_vaes.nets import MLPDecoder

__all__ = ["AVB", "ImplicitPosterior"]


class ImplicitPosterior(nn.Module):
    r"""The implicit posterior :math:`z = g(h, \varepsilon)`, :math:`\varepsilon \sim
    \mathcal N(0, I_m)`: an MLP on the encoder's features :math:`h` concatenated with the noise.

    In train mode ``posterior(h)`` is the :class:`~pyro_vaes.distributions.implicit.Implicit`
    distribution of these draws (no density). In eval mode it is the Gaussian proposal
    :math:`\mathcal N(\hat\mu(x), \operatorname{diag}\hat\sigma^2(x))` with the moments of
    ``proposal_draws`` draws (the module docstring), its scales at least ``min_scale``.

    :param in_features: the size of the encoder's features :math:`h`.
    :param latent_dim: the size of :math:`z`.
    :param noise_dim: :math:`m` (default: ``latent_dim``).
    :param hidden: the hidden sizes of :math:`g`.
    :param proposal_draws: draws per datapoint for the eval-mode proposal's moments.
    :param min_scale: the smallest scale of the proposal.
    """

    def __init__(
        self,
        in_features: int,
        latent_dim: int,
        noise_dim: int | None = None,
        hidden: Sequence[int] = (256,),
        proposal_draws: int = 256,
        min_scale: float = 1e-3,
    ) -> None:
        super().__init__()
        noise_dim = latent_dim if noise_dim is None else noise_dim
        for name, value in (
            ("in_features", in_features),
            ("latent_dim", latent_dim),
            ("noise_dim", noise_dim),
            ("proposal_draws", proposal_draws),
        ):
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"ImplicitPosterior: {name} must be an int >= 1, got {value!r}")
        if proposal_draws < 2:
            raise ValueError(f"proposal_draws must be >= 2 (for a scale), got {proposal_draws}")
        if not min_scale > 0:
            raise ValueError(f"min_scale must be positive, got {min_scale!r}")
        self.latent_dim, self.noise_dim = latent_dim, noise_dim
        self.proposal_draws, self.min_scale = proposal_draws, float(min_scale)
        self.net = MLPDecoder(in_features + noise_dim, (latent_dim,), hidden)

    def generate(self, h: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
        """:math:`g(h, \\varepsilon)` for features ``h`` and noise ``eps`` with the same leading
        dims."""
        return self.net(torch.cat([h, eps], dim=-1))

    def implicit(self, h: torch.Tensor) -> Implicit:
        """The implicit :math:`q(z \\mid x)` of features ``h``."""
        return Implicit(h, self.generate, self.noise_dim, self.latent_dim)

    def proposal(self, h: torch.Tensor) -> dist.TorchDistribution:
        """The Gaussian with the moments of ``proposal_draws`` implicit draws per datapoint."""
        draws = self.implicit(h).rsample(torch.Size([self.proposal_draws]))
        scale = draws.std(dim=0).clamp_min(self.min_scale)
        return dist.Normal(draws.mean(dim=0), scale).to_event(1)

    def forward(self, h: torch.Tensor) -> dist.TorchDistribution:
        return self.implicit(h) if self.training else self.proposal(h)


class AVB(VAE):
    r"""The AVB model: :class:`~pyro_vaes.VAE` with an :class:`ImplicitPosterior` (module
    docstring). Train it with :class:`pyro_vaes.objectives.AVBLoss`,

    .. math::
        \max_{\theta, \phi}\; \mathbb E_{p_D(x)} \mathbb E_{\varepsilon}\bigl[
        -T(x, z) + \log p_\theta(x \mid z)\bigr]_{z = g_\phi(x, \varepsilon)}, \qquad
        \max_T\; \mathbb E_{p_D(x)}\bigl[\mathbb E_{q_\phi(z\mid x)} \log\sigma(T(x, z))
        + \mathbb E_{p(z)} \log(1 - \sigma(T(x, z)))\bigr].

    :param encoder: ``x -> h``.
    :param decoder: ``z -> likelihood parameters``.
    :param prior: ``() -> distribution over z``.
    :param posterior: the implicit posterior.
    :param likelihood: ``(parameters, event_dim) -> distribution over x``.
    :param beta: the weight of the critic's term (1 for AVB).

    References:
        [1] Mescheder, Nowozin, Geiger. Adversarial Variational Bayes: Unifying Variational
        Autoencoders and Generative Adversarial Networks. ICML 2017.
    """

    def __init__(
        self,
        encoder: nn.Module,
        decoder: nn.Module,
        prior: nn.Module,
        posterior: ImplicitPosterior,
        likelihood: Likelihood,
        *,
        beta: float = 1.0,
    ) -> None:
        if not isinstance(posterior, ImplicitPosterior):
            raise TypeError(
                f"AVB's posterior must be an ImplicitPosterior, got {type(posterior).__name__}"
            )
        super().__init__(encoder, decoder, prior, posterior, likelihood, beta=beta)
