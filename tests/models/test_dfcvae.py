"""The DFC-VAE: the feature perceptual term by hand on a tiny network and inside the model's
factor; gradients reach the decoder and never the frozen feature network; any network can be the
feature network; the classifier is trained before the fit, on the labels, once."""

from __future__ import annotations

import pyro
import pytest
import torch
from torch import nn
from torch.nn import functional as F

import pyro_vaes as pv
from pyro_vaes.errors import DataError
from pyro_vaes.models.dfcvae import FeatureExtractor, feature_perceptual_loss
from pyro_vaes.objectives.elbo import traces
from pyro_vaes.protocols import PreTraining


def _tiny_net() -> nn.Module:
    torch.manual_seed(1)
    return nn.Sequential(
        nn.Conv2d(1, 2, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(32, 3)
    )


def test_the_perceptual_term_by_hand():
    """sum_l w_l / (2 C H W) sum (phi_l(x) - phi_l(x_hat))^2, for every reconstruction of a
    batch with a particle dim."""
    net = _tiny_net()
    features = FeatureExtractor(net, ["1", "4"])
    x, x_hat = torch.rand(3, 1, 8, 8), torch.rand(2, 3, 1, 8, 8)
    got = feature_perceptual_loss(features, x, x_hat, layer_weights=[0.7, 2.0])
    conv, lin = net[0], net[4]
    for p in range(2):
        for n in range(3):
            a = F.relu(F.conv2d(x[n : n + 1], conv.weight, conv.bias, padding=1))
            b = F.relu(F.conv2d(x_hat[p, n : n + 1], conv.weight, conv.bias, padding=1))
            first = ((a - b) ** 2).sum() / (2 * 2 * 8 * 8)
            la = F.linear(F.max_pool2d(a, 2).flatten(), lin.weight, lin.bias)
            lb = F.linear(F.max_pool2d(b, 2).flatten(), lin.weight, lin.bias)
            second = ((la - lb) ** 2).sum() / (2 * 3)
            assert float(got[p, n]) == pytest.approx(float(0.7 * first + 2.0 * second), rel=1e-5)
    assert torch.equal(feature_perceptual_loss(features, x, x[None])[0], torch.zeros(3))


def test_the_models_factor_is_minus_weight_times_the_term(grey_digits):
    net = _tiny_net()
    model = pv.variants.build(
        "dfcvae", grey_digits.shape, latent_dim=3, hidden=(16,), feature_net=net, layers=["1"]
    )
    assert model.weight == 64.0  # pixels per image
    x = grey_digits.x_train[:5]
    model_tr, guide_tr = traces(model.model, model.guide, (x,), {})
    x_hat = model.likelihood.mean(model.decoder(guide_tr.nodes["z"]["value"]))
    node = model_tr.nodes["feature_consistency"]
    factor = node["fn"].log_prob(node["value"])
    expected = -64.0 * feature_perceptual_loss(FeatureExtractor(net, ["1"]), x, x_hat)
    torch.testing.assert_close(factor, expected)
    site = model_tr.nodes["x"]  # present for replication, but out of every objective
    assert site["mask"] is False
    model_tr.compute_log_prob()
    assert float(site["log_prob_sum"]) == 0.0


def test_gradients_reach_the_decoder_not_the_frozen_feature_network(grey_digits):
    torch.manual_seed(0)
    model = pv.variants.build("dfcvae", grey_digits.shape, latent_dim=3, hidden=(16,))
    net = model.features.net
    running = net.body[1].running_mean.clone()
    model.train()
    assert not net.training and all(not p.requires_grad for p in net.parameters())
    loss = pv.objectives.ELBO().differentiable_loss(
        model.model, model.guide, grey_digits.x_train[:20]
    )
    loss.backward()
    assert all(p.grad is None for p in net.parameters())
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.decoder.parameters())
    assert torch.equal(net.body[1].running_mean, running)  # batch norm at its running stats
    assert not any(n.startswith("DFCVAE") and "features" in n for n in pyro.get_param_store())


@pytest.mark.slow
def test_any_network_is_a_feature_network_and_is_left_as_it_was(digits):
    """A user's network and layers: no labels needed, no pre-training, its weights unchanged."""
    net = _tiny_net()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    variant = pv.variants.registry["dfcvae"]
    model = pv.variants.build(
        "dfcvae", digits.shape, latent_dim=2, hidden=(16,), feature_net=net, layers=["1", "4"]
    )
    history = variant.fit(model, digits.x_train[:200], epochs=2, progress=False)
    assert history.loss[-1] < history.loss[0]
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())
    model.eval()
    assert torch.isfinite(
        pv.evaluate.log_likelihood(model.model, model.guide, digits.x_test[:5], 3)
    ).all()


@pytest.mark.slow
def test_the_classifier_is_trained_once_before_the_fit_on_the_labels(digits):
    torch.manual_seed(0)
    variant = pv.variants.registry["dfcvae"]
    model = pv.variants.build("dfcvae", digits.shape, latent_dim=2, hidden=(16,))
    assert isinstance(model, PreTraining) and not bool(model.features_fitted)
    seen = []
    model.before_fit = lambda x, y: seen.append((x, y))  # what the stage is trained on
    binary = pv.data.dynamic_binarize
    data = (digits.x_train[:300], digits.y_train[:300])
    variant.fit(model, data, epochs=1, progress=False, transform=binary)
    assert seen[0][0].shape == (300, *digits.shape) and torch.equal(seen[0][1], data[1])
    del model.before_fit
    variant.fit(model, data, epochs=1, progress=False)
    net = model.features.net
    assert bool(model.features_fitted) and net.val_accuracy is not None
    assert net.val_accuracy > 0.7 and not net.training
    trained = {k: v.clone() for k, v in net.state_dict().items()}
    variant.fit(model, data, epochs=1, progress=False)  # a trained network is kept
    assert all(torch.equal(trained[k], v) for k, v in net.state_dict().items())


def test_bad_input_is_refused(digits):
    model = pv.variants.build("dfcvae", digits.shape, latent_dim=2, hidden=(16,), num_classes=4)
    with pytest.raises(DataError, match="labels"):
        model.before_fit(digits.x_train[:50], None)
    with pytest.raises(DataError, match="num_classes=4"):
        model.before_fit(digits.x_train[:50], digits.y_train[:50])
    net = _tiny_net()
    with pytest.raises(ValueError, match=r"layers \['conv'\]"):
        FeatureExtractor(net, ["conv"])
    with pytest.raises(ValueError, match="give layers"):
        pv.variants.build("dfcvae", digits.shape, feature_net=net)
    with pytest.raises(ValueError, match="layer_weights"):
        pv.variants.build(
            "dfcvae", digits.shape, feature_net=net, layers=["1"], layer_weights=[1, 2]
        )
    with pytest.raises(ValueError, match="images"):
        pv.variants.build("dfcvae", (64,))
    with pytest.raises(ValueError, match="weight"):
        pv.variants.build("dfcvae", digits.shape, weight=0.0)
