"""One scale/mask rule for every objective: beta (``poutine.scale`` on the latent site) multiplies
what each objective charges to the latent site, a mask removes exactly the masked terms, Pyro's
Trace_ELBO is the reference, and the statistics of a whole batch refuse per-datapoint masks."""

from __future__ import annotations

import math

import pyro
import pyro.distributions as dist
import pyro.infer
import pytest
import torch
from pyro import poutine
from torch.distributions import kl_divergence
from torch.nn import functional as F

import pyro_vaes as pv
from pyro_vaes.objectives import (
    DIPELBO,
    ELBO,
    IWAE,
    MIWAE,
    MMDELBO,
    TCELBO,
    AdversarialAE,
    CapacityELBO,
    FactorVAELoss,
    JointCapacityELBO,
    SlicedWassersteinELBO,
    VAEGANLoss,
    dip_penalty,
    sliced_wasserstein,
)
from pyro_vaes.objectives.elbo import traces
from pyro_vaes.objectives.importance import log_weights, plate_layout
from pyro_vaes.objectives.terms import elbo_terms, log_likelihood, negative_elbo
from tests.helpers import seeded_loss

SHAPE = (1, 4, 4)
LATENT = 2
BETAS = [0.0, 0.5, 1.0, 3.0]
SEED = 11


def make_vae(beta: float = 1.0) -> pv.VAE:
    torch.manual_seed(0)
    return pv.VAE(
        pv.nets.MLPEncoder(SHAPE, (8,)),
        pv.nets.MLPDecoder(LATENT, SHAPE, (8,)),
        pv.priors.StandardNormal(LATENT),
        pv.guides.DiagonalNormal(8, LATENT),
        pv.likelihoods.Bernoulli(),
        beta=beta,
    )


@pytest.fixture
def x() -> torch.Tensor:
    gen = torch.Generator().manual_seed(0)
    return torch.randint(0, 2, (16, *SHAPE), generator=gen).float()


def by_hand(vae: pv.VAE, x: torch.Tensor, seed: int = SEED) -> dict[str, torch.Tensor]:
    """The guide's draw at ``seed`` and each datapoint's terms, written out: ``recon`` is
    log p(x|z), ``kl`` the closed-form KL, ``log_ratio`` log q(z) - log p(z)."""
    pyro.set_rng_seed(seed)
    with torch.no_grad():
        q = vae.posterior(vae.encoder(x))
        z = q.rsample()
        p = vae.prior()
        return {
            "q": q,
            "z": z,
            "recon": vae.likelihood(vae.decoder(z), len(SHAPE)).log_prob(x),
            "kl": kl_divergence(q, p),
            "log_ratio": q.log_prob(z) - p.log_prob(z),
        }


def loss_at(objective, vae: pv.VAE, x: torch.Tensor, model=None, guide=None) -> float:
    return seeded_loss(objective, model or vae.model, guide or vae.guide, x, seed=SEED)


# --- beta acts identically under every objective ----------------------------------------------


def _closed_form_objectives():
    return {
        "elbo": ELBO(),
        "capacity": CapacityELBO(gamma=1.0, capacity=0.0),
        # one capacity, on "z", the other site named is not in the model
        "joint_capacity": JointCapacityELBO(gamma=1.0, continuous="none", discrete="z"),
        "infovae": MMDELBO(alpha=0.0, lam=1.0),
    }


def _monte_carlo_objectives():
    return {
        "trace_elbo": pyro.infer.Trace_ELBO(),
        "iwae": IWAE(1),
        "miwae": MIWAE(1, 1),
        "tc_mss": TCELBO(1.0, 1.0, 1.0, estimator="mss", dataset_size=1000),
        "tc_mws": TCELBO(1.0, 1.0, 1.0, estimator="mws", dataset_size=1000),
    }


@pytest.mark.parametrize("beta", BETAS)
@pytest.mark.parametrize("name", sorted(_closed_form_objectives()))
def test_beta_multiplies_the_closed_form_kl(x, beta, name):
    vae = make_vae(beta)
    value = loss_at(_closed_form_objectives()[name], vae, x)
    t = by_hand(vae, x)
    expected = -t["recon"].sum() + beta * t["kl"].sum()
    assert value == pytest.approx(float(expected), rel=1e-5, abs=1e-4)


