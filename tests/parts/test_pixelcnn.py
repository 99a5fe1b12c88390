"""PixelCNN: the masks are causal in raster order, and the gated stacks leave no blind spot."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.autograd.functional import jacobian

from pyro_vaes.distributions.autoregressive import PixelCNNBernoulli
from pyro_vaes.nets.pixelcnn import MaskedConv2d, PixelCNN, causal_mask


def _dependence(net: nn.Module, shape: tuple[int, ...], **cond: torch.Tensor) -> torch.Tensor:
    """``D[i, j]``: output position ``i`` depends on input position ``j`` (raster order), from the
    autograd Jacobian of the network at a random input, summed over channels."""
    x = torch.randn(1, *shape, dtype=torch.float64)
    jac = jacobian(lambda v: net(v, **cond).flatten(), x, vectorize=True)  # (out, 1, C, H, W)
    n = shape[-2] * shape[-1]
    jac = jac.reshape(-1, n, shape[0], n)  # outputs x channels folded in the first dim
    return jac.abs().sum(dim=(0, 2)) > 0


def _strictly_before(n: int) -> torch.Tensor:
    return torch.ones(n, n).tril(-1).bool()


def test_the_masks():
    assert causal_mask((3, 3), "A").tolist() == [[1, 1, 1], [1, 0, 0], [0, 0, 0]]
    assert causal_mask((3, 3), "B").tolist() == [[1, 1, 1], [1, 1, 0], [0, 0, 0]]
    assert causal_mask((1, 5), "A").tolist() == [[1, 1, 0, 0, 0]]
    with pytest.raises(ValueError, match="mask_type"):
        causal_mask((3, 3), "C")
    with pytest.raises(ValueError, match="kernel_size"):
        MaskedConv2d(1, 1, 4, "A")


@pytest.mark.parametrize("mask_type", ["A", "B"])
def test_a_masked_convolution_sees_the_positions_before_it_within_its_kernel(mask_type):
    torch.manual_seed(0)
    conv = MaskedConv2d(2, 3, 3, mask_type).double()
    dep = _dependence(lambda v: conv(v), (2, 4, 4))
    expected = torch.zeros(16, 16, dtype=torch.bool)
    for i in range(16):
        r, c = divmod(i, 4)
        for j in range(16):
            rr, cc = divmod(j, 4)
            near = abs(rr - r) <= 1 and abs(cc - c) <= 1
            expected[i, j] = near and (j < i or (mask_type == "B" and j == i))
    assert torch.equal(dep, expected)


@pytest.mark.parametrize("channels", [1, 3])
def test_the_gated_pixelcnn_is_causal_with_no_blind_spot(channels):
    """Output position i depends on every input position before it and on none after it (4
    layers of kernel 3 reach 5 rows up and 4 columns either side: the whole 5 x 5 image)."""
    torch.manual_seed(0)
    net = PixelCNN(channels, channels=8, layers=4, kernel_size=3).double()
    dep = _dependence(net, (channels, 5, 5))
    assert torch.equal(dep, _strictly_before(25))


def test_with_one_layer_the_receptive_field_is_the_first_layers():
    torch.manual_seed(0)
    net = PixelCNN(1, channels=8, layers=1, kernel_size=3).double()
    dep = _dependence(net, (1, 5, 5))
    i = 2 * 5 + 2  # the centre (2, 2) sees the 2 rows above at columns 1..3, and (2, 1)
    assert sorted(torch.nonzero(dep[i]).flatten().tolist()) == [1, 2, 3, 6, 7, 8, 11]


def test_a_plain_masked_stack_has_the_blind_spot_that_the_gated_one_removes():
    torch.manual_seed(0)
    plain = nn.Sequential(
        MaskedConv2d(1, 8, 3, "A"), nn.Tanh(), *[m for _ in range(3) for m in
        (MaskedConv2d(8, 8, 3, "B"), nn.Tanh())], MaskedConv2d(8, 1, 1, "B"),
    ).double()  # fmt: skip
    dep = _dependence(lambda v: plain(v), (1, 5, 5))
    assert not (dep & ~_strictly_before(25)).any()  # causal too
    i, blind = 3 * 5 + 1, 2 * 5 + 3  # (2, 3) is up and two to the right of (3, 1)
    assert not dep[i, blind]
    gated = PixelCNN(1, channels=8, layers=4).double()
    assert _dependence(gated, (1, 5, 5))[i, blind]


def test_integer_categories_in_and_logits_out_are_causal():
    """A code grid: changing the category at position j changes the logits only after j."""
    torch.manual_seed(0)
    k = 6
    net = PixelCNN(1, channels=8, layers=4, categories=k)
    x = torch.randint(0, k, (2, 1, 4, 5))
    out = net(x)
    assert out.shape == (2, k, 1, 4, 5)  # the layout of F.cross_entropy(out, x)
    assert torch.isfinite(torch.nn.functional.cross_entropy(out, x))
    for j in range(20):
        r, c = divmod(j, 5)
        y = x.clone()
        y[:, 0, r, c] = (y[:, 0, r, c] + 1) % k
        changed = (net(y) - out).abs().amax(dim=(0, 1, 2)).flatten() > 0
        assert not changed[: j + 1].any()
        assert changed[j + 1 :].any() or j == 19
    with pytest.raises(ValueError, match=r"categories 0 \.\. 5"):
        net(torch.full((1, 1, 4, 5), k))
    with pytest.raises(ValueError, match="integer"):
        net(x.float())


@pytest.mark.parametrize("every", [True, False])
def test_conditioning_on_a_vector_and_a_map(every):
    """The condition changes the output; the map is still causal in the image; with
    ``condition_every_layer`` the condition has its own weights in every layer."""
    torch.manual_seed(0)
    net = PixelCNN(
        1, channels=8, layers=3, cond_features=4, cond_channels=2, condition_every_layer=every
    ).double()
    cond, cond_map = torch.randn(1, 4, dtype=torch.float64), torch.randn(1, 2, 5, 5).double()
    dep = _dependence(net, (1, 5, 5), cond=cond, cond_map=cond_map)
    assert torch.equal(dep, dep & _strictly_before(25)) and dep[24].any()
    x = torch.randn(1, 1, 5, 5, dtype=torch.float64)
    assert not torch.allclose(net(x, cond, cond_map), net(x, 2 * cond, cond_map))
    assert not torch.allclose(net(x, cond, cond_map), net(x, cond, -cond_map))
    conditioned = [layer.cond_vector is not None for layer in net.layers]
    assert conditioned == ([True] * 3 if every else [True, False, False])
    # leading dims: particles x datapoints, conditions broadcast
    out = net(torch.randn(3, 2, 1, 5, 5).double(), torch.randn(2, 4).double(), cond_map)
    assert out.shape == (3, 2, 1, 1, 5, 5)


def test_bad_input_names_the_parameter():
    net = PixelCNN(1, channels=4, layers=2, cond_features=3)
    with pytest.raises(ValueError, match="pass cond"):
        net(torch.zeros(1, 1, 4, 4))
    with pytest.raises(ValueError, match="cond must have 3"):
        net(torch.zeros(1, 1, 4, 4), torch.zeros(1, 2))
    with pytest.raises(ValueError, match=r"\(\.\.\., 1, H, W\)"):
        net(torch.zeros(1, 2, 4, 4), torch.zeros(1, 3))
    with pytest.raises(ValueError, match="layers"):
        PixelCNN(1, layers=0)
    with pytest.raises(ValueError, match="categories"):
        PixelCNN(1, categories=1)


def _bernoulli(channels: int = 1, layers: int = 2, cond_channels: int = 2) -> PixelCNN:
    torch.manual_seed(0)
    return PixelCNN(channels, channels=8, layers=layers, cond_channels=cond_channels).double()


def _all_images(c: int, h: int, w: int) -> torch.Tensor:
    """Every binary image of shape ``(c, h, w)``, ``(2 ** (c h w), c, h, w)``."""
    n = c * h * w
    bits = (torch.arange(2**n)[:, None] >> torch.arange(n)) & 1
    return bits.double().reshape(-1, c, h, w)


def test_log_prob_is_the_sum_of_the_conditionals_on_prefixes():
    """log p(x) from one pass equals the sum over positions of log p(x_i | x_<i), each computed
    from the network run on the prefix x_<i with noise after it."""
    net = _bernoulli(channels=2)
    cond_map = torch.randn(3, 2, 4, 3, dtype=torch.float64)
    x = torch.bernoulli(torch.full((3, 2, 4, 3), 0.5, dtype=torch.float64))
    by_hand = torch.zeros(3, dtype=torch.float64)
    for i in range(12):
        r, c = divmod(i, 3)
        prefix = torch.rand_like(x).round()  # anything at the positions from i on
        prefix.view(3, 2, 12)[..., :i] = x.view(3, 2, 12)[..., :i]
        logits = net(prefix, cond_map=cond_map)[:, 0, :, r, c]
        by_hand += torch.distributions.Bernoulli(logits=logits).log_prob(x[:, :, r, c]).sum(-1)
    torch.testing.assert_close(PixelCNNBernoulli(net, cond_map=cond_map).log_prob(x), by_hand)


@pytest.mark.parametrize("shape", [(1, 2, 2), (2, 1, 2)])
def test_the_distribution_normalises(shape):
    """Over all 16 binary images the probabilities sum to one, for each condition."""
    net = _bernoulli(channels=shape[0], layers=3)
    cond_map = 3 * torch.randn(4, 1, 2, *shape[1:], dtype=torch.float64)
    d = PixelCNNBernoulli(net, cond_map=cond_map)
    assert d.batch_shape == (4, 1) and d.event_shape == shape
    log_p = d.log_prob(_all_images(*shape)[:, None, None])  # (16, 4, 1)
    torch.testing.assert_close(log_p.logsumexp(0), torch.zeros(4, 1, dtype=torch.float64))


def test_draws_follow_the_distribution_and_the_conditional_means_estimate_the_mean():
    net = _bernoulli(layers=3).float()
    cond_map = torch.randn(2, 2, 2)  # one condition
    d = PixelCNNBernoulli(net, cond_map=cond_map)
    images = _all_images(1, 2, 2).float()
    p = d.log_prob(images).double().exp()
    torch.manual_seed(1)
    n = 5000
    draws = d.sample((n,))
    assert draws.shape == (n, 1, 2, 2) and set(draws.unique().tolist()) <= {0.0, 1.0}
    index = (draws.reshape(n, 4).long() << torch.arange(4)).sum(-1)
    freq = torch.bincount(index, minlength=16).double() / n
    sd = (p * (1 - p) / n).sqrt()
    assert ((freq - p).abs() <= 4.5 * sd + 1e-12).all(), (freq, p)
    exact_mean = (p[:, None, None, None] * images).sum(0).float()
    means = d.conditional_means((n // 4,))
    sd_mean = means.std(0) / (n // 4) ** 0.5
    assert ((means.mean(0) - exact_mean).abs() < 4.5 * sd_mean + 1e-5).all()
    # the first pixel's probability does not depend on the draw
    torch.testing.assert_close(means[:, 0, 0, 0], means[:1, 0, 0, 0].expand(n // 4))


def test_the_distribution_batches_broadcasts_and_differentiates():
    net = _bernoulli()
    cond_map = torch.randn(5, 2, 3, 3, dtype=torch.float64, requires_grad=True)
    d = PixelCNNBernoulli(net, cond_map=cond_map)
    x = torch.bernoulli(torch.full((5, 1, 3, 3), 0.5, dtype=torch.float64))
    lp = d.log_prob(x)
    assert lp.shape == (5,)
    particles = d.expand((4, 5))
    assert particles.batch_shape == (4, 5) and particles.sample().shape == (4, 5, 1, 3, 3)
    torch.testing.assert_close(particles.log_prob(x), lp.expand(4, 5))
    lp.sum().backward()
    assert cond_map.grad is not None and cond_map.grad.abs().sum() > 0
    assert all(p.grad is not None for p in net.parameters())
    with pytest.raises(ValueError, match="outputs=1"):
        PixelCNNBernoulli(PixelCNN(1, categories=3), cond_map=cond_map)
    with pytest.raises(ValueError, match="cond_map"):
        PixelCNNBernoulli(net)
    with pytest.raises(ValueError, match="support"):
        PixelCNNBernoulli(net, cond_map=cond_map, validate_args=True).log_prob(x + 0.5)


@pytest.mark.parametrize("row", [0, 2, 4])
def test_a_row_from_its_context_equals_the_full_pass(row):
    """Drawing computes the rows above once per row and then only the row itself: the same
    numbers as a pass over the whole image."""
    torch.manual_seed(0)
    net = PixelCNN(2, channels=8, layers=3, cond_features=3, cond_channels=2).double()
    x = torch.randn(4, 2, 5, 6, dtype=torch.float64)
    cond, cond_map = torch.randn(4, 3).double(), torch.randn(4, 2, 5, 6).double()
    context = net.row_context(x, row, cond, cond_map)
    out = net.row_forward(x[..., row : row + 1, :], context)
    torch.testing.assert_close(out, net(x, cond, cond_map)[..., row : row + 1, :])
