r"""The deep feature consistent VAE (DFC-VAE): a VAE whose reconstruction term compares images in
the hidden layers of a fixed feature network, not pixel by pixel.

For a feature network :math:`\Phi` with chosen layers :math:`l = 1, \dots, L`, each of
:math:`C^l H^l W^l` activations per image, Hou et al. [1] replace the pixel likelihood by the
feature perceptual loss

.. math::
    \mathcal L_{rec}(x, \hat x) = \sum_{l=1}^{L} \frac{w_l}{2 C^l H^l W^l}
    \sum_{c,h,w} \big(\Phi^l(x)_{c,h,w} - \Phi^l(\hat x)_{c,h,w}\big)^2,

with :math:`\hat x = \mathbb E[x \mid z]` the decoded image, and train on

.. math::
    \alpha\, \mathrm{KL}(q(z \mid x)\,\|\,p(z)) + \lambda\, \mathcal L_{rec}(x, \hat x(z)),
    \qquad z \sim q(z \mid x),

with :math:`\alpha = 1` (the VAE's ``beta``) and the layer weights :math:`w_l = 1` as in the
paper. The network is frozen: its parameters get no gradient and it stays in evaluation mode
(batch normalisation at its running statistics, no dropout) while the VAE trains, so gradients
flow through it into the decoder only.

**The feature network.** The paper uses VGG-19 pretrained on ImageNet (layers ``relu1_1``,
``relu2_1``, ``relu3_1``: "DFC-VAE-123"). Pretrained weights cannot be downloaded here, so the
catalogue's ``dfcvae`` uses the project's own classifier (:class:`pyro_vaes.classifier.Classifier`)
trained on the labels of the same training data before the VAE (:meth:`DFCVAE.before_fit`, which
:meth:`pyro_vaes.variants.Variant.fit` and so ``pyro-vaes train`` run first), read at the ReLU
of each of its three convolution blocks: the counterpart of VGG's first three blocks. Any
network and layer names can take its place (:class:`FeatureExtractor`), a torchvision VGG with
its weights say: ``DFCVAE(..., features=FeatureExtractor(vgg.features, ["1", "6", "11"]))``
(``relu1_1``, ``relu2_1``, ``relu3_1`` of ``vgg19``; inputs as that network expects them).

**Not a likelihood.** As for :class:`~pyro_vaes.models.msssim_vae.MSSSIMVAE`, the term is a
per-datapoint ``pyro.factor`` ``"feature_consistency"`` :math:`= -\lambda\mathcal L_{rec}`, not a
normalised density of ``x``: ``x`` is generated (``x=None``, and posterior predictive draws under
``poutine.uncondition``) from the likelihood part, and while scoring data the observed site is
present but masked out, so it adds nothing to any objective. Log-likelihood scores of this model
are those of the unnormalised density.

References:
    [1] Hou, Shen, Sun, Qiu. Deep Feature Consistent Variational Autoencoder. WACV 2017.
    [2] Simonyan, Zisserman. Very Deep Convolutional Networks for Large-Scale Image Recognition.
    ICLR 2015.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pyro
import torch
from pyro import poutine
from torch import nn

from pyro_vaes.analysis.classifier import Classifier, train_classifier
from pyro_vaes.errors import DataError
from pyro_vaes.models.base import data_event_dim
from pyro_vaes.models.vae import VAE

__all__ = ["CLASSIFIER_LAYERS", "DFCVAE", "FeatureExtractor", "feature_perceptual_loss"]

#: the layers of :class:`~pyro_vaes.classifier.Classifier` that ``dfcvae`` reads: the ReLU of
#: each convolution block (16, 32 and 64 channels, at full, half and quarter resolution)
CLASSIFIER_LAYERS = ("body.2", "body.6", "body.10")


class FeatureExtractor(nn.Module):
    """The activations of the named layers (``net.named_modules()`` names) of a network, in the
    order of ``layers``, for a batch of inputs ``(B, ...)``.

    The network is frozen: ``requires_grad_(False)`` on its parameters, and it stays in
    evaluation mode whatever mode the modules around it are put in. Each layer's output is
    taken by a forward hook while the whole network runs (a layer called twice gives its last
    output).

    :param net: any module that takes a batch of images.
    :param layers: the names of its submodules whose outputs are the features.
    """

    def __init__(self, net: nn.Module, layers: Sequence[str]) -> None:
        super().__init__()
        if isinstance(layers, str) or not len(layers):
            raise ValueError(f"layers must be a non-empty sequence of layer names, got {layers!r}")
        names = dict(net.named_modules())
        missing = [name for name in layers if name not in names or not name]
        if missing:
            raise ValueError(
                f"layers {missing} are not submodules of the feature network; its layers are "
                f"{[n for n in names if n][:20]}"
            )
        self.net = net.requires_grad_(False).eval()
        self.layers = tuple(layers)

    def train(self, mode: bool = True) -> FeatureExtractor:
        """The network stays in evaluation mode (its batch statistics and dropout fixed)."""
        super().train(mode)
        self.net.eval()
        return self

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        out: dict[str, torch.Tensor] = {}

        def keep(name: str) -> Any:
            def hook(module: nn.Module, inputs: Any, output: torch.Tensor) -> None:
                out[name] = output

            return hook

        handles = [self.net.get_submodule(n).register_forward_hook(keep(n)) for n in self.layers]
        try:
            self.net(x)
        finally:
            for handle in handles:
                handle.remove()
        if len(out) < len(self.layers):
            unused = [n for n in self.layers if n not in out]
            raise ValueError(f"layers {unused} did not run in the feature network's forward")
        return [out[n] for n in self.layers]


def feature_perceptual_loss(
    features: FeatureExtractor,
    x: torch.Tensor,
    x_hat: torch.Tensor,
    layer_weights: Sequence[float] | None = None,
) -> torch.Tensor:
    r""":math:`\sum_l \frac{w_l}{2 C^l H^l W^l} \lVert \Phi^l(x) - \Phi^l(\hat x) \rVert^2` for
    each reconstruction (module docstring).

    :param x: the images ``(N, *shape)``.
    :param x_hat: reconstructions ``(..., N, *shape)`` (leading dims: particles, say); the
        result has their batch shape ``(..., N)``.
    :param layer_weights: :math:`w_l`, one per layer (default: ones).
    """
    shape = x.shape[1:]
    if x_hat.shape[x_hat.dim() - len(shape) :] != shape or x_hat.shape[-len(shape) - 1] != len(x):
        raise ValueError(
            f"x_hat {tuple(x_hat.shape)} must end with the images' shape {tuple(x.shape)}"
        )
    weights = [1.0] * len(features.layers) if layer_weights is None else list(layer_weights)
    if len(weights) != len(features.layers):
        raise ValueError(
            f"layer_weights has {len(weights)} entries for {len(features.layers)} layers"
        )
    batch = x_hat.shape[: x_hat.dim() - len(shape)]
    with torch.no_grad():
        targets = features(x)
    outputs = features(x_hat.reshape(-1, *shape))
    total = x_hat.new_zeros(batch)
    for w, target, output in zip(weights, targets, outputs, strict=True):
        diff = output.reshape(*batch, -1) - target.reshape(len(x), -1)
        total = total + w * 0.5 * diff.pow(2).mean(-1)
    return total


class DFCVAE(VAE):
    """The parts of :class:`pyro_vaes.VAE` with the feature perceptual loss as the
    reconstruction term; the likelihood part supplies the image mean :math:`\\hat x` and
    generates (module docstring).

    :param features: the frozen feature network and its layers.
    :param weight: :math:`\\lambda`, the weight of the perceptual term.
    :param layer_weights: :math:`w_l`, one per layer (default: ones).
    :param feature_epochs: when given, ``features.net`` is a
        :class:`~pyro_vaes.classifier.Classifier` that :meth:`before_fit` trains for this many
        epochs on the training labels (once: a trained one is kept); ``None``: the network is
        used as it is.
    """

    features_fitted: torch.Tensor

    def __init__(
        self,
        *args: Any,
        features: FeatureExtractor,
        weight: float = 1.0,
        layer_weights: Sequence[float] | None = None,
        feature_epochs: int | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        if not weight > 0:
            raise ValueError(f"weight must be > 0, got {weight!r}")
        if layer_weights is not None and (
            len(layer_weights) != len(features.layers) or min(layer_weights) < 0
        ):
            raise ValueError(
                f"layer_weights must be {len(features.layers)} weights >= 0 (one per layer), "
                f"got {layer_weights!r}"
            )
        if feature_epochs is not None and (
            not isinstance(features.net, Classifier) or feature_epochs < 1
        ):
            raise ValueError(
                "feature_epochs trains the project's Classifier as the feature network: it "
                f"needs features.net to be one and feature_epochs >= 1, got {feature_epochs!r}"
            )
        self.features = features
        self.weight = float(weight)
        self.layer_weights = None if layer_weights is None else tuple(map(float, layer_weights))
        self.feature_epochs = feature_epochs
        self.register_buffer("features_fitted", torch.tensor(feature_epochs is None))

    def before_fit(self, x: torch.Tensor, y: torch.Tensor | None) -> None:
        """The pre-training stage (:class:`~pyro_vaes.protocols.PreTraining`): train the
        classifier that is the feature network on the training images ``x`` and labels ``y``
        (:func:`pyro_vaes.classifier.train_classifier`, ``feature_epochs`` epochs, a tenth of
        the training data held out to keep its best epoch, seed 0), unless it is trained.

        :raises DataError: without labels, or with labels the classifier has no class for.
        """
        if bool(self.features_fitted):
            return
        net = self.features.net
        assert isinstance(net, Classifier) and self.feature_epochs is not None
        if y is None:
            raise DataError(
                "dfcvae's feature network is a classifier trained on the training labels: give "
                "the data as (x, y) pairs, or build the model with a trained feature_net"
            )
        classes = net.head.out_features
        if y.dtype.is_floating_point or y.min() < 0 or y.max() >= classes:
            raise DataError(
                f"the feature network's classifier has num_classes={classes}: the labels must "
                f"be integers 0..{classes - 1}, got values {int(y.min())}..{int(y.max())}"
            )
        device = next(net.parameters()).device
        trained = train_classifier(x.cpu(), y.cpu(), epochs=self.feature_epochs)
        if trained.head.out_features < classes:  # the data lack the last classes: the read-out
            trained.head = net.head  # (unused by the features) keeps the model's shape
        net.load_state_dict(trained.state_dict())
        net.val_accuracy, net.epoch = trained.val_accuracy, trained.epoch
        net.to(device).requires_grad_(False).eval()
        self.features_fitted.fill_(True)

    def observe(self, params: torch.Tensor, z: torch.Tensor, x: torch.Tensor | None) -> None:
        """Generate ``x`` from the likelihood part (``x=None``); for data, the factor
        :math:`-\\lambda \\mathcal L_{rec}(x, \\hat x(z))` and the masked observed site."""
        if x is None:
            super().observe(params, z, None)
            return
        if x.dim() != 4:
            raise ValueError(f"the DFC-VAE needs images (N, C, H, W), got {tuple(x.shape)}")
        loss = feature_perceptual_loss(
            self.features, x, self.likelihood.mean(params), self.layer_weights
        )
        pyro.factor("feature_consistency", -self.weight * loss)
        # masked as a site (so no data check applies) and as a distribution (so its density is
        # never evaluated on data outside its support), as the MS-SSIM VAE's
        with poutine.mask(mask=False):
            likelihood = self.likelihood(params, data_event_dim(params, z, 1))
            pyro.sample("x", likelihood.mask(False), obs=x)
