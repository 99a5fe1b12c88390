"""Variants whose likelihood is a normalizing flow conditioned on the code."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pyro_vaes.catalogue.assembly import vae_parts
from pyro_vaes.catalogue.variants import register
from pyro_vaes.models.fvae import FlowLikelihood
from pyro_vaes.models.vae import VAE


def _fvae(
    data_shape: tuple[int, ...],
    *,
    coupling_layers: int = 4,
    coupling_hidden: Sequence[int] = (256,),
    **options: Any,
) -> VAE:
    r"""The f-VAE: the VAE's encoder, prior and posterior, with the decoder's output
    :math:`c(z)` conditioning a flow likelihood (:class:`pyro_vaes.models.fvae.FlowLikelihood`):
    :math:`\log p(x \mid z) = \log \mathcal N(f(x; z); 0, I) + \log|\det \partial f/\partial x|`.
    The ``likelihood`` option is ignored (the flow is the likelihood)."""
    parts = vae_parts(data_shape, **{**options, "likelihood": "gaussian"})
    flow = FlowLikelihood(data_shape, coupling_layers, coupling_hidden)
    return VAE(**{**parts, "likelihood": flow})


register(
    "fvae",
    "f-VAE: the likelihood p(x|z) is a flow of affine couplings conditioned on z (exact by the "
    "change of variables); for dequantised continuous data",
    "Su & Wu 2018, f-VAEs: Improve VAEs with Conditional Flows",
)(_fvae)
