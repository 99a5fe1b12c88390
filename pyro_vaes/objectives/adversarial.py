r"""Adversarial objectives: a second network, the *adversary*, trained by its own optimizer.

An adversarial objective is a Pyro ELBO whose ``differentiable_loss`` is the model's side and
which also carries ``adversary`` (an ``nn.Module``), ``adversary_loss(model, guide, x)`` (summed
over the batch) and ``adversary_steps`` (adversary steps per model step). :func:`pyro_vaes.fit`
gives the adversary an optimizer of its own and alternates: one model step, then
``adversary_steps`` adversary steps; each optimizer touches only its own parameters.

With a critic :math:`D` that outputs a logit and :math:`\sigma` the logistic function, both
objectives here train :math:`D` by logistic regression,
:math:`-\log\sigma(D(\text{positive})) - \log(1 - \sigma(D(\text{negative})))`, whose optimum is
the log density ratio :math:`D^* = \log p_{pos}/p_{neg}`.

* :class:`AdversarialAE` (AAE): positives are prior draws, negatives the codes of the batch; the
  model minimises :math:`-\log p(x \mid z) + \lambda \cdot -\log\sigma(D(z))` (the
  non-saturating generator loss), which pulls the aggregate posterior to the prior.
* :class:`VAEGANLoss` (VAE-GAN): positives are data, negatives reconstructions and decoded prior
  draws; the model minimises the KL, the reconstruction error in the critic's last hidden layer
  :math:`\tfrac12\lVert D_l(x) - D_l(\tilde x)\rVert^2` (in place of the pixel likelihood) and
  :math:`\lambda` times the generator loss on reconstructions and samples.
* :class:`FactorVAELoss` (FactorVAE): positives are codes :math:`z \sim q(z)`, negatives the
  same codes with each dimension permuted across the batch, :math:`\bar q(z) = \prod_j q(z_j)`;
  :math:`D(z)` estimates :math:`\log q(z)/\bar q(z)`, so the total correlation is
  :math:`\mathrm{TC} \approx \mathbb E_q[D(z)]` and the model minimises
  :math:`-\mathrm{ELBO} + \gamma\,\mathrm{TC}`. The ELBO term uses the whole batch.

References:
    [1] Makhzani, Shlens, Jaitly, Goodfellow, Frey. Adversarial Autoencoders. ICLR workshop 2016.
    [2] Kim, Mnih. Disentangling by Factorising. ICML 2018.
    [3] Larsen, Sonderby, Larochelle, Winther. Autoencoding beyond pixels using a learned
    similarity metric. ICML 2016.
    [4] Goodfellow et al. Generative Adversarial Nets. NeurIPS 2014.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import pyro.infer
import torch
from pyro import poutine
from torch.nn import functional as F

from pyro_vaes.nets import Discriminator
from pyro_vaes.objectives.elbo import DifferentiableObjective, traces
from pyro_vaes.objectives.terms import codes, latent_site, negative_elbo, weigh
from pyro_vaes.protocols import Adversarial

__all__ = ["AdversarialAE", "FactorVAELoss", "VAEGANLoss", "logistic_loss", "permute_dims"]


def logistic_loss(positive: torch.Tensor, negative: torch.Tensor) -> torch.Tensor:
    r""":math:`\sum -\log\sigma(D_+) + \sum -\log(1 - \sigma(D_-))` from the logits."""
    return F.softplus(-positive).sum() + F.softplus(negative).sum()


def permute_dims(z: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Each column of ``z`` ``(B, d)`` shuffled independently across the batch: draws from the
    product of the marginals of the batch's codes."""
    b, d = z.shape
    idx = torch.argsort(torch.rand(b, d, generator=generator, device=z.device), dim=0)
    return z.gather(0, idx)


