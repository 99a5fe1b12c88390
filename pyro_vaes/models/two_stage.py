r"""The two-stage VAE: a second, small VAE fitted to the first one's codes, whose prior is then
what the model samples from.

A VAE's aggregate posterior :math:`q(z) = \frac1N \sum_n q(z \mid x_n)` need not match its prior
:math:`p(z) = \mathcal N(0, I)`; decoding prior draws where :math:`q(z)` has no mass gives poor
samples. Dai and Wipf [1] fit a second VAE to draws :math:`z \sim q(z)`,

.. math::
    p(z) \approx \int \mathcal N(z;\ \mu_\eta(u),\ \gamma^2 I)\, \mathcal N(u; 0, I)\, du,
    \qquad q_\varphi(u \mid z) = \mathcal N(u;\ \mu_\varphi(z), \mathrm{diag}\,\sigma^2_\varphi(z)),

trained on the ELBO of the codes with the Gaussian scale :math:`\gamma` learned (it is what lets
the second stage match :math:`q(z)` rather than blur it), and generate by
:math:`u \sim \mathcal N(0, I)`, :math:`z = \mu_\eta(u)`, :math:`x = \mathbb E[x \mid z]`.

:class:`TwoStageVAE` is the first stage (a :class:`~pyro_vaes.VAE`: ``model``/``guide``, training
and scores are the first stage's), with the second stage a :class:`~pyro_vaes.VAE` of its own,
fitted by :meth:`TwoStageVAE.fit_second_stage` after the first (its parameters are frozen except
while it is fitted, so a fit of the first stage leaves them be); :meth:`TwoStageVAE.sample` draws
through it once it is fitted (through the prior before). The second stage is part of the state:
it survives a checkpoint.

References:
    [1] Dai, Wipf. Diagnosing and Enhancing VAE Models. ICLR 2019.
"""

from __future__ import annotations

from functools import partial
from typing import Any

import torch

from pyro_vaes import guides, likelihoods, nets, priors
from pyro_vaes.data import batches
from pyro_vaes.models.vae import VAE

__all__ = ["TwoStageVAE", "second_stage"]


def second_stage(latent_dim: int, hidden: int = 256) -> VAE:
    """The second-stage VAE over codes of size ``latent_dim``: an MLP encoder and decoder with
    two hidden layers of ``hidden`` units, a latent of the same size, a standard normal prior and
    a Gaussian likelihood with a learned scale."""
    enc = nets.MLPEncoder((latent_dim,), (hidden, hidden))
    return VAE(
        enc,
        nets.MLPDecoder(latent_dim, (latent_dim,), (hidden, hidden)),
        prior=priors.StandardNormal(latent_dim),
        posterior=guides.DiagonalNormal(enc.out_features, latent_dim),
        likelihood=likelihoods.Gaussian(scale=1.0, learn_scale=True),
    )


class TwoStageVAE(VAE):
    """A VAE (the first stage; the parts of :class:`~pyro_vaes.VAE`) with a second-stage VAE
    over its codes (module docstring).

    :param second_hidden: the units of each of the second stage's two hidden layers.
    """

    second_fitted: torch.Tensor

    def __init__(self, *args: Any, second_hidden: int = 256, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        d = int(self.prior().event_shape[-1])
        self.second = second_stage(d, second_hidden).requires_grad_(False)  # see fit_codes
        self.register_buffer("second_fitted", torch.zeros((), dtype=torch.bool))

    @torch.no_grad()
    def codes(self, x: torch.Tensor, batch_size: int = 1000) -> torch.Tensor:
        """One draw :math:`z \\sim q(z \\mid x)` per datapoint: a sample of the aggregate
        posterior, which the second stage fits."""
        device = next(self.parameters()).device
        return torch.cat(
            [self.posterior(self.encoder(b.to(device))).sample() for b in batches(x, batch_size)]
        )

    def after_fit(self, x: torch.Tensor) -> None:
        """The post-training stage (:class:`~pyro_vaes.protocols.PostTraining`):
        :meth:`fit_second_stage`."""
        self.fit_second_stage(x)

    def fit_second_stage(
        self, x: torch.Tensor, epochs: int = 100, **fit_options: Any
    ) -> TwoStageVAE:
        """Fit the second stage to codes of ``x`` (:meth:`codes`); see :meth:`fit_codes`.
        :meth:`sample` then draws through it."""
        return self.fit_codes(self.codes(x), epochs, **fit_options)

    def fit_codes(self, codes: torch.Tensor, epochs: int = 100, **fit_options: Any) -> TwoStageVAE:
        r"""Fit the second stage to ``codes`` ``(N, d)`` for ``epochs`` epochs with
        :func:`pyro_vaes.fit` (``fit_options`` go to it; default optimizer Adam with learning
        rate 3e-3: the learned scale :math:`\gamma` takes thousands of steps to come down at
        1e-3)."""
        from pyro_vaes.train.fit import fit

        options = {"progress": False, "optim": partial(torch.optim.Adam, lr=3e-3), **fit_options}
        was_training = self.training
        self.second.requires_grad_(True)  # frozen otherwise: the first stage's fit leaves it be
        try:
            fit(self.second.model, self.second.guide, codes, epochs=epochs, **options)
        finally:
            self.second.requires_grad_(False)
            self.train(was_training)
        self.second_fitted.fill_(True)
        return self

    @torch.no_grad()
    def sample_codes(self, n: int) -> torch.Tensor:
        """``n`` codes: :math:`z = \\mu_\\eta(u)`, :math:`u \\sim \\mathcal N(0, I)` once the
        second stage is fitted, else draws from the prior."""
        if not bool(self.second_fitted):
            return self.prior().sample((n,))
        return self.second.sample(n)

    @torch.no_grad()
    def sample(self, n: int) -> torch.Tensor:
        """``n`` decoded draws through both stages (module docstring)."""
        return self.decode(self.sample_codes(n))
