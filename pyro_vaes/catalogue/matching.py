"""Variants that match the aggregate posterior to the prior by a divergence or a critic."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pyro_vaes import guides as _guides  # noqa: F401  (the posteriors register themselves)
from pyro_vaes import priors as _priors  # noqa: F401  (the priors register themselves)
from pyro_vaes.catalogue.assembly import build_vae, vae_parts
from pyro_vaes.catalogue.variants import register
from pyro_vaes.models.avb import AVB, ImplicitPosterior
from pyro_vaes.objectives import (
    MMDELBO,
    AdversarialAE,
    SlicedWassersteinELBO,
    VAEGANLoss,
    imq_kernel,
)
from pyro_vaes.objectives.avb import AVBLoss

register(
    "infovae",
    "InfoVAE: reconstruction + (1 - alpha) KL + (alpha + lambda - 1) MMD, alpha=0, lambda=1000",
    "Zhao et al. 2019, InfoVAE",
    objective=lambda: MMDELBO(alpha=0.0, lam=1000.0),
)(build_vae)
register(
    "wae",
    "WAE-MMD: reconstruction + lambda MMD (IMQ kernels), lambda=10",
    "Tolstikhin et al. 2018, Wasserstein Auto-Encoders",
    objective=lambda: MMDELBO(alpha=1.0, lam=10.0, kernel=imq_kernel),
)(build_vae)
register(
    "swae",
    "SWAE: reconstruction + lambda sliced Wasserstein distance to the prior, lambda=10",
    "Kolouri et al. 2019, Sliced Wasserstein Auto-Encoders",
    objective=lambda: SlicedWassersteinELBO(lam=10.0),
)(build_vae)

register(
    "aae",
    "adversarial autoencoder: reconstruction + a critic on z against prior draws (lambda=1)",
    "Makhzani et al. 2016, Adversarial Autoencoders",
    objective=lambda: AdversarialAE(lam=1.0),
)(build_vae)
register(
    "vaegan",
    "VAE-GAN: KL + reconstruction in a critic's feature layer + GAN loss on reconstructions and "
    "samples (lambda=1)",
    "Larsen et al. 2016, Autoencoding beyond pixels using a learned similarity metric",
    objective=lambda: VAEGANLoss(lam=1.0),
)(build_vae)


def _avb(
    data_shape: tuple[int, ...],
    *,
    latent_dim: int = 16,
    noise_dim: int | None = None,
    posterior_hidden: Sequence[int] = (256,),
    **options: Any,
) -> AVB:
    r"""AVB: the VAE's encoder, decoder, prior and likelihood with the implicit posterior
    :math:`z = g(h(x), \varepsilon)` (:class:`pyro_vaes.models.avb.ImplicitPosterior`)."""
    if "posterior" in options:
        raise ValueError(
            f"avb's posterior is implicit (z = g(x, eps)); it takes no posterior option, got "
            f"{options['posterior']!r}"
        )
    parts = vae_parts(data_shape, latent_dim=latent_dim, **options)
    features = parts["encoder"].out_features
    implicit = ImplicitPosterior(features, latent_dim, noise_dim, posterior_hidden)
    return AVB(**{**parts, "posterior": implicit})


register(
    "avb",
    "adversarial variational Bayes: an implicit posterior z = g(x, eps) with a critic T(x, z) "
    "-> log q(z|x) - log p(z) in place of its density (no adaptive contrast)",
    "Mescheder et al. 2017, Adversarial Variational Bayes",
    objective=AVBLoss,
)(_avb)
