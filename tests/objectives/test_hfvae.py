"""The HFVAE objective: its four pieces add up to the KL of the draw and the objective is the ELBO
at unit weights; a group per dimension has no within-group TC, one group of all dimensions no
between-group TC; the group marginals match a hand computation; the weights act on their
pieces."""

from __future__ import annotations

import math

import pyro
import pyro.distributions as dist
import pytest
import torch

import pyro_vaes as pv
from pyro_vaes.objectives import TCELBO, HierarchicalTCELBO
from pyro_vaes.objectives.elbo import traces
from pyro_vaes.objectives.hierarchical_tc import even_groups, log_group_marginals
from pyro_vaes.objectives.total_correlation import log_importance_weights

PIECES = ("mi", "tc_between", "tc_within", "dwkl")


def _vae(digits, latent_dim=6):
    torch.manual_seed(0)
    return pv.variants.build("vae", digits.shape, latent_dim=latent_dim, hidden=(32,))


@pytest.mark.parametrize("estimator", ["mss", "mws"])
@pytest.mark.parametrize("groups", [(2, 2, 2), (3, 1, 2), (6,), (1,) * 6])
def test_unit_weights_add_up_to_the_kl_and_the_elbo(digits, estimator, groups):
    vae, x = _vae(digits), digits.x_train[:64]
    objective = HierarchicalTCELBO(1.0, 1.0, 1.0, groups, estimator, len(digits.x_train))
    pyro.set_rng_seed(0)
    model_tr, guide_tr = traces(vae.model, vae.guide, (x,), {})
    t = objective.terms(model_tr, guide_tr)
    q, p = guide_tr.nodes["z"], model_tr.nodes["z"]
    mc_kl = q["fn"].log_prob(q["value"]) - p["fn"].log_prob(q["value"])
    torch.testing.assert_close(sum(t[k] for k in PIECES), mc_kl, atol=1e-4, rtol=1e-5)
    pyro.set_rng_seed(0)
    ours = objective.loss(vae.model, vae.guide, x)
    pyro.set_rng_seed(0)
    assert ours == pytest.approx(pyro.infer.Trace_ELBO().loss(vae.model, vae.guide, x), rel=1e-5)


def test_the_two_total_correlations_split_beta_tcvaes(digits):
    """Between + within is TCELBO's TC; a group per dimension leaves nothing within, one group
    of all dimensions nothing between; the other pieces are TCELBO's."""
    vae, x, n = _vae(digits), digits.x_train[:64], len(digits.x_train)
    pyro.set_rng_seed(0)
    trs = traces(vae.model, vae.guide, (x,), {})
    tc = TCELBO(1.0, 1.0, 1.0, dataset_size=n).terms(*trs)
    split = HierarchicalTCELBO(groups=(4, 2), dataset_size=n).terms(*trs)
    torch.testing.assert_close(split["tc_between"] + split["tc_within"], tc["tc"])
    for key in ("recon", "mi", "dwkl", "other_kl"):
        torch.testing.assert_close(split[key], tc[key])
    singles = HierarchicalTCELBO(groups=(1,) * 6, dataset_size=n).terms(*trs)
    assert torch.count_nonzero(singles["tc_within"]) == 0
    torch.testing.assert_close(singles["tc_between"], tc["tc"])
    whole = HierarchicalTCELBO(groups=(6,), dataset_size=n).terms(*trs)
    torch.testing.assert_close(whole["tc_between"], torch.zeros(64), atol=1e-5, rtol=0)
    torch.testing.assert_close(whole["tc_within"], tc["tc"], atol=1e-5, rtol=1e-5)
    # the objective with beta = gamma is beta-TCVAE's, whatever the groups
    pyro.set_rng_seed(0)
    hf = HierarchicalTCELBO(1.0, 4.0, 4.0, (4, 2), dataset_size=n).loss(vae.model, vae.guide, x)
    pyro.set_rng_seed(0)
    btc = TCELBO(1.0, 4.0, 1.0, dataset_size=n).loss(vae.model, vae.guide, x)
    assert hf == pytest.approx(btc, rel=1e-5)


def _normal_pdf(z: float, mu: float, sd: float) -> float:
    return math.exp(-0.5 * ((z - mu) / sd) ** 2) / (sd * math.sqrt(2 * math.pi))