@pytest.mark.parametrize("beta", BETAS)
@pytest.mark.parametrize("name", sorted(_monte_carlo_objectives()))
def test_beta_multiplies_the_one_draw_kl(x, beta, name):
    """Trace_ELBO, IWAE(1), MIWAE(1, 1) and TCELBO(1, 1, 1) are all the beta-ELBO with the KL
    estimated from the draw."""
    vae = make_vae(beta)
    value = loss_at(_monte_carlo_objectives()[name], vae, x)
    t = by_hand(vae, x)
    expected = -t["recon"].sum() + beta * t["log_ratio"].sum()
    assert value == pytest.approx(float(expected), rel=1e-5, abs=1e-3)


@pytest.mark.parametrize("beta", BETAS)
def test_beta_multiplies_the_tc_decomposition(x, beta):
    """TCELBO(alpha, beta_tc, gamma) on a model with beta = b weighs the pieces b*alpha, ..."""
    vae = make_vae(beta)
    objective = TCELBO(2.0, 5.0, 0.5, dataset_size=1000)
    pyro.set_rng_seed(SEED)
    model_tr, guide_tr = traces(vae.model, vae.guide, (x,), {})
    pieces = objective.terms(model_tr, guide_tr)
    unit = make_vae(1.0)
    pyro.set_rng_seed(SEED)
    unit_pieces = {
        k: v.detach() for k, v in objective.terms(*traces(unit.model, unit.guide, (x,), {})).items()
    }
    for key in ("mi", "tc", "dwkl"):
        torch.testing.assert_close(pieces[key], beta * unit_pieces[key])
    torch.testing.assert_close(pieces["recon"], unit_pieces["recon"])
    value = loss_at(objective, vae, x)
    t = by_hand(vae, x)
    regulariser = (
        2.0 * unit_pieces["mi"] + 5.0 * unit_pieces["tc"] + 0.5 * unit_pieces["dwkl"]
    ).sum()
    assert value == pytest.approx(float(-t["recon"].sum() + beta * regulariser), rel=1e-5, abs=1e-3)


@pytest.mark.parametrize("beta", BETAS)
def test_beta_multiplies_the_dip_penalty_and_the_kl(x, beta):
    vae = make_vae(beta)
    value = loss_at(DIPELBO("ii", lambda_od=3.0), vae, x)
    t = by_hand(vae, x)
    base = t["q"].base_dist
    cov = torch.cov(base.loc.T) + torch.diag(base.scale.pow(2).mean(0))
    regulariser = t["kl"].sum() + 16 * dip_penalty(cov, 3.0, 3.0)
    assert value == pytest.approx(float(-t["recon"].sum() + beta * regulariser), rel=1e-5, abs=1e-4)


@pytest.mark.parametrize("beta", BETAS)
def test_beta_multiplies_the_critic_terms(x, beta):
    """AAE: reconstruction + b lam sum softplus(-D(z)); FactorVAE: -ELBO_b + b gamma sum D(z)."""
    vae = make_vae(beta)
    torch.manual_seed(5)
    aae = AdversarialAE(latent_dim=LATENT, lam=2.0, hidden=(8,))
    factor = FactorVAELoss(latent_dim=LATENT, gamma=4.0, hidden=(8,))
    t = by_hand(vae, x)
    with torch.no_grad():
        aae_term = 2.0 * F.softplus(-aae.adversary(t["z"])).sum()
        factor_term = t["kl"].sum() + 4.0 * factor.adversary(t["z"]).sum()
    recon = float(-t["recon"].sum())
    assert loss_at(aae, vae, x) == pytest.approx(recon + beta * float(aae_term), rel=1e-5, abs=1e-4)
    assert loss_at(factor, vae, x) == pytest.approx(
        recon + beta * float(factor_term), rel=1e-5, abs=1e-4
    )


