"""The catalogue of named variants.

:mod:`~pyro_vaes.catalogue.variants` holds the registry, :mod:`~pyro_vaes.catalogue.assembly`
the parts a model is assembled from, and each family module registers its variants:

* :mod:`~pyro_vaes.catalogue.vae`: the VAE with its parts swapped,
* :mod:`~pyro_vaes.catalogue.bounds`: importance-weighted bounds and free bits,
* :mod:`~pyro_vaes.catalogue.disentangled`: total correlation, DIP, capacity, FactorVAE,
* :mod:`~pyro_vaes.catalogue.matching`: MMD, sliced Wasserstein and adversarial matching,
* :mod:`~pyro_vaes.catalogue.perceptual`: perceptual reconstruction terms (MS-SSIM, deep
  features),
* :mod:`~pyro_vaes.catalogue.autoregressive`: PixelCNN decoders, with the remedies for
  posterior collapse,
* :mod:`~pyro_vaes.catalogue.deterministic`: RAE, VQ-VAE, the two-stage VAE,
* :mod:`~pyro_vaes.catalogue.discrete`: Gumbel-softmax codes,
* :mod:`~pyro_vaes.catalogue.flows`: flow likelihoods conditioned on the code (f-VAE),
* :mod:`~pyro_vaes.catalogue.hierarchical`: the Ladder VAE and NVAE,
* :mod:`~pyro_vaes.catalogue.labelled`: conditional and semi-supervised models,
* :mod:`~pyro_vaes.catalogue.sequential`: models of sequences (TD-VAE).
"""

from pyro_vaes.catalogue import (  # noqa: F401  (each family registers its variants)
    autoregressive,
    bounds,
    deterministic,
    discrete,
    disentangled,
    flows,
    hierarchical,
    labelled,
    matching,
    perceptual,
    sequential,
    vae,
    variants,
)

__all__ = ["variants"]
