"""VQ-VAE-2 and the learned code prior: the prior normalises and is causal, it learns the code
statistics the uniform prior misses, the model's loss is the paper's with each prior, the
straight-through estimator reaches both encoders, and the fitted prior survives a checkpoint."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

import pyro_vaes as pv
from pyro_vaes.models.code_prior import CodePrior
from pyro_vaes.models.vqvae import UniformCodebook
from pyro_vaes.objectives import ELBO


@pytest.fixture(autouse=True)
def _one_thread():
    """The PixelCNNs' convolutions over a few code positions are far too small to share out:
    on two threads with the other core busy they run ten times slower than on one."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _vq2(digits, **kw):
    torch.manual_seed(0)
    options = {"latent_dim": 3, "codes": 8, "channels": 8, "prior_channels": 8, "prior_layers": 2}
    options["ema"] = False
    return pv.variants.build("vqvae2", digits.shape, **{**options, **kw})


def _all_grids(k: int, positions: int) -> torch.Tensor:
    return torch.tensor(list(itertools.product(range(k), repeat=positions)))


def test_code_prior_log_prob_normalises_over_every_grid():
    """2x2 grids of K=3 codes: the 81 probabilities sum to one, unconditionally and given each
    of two top grids."""
    torch.manual_seed(0)
    grids = _all_grids(3, 4)
    prior = CodePrior(3, (2, 2), channels=8, layers=2)
    with torch.no_grad():
        total = torch.logsumexp(prior.log_prob(grids), 0)
    assert float(total) == pytest.approx(0.0, abs=1e-5)
    conditioned = CodePrior(3, (2, 2), condition=(5, (1, 2)), channels=8, layers=2)
    for top in ([0, 4], [3, 1]):
        cond = torch.tensor(top).expand(len(grids), 2)
        with torch.no_grad():
            total = torch.logsumexp(conditioned.log_prob(grids, cond), 0)
        assert float(total) == pytest.approx(0.0, abs=1e-5)


def test_bottom_prior_is_causal_given_the_top():
    """The logits at a position change with the codes before it and with the top codes, never
    with the codes at or after it."""
    torch.manual_seed(0)
    prior = CodePrior(4, (3, 3), condition=(4, (2, 2)), channels=8, layers=3)
    k = torch.randint(4, (1, 9))
    top = torch.randint(4, (1, 4))
    base = prior.logits(k, top)
    for i in range(9):
        later = k.clone()
        later[:, i:] = (later[:, i:] + 1) % 4
        torch.testing.assert_close(prior.logits(later, top)[:, i], base[:, i])
        if i:
            earlier = k.clone()
            earlier[:, i - 1] = (earlier[:, i - 1] + 1) % 4
            assert not torch.allclose(prior.logits(earlier, top)[:, i], base[:, i])
    other_top = (top + 1) % 4
    assert not torch.allclose(prior.logits(k, other_top)[:, 0], base[:, 0])


def _synthetic_codes(n: int, gen: torch.Generator) -> torch.Tensor:
    """2x3 grids of K=6 codes: the first from a skewed distribution over 0..2, each next one a
    repeat of the one before with probability 0.8, else a draw over all six."""
    first = torch.multinomial(torch.tensor([0.6, 0.3, 0.1]), n, True, generator=gen)
    k = torch.empty(n, 6, dtype=torch.long)
    k[:, 0] = first
    for i in range(1, 6):
        fresh = torch.randint(6, (n,), generator=gen)
        keep = torch.rand(n, generator=gen) < 0.8
        k[:, i] = torch.where(keep, k[:, i - 1], fresh)
    return k


def _tv(a: torch.Tensor, b: torch.Tensor, k: int) -> float:
    pa = torch.bincount(a.reshape(-1), minlength=k).double() / a.numel()
    pb = torch.bincount(b.reshape(-1), minlength=k).double() / b.numel()
    return float((pa - pb).abs().sum() / 2)


def test_learned_prior_draws_codes_with_the_training_statistics_unlike_the_uniform():
    gen = torch.Generator().manual_seed(0)
    train = _synthetic_codes(1500, gen)
    torch.manual_seed(0)
    prior = CodePrior(6, (2, 3), channels=16, layers=2, epochs=5, batch_size=50, lr=1e-2)
    history = prior.fit(train, progress=False)
    assert history[-1] < history[0]
    drawn = prior.sample(3000)
    uniform = torch.randint(6, drawn.shape)
    assert _tv(drawn, train, 6) < 0.05  # unigram frequencies
    assert _tv(uniform, train, 6) > 0.3
    same = (train[:, 1:] == train[:, :-1]).double().mean()  # the neighbour statistics
    assert float((drawn[:, 1:] == drawn[:, :-1]).double().mean()) == pytest.approx(same, abs=0.04)
    # held-out codes: the learned prior's negative log-likelihood comes near the entropy of the
    # code distribution, far below the uniform prior's 6 log 6 = 10.75 nats
    first = torch.tensor([0.6, 0.3, 0.1])
    step = torch.tensor([0.8 + 0.2 / 6] + [0.2 / 6] * 5)
    entropy = float(-(first * first.log()).sum() - 5 * (step * step.log()).sum())  # 4.49
    nll = -float(prior.log_prob(_synthetic_codes(1000, gen)).mean())
    assert entropy - 0.1 < nll < entropy + 0.35