def test_group_marginals_and_pieces_by_hand():
    """Three datapoints with hand-set posteriors over three dimensions in groups (2, 1): every
    piece from the definitions, summed term by term in plain Python."""
    loc = torch.tensor([[0.0, 1.0, -1.0], [0.5, -0.5, 2.0], [-1.0, 0.0, 0.3]])
    scale = torch.tensor([[1.0, 0.5, 0.8], [0.7, 1.2, 0.6], [0.9, 0.4, 1.5]])
    n, groups = 10, (2, 1)

    def model(x):
        with pyro.plate("data", 3):
            pyro.sample("z", dist.Normal(torch.zeros(3), 1.0).to_event(1))

    def guide(x):
        with pyro.plate("data", 3):
            pyro.sample("z", dist.Normal(loc, scale).to_event(1))

    model_tr, guide_tr = traces(model, guide, (None,), {})
    z = guide_tr.nodes["z"]["value"].tolist()
    t = HierarchicalTCELBO(groups=groups, dataset_size=n).terms(model_tr, guide_tr)

    w = log_importance_weights(3, n, stratified=True).exp().tolist()

    def q_agg(i: int, dims: list[int]) -> float:  # sum_j w_ij prod_{d in dims} q(z_id | x_j)
        return sum(
            w[i][j]
            * math.prod(_normal_pdf(z[i][d], float(loc[j, d]), float(scale[j, d])) for d in dims)
            for j in range(3)
        )

    for i in range(3):
        log_qzx = sum(
            math.log(_normal_pdf(z[i][d], float(loc[i, d]), float(scale[i, d]))) for d in range(3)
        )
        log_qz = math.log(q_agg(i, [0, 1, 2]))
        log_qg = math.log(q_agg(i, [0, 1])) + math.log(q_agg(i, [2]))
        log_qd = sum(math.log(q_agg(i, [d])) for d in range(3))
        log_pz = sum(math.log(_normal_pdf(z[i][d], 0.0, 1.0)) for d in range(3))
        expected = {
            "mi": log_qzx - log_qz,
            "tc_between": log_qz - log_qg,
            "tc_within": log_qg - log_qd,
            "dwkl": log_qd - log_pz,
        }
        for key, value in expected.items():
            assert float(t[key][i]) == pytest.approx(value, abs=1e-5), (key, i)
    pairwise = dist.Normal(loc, scale).log_prob(torch.tensor(z).unsqueeze(1))
    log_w = log_importance_weights(3, n, stratified=True)
    marginals = log_group_marginals(pairwise, log_w, groups)
    assert float(marginals[1, 0]) == pytest.approx(math.log(q_agg(1, [0, 1])), abs=1e-6)


def test_weights_act_on_their_pieces(digits):
    vae, x, n = _vae(digits), digits.x_train[:32], len(digits.x_train)
    weights = {"alpha": 0.5, "beta": 7.0, "gamma": 3.0}
    objective = HierarchicalTCELBO(**weights, groups=(2, 2, 2), dataset_size=n)
    pyro.set_rng_seed(0)
    t = objective.terms(*traces(vae.model, vae.guide, (x,), {}))
    expected = -(
        t["recon"]
        - 0.5 * t["mi"]
        - 7.0 * t["tc_between"]
        - 3.0 * t["tc_within"]
        - t["dwkl"]
        - t["other_kl"]
    ).sum()
    pyro.set_rng_seed(0)
    assert objective.loss(vae.model, vae.guide, x) == pytest.approx(
        float(expected.detach()), rel=1e-6
    )


def test_default_groups_are_five_even_ones():
    assert even_groups(10, 5) == (2, 2, 2, 2, 2)
    assert even_groups(16, 5) == (4, 3, 3, 3, 3)
    assert even_groups(3, 5) == (1, 1, 1)
    assert HierarchicalTCELBO().group_sizes(7) == (2, 2, 1, 1, 1)


def test_fit_supplies_the_dataset_size_and_bad_settings_are_refused(digits):
    vae = _vae(digits)
    objective = HierarchicalTCELBO(groups=(3, 3))
    with pytest.raises(ValueError, match="dataset size"):
        objective.loss(vae.model, vae.guide, digits.x_train[:8])
    pv.fit(vae.model, vae.guide, digits.x_train[:200], epochs=1, loss=objective, progress=False)
    assert objective.dataset_size == 200
    with pytest.raises(ValueError, match="add up to 5 dimensions"):
        HierarchicalTCELBO(groups=(3, 2), dataset_size=10).loss(
            vae.model, vae.guide, digits.x_train[:8]
        )
    with pytest.raises(ValueError, match="groups"):
        HierarchicalTCELBO(groups=(3, 0))
    with pytest.raises(ValueError, match="alpha, beta and gamma"):
        HierarchicalTCELBO(gamma=-1.0)
    with pytest.raises(ValueError, match="estimator"):
        HierarchicalTCELBO(estimator="exact")