class _Adversarial(DifferentiableObjective, pyro.infer.ELBO, Adversarial):
    def __init__(
        self,
        latent_dim: int | None,
        weight: float,
        hidden: Sequence[int],
        adversary_steps: int,
        latent: str,
    ) -> None:
        if not weight > 0 or adversary_steps < 1:
            raise ValueError(
                f"need a positive weight and adversary_steps >= 1, got {weight}, {adversary_steps}"
            )
        super().__init__(num_particles=1)
        self.adversary = Discriminator(latent_dim, hidden)
        self.weight, self.adversary_steps, self.latent = float(weight), adversary_steps, latent

    #: whether the latent's KL stays in the model's loss (FactorVAE) or the critic replaces it
    keep_kl = True

    def critic_term(self, logit: torch.Tensor) -> torch.Tensor:
        """The model's loss on one code from the critic's logit."""
        raise NotImplementedError

    def differentiable_loss(
        self, model: Callable[..., Any], guide: Callable[..., Any], *args: Any, **kwargs: Any
    ) -> torch.Tensor:
        """The ELBO's terms (the latent's KL left out unless ``keep_kl``) plus ``weight`` times
        :meth:`critic_term` of each code, weighed per datapoint by the latent site's scale and
        mask."""
        model_tr, guide_tr = traces(model, guide, args, kwargs)
        site = latent_site(model_tr, guide_tr, self.latent)
        z = site["value"]
        per_code = self.critic_term(self.adversary(codes(site))).reshape(z.shape[:-1])
        rest = negative_elbo(model_tr, guide_tr, without=() if self.keep_kl else (self.latent,))
        return rest + self.weight * weigh(site, per_code).sum()

    def _guidecodes(self, guide: Callable[..., Any], args: tuple, kwargs: dict) -> torch.Tensor:
        with torch.no_grad():
            guide_tr = poutine.trace(guide).get_trace(*args, **kwargs)
        return codes(guide_tr.nodes[self.latent])


class AdversarialAE(_Adversarial):
    r"""The adversarial autoencoder: reconstruction plus :math:`\lambda` times the generator
    loss of a critic on :math:`z` that tells prior draws from the batch's codes (module
    docstring). The KL term is replaced by the adversary; other sites contribute their ELBO
    terms.

    Scales and masks: the generator loss of each code is weighed by the latent site's scale and
    mask, per datapoint (``beta = b`` makes the weight :math:`b\lambda`; ``beta = 0`` removes the
    term); the critic's own loss is not weighed.

    :param latent_dim: the size of the code (``None``: taken from the first batch).
    :param lam: :math:`\lambda`, the weight of the adversarial term.
    :param hidden: the critic's hidden layers.
    :param adversary_steps: critic steps per model step.
    """

    def __init__(
        self,
        latent_dim: int | None = None,
        lam: float = 1.0,
        hidden: Sequence[int] = (256, 256),
        adversary_steps: int = 1,
        latent: str = "z",
    ) -> None:
        super().__init__(latent_dim, lam, hidden, adversary_steps, latent)

    keep_kl = False

    def critic_term(self, logit: torch.Tensor) -> torch.Tensor:
        """The non-saturating generator loss :math:`-\\log\\sigma(D(z))`."""
        return F.softplus(-logit)

    def adversary_loss(
        self, model: Callable[..., Any], guide: Callable[..., Any], *args: Any, **kwargs: Any
    ) -> torch.Tensor:
        with torch.no_grad():
            model_tr, guide_tr = traces(model, guide, args, kwargs)
            sites: dict[str, Any] = model_tr.nodes
            prior = sites[self.latent]["fn"].sample()
        z = codes(guide_tr.nodes[self.latent])
        return logistic_loss(self.adversary(prior.reshape(z.shape)), self.adversary(z))


class FactorVAELoss(_Adversarial):
    r"""The FactorVAE objective: :math:`-\mathrm{ELBO} + \gamma\,\widehat{\mathrm{TC}}` with the
    total correlation from a density-ratio critic on :math:`z` against dimension-permuted codes
    (module docstring). The ELBO uses the whole batch.

    Scales and masks: the ELBO is weighed as :class:`~pyro_vaes.objectives.ELBO` weighs it, and
    each code's critic output by the latent site's scale and mask, per datapoint (``beta = b``
    makes the weight of the TC :math:`b\gamma`; ``beta = 0`` removes it); the critic's own loss
    is not weighed.

    :param latent_dim: the size of the code (``None``: taken from the first batch).
    :param gamma: :math:`\gamma`, the weight of the total correlation.
    :param hidden: the critic's hidden layers.
    :param adversary_steps: critic steps per model step.
    """

    def __init__(
        self,
        latent_dim: int | None = None,
        gamma: float = 10.0,
        hidden: Sequence[int] = (256, 256),
        adversary_steps: int = 1,
        latent: str = "z",
    ) -> None:
        super().__init__(latent_dim, gamma, hidden, adversary_steps, latent)

    def critic_term(self, logit: torch.Tensor) -> torch.Tensor:
        """The critic's estimate of :math:`\\log q(z) / \\bar q(z)`: the code's share of the TC."""
        return logit

    def total_correlation(
        self, model: Callable[..., Any], guide: Callable[..., Any], *args: Any, **kwargs: Any
    ) -> torch.Tensor:
        """The critic's estimate of the total correlation of the batch's codes, in nats."""
        with torch.no_grad():
            return self.adversary(self._guidecodes(guide, args, kwargs)).mean()

    def adversary_loss(
        self, model: Callable[..., Any], guide: Callable[..., Any], *args: Any, **kwargs: Any
    ) -> torch.Tensor:
        z = self._guidecodes(guide, args, kwargs)
        return logistic_loss(self.adversary(z), self.adversary(permute_dims(z)))


