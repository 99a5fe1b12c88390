r"""The FactorVAE disentanglement score of Kim & Mnih 2018.

Each code dimension is first divided by its standard deviation over the whole dataset, and
dimensions that hardly vary (standard deviation below ``min_std``, collapsed to the prior) are
dropped. One *vote* then draws a factor :math:`k`, fixes it at a random value, draws
``batch_size`` datapoints that share that value, and records the pair
:math:`(\arg\min_j \widehat{\mathrm{Var}}[\bar z_j], k)`: the dimension that varies least when
factor :math:`k` is held still. A majority-vote classifier, dimension -> its most frequent
factor, is fitted on ``num_train`` votes; the score is its accuracy on ``num_eval`` fresh votes.
1 means every factor has a dimension of its own; a random representation scores about
:math:`1/K`.

Conventions follow disentanglement_lib (``evaluation/metrics/factor_vae.py``) by default:

- the pruning threshold is 0.05 on the dataset standard deviation of the raw codes (this
  module used 0.1; a dimension with a standard deviation between the two now takes part);
- votes draw :math:`k` among *all* factors, including ones that never vary in the data: such a
  vote holds nothing still, its least-varying dimension is arbitrary, and it is counted. With
  perfect codes for three varying factors and a fourth constant one the score is then about
  0.75 (disentanglement_lib: 0.749), where skipping constant factors (``skip_constant_factors=
  True``, this module's former default) gives 1.0.

One difference is kept: with every dimension pruned, disentanglement_lib reports a score of 0;
here that is a ``ValueError``. Variances use ``N - 1`` as disentanglement_lib's ``ddof=1``;
the global spread is taken over the codes given rather than over 10,000 fresh draws, and a vote
draws its batch from the datapoints that share the fixed value (on a full factor grid such as
dSprites or :mod:`pyro_vaes.sprites`, the same distribution as disentanglement_lib's sampler).

References:
    [1] Kim, Mnih. Disentangling by Factorising. ICML 2018, section 4.
"""

from __future__ import annotations

import torch

from pyro_vaes.metrics.mig import _check

__all__ = ["factor_vae_score"]


def _votes(
    codes: torch.Tensor,
    factors: torch.Tensor,
    num_votes: int,
    batch_size: int,
    gen: torch.Generator,
    skip_constant_factors: bool,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``num_votes`` pairs (least-varying dimension, fixed factor)."""
    varying = [
        k
        for k in range(factors.shape[1])
        if not skip_constant_factors or factors[:, k].unique().numel() > 1
    ]
    dims, ks = [], []
    for _ in range(num_votes):
        k = varying[int(torch.randint(len(varying), (1,), generator=gen))]
        anchor = int(factors[int(torch.randint(len(factors), (1,), generator=gen)), k])
        pool = (factors[:, k] == anchor).nonzero().squeeze(1)
        pick = pool[torch.randint(len(pool), (batch_size,), generator=gen)]
        dims.append(int(codes[pick].var(0).argmin()))
        ks.append(k)
    return torch.tensor(dims), torch.tensor(ks)


def factor_vae_score(
    codes: torch.Tensor,
    factors: torch.Tensor,
    *,
    batch_size: int = 64,
    num_train: int = 800,
    num_eval: int = 800,
    min_std: float = 0.05,
    skip_constant_factors: bool = False,
    seed: int = 0,
) -> float:
    """The FactorVAE score of ``codes`` ``(N, D)`` for integer ``factors`` ``(N, K)``.

    :param batch_size: datapoints per vote (L in the paper).
    :param num_train: votes that fit the majority-vote classifier.
    :param num_eval: votes it is scored on.
    :param min_std: dimensions whose standard deviation over the dataset is below this are
        collapsed and take no part (codes of a model with a standard normal prior); 0.05 as
        disentanglement_lib.
    :param skip_constant_factors: draw votes only among factors that vary in the data. By
        default (as disentanglement_lib) a factor that never varies is drawn too, and its
        votes, which no dimension can win, lower the score.
    :param seed: seeds the votes.
    """
    _check(codes, factors)
    if batch_size < 2 or num_train < 1 or num_eval < 1:
        raise ValueError("need batch_size >= 2 and at least one training and one evaluation vote")
    std = codes.std(0)
    active = std >= min_std
    if not active.any():
        raise ValueError(f"every code dimension has standard deviation below {min_std}")
    if all(factors[:, k].unique().numel() < 2 for k in range(factors.shape[1])):
        raise ValueError("no factor varies, so the FactorVAE score is undefined")
    normed = (codes[:, active] / std[active]).double()
    gen = torch.Generator().manual_seed(seed)
    num_factors = factors.shape[1]
    dims, ks = _votes(normed, factors, num_train, batch_size, gen, skip_constant_factors)
    table = torch.zeros(normed.shape[1], num_factors, dtype=torch.long)
    table.index_put_((dims, ks), torch.ones_like(dims), accumulate=True)
    predict = table.argmax(1)  # each dimension's majority factor
    dims, ks = _votes(normed, factors, num_eval, batch_size, gen, skip_constant_factors)
    return float((predict[dims] == ks).double().mean())
