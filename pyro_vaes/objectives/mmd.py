"""Maximum mean discrepancy between the aggregate posterior and the prior: InfoVAE and WAE-MMD."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import pyro.infer
import torch

from pyro_vaes.objectives.elbo import DifferentiableObjective, traces
from pyro_vaes.objectives.terms import batch_statistic_site, negative_elbo, prior_of, weigh
from pyro_vaes.objectives.terms import kl as kl_term

__all__ = ["MMDELBO", "imq_kernel", "mmd", "rbf_kernel"]


def _sq_dists(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return (x.unsqueeze(-2) - y.unsqueeze(-3)).pow(2).sum(-1)


def rbf_kernel(
    x: torch.Tensor, y: torch.Tensor, scales: Sequence[float] = (0.5, 1.0, 2.0)
) -> torch.Tensor:
    r"""A sum of Gaussian kernels :math:`\sum_s \exp(-\|x-y\|^2 / (2 s^2 d))`, one per scale
    :math:`s` (bandwidths relative to the dimension :math:`d`)."""
    d2, dim = _sq_dists(x, y), x.shape[-1]
    return sum(torch.exp(-d2 / (2 * s * s * dim)) for s in scales)  # type: ignore[return-value]


def imq_kernel(
    x: torch.Tensor, y: torch.Tensor, scales: Sequence[float] = (0.5, 1.0, 2.0)
) -> torch.Tensor:
    r"""A sum of inverse multiquadratic kernels :math:`\sum_s C_s / (C_s + \|x-y\|^2)`,
    :math:`C_s = 2 d s^2` (the WAE paper's choice for a standard normal prior, at several
    scales)."""
    d2, dim = _sq_dists(x, y), x.shape[-1]
    return sum(2 * dim * s * s / (2 * dim * s * s + d2) for s in scales)  # type: ignore[return-value]


def mmd(
    x: torch.Tensor,
    y: torch.Tensor,
    kernel: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] = rbf_kernel,
) -> torch.Tensor:
    r"""The unbiased estimate of :math:`\mathrm{MMD}^2` between samples ``x`` ``(n, d)`` and
    ``y`` ``(m, d)``:

    .. math::
        \frac{1}{n(n-1)}\sum_{i\ne j} k(x_i, x_j) + \frac{1}{m(m-1)}\sum_{i\ne j} k(y_i, y_j)
        - \frac{2}{nm}\sum_{i,j} k(x_i, y_j).

    References:
        [1] Gretton, Borgwardt, Rasch, Schoelkopf, Smola. A Kernel Two-Sample Test. JMLR 2012.
    """
    n, m = x.shape[0], y.shape[0]
    if n < 2 or m < 2:
        raise ValueError("the unbiased MMD needs at least two samples on each side")
    kxx, kyy, kxy = kernel(x, x), kernel(y, y), kernel(x, y)
    off_x = (kxx.sum() - kxx.diagonal().sum()) / (n * (n - 1))
    off_y = (kyy.sum() - kyy.diagonal().sum()) / (m * (m - 1))
    return off_x + off_y - 2 * kxy.mean()


class MMDELBO(DifferentiableObjective, pyro.infer.ELBO):
    r"""The InfoVAE objective, with WAE-MMD as its :math:`\alpha = 1` case:

    .. math::
        \mathcal L = \mathbb E_q[\log p(x \mid z)] - (1 - \alpha)\,\mathrm{KL}(q(z\mid x)\,\|\,p(z))
        - (\alpha + \lambda - 1)\,\mathrm{MMD}^2(q(z), p(z)),

    per datapoint, where :math:`q(z)` is represented by the batch's codes and :math:`p(z)` by as
    many prior draws. The KL is in closed form where registered, else a one-draw estimate.
    ``MMDELBO(alpha=1, lam=10)`` is WAE-MMD: reconstruction plus :math:`\lambda` MMD. Other sites
    contribute their ELBO terms (:mod:`pyro_vaes.objectives.terms`).

    Scales and masks: the latent site's scale multiplies both its KL and its MMD term (a
    subsampled plate's :math:`N/B` included), so on a model with ``beta = b`` the loss is
    reconstruction :math:`+\, b\,[(1-\alpha)\mathrm{KL} + (\alpha+\lambda-1)\,\mathrm{MMD}]`,
    and ``beta = 0`` (a mask of the whole site) removes both. The MMD compares the whole batch of
    codes with the prior, so a mask or scale that varies across datapoints of the latent site is
    refused (ValueError); observed sites may be masked per datapoint.

    :param alpha: :math:`\alpha \le 1`.
    :param lam: :math:`\lambda > 0`.
    :param kernel: ``rbf_kernel`` or ``imq_kernel`` (or any ``(x, y) -> Gram matrix``).
    :param latent: the latent site.

    References:
        [1] Zhao, Song, Ermon. InfoVAE: Balancing Learning and Inference in Variational
        Autoencoders. AAAI 2019.
        [2] Tolstikhin, Bousquet, Gelly, Schoelkopf. Wasserstein Auto-Encoders. ICLR 2018.
    """

    def __init__(
        self,
        alpha: float = 0.0,
        lam: float = 1000.0,
        kernel: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] = rbf_kernel,
        latent: str = "z",
    ) -> None:
        if alpha > 1 or lam <= 0:
            raise ValueError(f"need alpha <= 1 and lam > 0, got alpha={alpha}, lam={lam}")
        super().__init__(num_particles=1)
        self.alpha, self.lam, self.kernel, self.latent = float(alpha), float(lam), kernel, latent

    def differentiable_loss(
        self, model: Callable[..., Any], guide: Callable[..., Any], *args: Any, **kwargs: Any
    ) -> torch.Tensor:
        model_tr, guide_tr = traces(model, guide, args, kwargs)
        site, codes = batch_statistic_site(model_tr, guide_tr, self.latent, "the MMD")
        prior_draws = prior_of(model_tr, self.latent).sample().reshape(codes.shape)
        discrepancy = mmd(codes, prior_draws, self.kernel)
        kl = weigh(site, kl_term(model_tr, guide_tr, self.latent)).sum()
        rest = negative_elbo(model_tr, guide_tr, without=(self.latent,))
        mmd_term = (self.alpha + self.lam - 1) * codes.shape[0] * weigh(site, discrepancy)
        return rest + (1 - self.alpha) * kl + mmd_term
