"""The Ladder VAE and NVAE: one KL term per group equal to its closed form, the importance-sampled
bound of a two-layer linear-Gaussian ladder below the exact log p(x) and closing on it as k
grows, and each of NVAE's stabilisers checked by value."""

from __future__ import annotations

import math

import pyro
import pyro.distributions as dist
import pytest
import torch
from torch import nn
from torch.distributions import kl_divergence

import pyro_vaes as pv
from pyro_vaes.likelihoods import Gaussian
from pyro_vaes.models.hierarchical import (
    LadderVAE,
    precision_weighted,
    residual_normal,
)
from pyro_vaes.nets.residual import GaussianHead
from pyro_vaes.objectives import ELBO
from pyro_vaes.objectives.elbo import traces
from pyro_vaes.objectives.kl_balance import KLBalancedELBO, kl_balance_coefficients
from pyro_vaes.objectives.spectral import SpectralRegularizedELBO, power_iteration
from pyro_vaes.objectives.terms import elbo_terms
from pyro_vaes.train.callbacks import Callback, FitState

NAMES = ["lvae", "nvae"]


@pytest.fixture(autouse=True)
def _one_thread():
    """Small networks: a second intra-op thread only waits for a busy core."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _build(name: str, **options):
    torch.manual_seed(0)
    return pv.variants.build(name, (1, 8, 8), latent_dim=3, hidden=(32,), **options)


def _gaussian_kl(q: torch.distributions.Normal, p: torch.distributions.Normal) -> torch.Tensor:
    """KL(q || p) of diagonal Gaussians by hand, summed over the last dim."""
    ratio = (q.scale / p.scale).pow(2)
    return 0.5 * (ratio + (q.loc - p.loc).pow(2) / p.scale.pow(2) - 1 - ratio.log()).sum(-1)


# ------------------------------------------------------------------------------ the groups


@pytest.mark.parametrize("name", NAMES)
def test_every_group_has_its_own_kl_term_equal_to_the_closed_form(digits, name):
    model = _build(name)
    model.eval()
    x = digits.x_train[:8]
    pyro.set_rng_seed(1)
    model_tr, guide_tr = traces(model.model, model.guide, (x,), {})
    assert model.latent_sites == ("z3", "z2", "z1")
    drawn = [n for n, s in guide_tr.nodes.items() if s["type"] == "sample"]
    assert drawn == ["z3", "z2", "z1"]  # top-down
    terms = elbo_terms(model_tr, guide_tr)
    assert set(terms) == {"z1", "z2", "z3", "x"}
    total_kl = torch.zeros(8)
    for site in model.latent_sites:
        q = guide_tr.nodes[site]["fn"].base_dist
        p = model_tr.nodes[site]["fn"].base_dist
        by_hand = _gaussian_kl(q, p)
        torch.testing.assert_close(terms[site].loss, by_hand)
        # a Monte Carlo of log q - log p at draws of this group, the groups above held fixed
        z = q.sample((20000,))
        log_ratio = (q.log_prob(z) - p.log_prob(z)).sum(-1)
        se = log_ratio.std(0) / math.sqrt(20000)
        assert ((log_ratio.mean(0) - by_hand).abs() < 4 * se + 1e-4).all()
        total_kl = total_kl + by_hand
    # the top prior is N(0, I); a lower group's prior moves with the draw above it
    top = model_tr.nodes["z3"]["fn"].base_dist
    assert bool((top.loc == 0).all()) and bool((top.scale == 1).all())
    recon = model_tr.nodes["x"]["fn"].log_prob(x)
    pyro.set_rng_seed(1)
    loss = ELBO().differentiable_loss(model.model, model.guide, x)
    torch.testing.assert_close(loss, (total_kl - recon).sum())


def test_ladder_posterior_is_the_precision_weighted_product_with_the_prior(digits):
    model = _build("lvae")
    model.eval()
    pyro.set_rng_seed(2)
    model_tr, guide_tr = traces(model.model, model.guide, (digits.x_train[:4],), {})
    features = model.bottom_up(model._flat(digits.x_train[:4]))
    q = guide_tr.nodes["z2"]["fn"].base_dist
    p = model_tr.nodes["z2"]["fn"].base_dist
    mu_hat, sigma_hat = model.inference[1](features[1])
    # N(mu_hat, sigma_hat) N(mu_p, sigma_p) is proportional to q: the log ratio is flat in z
    z = q.loc + torch.linspace(-3, 3, 7).reshape(7, 1, 1) * q.scale
    ratio = (dist.Normal(mu_hat, sigma_hat).log_prob(z) + p.log_prob(z) - q.log_prob(z)).detach()
    torch.testing.assert_close(ratio, ratio[:1].expand_as(ratio), atol=1e-4, rtol=0)
    # the top group: the bottom-up estimate alone
    top = guide_tr.nodes["z3"]["fn"].base_dist
    torch.testing.assert_close(top.loc, model.inference[2](features[2])[0])


def test_precision_weighting_by_hand():
    loc, scale = precision_weighted(
        (torch.tensor([1.0]), torch.tensor([1.0])), (torch.tensor([3.0]), torch.tensor([2.0]))
    )
    # precisions 1 and 1/4: mean (1 * 1 + 3 / 4) / 1.25, variance 1 / 1.25
    torch.testing.assert_close(loc, torch.tensor([1.4]))
    torch.testing.assert_close(scale, torch.tensor([0.8]).sqrt())


@pytest.mark.parametrize("name", NAMES)
def test_codes_decode_and_sample(digits, name):
    model = _build(name)
    model.eval()
    x = digits.x_test[:5]
    codes = model.encode(x)
    assert codes.shape == (5, 9)
    assert model.decode(codes).shape == (5, 1, 8, 8)
    torch.testing.assert_close(model.reconstruct(x), model.decode(codes))
    # the code of the top group is its posterior mean: the guide's loc at the top
    pyro.set_rng_seed(0)
    guide_tr = pyro.poutine.trace(model.guide).get_trace(x)
    torch.testing.assert_close(codes[:, :3], guide_tr.nodes["z3"]["fn"].base_dist.loc)
    samples = model.sample(4)
    assert samples.shape == (4, 1, 8, 8) and ((samples >= 0) & (samples <= 1)).all()
    with pytest.raises(ValueError, match="9 dims"):
        model.decode(torch.zeros(2, 4))


def test_bad_options_are_refused():
    with pytest.raises(ValueError, match="latent_dim"):
        pv.variants.build("lvae", (1, 8, 8), latent_dim=(2, 3), groups=3)
    with pytest.raises(ValueError, match="net must be 'mlp'"):
        pv.variants.build("nvae", (1, 8, 8), net="conv")
    with pytest.raises(ValueError, match="one width"):
        pv.variants.build("nvae", (1, 8, 8), hidden=(32, 16))
    with pytest.raises(ValueError, match="groups"):
        pv.variants.build("nvae", (1, 8, 8), groups=0)
    with pytest.raises(ValueError, match="datapoints of shape"):
        _build("nvae").guide(torch.zeros(2, 64))


# ------------------------------------------------------------------ the exact linear ladder


class _LinearGaussian(nn.Module):
    """z -> (A z + a, s): a linear-Gaussian conditional with a fixed scale."""

    def __init__(self, a_matrix: torch.Tensor, a: torch.Tensor, s: float) -> None:
        super().__init__()
        self.register_buffer("a_matrix", a_matrix)
        self.register_buffer("a", a)
        self.s = s

    def forward(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        loc = z @ self.a_matrix.T + self.a
        return loc, torch.full_like(loc, self.s)


def test_importance_sampled_bound_of_a_linear_ladder_closes_on_the_exact_log_px():
    """z2 ~ N(0, I_2), z1 | z2 ~ N(A z2 + a, s^2 I_3), x | z1 ~ N(W z1 + b, sigma^2 I_5):
    p(x) = N(W a + b, W (A A^T + s^2 I) W^T + sigma^2 I)."""
    gen = torch.Generator().manual_seed(0)
    a_matrix, a = torch.randn(3, 2, generator=gen), torch.randn(3, generator=gen)
    w, b = torch.randn(5, 3, generator=gen), torch.randn(5, generator=gen)
    s, sigma = 0.7, 0.5
    decoder = nn.Linear(3, 5)
    with torch.no_grad():
        decoder.weight.copy_(w)
        decoder.bias.copy_(b)
    decoder.requires_grad_(False)
    torch.manual_seed(0)
    model = LadderVAE(
        (5,),
        bottom_up=[nn.Linear(5, 16), nn.Linear(16, 16)],
        inference=[GaussianHead(16, 3), GaussianHead(16, 2)],
        priors=[_LinearGaussian(a_matrix, a, s)],
        decoder=decoder,
        latent_dims=(3, 2),
        likelihood=Gaussian(sigma),
    )
    z2 = torch.randn(600, 2, generator=gen)
    z1 = z2 @ a_matrix.T + a + s * torch.randn(600, 3, generator=gen)
    x = z1 @ w.T + b + sigma * torch.randn(600, 5, generator=gen)
    train, test = x[:500], x[500:]
    # fit the guide alone (the model's parts are frozen); its diagonal bottom-up Gaussians
    # cannot match the posterior's correlations, so the bound has a gap to close
    pv.fit(model.model, model.guide, train, epochs=60, batch_size=100, progress=False,
           optim=lambda params: torch.optim.Adam(params, lr=2e-2))  # fmt: skip
    cov = w @ (a_matrix @ a_matrix.T + s**2 * torch.eye(3)) @ w.T + sigma**2 * torch.eye(5)
    exact = dist.MultivariateNormal(w @ a + b, cov).log_prob(test).mean()
    bounds = {}
    for k in (1, 10, 1000):
        pyro.set_rng_seed(k)
        ll = pv.evaluate.log_likelihood(model.model, model.guide, test, k, progress=False)
        bounds[k] = float(ll.mean())
    assert bounds[1] < bounds[10] < bounds[1000] <= float(exact) + 0.01
    # measured: gaps of 1.21, 0.75 and 0.51 nats
    assert float(exact) - bounds[1000] < 0.6 * (float(exact) - bounds[1])


# ------------------------------------------------------------------------ the stabilisers


def test_residual_normal_is_the_composed_gaussian_with_nvae_kl():
    gen = torch.Generator().manual_seed(0)
    mu_p, d_mu = torch.randn(4, 6, generator=gen), torch.randn(4, 6, generator=gen)
    sigma_p = torch.rand(4, 6, generator=gen) + 0.2
    d_sigma = torch.rand(4, 6, generator=gen) + 0.2
    loc, scale = residual_normal((mu_p, sigma_p), (d_mu, d_sigma))
    torch.testing.assert_close(loc, mu_p + d_mu)
    torch.testing.assert_close(scale, sigma_p * d_sigma)
    # NVAE's closed form: the KL depends on the prior only through sigma_p
    nvae_kl = 0.5 * (d_mu.pow(2) / sigma_p.pow(2) + d_sigma.pow(2) - d_sigma.pow(2).log() - 1)
    q, p = torch.distributions.Normal(loc, scale), torch.distributions.Normal(mu_p, sigma_p)
    torch.testing.assert_close(kl_divergence(q, p), nvae_kl)


def test_nvae_residual_option_ties_the_posterior_to_the_prior(digits):
    residual = _build("nvae")
    plain = _build("nvae", residual=False)
    plain.load_state_dict(residual.state_dict())
    x = digits.x_train[:6]
    found = []
    for m in (residual, plain):
        m.eval()
        pyro.set_rng_seed(4)
        model_tr, guide_tr = traces(m.model, m.guide, (x,), {})
        found.append({s: (guide_tr.nodes[s]["fn"].base_dist, model_tr.nodes[s]["fn"].base_dist)
                      for s in ("z3", "z2")})  # fmt: skip
    (q_res, p_res), (q_plain, p_plain) = found[0]["z2"], found[1]["z2"]
    # the same top draw, so the same prior for z2; the plain posterior is the residual's delta
    torch.testing.assert_close(found[0]["z3"][0].loc, found[1]["z3"][0].loc)
    torch.testing.assert_close(p_res.loc, p_plain.loc)
    torch.testing.assert_close(q_res.loc, p_res.loc + q_plain.loc)
    torch.testing.assert_close(q_res.scale, p_res.scale * q_plain.scale)


def test_power_iteration_finds_the_largest_singular_value_and_its_gradient():
    gen = torch.Generator().manual_seed(0)
    w = torch.randn(30, 20, generator=gen, dtype=torch.float64).requires_grad_(True)
    sigma, u, v = power_iteration(w, steps=300)
    u_svd, s_svd, vh_svd = torch.linalg.svd(w.detach())
    torch.testing.assert_close(sigma.detach(), torch.linalg.svdvals(w.detach())[0])
    sigma.backward()  # d sigma_max / dW = u1 v1^T
    torch.testing.assert_close(w.grad, torch.outer(u_svd[:, 0], vh_svd[0]) * torch.sign(u @ u_svd[:, 0]) * torch.sign(v @ vh_svd[0]))  # fmt: skip
    # one more step from the kept vector is already there
    again, _, _ = power_iteration(w, u, steps=1)
    torch.testing.assert_close(again.detach(), s_svd[0])


def test_spectral_regularisation_adds_lambda_times_the_sum_of_top_singular_values(digits):
    model = _build("nvae")
    x = digits.x_train[:10]
    objective = SpectralRegularizedELBO(ELBO(), lambda_=0.5, steps=50)
    exact = sum(
        torch.linalg.svdvals(layer.weight.detach())[0]
        for layer in model.modules()
        if isinstance(layer, nn.Linear)
    )
    torch.testing.assert_close(objective.penalty([model]).detach(), exact, rtol=1e-3, atol=0)
    pyro.set_rng_seed(5)
    base = ELBO().differentiable_loss(model.model, model.guide, x)
    pyro.set_rng_seed(5)
    loss = objective.differentiable_loss(model.model, model.guide, x)
    penalty = objective.penalty([model])
    torch.testing.assert_close(loss, base + 10 * 0.5 * penalty, rtol=1e-4, atol=1e-3)
    with pytest.raises(ValueError, match="lambda_"):
        SpectralRegularizedELBO(lambda_=-1.0)
    with pytest.raises(ValueError, match="found none"):
        objective.differentiable_loss(lambda x: model.model(x), lambda x: model.guide(x), x)
    with pytest.raises(TypeError, match="differentiable_loss"):
        SpectralRegularizedELBO(object())


def test_kl_balance_coefficients_by_hand():
    gamma = kl_balance_coefficients(torch.tensor([1.0, 3.0, 0.0]))
    k = torch.tensor([1.01, 3.01, 0.01])
    torch.testing.assert_close(gamma, 3 * k / k.sum())
    assert float(gamma.sum()) == pytest.approx(3.0)  # mean one
    assert float(gamma[1] / gamma[0]) == pytest.approx(3.01 / 1.01)  # proportional to the KL
    # size factors divide: with alpha = k the groups are weighed equally
    torch.testing.assert_close(kl_balance_coefficients(torch.tensor([1.0, 3.0, 0.0]), k),
                               torch.ones(3))  # fmt: skip
    with pytest.raises(ValueError, match="alpha"):
        kl_balance_coefficients(torch.tensor([1.0, 2.0]), torch.tensor([1.0, -1.0]))


def test_kl_balanced_elbo_weighs_the_groups_during_warm_up_only(digits):
    model = _build("nvae")
    model.eval()
    x = digits.x_train[:12]
    pyro.set_rng_seed(6)
    model_tr, guide_tr = traces(model.model, model.guide, (x,), {})
    kls = {s: _gaussian_kl(guide_tr.nodes[s]["fn"].base_dist, model_tr.nodes[s]["fn"].base_dist)
           for s in model.latent_sites}  # fmt: skip
    recon = model_tr.nodes["x"]["fn"].log_prob(x).sum()
    objective = KLBalancedELBO(beta=0.25)
    gamma = kl_balance_coefficients(torch.stack([kls[s].mean() for s in model.latent_sites]))
    warm = sum(g * kls[s].sum() for g, s in zip(gamma, model.latent_sites, strict=True))
    pyro.set_rng_seed(6)
    loss = objective.differentiable_loss(model.model, model.guide, x)
    torch.testing.assert_close(loss, -recon + 0.25 * warm)
    # at beta = 1 (after warm-up) it is the ELBO
    objective.beta = 1.0
    pyro.set_rng_seed(6)
    full = objective.differentiable_loss(model.model, model.guide, x)
    pyro.set_rng_seed(6)
    torch.testing.assert_close(full, ELBO().differentiable_loss(model.model, model.guide, x))
    # the coefficients carry no gradient: the KL's gradient is gamma times the group's
    assert not gamma.requires_grad


@pytest.mark.parametrize(("name", "target"), [("lvae", "model"), ("nvae", "objective")])
def test_kl_warm_up_follows_the_variants_schedule(digits, name, target):
    variant = pv.variants.registry[name]
    model = _build(name)
    loss = variant.loss()
    holder = model if target == "model" else loss.objective
    seen: list[float] = []

    class Record(Callback):
        def on_step_start(self, state: FitState) -> None:
            seen.append(holder.beta)

    pv.fit(model.model, model.guide, digits.x_train[:400], loss=loss,
           callbacks=[*variant.callbacks(model, loss), Record()], epochs=5, batch_size=100,
           progress=False)  # fmt: skip
    # 5 epochs of 4 steps: warm-up over 10% (lvae, 2 steps) or 30% (nvae, 6 steps)
    steps = 2 if name == "lvae" else 6
    start = 0.0 if name == "lvae" else 1e-4
    assert seen == pytest.approx([start + (1 - start) * min(1.0, t / steps) for t in range(20)])
