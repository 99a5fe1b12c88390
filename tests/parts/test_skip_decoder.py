"""The skip decoder: the code reaches the output through every layer."""

from __future__ import annotations

import pytest
import torch
from torch.autograd.functional import jacobian

import pyro_vaes as pv
from pyro_vaes.nets import MLPDecoder, SkipMLPDecoder


def _jacobian(decoder: torch.nn.Module, z: torch.Tensor) -> torch.Tensor:
    return jacobian(lambda v: decoder(v).flatten(), z)


def test_the_shapes_and_the_formula():
    torch.manual_seed(0)
    dec = SkipMLPDecoder(3, (1, 4, 4), hidden=(8, 6))
    z = torch.randn(2, 5, 3)
    assert dec(z).shape == (2, 5, 1, 4, 4)
    w1, w2, w3 = dec.layers
    h1 = torch.relu(w1(z))
    h2 = torch.relu(h1 @ w2.weight[:, :8].T + z @ w2.weight[:, 8:].T + w2.bias)
    out = h2 @ w3.weight[:, :6].T + z @ w3.weight[:, 6:].T + w3.bias
    torch.testing.assert_close(dec(z), out.reshape(2, 5, 1, 4, 4))


def test_zeroing_the_first_layer_leaves_the_output_depending_on_z():
    torch.manual_seed(0)
    z = torch.randn(3)
    skip, plain = SkipMLPDecoder(3, (10,), (8, 8)), MLPDecoder(3, (10,), (8, 8))
    with torch.no_grad():
        for first in (skip.layers[0], plain.net[0]):
            first.weight.zero_()
            first.bias.zero_()
    assert float(_jacobian(plain, z).abs().max()) == 0.0  # the plain MLP loses z
    assert float(_jacobian(skip, z).abs().max()) > 0.0


@pytest.mark.parametrize("layer", [0, 1, 2])
def test_z_reaches_the_output_through_each_layer_alone(layer):
    """Every path from z but the one into ``layer`` cut: d output / d z is still nonzero."""
    torch.manual_seed(0)
    dec = SkipMLPDecoder(3, (10,), (8, 8))
    with torch.no_grad():
        dec.layers[0].bias.fill_(1.0)  # keep the ReLUs open when the first layer sees no z
        dec.layers[1].bias.fill_(1.0)
        for i, lin in enumerate(dec.layers):
            if i != layer:
                lin.weight[:, lin.in_features - 3 :].zero_()  # cut z's weights into layer i
    assert float(_jacobian(dec, torch.randn(3)).abs().max()) > 0.0
    with torch.no_grad():
        lin = dec.layers[layer]
        lin.weight[:, lin.in_features - 3 :].zero_()  # and cut that one too: z is gone
    assert float(_jacobian(dec, torch.randn(3)).abs().max()) == 0.0


def test_skip_vae_uses_the_skip_decoder(digits):
    vae = pv.variants.build("skip_vae", digits.shape, latent_dim=3, hidden=(16, 8))
    assert isinstance(vae.decoder, SkipMLPDecoder)
    assert [lin.in_features for lin in vae.decoder.layers] == [3, 8 + 3, 16 + 3]
    net = pv.variants.build("vae", digits.shape, latent_dim=3, hidden=(16,), net="mlp_skip")
    assert isinstance(net.decoder, SkipMLPDecoder)