@pytest.mark.parametrize("beta", BETAS)
def test_beta_multiplies_the_batch_distances(x, beta):
    """SWAE and WAE-MMD: reconstruction + b times the distance term, the distance written out
    from the same draws (codes, then as many prior draws, then SWAE's projections)."""
    vae = make_vae(beta)
    recon = float(-by_hand(vae, x)["recon"].sum())
    for objective, distance in (
        (SlicedWassersteinELBO(lam=10.0, projections=7), lambda z, p: sliced_wasserstein(z, p, 7)),
        (MMDELBO(alpha=1.0, lam=10.0), pv.objectives.mmd),
    ):
        value = loss_at(objective, vae, x)
        t = by_hand(vae, x)  # re-seeds: the same codes
        with torch.no_grad():
            prior_draws = vae.prior().expand([16]).sample()
            term = 10.0 * 16 * distance(t["z"], prior_draws)
        assert value == pytest.approx(recon + beta * float(term), rel=1e-5, abs=1e-4)


@pytest.mark.parametrize("beta", BETAS)
def test_beta_multiplies_the_kl_of_vaegan(x, beta):
    vae = make_vae(beta)
    loss = VAEGANLoss(data_size=16, lam=2.0, hidden=(8, 4))
    value = loss_at(loss, vae, x)
    t = by_hand(vae, x)
    with torch.no_grad():
        d = loss.adversary
        recon = torch.sigmoid(vae.decoder(t["z"])).reshape(16, -1)
        sample = torch.sigmoid(vae.decoder(vae.prior().expand([16]).sample())).reshape(16, -1)
        flat = x.reshape(16, -1)
        rest = (
            0.5 * (d.features(flat) - d.features(recon)).pow(2).sum()
            + 2.0 * (F.softplus(-d(recon)) + F.softplus(-d(sample))).sum()
        )
    assert value == pytest.approx(float(rest + beta * t["kl"].sum()), rel=1e-5, abs=1e-4)


# --- masks remove exactly the masked terms ----------------------------------------------------

MASK = torch.tensor([i % 3 != 0 for i in range(16)])  # datapoints 0, 3, 6, ... are masked


def observed_masked_model(vae: pv.VAE, mask: torch.Tensor):
    """The VAE's model with ``poutine.mask`` on its observed site only."""

    def model(x):
        with pyro.plate("data", x.shape[0]):
            z = pyro.sample("z", vae.prior())
            with poutine.mask(mask=mask):
                pyro.sample("x", vae.likelihood(vae.decoder(z), len(SHAPE)), obs=x)

    return model


def latent_masked(vae: pv.VAE, mask: torch.Tensor):
    """The VAE's model and guide with ``poutine.mask`` on the latent site in both."""

    def model(x):
        with pyro.plate("data", x.shape[0]):
            with poutine.mask(mask=mask):
                z = pyro.sample("z", vae.prior())
            pyro.sample("x", vae.likelihood(vae.decoder(z), len(SHAPE)), obs=x)

    def guide(x):
        with pyro.plate("data", x.shape[0]):
            q = vae.posterior(vae.encoder(x))
            with poutine.mask(mask=mask):
                pyro.sample("z", q)

    return model, guide


@pytest.mark.parametrize(
    "objective",
    [ELBO(), pyro.infer.Trace_ELBO(), IWAE(1), CapacityELBO(gamma=30.0, capacity=0.7)],
    ids=["elbo", "trace_elbo", "iwae1", "capacity"],
)
def test_an_observed_mask_removes_exactly_those_datapoints_terms(x, objective):
    vae = make_vae()
    masked = loss_at(objective, vae, x, model=observed_masked_model(vae, MASK))
    plain = loss_at(objective, vae, x, model=observed_masked_model(vae, torch.ones(16).bool()))
    recon = by_hand(vae, x)["recon"]
    assert masked == pytest.approx(plain + float(recon[~MASK].sum()), rel=1e-5)


