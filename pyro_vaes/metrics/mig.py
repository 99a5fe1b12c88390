r"""The mutual information gap (MIG) of Chen et al. 2018.

For each factor :math:`v_k`, the gap between the two code dimensions that share the most
information with it, normalised by the factor's entropy, averaged over the factors:

.. math::
    \mathrm{MIG} = \frac1K \sum_{k=1}^K \frac{I(z_{j^{(1)}_k}; v_k) - I(z_{j^{(2)}_k}; v_k)}
    {H(v_k)},

with :math:`j^{(1)}_k, j^{(2)}_k` the dimensions of largest and second largest
:math:`I(z_j; v_k)`. MIG is in :math:`[0, 1]`: 1 when every factor is read off one dimension
alone and no other dimension knows anything of it.

The mutual information is that of the empirical joint distribution of the factor and the code
dimension discretised into equal-width bins (the estimator of Locatello et al. 2019, which needs
only a code per datapoint, so it scores any model, not only those with a Gaussian posterior).

References:
    [1] Chen, Li, Grosse, Duvenaud. Isolating Sources of Disentanglement in Variational
    Autoencoders. NeurIPS 2018.
    [2] Locatello et al. Challenging Common Assumptions in the Unsupervised Learning of
    Disentangled Representations. ICML 2019.
"""

from __future__ import annotations

import torch

__all__ = ["discretize", "mig", "mutual_information", "mutual_information_matrix"]


def _check(codes: torch.Tensor, factors: torch.Tensor) -> None:
    if codes.dim() != 2 or factors.dim() != 2 or codes.shape[0] != factors.shape[0]:
        raise ValueError(
            "need codes (N, D) and factors (N, K) with one row per datapoint, got "
            f"{tuple(codes.shape)} and {tuple(factors.shape)}"
        )
    if not torch.isfinite(codes).all():
        raise ValueError("codes contain NaN or Inf")
    if factors.dtype.is_floating_point or (factors < 0).any():
        raise ValueError("factors must be non-negative integers (indices of factor values)")


def discretize(codes: torch.Tensor, bins: int = 20) -> torch.Tensor:
    """Each column of ``codes`` cut into ``bins`` equal-width bins over its own range; returns
    bin indices in ``[0, bins)``. A constant column falls into bin 0."""
    if bins < 1:
        raise ValueError(f"bins must be >= 1, got {bins}")
    lo, hi = codes.min(0).values, codes.max(0).values
    width = torch.where(hi > lo, (hi - lo) / bins, torch.ones_like(hi))
    return ((codes - lo) / width).long().clamp_(0, bins - 1)


def mutual_information(a: torch.Tensor, b: torch.Tensor) -> float:
    """Mutual information in nats of the empirical joint distribution of two integer sequences."""
    a, b = a.long(), b.long()
    na, nb = int(a.max()) + 1, int(b.max()) + 1
    joint = torch.bincount(a * nb + b, minlength=na * nb).reshape(na, nb).double()
    joint /= joint.sum()
    outer = joint.sum(1, keepdim=True) * joint.sum(0, keepdim=True)
    nz = joint > 0
    return float((joint[nz] * (joint[nz] / outer[nz]).log()).sum())


def mutual_information_matrix(
    codes: torch.Tensor, factors: torch.Tensor, bins: int = 20
) -> torch.Tensor:
    """:math:`I(z_j; v_k)` in nats, shaped ``(D, K)``, from the binned codes."""
    _check(codes, factors)
    binned = discretize(codes, bins)
    return torch.tensor(
        [
            [mutual_information(binned[:, j], factors[:, k]) for k in range(factors.shape[1])]
            for j in range(codes.shape[1])
        ],
        dtype=torch.float64,
    )


def mig(codes: torch.Tensor, factors: torch.Tensor, bins: int = 20) -> float:
    """The mutual information gap of ``codes`` ``(N, D)`` for ``factors`` ``(N, K)``; see the
    module docstring. Needs at least two code dimensions; factors that never vary are skipped."""
    if codes.dim() == 2 and codes.shape[1] < 2:
        raise ValueError("MIG needs at least two code dimensions")
    mi = mutual_information_matrix(codes, factors, bins)
    entropy = torch.tensor(
        [mutual_information(factors[:, k], factors[:, k]) for k in range(factors.shape[1])],
        dtype=torch.float64,
    )
    varies = entropy > 0
    if not varies.any():
        raise ValueError("no factor varies, so MIG is undefined")
    top2 = mi.topk(2, dim=0).values  # (2, K)
    return float(((top2[0] - top2[1])[varies] / entropy[varies]).mean())
