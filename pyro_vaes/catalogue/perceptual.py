"""Variants whose reconstruction term is a perceptual similarity, not a pixel likelihood: a
per-datapoint ``pyro.factor`` in place of the observed density (MS-SSIM, deep features)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from torch import nn

from pyro_vaes import guides as _guides  # noqa: F401  (the posteriors register themselves)
from pyro_vaes import priors as _priors  # noqa: F401  (the priors register themselves)
from pyro_vaes.analysis.classifier import Classifier
from pyro_vaes.catalogue.assembly import vae_parts
from pyro_vaes.catalogue.variants import register
from pyro_vaes.models.dfcvae import CLASSIFIER_LAYERS, DFCVAE, FeatureExtractor
from pyro_vaes.models.msssim_vae import MSSSIMVAE


def _msssim_vae(
    data_shape: tuple[int, ...], *, weight: float | None = None, **options: Any
) -> MSSSIMVAE:
    """The VAE's parts with MS-SSIM as the reconstruction term."""
    return MSSSIMVAE(**vae_parts(data_shape, **options), weight=weight)


register(
    "msssim_vae",
    "the VAE with lambda (1 - MS-SSIM) as its reconstruction term (lambda: pixels per image)",
    "Snell et al. 2017, Learning to Generate Images with Perceptual Similarity Metrics",
)(_msssim_vae)


def _dfcvae(
    data_shape: tuple[int, ...],
    *,
    feature_net: nn.Module | None = None,
    layers: Sequence[str] | None = None,
    layer_weights: Sequence[float] | None = None,
    weight: float | None = None,
    num_classes: int = 10,
    feature_epochs: int = 10,
    **options: Any,
) -> DFCVAE:
    """The VAE's parts with the feature perceptual loss as the reconstruction term
    (:mod:`pyro_vaes.models.dfcvae`). Without ``feature_net``, the project's classifier of
    ``num_classes`` classes, trained on the training labels for ``feature_epochs`` epochs when
    the variant's fit starts, read at :data:`~pyro_vaes.models.dfcvae.CLASSIFIER_LAYERS`; with
    one (trained, taking the images as they are), its ``layers``. ``weight`` (lambda) defaults
    to the number of pixels per image."""
    if len(data_shape) != 3:
        raise ValueError(f"dfcvae needs images (C, H, W), got datapoints shaped {data_shape}")
    epochs: int | None = None
    if feature_net is None:
        if layers is not None:
            raise ValueError("layers names layers of a feature_net: give both, or neither")
        feature_net, layers, epochs = (
            Classifier(data_shape, num_classes),
            CLASSIFIER_LAYERS,
            feature_epochs,
        )
    elif layers is None:
        raise ValueError("a feature_net needs the names of its feature layers: give layers")
    pixels = data_shape[-1] * data_shape[-2]
    return DFCVAE(
        **vae_parts(data_shape, **options),
        features=FeatureExtractor(feature_net, layers),
        weight=float(pixels) if weight is None else weight,
        layer_weights=layer_weights,
        feature_epochs=epochs,
    )


register(
    "dfcvae",
    "DFC-VAE: the reconstruction term is the squared difference of x and its decoded mean in the "
    "three conv blocks of the project's classifier (trained on the labels first; VGG-19 in the "
    "paper), each layer's mean over its activations, weighted by the pixels per image",
    "Hou et al. 2017, Deep Feature Consistent Variational Autoencoder",
    num_classes=10,
)(_dfcvae)