def test_an_observed_mask_under_iwae_leaves_the_other_datapoints_bounds(x):
    """IWAE(4): the bounds of unmasked datapoints are unchanged; a masked datapoint's weights
    lose exactly log p(x | z_k)."""
    vae = make_vae()
    model = observed_masked_model(vae, MASK)
    nesting, data_dim = plate_layout(vae.model, vae.guide, (x,), {})
    objective = IWAE(4)
    objective.bound(model, vae.guide, x)
    objective.bound(vae.model, vae.guide, x)
    pyro.set_rng_seed(SEED)
    masked = objective.bound(model, vae.guide, x)
    pyro.set_rng_seed(SEED)
    plain = objective.bound(vae.model, vae.guide, x)
    torch.testing.assert_close(masked[MASK], plain[MASK])
    pyro.set_rng_seed(SEED)
    log_w, log_lik = log_weights(vae.model, vae.guide, (x,), {}, 4, nesting, data_dim)
    latent_only = torch.logsumexp(log_w - log_lik, 0) - math.log(4)
    torch.testing.assert_close(masked[~MASK], latent_only[~MASK].detach())


def test_a_latent_mask_under_capacity_drops_those_datapoints_with_their_capacity(x):
    vae = make_vae()
    model, guide = latent_masked(vae, MASK)
    value = loss_at(CapacityELBO(gamma=30.0, capacity=0.7), vae, x, model, guide)
    t = by_hand(vae, x)
    expected = -t["recon"].sum() + 30.0 * (t["kl"][MASK] - 0.7).sum().abs()
    assert value == pytest.approx(float(expected), rel=1e-5)
    # the ELBO drops the masked datapoints' KL, as Trace_ELBO drops their log-ratio
    assert loss_at(ELBO(), vae, x, model, guide) == pytest.approx(
        float(-t["recon"].sum() + t["kl"][MASK].sum()), rel=1e-5
    )
    assert loss_at(pyro.infer.Trace_ELBO(), vae, x, model, guide) == pytest.approx(
        float(-t["recon"].sum() + t["log_ratio"][MASK].sum()), rel=1e-5
    )


@pytest.mark.parametrize(
    "objective",
    [
        MMDELBO(),
        MMDELBO(alpha=1.0, lam=10.0),
        SlicedWassersteinELBO(),
        TCELBO(dataset_size=1000),
        DIPELBO("i"),
    ],
    ids=["infovae", "wae", "swae", "tcvae", "dip"],
)
def test_batch_statistics_refuse_a_per_datapoint_latent_mask(x, objective):
    vae = make_vae()
    model, guide = latent_masked(vae, MASK)
    with pytest.raises(ValueError, match=r"statistic of the whole batch.*per-datapoint mask"):
        objective.loss(model, guide, x)
    objective.loss(*latent_masked(vae, torch.tensor(True)), x)  # one mask for the whole site


def test_a_latent_weighed_differently_in_model_and_guide_is_refused_where_it_matters(x):
    """The ELBO follows Trace_ELBO (each density with its own site's scale); the objectives that
    weigh a replacement term by the latent's weight need one weight."""
    vae = make_vae()

    def model(x):
        with poutine.scale(scale=2.0):
            vae.model(x)

    assert loss_at(ELBO(), vae, x, model=model) == pytest.approx(
        loss_at(pyro.infer.Trace_ELBO(), vae, x, model=model), rel=1e-5
    )
    with pytest.raises(ValueError, match="differently"):
        CapacityELBO().loss(model, vae.guide, x)


# --- the importance weights: scaled for training, the model's density for the evaluation -----


def test_evaluation_weights_ignore_beta_and_training_weights_use_it(x):
    nesting, data_dim = plate_layout(make_vae().model, make_vae().guide, (x,), {})
    weights = {}
    for beta in (1.0, 3.0):
        vae = make_vae(beta)
        for scaled in (False, True):
            pyro.set_rng_seed(SEED)
            args = (vae.model, vae.guide, (x,), {}, 3, nesting, data_dim)
            weights[beta, scaled] = log_weights(*args, scaled=scaled)
    torch.testing.assert_close(weights[3.0, False], weights[1.0, False])
    torch.testing.assert_close(weights[1.0, True], weights[1.0, False])
    log_w1, log_lik = weights[1.0, True]
    log_w3, log_lik3 = weights[3.0, True]
    torch.testing.assert_close(log_lik3, log_lik)
    torch.testing.assert_close(log_w3 - log_lik, 3.0 * (log_w1 - log_lik))