class VAEGANLoss(_Adversarial):
    r"""VAE-GAN: the KL, a reconstruction error in the critic's feature layer, and
    :math:`\lambda` times the generator loss on reconstructions and decoded prior draws, with the
    critic on (flattened) data telling data from both (module docstring). The reconstruction
    :math:`\tilde x` and the sample are the means of the model's observation at the guide's code
    and at a prior draw. Encoder and decoder share one optimizer (Larsen et al. weight their
    updates separately).

    The feature error takes the place of the observed site's :math:`-\log p(x \mid z)`; the
    other sites contribute their ELBO terms (the latent's KL among them). Scales and masks: the
    latent's KL is weighed as in the ELBO (``beta = b`` multiplies it); each datapoint's feature
    error and generator loss on its reconstruction are weighed by the observed site's scale and
    mask; the generator loss on prior draws and the critic's own loss are not weighed.

    :param data_size: pixels per datapoint (``None``: taken from the first batch).
    :param lam: :math:`\lambda`, the weight of the generator loss.
    :param observed: the observed site.
    """

    adversary: Discriminator

    def __init__(
        self,
        data_size: int | None = None,
        lam: float = 1.0,
        hidden: Sequence[int] = (512, 256),
        adversary_steps: int = 1,
        latent: str = "z",
        observed: str = "x",
    ) -> None:
        super().__init__(data_size, lam, hidden, adversary_steps, latent)
        self.observed = observed

    def _images(
        self, model: Callable[..., Any], guide: Callable[..., Any], args: tuple, kwargs: dict
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, Any]:
        """Data, reconstructions and samples (flattened), the ELBO's terms but the observed
        site's, and the observed site."""
        model_tr, guide_tr = traces(model, guide, args, kwargs)
        rest = negative_elbo(model_tr, guide_tr, without=(self.observed,))
        prior_tr = poutine.trace(model).get_trace(*args, **kwargs)
        site: Any = model_tr.nodes[self.observed]
        prior_site: Any = prior_tr.nodes[self.observed]
        x = site["value"]
        flat = x.reshape(x.shape[0], -1)
        recon = site["fn"].mean.reshape(flat.shape)
        sample = prior_site["fn"].mean.reshape(flat.shape)
        return flat, recon, sample, rest, site

    def differentiable_loss(
        self, model: Callable[..., Any], guide: Callable[..., Any], *args: Any, **kwargs: Any
    ) -> torch.Tensor:
        x, recon, sample, rest, site = self._images(model, guide, args, kwargs)
        features = self.adversary.features
        feature_error = 0.5 * (features(x) - features(recon)).pow(2).sum(-1)
        fool_recon = F.softplus(-self.adversary(recon))
        per_datapoint = weigh(site, feature_error + self.weight * fool_recon)
        fool_sample = F.softplus(-self.adversary(sample))
        return rest + per_datapoint.sum() + self.weight * fool_sample.sum()

    def adversary_loss(
        self, model: Callable[..., Any], guide: Callable[..., Any], *args: Any, **kwargs: Any
    ) -> torch.Tensor:
        with torch.no_grad():
            x, recon, sample, _, _ = self._images(model, guide, args, kwargs)
        fake = torch.cat([recon, sample])
        return logistic_loss(self.adversary(x), self.adversary(fake))
