"""Free bits: the floor on each dimension's (or site's) batch-mean KL."""

from __future__ import annotations

import pyro
import pytest
import torch
from torch.distributions import kl_divergence

import pyro_vaes as pv
from pyro_vaes.objectives import ELBO, FreeBitsELBO, kl_by_dimension
from pyro_vaes.objectives.elbo import traces
from tests.helpers import seeded_loss


def _traces(vae: pv.VAE, x: torch.Tensor, seed: int = 3):
    pyro.set_rng_seed(seed)
    return traces(vae.model, vae.guide, (x,), {})


def _mean_kl_by_hand(guide_tr, model_tr) -> torch.Tensor:
    q, p = guide_tr.nodes["z"]["fn"], model_tr.nodes["z"]["fn"]
    return kl_divergence(q.base_dist, p.base_dist).mean(0)


def _between(mean_kl: torch.Tensor) -> float:
    """A floor between the middle two dimensions' mean KLs: half below, half above."""
    ordered = mean_kl.sort().values
    k = ordered.numel() // 2
    return float(ordered[k - 1] + ordered[k]) / 2


def test_kl_by_dimension_sums_to_the_site_kl(digits, small_vae):
    model_tr, guide_tr = _traces(small_vae, digits.x_train[:16])
    per_dim = kl_by_dimension(model_tr, guide_tr, "z")
    q, p = guide_tr.nodes["z"]["fn"], model_tr.nodes["z"]["fn"]
    assert per_dim.shape == (16, 4)
    torch.testing.assert_close(per_dim.sum(-1), kl_divergence(q, p))


def test_value_is_lambda_below_the_floor_and_the_kl_above(digits, small_vae):
    x = digits.x_train[:32]
    model_tr, guide_tr = _traces(small_vae, x)
    mean_kl = _mean_kl_by_hand(guide_tr, model_tr).detach()
    lam = _between(mean_kl)
    below, above = mean_kl < lam, mean_kl > lam
    assert below.any() and above.any()
    objective = FreeBitsELBO(lambda_=lam)
    floored = objective.floored_kl(model_tr, guide_tr)
    expected = 32 * (lam * below.sum() + mean_kl[~below].sum())
    assert float(floored.detach()) == pytest.approx(float(expected), rel=1e-5)
    # the whole loss: reconstruction of the same draw plus the floored term
    recon = float(model_tr.nodes["x"]["fn"].log_prob(x).sum().detach())
    pyro.set_rng_seed(3)
    assert objective.loss(small_vae.model, small_vae.guide, x) == pytest.approx(
        -recon + float(expected), rel=1e-5
    )


def test_no_gradient_through_a_dimension_below_the_floor(digits, small_vae):
    """The head's rows for dimension j (its mean and its scale) get gradient from the floored
    term only where the dimension's mean KL is above the floor."""
    model_tr, guide_tr = _traces(small_vae, digits.x_train[:32])
    mean_kl = _mean_kl_by_hand(guide_tr, model_tr).detach()
    lam = _between(mean_kl)
    head = small_vae.posterior.head
    head.zero_grad()
    FreeBitsELBO(lambda_=lam).floored_kl(model_tr, guide_tr).backward()
    grad = head.weight.grad
    assert grad is not None
    d = mean_kl.numel()
    for j in range(d):
        rows = grad[[j, d + j]].abs().sum()
        if mean_kl[j] < lam:
            assert float(rows) == 0.0
        else:
            assert float(rows) > 0.0


def test_a_zero_floor_is_the_elbo(digits, small_vae):
    m, g, x = small_vae.model, small_vae.guide, digits.x_train[:32]
    for per in ("dimension", "site"):
        ours = seeded_loss(FreeBitsELBO(lambda_=0.0, per=per), m, g, x)
        assert ours == pytest.approx(seeded_loss(ELBO(), m, g, x), rel=1e-6)


def test_per_site_floors_the_whole_kl_and_takes_beta(digits, small_vae):
    x = digits.x_train[:32]
    model_tr, guide_tr = _traces(small_vae, x)
    total = float(_mean_kl_by_hand(guide_tr, model_tr).sum())
    for lam in (total / 2, total * 2):
        floored = FreeBitsELBO(lambda_=lam, per="site").floored_kl(model_tr, guide_tr)
        assert float(floored) == pytest.approx(32 * max(lam, total), rel=1e-5)
    small_vae.beta = 3.0
    model_tr, guide_tr = _traces(small_vae, x)
    floored = FreeBitsELBO(lambda_=100.0).floored_kl(model_tr, guide_tr)
    assert float(floored) == pytest.approx(3.0 * 32 * 4 * 100.0, rel=1e-6)


def test_per_dimension_needs_a_factorised_posterior(digits):
    vae = pv.variants.build("vae", digits.shape, latent_dim=3, hidden=(16,), posterior="iaf")
    x = digits.x_train[:8]
    with pytest.raises(ValueError, match="per='site'"):
        FreeBitsELBO(lambda_=1.0).loss(vae.model, vae.guide, x)
    pyro.set_rng_seed(0)
    value = FreeBitsELBO(lambda_=1e3, per="site").loss(vae.model, vae.guide, x)
    pyro.set_rng_seed(0)
    model_tr, _ = traces(vae.model, vae.guide, (x,), {})
    recon = float(model_tr.nodes["x"]["fn"].log_prob(x).sum().detach())
    assert value == pytest.approx(-recon + 8 * 1e3, rel=1e-5)


def test_bad_options_are_refused():
    with pytest.raises(ValueError):
        FreeBitsELBO(lambda_=-1.0)
    with pytest.raises(ValueError):
        FreeBitsELBO(per="group")


def _dimension_kls(vae: pv.VAE, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        q = vae.posterior(vae.encoder(x))
        return kl_divergence(q.base_dist, vae.prior().base_dist).mean(0)


@pytest.mark.slow
def test_a_fit_keeps_every_dimension_at_the_floor(digits):
    """Eight dimensions on the digits: the ELBO lets some collapse to (near) zero KL; free bits
    of 0.5 nats keep every dimension's mean KL at or above about the floor."""
    kls = {}
    for name, objective in (("elbo", ELBO()), ("free_bits", FreeBitsELBO(lambda_=0.5))):
        torch.manual_seed(0)
        vae = pv.variants.build("vae", digits.shape, latent_dim=8, hidden=(64,))
        pv.fit(
            vae.model,
            vae.guide,
            digits.x_train,
            loss=objective,
            epochs=15,
            batch_size=100,
            seed=0,
            progress=False,
        )
        kls[name] = _dimension_kls(vae, digits.x_train)
    assert float(kls["free_bits"].min()) >= 0.4
    assert float(kls["elbo"].min()) < 0.4
