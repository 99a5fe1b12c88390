r"""Conditional VAEs: the latent and the data given a label (CVAE), or the latent alone (CMMA)."""

from __future__ import annotations

import pyro
import pyro.distributions as dist
import torch
from torch import nn

from pyro_vaes.likelihoods import Likelihood
from pyro_vaes.models.base import BaseModel, data_event_dim
from pyro_vaes.models.labels import (
    ConditionedDecoder,
    LabelPrior,
    check_labels,
    one_hot,
    sample_labels,
)

__all__ = ["ConditionalVAE"]


class ConditionalVAE(BaseModel):
    r"""A VAE conditioned on a label :math:`y \in \{0, \dots, K-1\}`:

    .. math::
        p_\theta(x, z \mid y) = p_\theta(z \mid y)\, p_\theta(x \mid z, y), \qquad
        q_\phi(z \mid x, y),

    trained on

    .. math::
        \mathcal L(x, y) = \mathbb E_{q_\phi(z \mid x, y)}[\log p_\theta(x \mid z, y)]
        - \mathrm{KL}(q_\phi(z \mid x, y) \,\|\, p_\theta(z \mid y)) \le \log p_\theta(x \mid y),

    with the KL in closed form (both Gaussian). The prior :math:`p(z \mid y)` is learned
    (:class:`~pyro_vaes.models.labels.LabelPrior`); the posterior's head reads the encoder's
    features of :math:`x` beside the one-hot label.

    * ``decoder_sees_y=True``: the CVAE (Sohn et al. 2015), :math:`p(x \mid z, y)`.
    * ``decoder_sees_y=False``: the CMMA (Pandey and Dukkipati 2016): the label determines the
      latent, :math:`p(z \mid y)`, and the decoder :math:`p(x \mid z)` never sees :math:`y`, so
      every trace of the label in :math:`x` passes through :math:`z`.

    Every datapoint needs a label (``-1``, missing, is refused); ``model(None, y)`` generates one
    ``x`` per label.

    :param encoder: ``x -> h`` (``features`` wide).
    :param decoder: codes of size ``latent_dim + num_classes`` (CVAE) or ``latent_dim`` (CMMA)
        ``->`` likelihood parameters shaped like ``x``.
    :param posterior: ``h' -> q(z | x, y)``, where ``h'`` is ``h`` with the one-hot label appended
        (``features + num_classes`` wide).
    :param likelihood: ``(parameters, event_dim) -> p(x | ...)``.
    :param num_classes: :math:`K`.
    :param latent_dim: the size of :math:`z`.

    References:
        [1] Sohn, Lee, Yan. Learning Structured Output Representation using Deep Conditional
        Generative Models. NeurIPS 2015.
        [2] Pandey, Dukkipati. Variational methods for Conditional Multimodal Deep Learning.
        IJCNN 2017 (arXiv:1603.01801, 2016).
    """

    def __init__(
        self,
        encoder: nn.Module,
        decoder: nn.Module,
        posterior: nn.Module,
        likelihood: Likelihood,
        *,
        num_classes: int,
        latent_dim: int,
        decoder_sees_y: bool = True,
    ) -> None:
        super().__init__()
        if num_classes < 2:
            raise ValueError(f"num_classes must be >= 2, got {num_classes}")
        self.num_classes, self.latent_dim = num_classes, latent_dim
        self.encoder, self.posterior, self.likelihood = encoder, posterior, likelihood
        self.prior = LabelPrior(num_classes, latent_dim)
        self.decoder_sees_y = decoder_sees_y
        self.decoder = ConditionedDecoder(decoder, num_classes) if decoder_sees_y else decoder

    #: every datapoint needs its label (:class:`~pyro_vaes.protocols.Labelled`)
    missing_labels = False

    @property
    def who(self) -> str:
        return "cvae" if self.decoder_sees_y else "cmma"

    def check_labels(self, y: torch.Tensor | None, rows: int | None, offset: int = 0) -> None:
        """See :class:`~pyro_vaes.protocols.Labelled`."""
        check_labels(y, self.num_classes, rows=rows, missing_allowed=False, who=self.who,
                     offset=offset)  # fmt: skip

    def labels(self, x: torch.Tensor | None, y: torch.Tensor | None) -> torch.Tensor:
        """The labels of the batch, checked (on the CPU, unless the caller checked them,
        :func:`~pyro_vaes.models.base.inputs_checked`; a GPU check would synchronise every
        step, and :func:`pyro_vaes.fit` checks the whole data before training). Generating
        needs them too: ``model(None, y)``."""
        if y is None or (y.device.type == "cpu" and not self.inputs_checked):
            self.check_labels(y, x.shape[0] if x is not None else None)
        assert y is not None
        return y

    def params(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """The likelihood's parameters at codes ``z`` with labels ``y``."""
        return self.decoder(z, y) if self.decoder_sees_y else self.decoder(z)

    def model(self, x: torch.Tensor | None = None, y: torch.Tensor | None = None) -> None:
        """:math:`z \\sim p(z \\mid y)`, :math:`x \\sim p(x \\mid z, y)` (CMMA:
        :math:`p(x \\mid z)`) for each datapoint."""
        self.register_with_pyro()
        y = self.labels(x, y)
        with self.data_plate(None, y):
            z = pyro.sample("z", self.prior(y))
            params = self.params(z, y)
            pyro.sample("x", self.likelihood(params, data_event_dim(params, z, 1)), obs=x)

    def guide(self, x: torch.Tensor | None = None, y: torch.Tensor | None = None) -> None:
        """:math:`z \\sim q(z \\mid x, y)` for each datapoint."""
        self.register_with_pyro()
        x = self.require_x(x)
        y = self.labels(x, y)
        with self.data_plate(x):
            pyro.sample("z", self.q(x, y))

    def q(self, x: torch.Tensor, y: torch.Tensor) -> dist.TorchDistribution:
        """The posterior :math:`q(z \\mid x, y)`."""
        h = self.encoder(x)
        return self.posterior(torch.cat([h, one_hot(y, self.num_classes, h)], dim=-1))

    @torch.no_grad()
    def encode(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """The posterior mean code of each datapoint given its label. Without labels, the code
        averaged over the classes' posterior means (for the pictures of unlabelled data)."""
        if y is not None:
            return self.q(x, y).mean
        codes = [
            self.q(x, torch.full((x.shape[0],), k, device=x.device)).mean
            for k in range(self.num_classes)
        ]
        return torch.stack(codes).mean(0)

    @torch.no_grad()
    def decode(self, code: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """The likelihood's mean at each code, given labels ``y`` (default: class 0; the CMMA's
        decoder ignores them)."""
        if y is None:
            y = torch.zeros(code.shape[:-1], dtype=torch.long, device=code.device)
        return self.likelihood.mean(self.params(code, y))

    @torch.no_grad()
    def sample(self, n: int, y: torch.Tensor | int | None = None) -> torch.Tensor:
        """``n`` decoded draws from :math:`p(z \\mid y)`: for the label ``y`` (an int, or ``n``
        labels), or cycling through the classes (``n`` = 64: six or seven of each)."""
        labels = sample_labels(n, y, self.num_classes, self.prior.loc.device, self.who)
        z = self.prior(labels).sample()
        return self.decode(z, labels)

    @torch.no_grad()
    def reconstruct(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """Each datapoint decoded from its posterior mean given its label (without labels: each
        class's reconstruction is averaged)."""
        if y is not None:
            return self.decode(self.q(x, y).mean, y)
        recs = [
            self.decode(self.q(x, labels).mean, labels)
            for labels in (
                torch.full((x.shape[0],), k, device=x.device) for k in range(self.num_classes)
            )
        ]
        return torch.stack(recs).mean(0)
