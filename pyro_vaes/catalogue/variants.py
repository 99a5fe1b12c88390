"""The catalogue of named variants: name -> builder.

A builder takes the shape of one datapoint and keyword options and returns a model object with
``.model`` and ``.guide``. The CLI, the docs and the benchmarks read this registry; nothing else
dispatches on a variant's name.

    >>> vae = build("beta_vae", (1, 8, 8), latent_dim=4, beta=4.0)
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import torch
from pyro.infer import TraceEnum_ELBO
from torch import nn
from torch.utils.data import DataLoader

from pyro_vaes import guides as _guides  # noqa: F401  (the posteriors register themselves)
from pyro_vaes import likelihoods, nets
from pyro_vaes import priors as _priors  # noqa: F401  (the priors register themselves)
from pyro_vaes.data.batch import as_batch, iterate
from pyro_vaes.models.conditional import ConditionalVAE
from pyro_vaes.models.joint_vae import JointVAE
from pyro_vaes.models.m2 import M2
from pyro_vaes.models.msssim_vae import MSSSIMVAE
from pyro_vaes.models.rae import RAE
from pyro_vaes.models.two_stage import TwoStageVAE
from pyro_vaes.models.vae import VAE
from pyro_vaes.models.vqvae import VQVAE, VectorQuantizer
from pyro_vaes.objectives import (
    CIWAE,
    DIPELBO,
    IWAE,
    MIWAE,
    MMDELBO,
    PIWAE,
    TCELBO,
    AdversarialAE,
    CapacityELBO,
    FactorVAELoss,
    FreeBitsELBO,
    JointCapacityELBO,
    SlicedWassersteinELBO,
    VAEGANLoss,
    imq_kernel,
)
from pyro_vaes.parts import PartContext, posteriors, priors
from pyro_vaes.protocols import PostTraining
from pyro_vaes.registry import Registry
from pyro_vaes.train.callbacks import Callback, History, KLAnnealing
from pyro_vaes.train.fit import fit

__all__ = ["Variant", "build", "networks", "posteriors", "priors", "register", "registry"]


@dataclass(frozen=True)
class Variant:
    """A named variant: its builder, a one-line summary, the paper, its default options, the
    objective it trains with (``None``: :func:`pyro_vaes.fit`'s default ELBO), and the schedule
    it trains under: ``(model, objective) -> callbacks``, e.g. a growing capacity."""

    name: str
    builder: Callable[..., nn.Module]
    summary: str
    reference: str
    defaults: dict[str, Any] = field(default_factory=dict)
    objective: Callable[[], Any] | None = None
    schedule: Callable[[nn.Module, Any], list[Callback]] | None = None

    def loss(self) -> Any:
        """A fresh instance of the variant's objective, or ``None`` for the default."""
        return self.objective() if self.objective is not None else None

    def callbacks(self, model: nn.Module, loss: Any) -> list[Callback]:
        """The callbacks of the variant's schedule, bound to ``model`` and its objective ``loss``
        (from :meth:`loss`); pass them to :func:`pyro_vaes.fit`."""
        return self.schedule(model, loss) if self.schedule is not None else []

    def fit(self, model: Any, data: Any, **kwargs: Any) -> History:
        """:func:`pyro_vaes.fit` of ``model`` (built by this variant) with the variant's
        objective and schedule; ``kwargs`` go to ``fit`` (extra ``callbacks`` run after the
        schedule's). A model with a post-training stage
        (:class:`~pyro_vaes.protocols.PostTraining`) then fits it on the training images."""
        loss = self.loss()
        callbacks = [*self.callbacks(model, loss), *kwargs.pop("callbacks", ())]
        history = fit(model.model, model.guide, data, loss=loss, callbacks=callbacks, **kwargs)
        if isinstance(model, PostTraining):
            model.after_fit(_training_images(data, kwargs.get("transform")))
        return history


def _training_images(data: Any, transform: Callable[[torch.Tensor], torch.Tensor] | None) -> Any:
    """The images of ``data`` (any form :func:`pyro_vaes.fit` takes), as the fit saw them
    (``transform`` applied once: the codes of binarised images for a Bernoulli model)."""
    if isinstance(data, DataLoader):
        x = torch.cat([batch["x"] for batch in iterate(data, "data")])
    else:
        x = as_batch(data)["x"]
    return transform(x) if transform is not None else x


#: variant name -> :class:`Variant`
registry: Registry[Variant] = Registry("variant")


def register(
    name: str,
    summary: str,
    reference: str,
    objective: Callable[[], Any] | None = None,
    schedule: Callable[[nn.Module, Any], list[Callback]] | None = None,
    **defaults: Any,
) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Decorator: add a builder to the catalogue under ``name``."""

    def add(builder: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        registry.register(
            name, Variant(name, builder, summary, reference, defaults, objective, schedule)
        )
        return builder

    return add


def build(name: str, data_shape: Sequence[int], **options: Any) -> nn.Module:
    """Build the variant registered as ``name`` for datapoints of shape ``data_shape``; options
    override the variant's defaults."""
    variant = registry[name]
    return variant.builder(tuple(data_shape), **{**variant.defaults, **options})


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


#: network family name -> ``(data_shape, latent_dim, hidden) -> (encoder, decoder, features)``
networks: Registry[Callable[..., tuple[nn.Module, nn.Module, int]]] = Registry("net")
networks.register("mlp", _mlp)
networks.register("conv", _conv)


def encoder_decoder(
    data_shape: tuple[int, ...], latent_dim: int, net: str, hidden: Sequence[int]
) -> tuple[nn.Module, nn.Module, int]:
    """An encoder, a decoder and the encoder's feature size, for ``net`` in :data:`networks`."""
    return networks[net](data_shape, latent_dim, hidden)


def _parts(
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


def _vae(data_shape: tuple[int, ...], **options: Any) -> VAE:
    """Any prior with any posterior (:func:`_parts`)."""
    return VAE(**_parts(data_shape, **options))


def _rae(
    data_shape: tuple[int, ...],
    *,
    weight_decay: float = 0.0,
    gradient_penalty: float = 0.0,
    expost_components: int = 10,
    **options: Any,
) -> RAE:
    """A regularised autoencoder: the VAE's parts with a point-mass posterior."""
    return RAE(
        **_parts(data_shape, **{"posterior": "delta", **options}),
        weight_decay=weight_decay,
        gradient_penalty=gradient_penalty,
        expost_components=expost_components,
    )


def _msssim_vae(
    data_shape: tuple[int, ...], *, weight: float | None = None, **options: Any
) -> MSSSIMVAE:
    """The VAE's parts with MS-SSIM as the reconstruction term."""
    return MSSSIMVAE(**_parts(data_shape, **options), weight=weight)


def _joint_vae(
    data_shape: tuple[int, ...],
    *,
    latent_dim: int = 10,
    variables: int = 1,
    categories: int = 10,
    temperature: float = 0.67,
    hidden: Sequence[int] = (512,),
    net: str = "mlp",
    likelihood: str = "bernoulli",
) -> JointVAE:
    """Continuous (``latent_dim``, 0 for none) and categorical codes (:mod:`pyro_vaes.joint_vae`)."""
    code = latent_dim + variables * categories
    enc, dec, features = encoder_decoder(data_shape, code, net, hidden)
    return JointVAE(
        enc,
        features,
        dec,
        likelihoods.get(likelihood),
        continuous_dim=latent_dim,
        variables=variables,
        categories=categories,
        temperature=temperature,
    )


def _vqvae(
    data_shape: tuple[int, ...],
    *,
    latent_dim: int = 8,
    embedding_dim: int = 8,
    codes: int = 64,
    hidden: Sequence[int] = (512,),
    net: str = "mlp",
    likelihood: str = "bernoulli",
    beta: float = 0.25,
    ema: bool = False,
    restart_after: int = 100,
) -> VQVAE:
    """A VQ-VAE: ``latent_dim`` code vectors of size ``embedding_dim`` per datapoint, from a
    codebook of ``codes`` entries."""
    enc, dec, features = encoder_decoder(data_shape, latent_dim * embedding_dim, net, hidden)
    quantizer = VectorQuantizer(codes, embedding_dim, ema=ema, restart_after=restart_after)
    return VQVAE(enc, features, dec, likelihoods.get(likelihood), quantizer, latent_dim, beta=beta)


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
    register(_name, _summary, _reference, **_defaults)(_vae)
register(
    "iwae",
    "the VAE trained on the importance weighted bound, K=5 draws per datapoint",
    "Burda et al. 2016, Importance Weighted Autoencoders",
    objective=lambda: IWAE(5),
)(_vae)
register(
    "beta_tcvae",
    "the VAE trained on the total-correlation ELBO (alpha=1, beta=6, gamma=1, stratified)",
    "Chen et al. 2018, Isolating Sources of Disentanglement in VAEs",
    objective=lambda: TCELBO(alpha=1.0, beta=6.0, gamma=1.0),
)(_vae)
register(
    "infovae",
    "InfoVAE: reconstruction + (1 - alpha) KL + (alpha + lambda - 1) MMD, alpha=0, lambda=1000",
    "Zhao et al. 2019, InfoVAE",
    objective=lambda: MMDELBO(alpha=0.0, lam=1000.0),
)(_vae)
register(
    "wae",
    "WAE-MMD: reconstruction + lambda MMD (IMQ kernels), lambda=10",
    "Tolstikhin et al. 2018, Wasserstein Auto-Encoders",
    objective=lambda: MMDELBO(alpha=1.0, lam=10.0, kernel=imq_kernel),
)(_vae)
register(
    "swae",
    "SWAE: reconstruction + lambda sliced Wasserstein distance to the prior, lambda=10",
    "Kolouri et al. 2019, Sliced Wasserstein Auto-Encoders",
    objective=lambda: SlicedWassersteinELBO(lam=10.0),
)(_vae)
register(
    "dip_vae",
    "DIP-VAE-II: the ELBO plus a penalty pulling Cov_q(z) to the identity (lambda_od = 10)",
    "Kumar et al. 2018, Variational Inference of Disentangled Latent Concepts",
    objective=lambda: DIPELBO("ii", lambda_od=10.0),
)(_vae)
register(
    "disentangled_beta_vae",
    "gamma |KL - C|, gamma=1000, the capacity C grown from 0 to 25 nats over the first half of "
    "training",
    "Burgess et al. 2018, Understanding disentangling in beta-VAE",
    objective=lambda: CapacityELBO(gamma=1000.0),
    schedule=lambda model, loss: [
        KLAnnealing(loss, attr="capacity", start=0.0, end=25.0, warmup_fraction=0.5)
    ],
)(_vae)
register(
    "miwae",
    "the VAE trained on the mean of M=4 IWAE bounds of K=4 draws",
    "Rainforth et al. 2018, Tighter Variational Bounds are Not Necessarily Better",
    objective=lambda: MIWAE(4, 4),
)(_vae)
register(
    "piwae",
    "the decoder trained on the IWAE bound of T=16 draws, the encoder on the MIWAE bound of the "
    "same draws in M=4 groups of K=4",
    "Rainforth et al. 2018, Tighter Variational Bounds are Not Necessarily Better",
    objective=lambda: PIWAE(4, 4),
)(_vae)
register(
    "ciwae",
    "the VAE trained on beta ELBO + (1 - beta) IWAE of the same K=16 draws, beta=0.5",
    "Rainforth et al. 2018, Tighter Variational Bounds are Not Necessarily Better",
    objective=lambda: CIWAE(16, beta=0.5),
)(_vae)
register(
    "aae",
    "adversarial autoencoder: reconstruction + a critic on z against prior draws (lambda=1)",
    "Makhzani et al. 2016, Adversarial Autoencoders",
    objective=lambda: AdversarialAE(lam=1.0),
)(_vae)
register(
    "vaegan",
    "VAE-GAN: KL + reconstruction in a critic's feature layer + GAN loss on reconstructions and "
    "samples (lambda=1)",
    "Larsen et al. 2016, Autoencoding beyond pixels using a learned similarity metric",
    objective=lambda: VAEGANLoss(lam=1.0),
)(_vae)
register(
    "factor_vae",
    "the ELBO + gamma TC, the total correlation from a critic against permuted codes (gamma=10)",
    "Kim & Mnih 2018, Disentangling by Factorising",
    objective=lambda: FactorVAELoss(gamma=10.0),
)(_vae)
register(
    "rae_l2",
    "regularised autoencoder: point-mass posterior, L2 on the code, decoder weight decay 1e-3",
    "Ghosh et al. 2020, From Variational to Deterministic Autoencoders",
    weight_decay=1e-3,
)(_rae)
register(
    "rae_gp",
    "regularised autoencoder: point-mass posterior, L2 on the code, decoder gradient penalty 0.1",
    "Ghosh et al. 2020, From Variational to Deterministic Autoencoders",
    gradient_penalty=0.1,
)(_rae)
register(
    "vqvae",
    "VQ-VAE: 8 code vectors of size 8 from a 64-entry codebook, straight-through estimator, "
    "commitment beta=0.25, dead codes restarted after 100 idle steps, uniform prior over codes",
    "van den Oord et al. 2017, Neural Discrete Representation Learning",
)(_vqvae)
register(
    "msssim_vae",
    "the VAE with lambda (1 - MS-SSIM) as its reconstruction term (lambda: pixels per image)",
    "Snell et al. 2017, Learning to Generate Images with Perceptual Similarity Metrics",
)(_msssim_vae)


def _logcosh_vae(data_shape: tuple[int, ...], *, sharpness: float = 10.0, **options: Any) -> VAE:
    r"""The VAE with log-cosh pixels (:class:`pyro_vaes.likelihoods.LogCosh`, sharpness
    :math:`a`): :math:`\sum_i \frac1a \log\cosh(a (x_i - \hat x_i)) + \beta\,\mathrm{KL}`."""
    parts = _parts(data_shape, **{**options, "likelihood": "logcosh"})
    return VAE(**{**parts, "likelihood": likelihoods.LogCosh(sharpness)})


register(
    "logcosh_vae",
    "the VAE with the log-cosh reconstruction (1/a) log cosh(a (x - x_hat)), a=10, as a "
    "normalised density",
    "Chen et al. 2018, Log Hyperbolic Cosine Loss Improves Variational Auto-Encoder",
)(_logcosh_vae)


def _two_stage_vae(
    data_shape: tuple[int, ...], *, second_hidden: int = 256, **options: Any
) -> TwoStageVAE:
    """A VAE with a second-stage VAE over its codes (:mod:`pyro_vaes.models.two_stage`)."""
    return TwoStageVAE(**_parts(data_shape, **options), second_hidden=second_hidden)


register(
    "two_stage_vae",
    "a VAE, then a second VAE (learned Gaussian scale) fitted to its codes after training; "
    "samples go through the second stage's prior",
    "Dai & Wipf 2019, Diagnosing and Enhancing VAE Models",
)(_two_stage_vae)


def _categorical_vae(
    data_shape: tuple[int, ...], *, latent_dim: int = 20, **options: Any
) -> JointVAE:
    """The categorical VAE: ``latent_dim`` categorical variables, no continuous code."""
    return _joint_vae(data_shape, latent_dim=0, variables=latent_dim, **options)


register(
    "categorical_vae",
    "Gumbel-softmax VAE: 20 categorical variables of 10 values, the temperature annealed 1 -> 0.5",
    "Jang et al. 2017, Categorical Reparameterization with Gumbel-Softmax",
    schedule=lambda model, loss: [
        KLAnnealing(model, attr="temperature", start=1.0, end=0.5, warmup_fraction=1.0)
    ],
)(_categorical_vae)
register(
    "joint_vae",
    "JointVAE: 10 continuous dims and one 10-way categorical, capacities 0 -> 5 nats each over "
    "the first half of the fit, gamma=30",
    "Dupont 2018, Learning Disentangled Joint Continuous and Discrete Representations",
    objective=lambda: JointCapacityELBO(gamma=30.0),
    schedule=lambda model, loss: [
        KLAnnealing(loss, attr=attr, start=0.0, end=5.0, warmup_fraction=0.5)
        for attr in ("continuous_capacity", "discrete_capacity")
    ],
)(_joint_vae)


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
register(
    "free_bits_vae",
    "the VAE trained with free bits: each latent dimension's batch-mean KL floored at "
    "lambda=0.5 nats",
    "Kingma et al. 2016, Improved Variational Inference with Inverse Autoregressive Flow",
    objective=lambda: FreeBitsELBO(lambda_=0.5, per="dimension"),
)(_vae)


def _bn_vae(data_shape: tuple[int, ...], *, gamma: float = 0.5, **options: Any) -> VAE:
    r"""The VAE with the BN-VAE posterior (:class:`pyro_vaes.guides.BatchNormNormal`): posterior
    means batch-normalised with the fixed scale ``gamma``, so that the batch-mean KL to the
    standard normal prior is at least :math:`d\,\gamma^2 / 2`."""
    parts = _parts(data_shape, **{**options, "posterior": "bn_normal"})
    parts["posterior"].gamma = float(gamma)
    return VAE(**parts)


register(
    "bn_vae",
    "BN-VAE: posterior means batch-normalised with a fixed scale gamma=0.5 and a learned shift, "
    "so the batch-mean KL is at least d gamma^2 / 2",
    "Zhu et al. 2020, A Batch Normalized Inference Network Keeps the KL Vanishing Away",
)(_bn_vae)


def _mlp_skip(
    data_shape: tuple[int, ...], latent_dim: int, hidden: Sequence[int]
) -> tuple[nn.Module, nn.Module, int]:
    """The MLP encoder with the skip decoder (:class:`pyro_vaes.nets.SkipMLPDecoder`)."""
    enc = nets.MLPEncoder(data_shape, hidden)
    dec = nets.SkipMLPDecoder(latent_dim, data_shape, tuple(reversed(hidden)))
    return enc, dec, enc.out_features


networks.register("mlp_skip", _mlp_skip)
register(
    "skip_vae",
    "the VAE with a skip decoder: z enters every layer of the MLP decoder (net='mlp_skip')",
    "Dieng et al. 2019, Avoiding Latent Variable Collapse with Generative Skip Models",
    net="mlp_skip",
)(_vae)
