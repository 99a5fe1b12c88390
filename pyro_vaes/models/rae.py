r"""Regularised (deterministic) autoencoders, RAE-L2 and RAE-GP, as a Pyro model/guide pair.

With a point-mass posterior :math:`\delta(z - E(x))` (:class:`pyro_vaes.guides.Delta`) and a
standard normal prior, the negative ELBO of a datapoint is

.. math::
    -\log p(x \mid D(E(x))) + \tfrac{\beta}{2}\lVert E(x)\rVert^2 + \lambda\,\mathcal L_{REG},

up to a constant: the reconstruction, the L2 penalty on the code (the prior scored under the
point mass) and a regulariser of the decoder, added to the model with ``pyro.factor`` while
training:

* RAE-L2: decoder weight decay, :math:`\mathcal L_{REG} = \lVert\theta\rVert_2^2`;
* RAE-GP: the gradient penalty :math:`\mathcal L_{REG} = \lVert \partial D(z)/\partial z
  \rVert_F^2` at :math:`z = E(x)`, the squared Frobenius norm of the decoder's Jacobian, computed
  exactly as :math:`\sum_j \lVert J e_j\rVert^2` with one vectorised forward-mode product per
  latent dimension.

An RAE has no sampling prior of its own: :meth:`RAE.fit_expost` fits a Gaussian mixture to the
training codes (ex-post density estimation, :mod:`pyro_vaes.models.expost`, which offers it and a
masked autoregressive flow for every model), and :meth:`RAE.sample` draws from it.

References:
    [1] Ghosh, Sajjadi, Vergari, Black, Schoelkopf. From Variational to Deterministic
    Autoencoders. ICLR 2020.
"""

from __future__ import annotations

from typing import Any

import pyro
import pyro.distributions as dist
import torch
from torch import nn

from pyro_vaes.models.expost import codes_of, fit_gaussian_mixture, gaussian_mixture
from pyro_vaes.models.vae import VAE

__all__ = ["RAE", "jacobian_frobenius"]


def jacobian_frobenius(decoder: nn.Module, z: torch.Tensor) -> torch.Tensor:
    r""":math:`\lVert \partial D(z_n)/\partial z_n\rVert_F^2` for each row of ``z`` ``(B, d)``,
    differentiable with respect to the decoder's parameters and ``z``."""
    basis = torch.eye(z.shape[-1], dtype=z.dtype, device=z.device)

    def along(v: torch.Tensor) -> torch.Tensor:
        return torch.func.jvp(decoder, (z,), (v.expand_as(z),))[1]

    jv = torch.func.vmap(along)(basis)  # (d, B, *out)
    return jv.pow(2).flatten(2).sum(-1).sum(0)


class RAE(VAE):
    """A regularised autoencoder; the parts are those of :class:`pyro_vaes.VAE`, with a
    :class:`pyro_vaes.guides.Delta` posterior and a standard normal prior (module docstring).

    :param beta: the weight of the L2 penalty on the code (scales the latent site).
    :param weight_decay: :math:`\\lambda` of RAE-L2 (0: off).
    :param gradient_penalty: :math:`\\lambda` of RAE-GP (0: off).
    :param expost_components: components of the ex-post Gaussian mixture.
    """

    expost_logits: torch.Tensor
    expost_loc: torch.Tensor
    expost_scale_tril: torch.Tensor
    expost_fitted: torch.Tensor

    def __init__(
        self,
        *args: Any,
        weight_decay: float = 0.0,
        gradient_penalty: float = 0.0,
        expost_components: int = 10,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        if weight_decay < 0 or gradient_penalty < 0 or expost_components < 1:
            raise ValueError(
                "need weight_decay >= 0, gradient_penalty >= 0 and expost_components >= 1, got "
                f"{weight_decay}, {gradient_penalty}, {expost_components}"
            )
        self.weight_decay, self.gradient_penalty = float(weight_decay), float(gradient_penalty)
        d = int(self.prior().event_shape[-1])
        k = expost_components
        self.register_buffer("expost_logits", torch.zeros(k))
        self.register_buffer("expost_loc", torch.zeros(k, d))
        self.register_buffer("expost_scale_tril", torch.eye(d).expand(k, d, d).clone())
        self.register_buffer("expost_fitted", torch.zeros((), dtype=torch.bool))

    def model(self, x: torch.Tensor | None = None, y: torch.Tensor | None = None) -> None:
        """The VAE's model, plus the decoder regulariser as ``pyro.factor`` sites while training
        (per datapoint, so that the loss per datapoint carries it once)."""
        self.register_with_pyro()
        with self.data_plate(x, y):
            z = self.sample_code()
            if self.training and self.weight_decay > 0:
                decay = sum(p.pow(2).sum() for p in self.decoder.parameters())
                pyro.factor("weight_decay", -self.weight_decay * decay * z.new_ones(z.shape[:-1]))
            if self.training and self.gradient_penalty > 0:
                gp = jacobian_frobenius(self.decoder, z.reshape(-1, z.shape[-1]))
                pyro.factor("gradient_penalty", -self.gradient_penalty * gp.reshape(z.shape[:-1]))
            self.observe(self.decoder(z), z, x)

    def expost(self) -> dist.MixtureSameFamily:
        """The ex-post density of the codes (see :meth:`fit_expost`)."""
        return gaussian_mixture(self.expost_logits, self.expost_loc, self.expost_scale_tril)

    @torch.no_grad()
    def after_fit(self, x: torch.Tensor) -> None:
        """The post-training stage (:class:`~pyro_vaes.protocols.PostTraining`):
        :meth:`fit_expost`."""
        self.fit_expost(x)

    def fit_expost(self, x: torch.Tensor, seed: int = 0) -> RAE:
        """Fit the ex-post Gaussian mixture (full covariances, scikit-learn's EM:
        :func:`pyro_vaes.models.expost.fit_gaussian_mixture`) to the codes of ``x``, which
        :meth:`sample` then draws from."""
        k = self.expost_logits.shape[0]
        fitted = fit_gaussian_mixture(codes_of(self, x), k, seed)
        for buffer, value in zip(
            (self.expost_logits, self.expost_loc, self.expost_scale_tril), fitted, strict=True
        ):
            buffer.copy_(value.to(buffer))
        self.expost_fitted.fill_(True)
        return self

    @torch.no_grad()
    def sample(self, n: int) -> torch.Tensor:
        """``n`` decoded draws from the ex-post density (the prior before :meth:`fit_expost`)."""
        z = self.expost().sample((n,)) if bool(self.expost_fitted) else self.prior().sample((n,))
        return self.decode(z)
