"""Write your own prior, posterior and objective, and train a VAE with them.

The tutorial's code (``docs/tutorial.rst`` includes it piece by piece): a Laplace prior with a
learned scale, a full-rank Gaussian posterior and a free-bits ELBO, registered by name, built into
a VAE by the catalogue, fitted for a few epochs on the bundled digits and evaluated. Every claim
it makes is checked with an ``assert``; ``tests/test_docs.py`` runs it. About five seconds on two
CPU cores::

    python docs/tutorial/custom_parts.py
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pyro
import pyro.distributions as dist
import pyro.infer
import torch
import torch.nn.functional as F
from torch import nn

import pyro_vaes as pv
from pyro_vaes.objectives.elbo import DifferentiableObjective, traces
from pyro_vaes.objectives.terms import batch_statistic_site, kl, negative_elbo, weigh
from pyro_vaes.parts import PartContext, posteriors, priors
from pyro_vaes.protocols import Differentiable, Objective, Posterior, Prior

# [start-prior]


class LearnedLaplace(nn.Module):
    r"""A factorised Laplace prior with a learned scale per dimension,
    :math:`p(z) = \prod_i \mathrm{Laplace}(z_i; 0, b_i)`, :math:`b = \exp(\log b)`.

    :param latent_dim: the dimension of :math:`z`.
    """

    loc: torch.Tensor

    def __init__(self, latent_dim: int) -> None:
        super().__init__()
        self.register_buffer("loc", torch.zeros(latent_dim))  # moves with .to(device)
        self.log_scale = nn.Parameter(torch.zeros(latent_dim))  # trained with the VAE

    def forward(self) -> dist.TorchDistribution:
        return dist.Laplace(self.loc, self.log_scale.exp()).to_event(1)


@priors.register("learned_laplace")
def _build_prior(ctx: PartContext) -> LearnedLaplace:
    return LearnedLaplace(ctx.latent_dim)


# [end-prior]
# [start-posterior]


class FullRankNormal(nn.Module):
    r"""An amortised Gaussian posterior with a full covariance,
    :math:`q(z \mid x) = \mathcal N(z; \mu(h), L(h) L(h)^\top)`, where the Cholesky factor
    :math:`L` is lower-triangular with a softplus diagonal.

    :param in_features: the size of the encoder's features :math:`h`.
    :param latent_dim: the dimension of :math:`z`.
    """

    def __init__(self, in_features: int, latent_dim: int, min_scale: float = 1e-4) -> None:
        super().__init__()
        self.latent_dim, self.min_scale = latent_dim, min_scale
        rows, cols = torch.tril_indices(latent_dim, latent_dim, offset=-1)
        self.register_buffer("rows", rows)
        self.register_buffer("cols", cols)
        # mean, raw diagonal, and the strictly lower triangle of L
        self.head = nn.Linear(in_features, 2 * latent_dim + rows.numel())

    def forward(self, h: torch.Tensor) -> dist.TorchDistribution:
        d = self.latent_dim
        out = self.head(h)
        loc, raw_diag, lower = out[..., :d], out[..., d : 2 * d], out[..., 2 * d :]
        tril = out.new_zeros((*out.shape[:-1], d, d))
        tril[..., self.rows, self.cols] = lower  # a fresh tensor: autograd allows the write
        tril = tril + torch.diag_embed(F.softplus(raw_diag) + self.min_scale)
        return dist.MultivariateNormal(loc, scale_tril=tril)  # event shape (d,): one code


@posteriors.register("full_rank_normal")
def _build_posterior(ctx: PartContext) -> FullRankNormal:
    return FullRankNormal(ctx.features, ctx.latent_dim)


# [end-posterior]
# [start-objective]


class FreeBitsELBO(DifferentiableObjective, pyro.infer.ELBO):
    r"""The ELBO with a floor of ``free_nats`` on the KL term, averaged over the batch
    (Kingma et al. 2016's free bits, with the whole code as one group):

    .. math::
        -\mathcal L = -\sum_i \log p(x_i \mid z_i) + B \max\Big(\lambda,
        \frac1B \sum_i \mathrm{KL}\big(q(z \mid x_i)\,\|\,p(z)\big)\Big).

    Below the floor the KL costs a constant and has no gradient, so the encoder may use the code
    without paying for it. The mean over the batch is a statistic of the whole batch: it takes
    the latent site's scale (``beta``, a subsampled plate's :math:`N/B`) as one factor and
    refuses a mask that varies across datapoints, as the project's rule asks
    (:mod:`pyro_vaes.objectives.terms`).

    :param free_nats: the floor :math:`\lambda` on the mean KL, in nats.
    :param latent: the name of the latent site.

    References:
        [1] Kingma, Salimans, Jozefowicz, Chen, Sutskever, Welling. Improved Variational
        Inference with Inverse Autoregressive Flow. NeurIPS 2016.
    """

    def __init__(self, free_nats: float = 1.0, latent: str = "z") -> None:
        if free_nats < 0:
            raise ValueError(f"free_nats must be >= 0, got {free_nats}")
        super().__init__(num_particles=1)
        self.free_nats, self.latent = float(free_nats), latent

    def differentiable_loss(
        self, model: Callable[..., Any], guide: Callable[..., Any], *args: Any, **kwargs: Any
    ) -> torch.Tensor:
        model_tr, guide_tr = traces(model, guide, args, kwargs)
        site, codes = batch_statistic_site(model_tr, guide_tr, self.latent, "the free-bits KL")
        kl_mean = kl(model_tr, guide_tr, self.latent).mean()  # closed form where registered
        floored = codes.shape[0] * kl_mean.clamp_min(self.free_nats)
        rest = negative_elbo(model_tr, guide_tr, without=(self.latent,))  # reconstruction
        return rest + weigh(site, floored)


# [end-objective]


def hand_terms(vae: pv.VAE, x: torch.Tensor, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``log p(x | z)`` summed over the batch and the one-draw KL estimate per datapoint, written
    out with the VAE's parts; after ``pyro.set_rng_seed(seed)`` it draws the same ``z`` as the
    objective (the guide draws first, the model is replayed)."""
    pyro.set_rng_seed(seed)
    q = vae.posterior(vae.encoder(x))
    z = q.rsample()
    kl_per_datapoint = q.log_prob(z) - vae.prior().log_prob(z)  # no closed form for this pair
    log_px = vae.likelihood(vae.decoder(z), x.dim() - 1).log_prob(x)  # an image is one event
    return log_px.sum(), kl_per_datapoint


