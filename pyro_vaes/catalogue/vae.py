"""The VAE with its parts swapped: priors, posteriors, geometries, likelihoods and decoders."""

from __future__ import annotations

from typing import Any

from pyro_vaes import guides as _guides  # noqa: F401  (the posteriors register themselves)
from pyro_vaes import likelihoods
from pyro_vaes import priors as _priors  # noqa: F401  (the priors register themselves)
from pyro_vaes.catalogue.assembly import build_vae, vae_parts
from pyro_vaes.catalogue.variants import register
from pyro_vaes.models.vae import VAE

_catalogue: list[tuple[str, str, str, dict[str, Any]]] = [
    (
        "vae",
        "standard normal prior, diagonal normal posterior, ELBO",
        "Kingma & Welling 2014, Auto-Encoding Variational Bayes",
        {},
    ),
    (
        "beta_vae",
        "the VAE with the KL term weighted by beta (poutine.scale on z)",
        "Higgins et al. 2017, beta-VAE",
        {"beta": 4.0},
    ),
    (
        "vae_iaf",
        "amortised inverse autoregressive flow posterior (context from the encoder)",
        "Kingma et al. 2016, Improved Variational Inference with IAF",
        {"posterior": "iaf"},
    ),
    (
        "vae_linnf",
        "amortised planar-flow posterior, u-hat keeps each step invertible",
        "Rezende & Mohamed 2015, Variational Inference with Normalizing Flows",
        {"posterior": "planar", "flow_steps": 8},
    ),
    (
        "vae_radial",
        "amortised radial-flow posterior",
        "Rezende & Mohamed 2015, Variational Inference with Normalizing Flows",
        {"posterior": "radial", "flow_steps": 8},
    ),
    (
        "vamp",
        "VampPrior: mixture of posteriors at learned pseudo-inputs",
        "Tomczak & Welling 2018, VAE with a VampPrior",
        {"prior": "vamp", "components": 500},
    ),
    (
        "vae_mog",
        "learned mixture-of-Gaussians prior",
        "Dilokthanakul et al. 2016; Tomczak & Welling 2018",
        {"prior": "mog", "components": 10},
    ),
    (
        "svae",
        "hyperspherical VAE: von Mises-Fisher posterior, uniform prior on the sphere",
        "Davidson et al. 2018, Hyperspherical Variational Auto-Encoders",
        {"prior": "uniform_sphere", "posterior": "vmf"},
    ),
    (
        "pvae",
        "Poincare VAE: wrapped normals on the Poincare ball, gyroplane first decoder layer",
        "Mathieu et al. 2019, Poincare Variational Auto-Encoders",
        {"prior": "wrapped_normal", "posterior": "wrapped_normal", "gyroplane": True},
    ),
]
for _name, _summary, _reference, _defaults in _catalogue:
    register(_name, _summary, _reference, **_defaults)(build_vae)


def _logcosh_vae(data_shape: tuple[int, ...], *, sharpness: float = 10.0, **options: Any) -> VAE:
    r"""The VAE with log-cosh pixels (:class:`pyro_vaes.likelihoods.LogCosh`, sharpness
    :math:`a`): :math:`\sum_i \frac1a \log\cosh(a (x_i - \hat x_i)) + \beta\,\mathrm{KL}`."""
    parts = vae_parts(data_shape, **{**options, "likelihood": "logcosh"})
    return VAE(**{**parts, "likelihood": likelihoods.LogCosh(sharpness)})


register(
    "logcosh_vae",
    "the VAE with the log-cosh reconstruction (1/a) log cosh(a (x - x_hat)), a=10, as a "
    "normalised density",
    "Chen et al. 2018, Log Hyperbolic Cosine Loss Improves Variational Auto-Encoder",
)(_logcosh_vae)


def _bn_vae(data_shape: tuple[int, ...], *, gamma: float = 0.5, **options: Any) -> VAE:
    r"""The VAE with the BN-VAE posterior (:class:`pyro_vaes.guides.BatchNormNormal`): posterior
    means batch-normalised with the fixed scale ``gamma``, so that the batch-mean KL to the
    standard normal prior is at least :math:`d\,\gamma^2 / 2`."""
    parts = vae_parts(data_shape, **{**options, "posterior": "bn_normal"})
    parts["posterior"].gamma = float(gamma)
    return VAE(**parts)


register(
    "bn_vae",
    "BN-VAE: posterior means batch-normalised with a fixed scale gamma=0.5 and a learned shift, "
    "so the batch-mean KL is at least d gamma^2 / 2",
    "Zhu et al. 2020, A Batch Normalized Inference Network Keeps the KL Vanishing Away",
)(_bn_vae)

register(
    "skip_vae",
    "the VAE with a skip decoder: z enters every layer of the MLP decoder (net='mlp_skip')",
    "Dieng et al. 2019, Avoiding Latent Variable Collapse with Generative Skip Models",
    net="mlp_skip",
)(build_vae)
