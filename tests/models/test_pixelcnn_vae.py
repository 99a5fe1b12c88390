"""The VAE with a PixelCNN likelihood: exact log p(x) by quadrature on a tiny model, generation,
and the collapse remedies as options of the same builder."""

from __future__ import annotations

import math

import pytest
import torch
from pyro import poutine
from pyro.infer import Predictive

import pyro_vaes as pv
from pyro_vaes.catalogue.autoregressive import pixelcnn_vae
from pyro_vaes.distributions.autoregressive import PixelCNNBernoulli
from pyro_vaes.guides import BatchNormNormal
from pyro_vaes.nets import SkipMLPDecoder
from pyro_vaes.objectives import FreeBitsELBO


def _all_images() -> torch.Tensor:
    bits = (torch.arange(16)[:, None] >> torch.arange(4)) & 1
    return bits.float().reshape(16, 1, 2, 2)


@torch.no_grad()
def _quadrature(vae: pv.VAE, x: torch.Tensor, power: int = 1) -> torch.Tensor:
    """log int N(z; 0, 1) p(x | z)^power dz for a one-dimensional code, on a fine grid (power 1:
    log p(x))."""
    z = torch.linspace(-8.0, 8.0, 1601)[:, None]
    log_pz = torch.distributions.Normal(0.0, 1.0).log_prob(z[:, 0])
    log_px_z = vae.likelihood(vae.decoder(z)[:, None], 3).log_prob(x)  # (grid, N)
    dz = float(z[1, 0] - z[0, 0])
    return (log_pz[:, None] + power * log_px_z).logsumexp(0) + math.log(dz)


@pytest.fixture
def tiny() -> pv.VAE:
    torch.manual_seed(0)
    vae = pixelcnn_vae((1, 2, 2), latent_dim=1, hidden=(8,), pixelcnn_channels=4,
                       pixelcnn_layers=2)  # fmt: skip
    with torch.no_grad():  # weights that move the pixels' probabilities a lot with z
        for p in (*vae.decoder.parameters(), *vae.likelihood.parameters()):
            p.mul_(3.0)
    return vae.eval()


def test_log_px_normalises_and_importance_sampling_converges_to_it(tiny):
    images = _all_images()
    with torch.no_grad():  # q(z | x) = p(z), so the importance weights are p(x | z)
        tiny.posterior.head.weight.zero_()
        tiny.posterior.head.bias.copy_(torch.tensor([0.0, math.log(math.e - 1.0)]))
        tiny.posterior.min_scale = 0.0
        z = torch.linspace(-2.0, 2.0, 5)[:, None, None]
        log_px_z = tiny.likelihood(tiny.decoder(z), 3).log_prob(images)  # (5, 16)
    assert float((log_px_z.amax(0) - log_px_z.amin(0)).mean()) > 1.0  # z matters
    log_px = _quadrature(tiny, images)
    torch.testing.assert_close(log_px.logsumexp(0), torch.tensor(0.0), atol=1e-4, rtol=0)
    k = 2000
    # the estimate's standard deviation, sqrt(Var[w] / k) / E[w] for w = p(x | z), z ~ p(z)
    sd = ((_quadrature(tiny, images, power=2) - 2 * log_px).exp() - 1).div(k).sqrt()
    torch.manual_seed(1)
    scores = pv.evaluate.scores(tiny.model, tiny.guide, images, k, progress=False)
    assert ((scores.log_likelihood - log_px).abs() < 4 * sd).all(), (scores, log_px, sd)
    assert (scores.elbo < log_px).all()


def test_the_observed_site_is_the_pixelcnn_distribution_and_generates(tiny, digits):
    x = _all_images()[:5]
    tr = poutine.trace(tiny.model).get_trace(x)
    fn = tr.nodes["x"]["fn"]
    assert isinstance(fn, PixelCNNBernoulli) and fn.event_shape == (1, 2, 2)
    draws = Predictive(tiny.model, num_samples=3)(None)["x"]
    assert draws.shape == (3, 1, 1, 2, 2) and set(draws.unique().tolist()) <= {0.0, 1.0}
    pictures = tiny.sample(4)
    assert pictures.shape == (4, 1, 2, 2) and ((pictures >= 0) & (pictures <= 1)).all()
    vae = pv.variants.build("vae", digits.shape, latent_dim=2, hidden=(8,), likelihood="pixelcnn")
    assert isinstance(vae.likelihood, pv.likelihoods.PixelCNN)


def test_the_remedies_are_options_of_one_builder(digits):
    torch.manual_seed(0)
    small = {"latent_dim": 3, "hidden": (16,), "pixelcnn_layers": 3}
    plain = pv.variants.build("pixelcnn_vae", digits.shape, **small)
    net = plain.likelihood.net
    assert [layer.cond_map is not None for layer in net.layers] == [True, False, False]
    skip = pv.variants.build("skip_pixelcnn_vae", digits.shape, **small)
    assert isinstance(skip.decoder, SkipMLPDecoder)
    assert all(layer.cond_map is not None for layer in skip.likelihood.net.layers)
    bn = pv.variants.build("bn_pixelcnn_vae", digits.shape, gamma=0.3, **small)
    assert isinstance(bn.posterior, BatchNormNormal) and bn.posterior.gamma == 0.3
    loss = pv.variants.registry["free_bits_pixelcnn_vae"].loss()
    assert isinstance(loss, FreeBitsELBO) and loss.lambda_ == 0.5
    every = pixelcnn_vae(digits.shape, skip=True, posterior="bn_normal", cond_channels=3, **small)
    assert isinstance(every.posterior, BatchNormNormal) and isinstance(every.decoder,
                                                                       SkipMLPDecoder)  # fmt: skip
    assert every.decoder(torch.zeros(2, 3)).shape == (2, 3, 8, 8)
    x = digits.x_train[:6]
    assert every.likelihood(every.decoder(torch.zeros(6, 3)), 3).log_prob(x).shape == (6,)


def test_bad_options_name_the_parameter(digits):
    with pytest.raises(ValueError, match="images"):
        pixelcnn_vae((64,), latent_dim=2)
    with pytest.raises(ValueError, match="likelihood must be 'pixelcnn'"):
        pixelcnn_vae(digits.shape, likelihood="gaussian")
    lik = pv.likelihoods.PixelCNN()
    with pytest.raises(ValueError, match="event_dim=1"):
        lik(torch.zeros(2, 4), 1)
