"""Models that take labels: conditional generation and semi-supervised learning."""

from __future__ import annotations

from collections.abc import Sequence

from pyro.infer import TraceEnum_ELBO
from torch import nn

from pyro_vaes import guides as _guides  # noqa: F401  (the posteriors register themselves)
from pyro_vaes import likelihoods
from pyro_vaes import priors as _priors  # noqa: F401  (the priors register themselves)
from pyro_vaes.catalogue.assembly import encoder_decoder
from pyro_vaes.catalogue.variants import register
from pyro_vaes.models.conditional import ConditionalVAE
from pyro_vaes.models.m2 import M2
from pyro_vaes.parts import PartContext, posteriors


def _conditional(
    data_shape: tuple[int, ...],
    *,
    num_classes: int = 10,
    latent_dim: int = 16,
    hidden: Sequence[int] = (512,),
    net: str = "mlp",
    likelihood: str = "bernoulli",
    posterior: str = "diagonal_normal",
    decoder_sees_y: bool = True,
) -> ConditionalVAE:
    """A conditional VAE: the encoder's features and the one-hot label feed the posterior; the
    decoder reads the label too unless ``decoder_sees_y`` is off (the CMMA)."""
    extra = num_classes if decoder_sees_y else 0
    enc, dec, features = encoder_decoder(data_shape, latent_dim + extra, net, hidden)
    ctx = PartContext(data_shape, latent_dim, features + num_classes, enc)
    return ConditionalVAE(
        enc,
        dec,
        posteriors[posterior](ctx),
        likelihoods.get(likelihood),
        num_classes=num_classes,
        latent_dim=latent_dim,
        decoder_sees_y=decoder_sees_y,
    )


register(
    "cvae",
    "conditional VAE: q(z|x,y), a learned prior p(z|y), p(x|z,y); sample by label",
    "Sohn et al. 2015, Learning Structured Output Representation using Deep Conditional "
    "Generative Models",
    num_classes=10,
)(_conditional)
register(
    "cmma",
    "conditional multimodal autoencoder: p(z|y), q(z|x,y), and a decoder p(x|z) that never sees y",
    "Pandey & Dukkipati 2016, Variational methods for Conditional Multimodal Deep Learning",
    num_classes=10,
    decoder_sees_y=False,
)(_conditional)


def _m2(
    data_shape: tuple[int, ...],
    *,
    num_classes: int = 10,
    latent_dim: int = 16,
    hidden: Sequence[int] = (512,),
    net: str = "mlp",
    likelihood: str = "bernoulli",
    alpha: float = 50.0,
) -> M2:
    """The M2 model: a classifier network for q(y|x) beside the style encoder."""
    enc, dec, features = encoder_decoder(data_shape, latent_dim + num_classes, net, hidden)
    trunk, _, trunk_features = encoder_decoder(data_shape, 1, net, hidden)
    classifier = nn.Sequential(trunk, nn.Linear(trunk_features, num_classes))
    ctx = PartContext(data_shape, latent_dim, features + num_classes, enc)
    return M2(
        enc,
        classifier,
        dec,
        posteriors["diagonal_normal"](ctx),
        likelihoods.get(likelihood),
        num_classes=num_classes,
        latent_dim=latent_dim,
        alpha=alpha,
    )


register(
    "m2",
    "semi-supervised M2: the label a discrete latent, observed where known and enumerated "
    "(TraceEnum_ELBO) where missing (-1), plus alpha log q(y|x) on labelled data (alpha=50)",
    "Kingma et al. 2014, Semi-Supervised Learning with Deep Generative Models",
    objective=lambda: TraceEnum_ELBO(max_plate_nesting=1),
    num_classes=10,
)(_m2)