# --- objectives.ELBO against Pyro's ELBOs with two differently scaled latent sites ------------


def two_latents(closed_form: bool):
    """z1 (scale 0.5) and z2 | z1 (scale 2.0) in a data plate; x | z1, z2. The guide's z2 is a
    Student-t (no closed-form KL); its z1 a normal (closed form) or a Student-t."""
    w = torch.nn.Parameter(torch.tensor([0.3, -0.2]))

    def model(x):
        with pyro.plate("data", x.shape[0]):
            with poutine.scale(scale=0.5):
                z1 = pyro.sample("z1", dist.Normal(0.0, 1.0))
            with poutine.scale(scale=2.0):
                z2 = pyro.sample("z2", dist.Normal(z1, 1.0))
            pyro.sample("x", dist.Normal(z1 + z2, 0.5), obs=x)

    def guide(x):
        with pyro.plate("data", x.shape[0]):
            with poutine.scale(scale=0.5):
                if closed_form:
                    pyro.sample("z1", dist.Normal(w[0] * x, 0.8))
                else:
                    pyro.sample("z1", dist.StudentT(5.0, w[0] * x, 0.8))
            with poutine.scale(scale=2.0):
                pyro.sample("z2", dist.StudentT(4.0, w[1] * x, 0.6))

    return model, guide, w


def _value_and_grad(loss, model, guide, w, x):
    pyro.set_rng_seed(SEED)
    w.grad = None
    value = loss.differentiable_loss(model, guide, x)
    value.backward()
    return float(value.detach()), w.grad.clone()


def test_elbo_matches_trace_elbo_with_two_differently_scaled_latents():
    x = torch.linspace(-2.0, 2.0, 10)
    model, guide, w = two_latents(closed_form=False)
    ours, g_ours = _value_and_grad(ELBO(), model, guide, w, x)
    ref, g_ref = _value_and_grad(pyro.infer.Trace_ELBO(), model, guide, w, x)
    assert ours == pytest.approx(ref, rel=1e-5)
    torch.testing.assert_close(g_ours, g_ref)
    # with a closed-form KL for z1: the same as TraceMeanField_ELBO, and Trace_ELBO on average
    model, guide, w = two_latents(closed_form=True)
    ours, g_ours = _value_and_grad(ELBO(), model, guide, w, x)
    ref, g_ref = _value_and_grad(pyro.infer.TraceMeanField_ELBO(), model, guide, w, x)
    assert ours == pytest.approx(ref, rel=1e-5)
    torch.testing.assert_close(g_ours, g_ref)
    gaps = []  # the same draws: the gap is 0.5 (KL(z1) - log q(z1)/p(z1)), of mean zero
    for seed in range(300):
        values = []
        for loss in (ELBO(), pyro.infer.Trace_ELBO()):
            pyro.set_rng_seed(seed)
            values.append(loss.loss(model, guide, x))
        gaps.append(values[0] - values[1])
    gap = torch.tensor(gaps)
    assert float(gap.std()) > 0.1  # the draws did differ
    assert abs(float(gap.mean())) < 4 * float(gap.std()) / math.sqrt(len(gaps))


def test_the_terms_add_up_to_the_elbo(x):
    """negative_elbo is the sum of the terms; log_likelihood the observed ones."""
    vae = make_vae(0.5)
    pyro.set_rng_seed(SEED)
    model_tr, guide_tr = traces(vae.model, vae.guide, (x,), {})
    terms = elbo_terms(model_tr, guide_tr)
    assert {name: t.kind for name, t in terms.items()} == {"z": "latent", "x": "observed"}
    t = by_hand(vae, x)
    torch.testing.assert_close(terms["z"].loss.detach(), 0.5 * t["kl"])
    torch.testing.assert_close(terms["x"].loss.detach(), -t["recon"])
    torch.testing.assert_close(log_likelihood(model_tr).detach(), t["recon"].sum())
    torch.testing.assert_close(
        negative_elbo(model_tr, guide_tr, without=("z",)).detach(), -t["recon"].sum()
    )
