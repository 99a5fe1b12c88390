r"""The Fréchet distance between two sets of features, each summarised by a Gaussian:

.. math::
    d^2 = \lVert \mu_a - \mu_b\rVert^2 + \mathrm{Tr}\big(\Sigma_a + \Sigma_b
    - 2(\Sigma_a^{1/2}\Sigma_b\Sigma_a^{1/2})^{1/2}\big),

the trace of the matrix square root taken from the eigenvalues of the symmetric
:math:`\Sigma_a^{1/2}\Sigma_b\Sigma_a^{1/2}` (float64). With Inception features this is the FID;
here the features come from a classifier the project trains itself
(:mod:`pyro_vaes.classifier`), since Inception weights cannot be downloaded everywhere, so values
compare models with each other, not with published FIDs.

References:
    [1] Heusel et al. GANs Trained by a Two Time-Scale Update Rule Converge to a Local Nash
    Equilibrium. NeurIPS 2017.
    [2] Dowson, Landau. The Fréchet distance between multivariate normal distributions. Journal
    of Multivariate Analysis 1982.
"""

from __future__ import annotations

import torch

__all__ = ["frechet_distance"]


def _sqrt_psd(m: torch.Tensor) -> torch.Tensor:
    vals, vecs = torch.linalg.eigh(m)
    return (vecs * vals.clamp_min(0).sqrt()) @ vecs.T


def frechet_distance(a: torch.Tensor, b: torch.Tensor) -> float:
    """The squared Fréchet distance between the Gaussians fitted to features ``a`` ``(N, F)``
    and ``b`` ``(M, F)``."""
    if a.dim() != 2 or b.dim() != 2 or a.shape[1] != b.shape[1] or min(len(a), len(b)) < 2:
        raise ValueError(
            f"need two feature sets (N, F) and (M, F) with N, M >= 2, got {tuple(a.shape)} and "
            f"{tuple(b.shape)}"
        )
    a, b = a.double(), b.double()
    mu_a, mu_b = a.mean(0), b.mean(0)
    cov_a, cov_b = torch.cov(a.T).reshape(a.shape[1], -1), torch.cov(b.T).reshape(b.shape[1], -1)
    root = _sqrt_psd(cov_a)
    cross = torch.linalg.eigvalsh(root @ cov_b @ root).clamp_min(0).sqrt().sum()
    return float((mu_a - mu_b).pow(2).sum() + cov_a.trace() + cov_b.trace() - 2 * cross)
