r"""Autoregressive decoders: the VAE with a PixelCNN likelihood, alone and with the remedies for
posterior collapse.

A PixelCNN decoder models :math:`p(x \mid z) = \prod_i p(x_i \mid x_{<i}, z)` and can fit the
data without the code, so the ELBO's optimum may set :math:`q(z \mid x) = p(z)` (the KL term and
the active units go to zero). The remedies of the catalogue combine with it as options of one
builder, :func:`pixelcnn_vae_parts`: the BN-VAE posterior (``posterior="bn_normal"``), free bits
(the variant's objective), and generative skip connections (``skip=True``: the decoder's map
enters every PixelCNN layer, and the decoder is the skip MLP).
"""

from __future__ import annotations

from typing import Any

from pyro_vaes import guides as _guides  # noqa: F401  (the posteriors register themselves)
from pyro_vaes import likelihoods
from pyro_vaes import priors as _priors  # noqa: F401  (the priors register themselves)
from pyro_vaes.catalogue.assembly import encoder_decoder, vae_parts
from pyro_vaes.catalogue.variants import register
from pyro_vaes.models.vae import VAE
from pyro_vaes.objectives import FreeBitsELBO

__all__ = ["pixelcnn_vae", "pixelcnn_vae_parts"]


def pixelcnn_vae_parts(
    data_shape: tuple[int, ...],
    *,
    cond_channels: int | None = None,
    pixelcnn_channels: int = 32,
    pixelcnn_layers: int = 3,
    kernel_size: int = 3,
    skip: bool = False,
    gamma: float = 0.5,
    **options: Any,
) -> dict[str, Any]:
    r"""The parts of a VAE with a :class:`pyro_vaes.likelihoods.PixelCNN` likelihood: the decoder
    maps :math:`z` to a ``(cond_channels, H, W)`` map that conditions the PixelCNN.

    :param data_shape: binary images ``(C, H, W)``.
    :param cond_channels: the channels of the decoder's map (default ``C``).
    :param pixelcnn_channels: the PixelCNN's channels.
    :param pixelcnn_layers: its gated layers.
    :param kernel_size: its kernel size.
    :param skip: generative skip connections [1]: the map enters every gated layer (else the
        first only), and the decoder is ``net="mlp_skip"`` unless ``net`` is given.
    :param gamma: the BN-VAE posterior's fixed scale, with ``posterior="bn_normal"``.
    :param options: the other parts, by name (:func:`pyro_vaes.catalogue.assembly.vae_parts`).

    References:
        [1] Dieng, Kim, Rush, Blei. Avoiding Latent Variable Collapse with Generative Skip
        Models. AISTATS 2019.
    """
    if len(data_shape) != 3:
        raise ValueError(f"a PixelCNN decoder needs images (C, H, W), got data_shape {data_shape}")
    likelihood = options.pop("likelihood", "pixelcnn")
    if likelihood not in ("pixelcnn", "bernoulli"):  # "bernoulli": binary data, as the CLI says
        raise ValueError(
            f"a PixelCNN decoder models binary pixels: likelihood must be 'pixelcnn', got "
            f"{likelihood!r}"
        )
    if skip:
        options.setdefault("net", "mlp_skip")
    channels, height, width = data_shape
    cond_channels = channels if cond_channels is None else int(cond_channels)
    parts = vae_parts(data_shape, **options)
    if cond_channels != channels:
        latent_dim = options.get("latent_dim", 16)
        net, hidden = options.get("net", "mlp"), options.get("hidden", (512,))
        _, parts["decoder"], _ = encoder_decoder(
            (cond_channels, height, width), latent_dim, net, hidden
        )
    parts["likelihood"] = likelihoods.PixelCNN(
        channels,
        cond_channels,
        hidden_channels=pixelcnn_channels,
        layers=pixelcnn_layers,
        kernel_size=kernel_size,
        condition_every_layer=skip,
    )
    if options.get("posterior") == "bn_normal":
        parts["posterior"].gamma = float(gamma)
    return parts


def pixelcnn_vae(data_shape: tuple[int, ...], **options: Any) -> VAE:
    """A :class:`VAE` of :func:`pixelcnn_vae_parts`."""
    return VAE(**pixelcnn_vae_parts(data_shape, **options))


_PIXELVAE = "Gulrajani et al. 2017, PixelVAE; van den Oord et al. 2016, Conditional PixelCNN"

register(
    "pixelcnn_vae",
    "the VAE with a gated PixelCNN likelihood (3 layers of 32 channels) conditioned on the "
    "decoder's map in its first layer",
    _PIXELVAE,
)(pixelcnn_vae)
register(
    "bn_pixelcnn_vae",
    "the PixelCNN VAE with the BN-VAE posterior (gamma=0.5)",
    "Zhu et al. 2020, A Batch Normalized Inference Network Keeps the KL Vanishing Away",
    posterior="bn_normal",
)(pixelcnn_vae)
register(
    "free_bits_pixelcnn_vae",
    "the PixelCNN VAE trained with free bits, lambda=0.5 nats per latent dimension",
    "Kingma et al. 2016, Improved Variational Inference with Inverse Autoregressive Flow",
    objective=lambda: FreeBitsELBO(lambda_=0.5, per="dimension"),
)(pixelcnn_vae)
register(
    "skip_pixelcnn_vae",
    "the PixelCNN VAE with generative skip connections: the skip MLP decoder, its map into "
    "every gated layer",
    "Dieng et al. 2019, Avoiding Latent Variable Collapse with Generative Skip Models",
    skip=True,
)(pixelcnn_vae)
