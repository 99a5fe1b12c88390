r"""Adversarial Variational Bayes: the ELBO of an implicit posterior, with a critic in place of
its log density ratio.

With an implicit posterior :math:`z = g_\phi(x, \varepsilon)` (no density;
:class:`pyro_vaes.models.avb.ImplicitPosterior`) the ELBO's
:math:`\log q_\phi(z \mid x) - \log p(z)` cannot be evaluated. A critic :math:`T(x, z)` trained
by logistic regression to tell pairs :math:`(x, z \sim q_\phi(z \mid x))` from pairs
:math:`(x, z \sim p(z))`,

.. math::
    \max_T\; \mathbb E_{p_D(x)}\Bigl[\mathbb E_{q_\phi(z \mid x)} \log\sigma(T(x, z))
    + \mathbb E_{p(z)} \log\bigl(1 - \sigma(T(x, z))\bigr)\Bigr],

has the optimum :math:`T^*(x, z) = \log q_\phi(z \mid x) - \log p(z)` [1, Prop. 1], so the
encoder and decoder maximise

.. math::
    \mathbb E_{p_D(x)} \mathbb E_{\varepsilon}\bigl[-T(x, z) + \log p_\theta(x \mid z)
    \bigr]_{z = g_\phi(x, \varepsilon)},

the ELBO at :math:`T = T^*`. Its gradient in :math:`\phi` flows through :math:`z` into the
critic held fixed: since :math:`\mathbb E_q[\nabla_\phi \log q_\phi] = 0`, the gradient of
:math:`\mathbb E_q[T^*]` is that of the KL [1, Prop. 2]. :func:`pyro_vaes.fit` trains the critic
with an optimizer of its own (:class:`~pyro_vaes.protocols.Adversarial`).

The adaptive contrast of [1, Sec. 3.3] (a Gaussian with the posterior's moments in place of the
prior as the critic's contrast) is not implemented: the critic compares with the prior, as in
the paper's Algorithm 1.

References:
    [1] Mescheder, Nowozin, Geiger. Adversarial Variational Bayes: Unifying Variational
    Autoencoders and Generative Adversarial Networks. ICML 2017.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import pyro.infer
import torch
from pyro.poutine.trace_struct import Trace
from torch import nn

from pyro_vaes.distributions.implicit import is_implicit
from pyro_vaes.nets import Discriminator
from pyro_vaes.objectives.adversarial import logistic_loss
from pyro_vaes.objectives.elbo import DifferentiableObjective, traces
from pyro_vaes.objectives.terms import latent_site, negative_elbo, weigh
from pyro_vaes.protocols import Adversarial

__all__ = ["AVBLoss", "PairCritic"]


class PairCritic(nn.Module):
    """:math:`T(x, z)`: an MLP (:class:`pyro_vaes.nets.Discriminator`) on the flattened
    datapoint concatenated with the code, ``(B, ...), (B, d) -> (B,)``; the input size is taken
    from the first call."""

    def __init__(self, hidden: Sequence[int] = (256, 256)) -> None:
        super().__init__()
        self.net = Discriminator(None, hidden)

    def forward(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        if z.dim() != 2 or x.shape[0] != z.shape[0]:
            raise ValueError(
                f"the critic takes a batch of datapoints (B, ...) and of codes (B, d), got "
                f"{tuple(x.shape)} and {tuple(z.shape)}"
            )
        return self.net(torch.cat([x.reshape(x.shape[0], -1), z], dim=-1))


def _without(trace: Trace, name: str) -> Trace:
    """A trace of the same sites but ``name``."""
    out = Trace()
    out.nodes.update((key, site) for key, site in trace.nodes.items() if key != name)
    return out


class AVBLoss(DifferentiableObjective, pyro.infer.ELBO, Adversarial):
    r"""The AVB objective (module docstring): :math:`-\log p(x \mid z) + T(x, z)` per
    datapoint at the implicit posterior's draw, the other sites' ELBO terms as
    :class:`~pyro_vaes.objectives.ELBO` has them, and the critic :math:`T`
    (:class:`PairCritic`, the :attr:`adversary`) trained by :meth:`adversary_loss`.

    Where the guide's site ``latent`` has a density (an AVB model in eval mode proposes from a
    Gaussian, :class:`pyro_vaes.models.avb.ImplicitPosterior`, as in a fit's validation), the
    loss is the plain negative ELBO: the critic is needed only where :math:`q` has no density.

    Scales and masks: each datapoint's :math:`T(x, z)` is weighed by the latent site's scale and
    mask (``beta = b`` multiplies it by :math:`b`; ``beta = 0`` removes it); the critic's own
    loss is not weighed.

    :param hidden: the critic's hidden layers.
    :param adversary_steps: critic steps per model step.
    :param latent: the implicit latent site.
    :param observed: the observed site whose value is the critic's :math:`x`.
    """

    adversary: PairCritic

    def __init__(
        self,
        hidden: Sequence[int] = (256, 256),
        adversary_steps: int = 1,
        latent: str = "z",
        observed: str = "x",
    ) -> None:
        if not isinstance(adversary_steps, int) or adversary_steps < 1:
            raise ValueError(f"adversary_steps must be an int >= 1, got {adversary_steps!r}")
        super().__init__(num_particles=1)
        self.adversary = PairCritic(hidden)
        self.adversary_steps, self.latent, self.observed = adversary_steps, latent, observed

    def _pairs(self, model_tr: Trace, guide_tr: Trace) -> tuple[Any, torch.Tensor]:
        """The latent site and the observed data of a draw."""
        site = latent_site(model_tr, guide_tr, self.latent)
        observed: Any = model_tr.nodes.get(self.observed)
        if observed is None or not observed["is_observed"]:
            raise ValueError(f"the model has no observed site {self.observed!r}")
        return site, observed["value"]

    def differentiable_loss(
        self, model: Callable[..., Any], guide: Callable[..., Any], *args: Any, **kwargs: Any
    ) -> torch.Tensor:
        model_tr, guide_tr = traces(model, guide, args, kwargs)
        site, x = self._pairs(model_tr, guide_tr)
        if not is_implicit(site["fn"]):
            return negative_elbo(model_tr, guide_tr)
        rest = negative_elbo(_without(model_tr, self.latent), _without(guide_tr, self.latent))
        return rest + weigh(site, self.adversary(x, site["value"])).sum()

    def adversary_loss(
        self, model: Callable[..., Any], guide: Callable[..., Any], *args: Any, **kwargs: Any
    ) -> torch.Tensor:
        r"""The critic's logistic loss: :math:`(x, z \sim q(z \mid x))` positive,
        :math:`(x, z \sim p(z))` negative, summed over the batch."""
        with torch.no_grad():
            model_tr, guide_tr = traces(model, guide, args, kwargs)
            site, x = self._pairs(model_tr, guide_tr)
            z = site["value"]
            prior_site: Any = model_tr.nodes[self.latent]
            prior = prior_site["fn"].sample().reshape(z.shape)
        return logistic_loss(self.adversary(x, z), self.adversary(x, prior))
