"""How the catalogue assembles a model from parts named in the registries: the encoder/decoder
families (:data:`networks`), the priors and the posteriors (:mod:`pyro_vaes.parts`), and the
generic VAE builder that any of them compose into.

    >>> parts = vae_parts((1, 8, 8), latent_dim=4, prior="vamp", posterior="iaf")
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

from torch import nn

from pyro_vaes import guides as _guides  # noqa: F401  (the posteriors register themselves)
from pyro_vaes import likelihoods, nets
from pyro_vaes import priors as _priors  # noqa: F401  (the priors register themselves)
from pyro_vaes.models.vae import VAE
from pyro_vaes.parts import PartContext, posteriors, priors
from pyro_vaes.registry import Registry


def _mlp(
    data_shape: tuple[int, ...], latent_dim: int, hidden: Sequence[int]
) -> tuple[nn.Module, nn.Module, int]:
    enc = nets.MLPEncoder(data_shape, hidden)
    dec = nets.MLPDecoder(latent_dim, data_shape, tuple(reversed(hidden)))
    return enc, dec, enc.out_features


def _conv(
    data_shape: tuple[int, ...], latent_dim: int, hidden: Sequence[int]
) -> tuple[nn.Module, nn.Module, int]:
    enc = nets.ConvEncoder(data_shape)
    return enc, nets.ConvDecoder(latent_dim, data_shape), enc.out_features


def _mlp_skip(
    data_shape: tuple[int, ...], latent_dim: int, hidden: Sequence[int]
) -> tuple[nn.Module, nn.Module, int]:
    """The MLP encoder with the skip decoder (:class:`pyro_vaes.nets.SkipMLPDecoder`)."""
    enc = nets.MLPEncoder(data_shape, hidden)
    dec = nets.SkipMLPDecoder(latent_dim, data_shape, tuple(reversed(hidden)))
    return enc, dec, enc.out_features


#: network family name -> ``(data_shape, latent_dim, hidden) -> (encoder, decoder, features)``
networks: Registry[Callable[..., tuple[nn.Module, nn.Module, int]]] = Registry("net")
networks.register("mlp", _mlp)
networks.register("conv", _conv)
networks.register("mlp_skip", _mlp_skip)


def encoder_decoder(
    data_shape: tuple[int, ...], latent_dim: int, net: str, hidden: Sequence[int]
) -> tuple[nn.Module, nn.Module, int]:
    """An encoder, a decoder and the encoder's feature size, for ``net`` in :data:`networks`."""
    return networks[net](data_shape, latent_dim, hidden)


def vae_parts(
    data_shape: tuple[int, ...],
    *,
    latent_dim: int = 16,
    hidden: Sequence[int] = (512,),
    net: str = "mlp",
    likelihood: str = "bernoulli",
    beta: float = 1.0,
    prior: str = "standard_normal",
    posterior: str = "diagonal_normal",
    flow_steps: int = 4,
    components: int = 100,
    curvature: float = 1.0,
    gyroplane: bool = False,
) -> dict[str, Any]:
    """The parts of a :class:`VAE` by name (see :mod:`pyro_vaes.parts`), as its
    keyword arguments. ``gyroplane`` makes the decoder's first layer hyperbolic MLR (for codes on
    the ball)."""
    build_prior, build_posterior = priors[prior], posteriors[posterior]  # unknown names: errors
    enc, dec, features = encoder_decoder(data_shape, latent_dim, net, hidden)
    if gyroplane:
        if net != "mlp" or not hidden:
            raise ValueError("the gyroplane decoder is an MLP with at least one hidden layer")
        tail = nets.MLPDecoder(hidden[-1], data_shape, tuple(reversed(hidden))[1:])
        dec = nn.Sequential(nets.Gyroplane(latent_dim, hidden[-1], curvature), nn.ReLU(), tail)
    ctx = PartContext(
        data_shape, latent_dim, features, enc, None, flow_steps, components, curvature
    )
    post = build_posterior(ctx)
    return {
        "encoder": enc,
        "decoder": dec,
        "prior": build_prior(replace(ctx, posterior=post)),
        "posterior": post,
        "likelihood": likelihoods.get(likelihood),
        "beta": beta,
    }


def build_vae(data_shape: tuple[int, ...], **options: Any) -> VAE:
    """Any prior with any posterior (:func:`_parts`)."""
    return VAE(**vae_parts(data_shape, **options))