# [start-check]
def check_objective(vae: pv.VAE, x: torch.Tensor) -> None:
    """The objective honours the declared contracts and equals its formula on a batch."""
    objective = FreeBitsELBO(free_nats=3.0)
    assert isinstance(objective, Objective) and isinstance(objective, Differentiable)
    log_px, kl_i = hand_terms(vae, x, seed=0)
    for free_nats in (0.0, 3.0, 1e3):  # no floor, the tutorial's, a floor that always binds
        objective.free_nats = free_nats
        pyro.set_rng_seed(0)
        value = objective.differentiable_loss(vae.model, vae.guide, x)
        expected = -log_px + x.shape[0] * kl_i.mean().clamp_min(free_nats)
        torch.testing.assert_close(value, expected, rtol=1e-5, atol=1e-3)
    # without a floor it is the project's ELBO on the same draw
    objective.free_nats = 0.0
    pyro.set_rng_seed(0)
    ours = objective.differentiable_loss(vae.model, vae.guide, x)
    pyro.set_rng_seed(0)
    theirs = pv.objectives.ELBO().differentiable_loss(vae.model, vae.guide, x)
    torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-3)
    # VAE(beta=b) scales the latent site, so b multiplies the floored term like any KL term
    objective.free_nats = 1e3
    vae.beta = 2.0
    pyro.set_rng_seed(0)
    doubled = objective.differentiable_loss(vae.model, vae.guide, x)
    vae.beta = 1.0
    torch.testing.assert_close(doubled, -log_px + 2 * x.shape[0] * 1e3, rtol=1e-5, atol=1e-2)


# [end-check]


def main(epochs: int = 15, seed: int = 0) -> dict[str, float]:
    """Build, check, fit and evaluate the VAE; return the numbers the tutorial quotes."""
    # [start-build]
    pyro.set_rng_seed(seed)
    splits = pv.data.load("digits")  # 1,437 + 360 images of 1x8x8, offline
    x_test = pv.data.binarize(splits.x_test, seed=1)

    # the new names are in the registries the catalogue builds from
    vae = pv.variants.build(
        "vae",
        splits.shape,
        prior="learned_laplace",
        posterior="full_rank_normal",
        latent_dim=8,
        hidden=(128,),
    )
    assert isinstance(vae.prior, LearnedLaplace) and isinstance(vae.posterior, FullRankNormal)
    assert isinstance(vae.prior, Prior) and isinstance(vae.posterior, Posterior)
    # [end-build]

    check_objective(vae, x_test[:64])

    # [start-fit]
    untrained = copy.deepcopy(vae)
    history = pv.fit(
        vae.model,
        vae.guide,
        splits.x_train,
        loss=FreeBitsELBO(free_nats=3.0),
        epochs=epochs,
        batch_size=100,
        transform=pv.data.dynamic_binarize,  # fresh binary images every epoch
        seed=seed,
        progress=False,
    )
    before = pv.evaluate.log_likelihood(untrained.model, untrained.guide, x_test, num_samples=64)
    after = pv.evaluate.log_likelihood(vae.model, vae.guide, x_test, num_samples=64)
    # [end-fit]

    # [start-results]
    first, last = history.loss[0], history.loss[-1]
    assert len(history) == epochs
    assert last < first - 5.0, f"the loss should fall by nats, went {first:.2f} -> {last:.2f}"
    assert after.shape == (x_test.shape[0],) and bool(torch.isfinite(after).all())
    assert after.mean() > before.mean() + 5.0, "training should raise the test log-likelihood"
    scale = vae.prior.log_scale.detach().exp()
    assert not torch.allclose(scale, torch.ones_like(scale)), "the prior's scale is learned"
    # [end-results]
    results = {
        "first_loss": first,
        "last_loss": last,
        "test_log_likelihood_before": float(before.mean()),
        "test_log_likelihood_after": float(after.mean()),
        "prior_scale_min": float(scale.min()),
        "prior_scale_max": float(scale.max()),
    }
    for key, value in results.items():
        print(f"{key}: {value:.3f}")
    return results


if __name__ == "__main__":
    main()
