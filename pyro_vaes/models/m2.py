r"""The semi-supervised M2 model: the label as a discrete latent, enumerated where it is missing."""

from __future__ import annotations

from typing import cast

import pyro
import pyro.distributions as dist
import torch
import torch.nn.functional as F
from pyro import poutine
from torch import nn

from pyro_vaes.data.batch import MISSING
from pyro_vaes.likelihoods import Likelihood
from pyro_vaes.models.base import BaseModel, data_event_dim
from pyro_vaes.models.labels import ConditionedDecoder, check_labels, one_hot, sample_labels

__all__ = ["CLAMP", "M2"]

#: the logit of a label other than the known one in the clamped q(y | x): exp(-1e4) is 0 in
#: float32 and float64, and the log-probability stays finite (no 0 * inf in the entropy)
CLAMP = 1e4


class M2(BaseModel):
    r"""Kingma et al.'s M2: a label :math:`y` and a style :math:`z` generate :math:`x`,

    .. math::
        p(y) = \mathrm{Cat}(1/K), \quad p(z) = \mathcal N(0, I), \quad p_\theta(x \mid y, z);
        \qquad q_\phi(y \mid x) = \mathrm{Cat}(\pi_\phi(x)), \quad q_\phi(z \mid x, y).

    A labelled datapoint contributes the bound :math:`-\mathcal L(x, y) \le -\log p(x, y)`;
    an unlabelled one

    .. math::
        -\mathcal U(x) = \sum_y q_\phi(y \mid x)\,(-\mathcal L(x, y)) - \mathcal H(q_\phi(y
        \mid x)) \ \ge -\log p(x),

    the sum over the :math:`K` labels computed exactly: the guide's site ``y`` is enumerated in
    parallel by ``TraceEnum_ELBO``. Labelled datapoints also pay the classification loss
    :math:`-\alpha \log q_\phi(y \mid x)` (a training-only factor; the paper's
    :math:`J^\alpha`), which is what teaches the classifier from the labels.

    Missing labels are ``-1`` (:data:`~pyro_vaes.data.batch.MISSING`), and labelled and
    unlabelled datapoints may share a batch. Where the label is known, the guide's
    :math:`q(y \mid x)` puts all its mass on it (:meth:`q_y`), so the enumeration weighs the
    other labels by exactly 0 and the datapoint's term is exactly :math:`-\mathcal L(x, y) -
    \alpha \log q_\phi(y \mid x)`, the label observed (tested against the hand
    computation; Pyro's ``obs_mask`` would observe it in the model instead, but then its
    enumeration still draws one :math:`z` per label for labelled datapoints and averages them,
    an unbiased but noisier estimate of the same objective). Without ``y`` every label is
    missing. ``model(None, y)`` generates one ``x`` per label (``-1``: a label drawn from the
    prior). :meth:`predict` classifies with :math:`\arg\max_y q_\phi(y \mid x)`.

    :param encoder: ``x -> h`` for the style posterior (``features`` wide).
    :param classifier: ``x -> logits`` of :math:`q_\phi(y \mid x)`, ``(..., K)``.
    :param decoder: codes of size ``latent_dim + num_classes`` ``->`` likelihood parameters.
    :param posterior: ``concat(h, one_hot(y)) -> q(z | x, y)``.
    :param likelihood: ``(parameters, event_dim) -> p(x | y, z)``.
    :param alpha: the weight :math:`\alpha` of the classification loss per labelled datapoint
        (the paper: :math:`0.1 N` on its summed objective).

    References:
        [1] Kingma, Rezende, Mohamed, Welling. Semi-Supervised Learning with Deep Generative
        Models. NeurIPS 2014.
    """

    latent_sites = ("y", "z")

    def __init__(
        self,
        encoder: nn.Module,
        classifier: nn.Module,
        decoder: nn.Module,
        posterior: nn.Module,
        likelihood: Likelihood,
        *,
        num_classes: int,
        latent_dim: int,
        alpha: float = 50.0,
    ) -> None:
        super().__init__()
        if num_classes < 2:
            raise ValueError(f"num_classes must be >= 2, got {num_classes}")
        if not alpha >= 0:
            raise ValueError(f"alpha must be >= 0, got {alpha!r}")
        self.num_classes, self.latent_dim, self.alpha = num_classes, latent_dim, float(alpha)
        self.encoder, self.classifier = encoder, classifier
        self.decoder = ConditionedDecoder(decoder, num_classes)
        self.posterior, self.likelihood = posterior, likelihood

    #: labels may be missing (``-1``) (:class:`~pyro_vaes.protocols.Labelled`)
    missing_labels = True

    def check_labels(self, y: torch.Tensor | None, rows: int | None, offset: int = 0) -> None:
        """See :class:`~pyro_vaes.protocols.Labelled` (no labels at all: every one missing)."""
        if y is not None:
            check_labels(y, self.num_classes, rows=rows, missing_allowed=True, who="m2",
                         offset=offset)  # fmt: skip

    def labels(self, x: torch.Tensor | None, y: torch.Tensor | None) -> torch.Tensor:
        """The batch's labels (``-1`` where missing), checked on the CPU."""
        rows = x.shape[0] if x is not None else y.shape[0] if y is not None else 1
        if y is None:
            device = next(self.parameters()).device
            return torch.full((rows,), MISSING, dtype=torch.long, device=device)
        if y.device.type == "cpu" and not self.inputs_checked:
            self.check_labels(y, rows)
        return y

    def model(self, x: torch.Tensor | None = None, y: torch.Tensor | None = None) -> None:
        """:math:`y \\sim p(y)`, :math:`z \\sim p(z)`, :math:`x \\sim p(x \\mid y, z)`; while
        training, the classification factor on labelled datapoints."""
        self.register_with_pyro()
        y = self.labels(x, y)
        known = cast(torch.BoolTensor, y != MISSING)
        prior_y = dist.Categorical(logits=torch.zeros(self.num_classes, device=y.device))
        z_prior = dist.Normal(torch.zeros(self.latent_dim, device=y.device), 1.0).to_event(1)
        with self.data_plate(None, y):
            if x is None:  # generating: the labels given are observed, the missing ones drawn
                label = pyro.sample("y", prior_y, obs=y.clamp_min(0), obs_mask=known)
            else:  # the guide holds the known labels (see the class docstring)
                label = pyro.sample("y", prior_y)
            z = pyro.sample("z", z_prior)
            params = self.decoder(z, label)
            pyro.sample("x", self.likelihood(params, data_event_dim(params, z, 1)), obs=x)
            if self.training and x is not None and self.alpha > 0:
                with poutine.mask(mask=known):
                    log_q = self.q_y(x).log_prob(y.clamp_min(0))
                    pyro.factor("classification", self.alpha * log_q)

    def guide(self, x: torch.Tensor | None = None, y: torch.Tensor | None = None) -> None:
        """:math:`y \\sim q(y \\mid x)` (enumerated; all mass on the label where it is known),
        :math:`z \\sim q(z \\mid x, y)`."""
        self.register_with_pyro()
        x = self.require_x(x)
        y = self.labels(x, y)
        with self.data_plate(x):
            label = pyro.sample("y", self.q_y(x, y), infer={"enumerate": "parallel"})
            pyro.sample("z", self.q_z(x, label))

    def q_y(self, x: torch.Tensor, y: torch.Tensor | None = None) -> dist.Categorical:
        """:math:`q_\\phi(y \\mid x)`; with labels ``y``, the datapoints whose label is known
        put all their mass on it (logits 0 there and :data:`CLAMP` elsewhere, so the other
        labels weigh exactly 0 in float32 while every log-probability stays finite)."""
        logits = self.classifier(x)
        if y is not None:
            clamped = (F.one_hot(y.clamp_min(0), self.num_classes).to(logits.dtype) - 1) * CLAMP
            logits = torch.where((y != MISSING).unsqueeze(-1), clamped, logits)
        return dist.Categorical(logits=logits)

    def q_z(self, x: torch.Tensor, y: torch.Tensor) -> dist.TorchDistribution:
        """:math:`q_\\phi(z \\mid x, y)` (``y`` may carry enumeration dims in front)."""
        h = self.encoder(x)
        batch = torch.broadcast_shapes(y.shape, h.shape[:-1])  # enumerated labels: (K, 1)
        h = h.expand(*batch, h.shape[-1])
        return self.posterior(torch.cat([h, one_hot(y, self.num_classes, h)], dim=-1))

    @torch.no_grad()
    def predict(self, x: torch.Tensor) -> torch.Tensor:
        """The most probable label of each datapoint under :math:`q_\\phi(y \\mid x)`."""
        return self.classifier(x).argmax(-1)

    def _label(self, x: torch.Tensor, y: torch.Tensor | None) -> torch.Tensor:
        """``y`` where known, else the predicted label."""
        guess = self.predict(x)
        return guess if y is None else torch.where(y != MISSING, y, guess)

    @torch.no_grad()
    def encode(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """The style code: the mean of :math:`q(z \\mid x, y)` at the label (the predicted one
        where ``y`` is missing or not given)."""
        return self.q_z(x, self._label(x, y)).mean

    @torch.no_grad()
    def decode(self, code: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """The likelihood's mean at style codes ``code`` with labels ``y`` (default: class 0)."""
        if y is None:
            y = torch.zeros(code.shape[:-1], dtype=torch.long, device=code.device)
        return self.likelihood.mean(self.decoder(code, y))

    @torch.no_grad()
    def sample(self, n: int, y: torch.Tensor | int | None = None) -> torch.Tensor:
        """``n`` decoded draws of :math:`z \\sim p(z)` with the label ``y`` (an int, or ``n``
        labels), or cycling through the classes."""
        device = next(self.parameters()).device
        labels = sample_labels(n, y, self.num_classes, device, "m2")
        return self.decode(torch.randn(n, self.latent_dim, device=device), labels)

    @torch.no_grad()
    def reconstruct(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """Each datapoint decoded at its style code and label (the predicted one where ``y`` is
        missing or not given)."""
        label = self._label(x, y)
        return self.decode(self.q_z(x, label).mean, label)