def test_grids_levels_and_sampling(digits):
    vq = _vq2(digits)
    assert (vq.top_grid, vq.bottom_grid) == ((1, 1), (2, 2))
    mnist = pv.variants.build("vqvae2", (1, 28, 28), code_prior="uniform")
    assert (mnist.top_grid, mnist.bottom_grid) == ((4, 4), (7, 7))
    assert vq.latent_sites == ("z_top", "z_bottom")
    x = digits.x_test[:5]
    z_top, z_bottom = vq.encode_vectors(x)
    assert z_top.shape == (5, 1, 3) and z_bottom.shape == (5, 4, 3)
    assert vq.encode(x).shape == (5, (1 + 4) * 3)
    torch.testing.assert_close(vq.decode(vq.encode(x)), vq.reconstruct(x))
    assert vq.sample(4).shape == (4, *digits.shape)
    # the bottom is quantised given the top: moving the top codebook moves the bottom vectors
    with torch.no_grad():
        vq.top.codebook.add_(1.0)
    assert not torch.allclose(vq.encode_vectors(x)[1], z_bottom)


@pytest.mark.parametrize("ema", [False, True])
def test_loss_is_reconstruction_plus_both_levels_vq_terms_and_the_code_priors(digits, ema):
    """With EMA updates the codebook term drops out (the codebooks are not trained by
    gradient); the commitment terms stay."""
    vq = _vq2(digits, ema=ema)
    weight = 0.25 if ema else 1.25
    x = digits.x_test[:10]

    def expected(log_prior: torch.Tensor) -> float:
        with torch.no_grad():
            z_top, z_bottom = vq.encode_vectors(x)
            k_top, k_bottom = vq.top.nearest(z_top), vq.bottom.nearest(z_bottom)
            e_top, e_bottom = vq.top.codebook[k_top], vq.bottom.codebook[k_bottom]
            recon = vq.likelihood(vq.decoder_params(e_top, e_bottom), 3).log_prob(x).sum()
            sq = (z_top - e_top).pow(2).sum() + (z_bottom - e_bottom).pow(2).sum()
        return float(-recon + weight * sq - log_prior)

    want = expected(-10 * (1 + 4) * math.log(8))  # before the loss moves the EMA codebooks
    assert ELBO().loss(vq.model, vq.guide, x) == pytest.approx(want, rel=1e-5)
    vq.fit_prior(digits.x_train[:300], epochs=2, progress=False)
    assert vq.learned_prior
    k_top, k_bottom = vq.codes(x)
    with torch.no_grad():
        learned = vq.top_prior.log_prob(k_top) + vq.bottom_prior.log_prob(k_bottom, k_top)
    want = expected(learned.sum())
    assert ELBO().loss(vq.model, vq.guide, x) == pytest.approx(want, rel=1e-5)
    # the uniform prior stays available for comparison
    prior = vq.prior_top(uniform=True)
    assert isinstance(prior, UniformCodebook)


def test_straight_through_gradients_reach_both_encoders(digits):
    """With beta = 0 the encoders get no gradient from the VQ terms: what reaches them comes
    through the straight-through estimator (top: through the decoder and the bottom's
    conditioning)."""
    vq = _vq2(digits, beta=0.0, restart_after=0)
    ELBO().differentiable_loss(vq.model, vq.guide, digits.x_test[:10]).backward()
    for net in (vq.encoder_bottom, vq.encoder_top, vq.pre_bottom, vq.decoder_top):
        assert sum(float(p.grad.abs().sum()) for p in net.parameters()) > 0
    # the codebooks get the codebook loss only: the reconstruction cannot reach them
    assert vq.top.codebook.grad is not None and vq.bottom.codebook.grad is not None
    assert all(p.grad is None for p in vq.top_prior.parameters())


