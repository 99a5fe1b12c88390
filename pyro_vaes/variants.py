"""The catalogue of named variants: name -> builder.

A builder takes the shape of one datapoint and keyword options and returns a model object with
``.model`` and ``.guide``. The CLI, the docs and the benchmarks read this registry; nothing else
dispatches on a variant's name.

    >>> vae = build("beta_vae", (1, 8, 8), latent_dim=4, beta=4.0)
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from torch import nn

from pyro_vaes import likelihoods, nets
from pyro_vaes.guides import DiagonalNormal
from pyro_vaes.priors import StandardNormal
from pyro_vaes.vae import VAE

__all__ = ["Variant", "build", "register", "registry"]


@dataclass(frozen=True)
class Variant:
    """A named variant: its builder, a one-line summary, the paper, and its default options."""

    name: str
    builder: Callable[..., nn.Module]
    summary: str
    reference: str
    defaults: dict[str, Any] = field(default_factory=dict)


registry: dict[str, Variant] = {}


def register(
    name: str, summary: str, reference: str, **defaults: Any
) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Decorator: add a builder to the catalogue under ``name``."""

    def add(builder: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        if name in registry:
            raise ValueError(f"variant {name!r} is already registered")
        registry[name] = Variant(name, builder, summary, reference, defaults)
        return builder

    return add


def build(name: str, data_shape: Sequence[int], **options: Any) -> nn.Module:
    """Build the variant registered as ``name`` for datapoints of shape ``data_shape``; options
    override the variant's defaults."""
    try:
        variant = registry[name]
    except KeyError:
        raise ValueError(f"unknown variant {name!r}; choose from {sorted(registry)}") from None
    return variant.builder(tuple(data_shape), **{**variant.defaults, **options})


def encoder_decoder(
    data_shape: tuple[int, ...], latent_dim: int, net: str, hidden: Sequence[int]
) -> tuple[nn.Module, nn.Module, int]:
    """An encoder, a decoder and the encoder's feature size, for ``net`` in {"mlp", "conv"}."""
    if net == "mlp":
        enc = nets.MLPEncoder(data_shape, hidden)
        return (
            enc,
            nets.MLPDecoder(latent_dim, data_shape, tuple(reversed(hidden))),
            enc.out_features,
        )
    if net == "conv":
        cenc = nets.ConvEncoder(data_shape)
        return cenc, nets.ConvDecoder(latent_dim, data_shape), cenc.out_features
    raise ValueError(f"unknown net {net!r}; choose 'mlp' or 'conv'")


def _gaussian_vae(
    data_shape: tuple[int, ...],
    *,
    latent_dim: int = 16,
    hidden: Sequence[int] = (512,),
    net: str = "mlp",
    likelihood: str = "bernoulli",
    beta: float = 1.0,
) -> VAE:
    enc, dec, features = encoder_decoder(data_shape, latent_dim, net, hidden)
    return VAE(
        enc,
        dec,
        prior=StandardNormal(latent_dim),
        posterior=DiagonalNormal(features, latent_dim),
        likelihood=likelihoods.get(likelihood),
        beta=beta,
    )


register(
    "vae",
    "standard normal prior, diagonal normal posterior, ELBO",
    "Kingma & Welling 2014, Auto-Encoding Variational Bayes",
)(_gaussian_vae)
register(
    "beta_vae",
    "the VAE with the KL term weighted by beta (poutine.scale on z)",
    "Higgins et al. 2017, beta-VAE",
    beta=4.0,
)(_gaussian_vae)