def test_straight_through_gradient_is_the_decoders_gradient_at_the_codes(digits):
    vq = _vq2(digits)
    x = digits.x_test[:6]
    z_top, z_bottom = (z.detach().requires_grad_(True) for z in vq.encode_vectors(x))
    q_top, q_bottom = vq.top(z_top), vq.bottom(z_bottom)
    vq.likelihood(vq.decoder_params(q_top.codes, q_bottom.codes), 3).log_prob(x).sum().backward()
    e_top = vq.top.codebook[q_top.indices].detach().requires_grad_(True)
    e_bottom = vq.bottom.codebook[q_bottom.indices].detach().requires_grad_(True)
    vq.likelihood(vq.decoder_params(e_top, e_bottom), 3).log_prob(x).sum().backward()
    torch.testing.assert_close(z_top.grad, e_top.grad)
    torch.testing.assert_close(z_bottom.grad, e_bottom.grad)


@pytest.mark.parametrize("name", ["vqvae", "vqvae2"])
def test_variant_fit_fits_the_prior_and_the_state_carries_it(digits, name):
    torch.manual_seed(0)
    options = {"code_prior": "pixelcnn", "prior_channels": 8, "prior_layers": 2, "prior_epochs": 2}
    if name == "vqvae":
        options.update(grid=True, channels=8, embedding_dim=3, codes=8)
    else:
        options.update(channels=8, latent_dim=3, codes=8)
    model = pv.variants.build(name, digits.shape, **options)
    assert not model.learned_prior
    pv.variants.registry[name].fit(model, digits.x_train[:300], epochs=1, progress=False)
    assert model.learned_prior
    model.eval()
    x = digits.x_test[:8]
    fresh = pv.variants.build(name, digits.shape, **options)
    fresh.load_state_dict(model.state_dict())
    fresh.eval()
    assert fresh.learned_prior
    scores = [pv.evaluate.log_likelihood(m.model, m.guide, x, 2) for m in (model, fresh)]
    torch.testing.assert_close(scores[0], scores[1])
    torch.manual_seed(1)
    a = model.sample(3)
    torch.manual_seed(1)
    torch.testing.assert_close(fresh.sample(3), a)


def test_bad_options_are_refused(digits):
    with pytest.raises(ValueError, match="code_prior"):
        pv.variants.build("vqvae2", digits.shape, code_prior="gmm")
    with pytest.raises(ValueError, match="net"):
        pv.variants.build("vqvae2", digits.shape, net="mlp")
    with pytest.raises(ValueError, match="image"):
        pv.variants.build("vqvae2", (64,))
    prior = CodePrior(3, (2, 2), channels=8, layers=2)
    with pytest.raises(ValueError, match="codes must be"):
        prior.log_prob(torch.zeros(2, 3, dtype=torch.long))
    with pytest.raises(ValueError, match="unconditional"):
        prior.log_prob(torch.zeros(2, 4, dtype=torch.long), torch.zeros(2, 1, dtype=torch.long))


@pytest.mark.slow
def test_a_cli_run_keeps_the_fitted_prior(tmp_path):
    """``train`` writes the learned priors, fitted after the last epoch's checkpoint, into the
    run's checkpoint: the reloaded run scores and samples under them."""
    from pyro_vaes.app import cli, runs

    run = tmp_path / "run"
    argv = ["train", "--variant", "vqvae2", "--net", "conv", "--latent-dim", "4", "--epochs", "1"]
    assert cli.main([*argv, "--eval-samples", "4", "--quiet", "--out", str(run)]) == 0
    _, model = runs.load_run(run)
    assert model.learned_prior
    assert cli.main(["sample", str(run), "-n", "4", "--out", str(tmp_path / "s.png")]) == 0


def test_the_run_checkpoint_takes_the_prior_fitted_after_the_last_epoch(digits, tmp_path):
    from pyro_vaes.app import cli
    from pyro_vaes.train import checkpoint

    options = {"channels": 8, "latent_dim": 3, "codes": 8, "prior_channels": 8, "prior_layers": 2}
    options["ema"] = False
    model = _vq2(digits, prior_epochs=1)
    pv.variants.registry["vqvae2"].fit(
        model, digits.x_train[:200], epochs=1, checkpoint_dir=tmp_path, progress=False
    )
    assert model.learned_prior
    stale = checkpoint.restore(
        pv.variants.build("vqvae2", digits.shape, **options), tmp_path / "checkpoint.pt"
    )
    assert not stale.learned_prior  # written by the fit, before the prior was
    cli._checkpoint_post_training(model, tmp_path)
    fresh = pv.variants.build("vqvae2", digits.shape, **options)
    checkpoint.restore(fresh, tmp_path / "checkpoint.pt")
    assert fresh.learned_prior
    k_top, k_bottom = model.codes(digits.x_test[:5])
    torch.testing.assert_close(
        fresh.bottom_prior.log_prob(k_bottom, k_top), model.bottom_prior.log_prob(k_bottom, k_top)
    )
