r"""Labels as inputs: checking them, encoding them, and the parts that condition on them.

Labels are integer class indices ``0 .. K-1`` in a ``(N,)`` tensor; a missing label is ``-1``
(:data:`pyro_vaes.data.batch.MISSING`). A model that conditions on labels gets them as its ``y``
argument (see :mod:`pyro_vaes.models.base`).
"""

from __future__ import annotations

import pyro.distributions as dist
import torch
import torch.nn.functional as F
from torch import nn

from pyro_vaes.data.batch import MISSING
from pyro_vaes.errors import DataError

__all__ = ["ConditionedDecoder", "LabelPrior", "check_labels", "one_hot", "sample_labels"]


def check_labels(
    y: torch.Tensor | None,
    num_classes: int,
    *,
    rows: int | None,
    missing_allowed: bool,
    who: str,
    offset: int = 0,
) -> None:
    """Check labels ``y`` against ``num_classes``: integers, one per datapoint (``rows``, when
    known), in ``0 .. K-1`` or, where ``missing_allowed``, ``-1`` for a missing label.

    :param who: the model, named in the messages.
    :param offset: added to the indices named (for a batch within a dataset).
    :raises DataError: naming the first offending datapoint.
    """
    if y is None:
        raise DataError(
            f"{who} needs labels y (class indices 0..{num_classes - 1}): pass (x, y) pairs"
        )
    if y.dim() != 1 or y.dtype.is_floating_point or y.dtype == torch.bool:
        raise DataError(
            f"{who} takes labels as integer class indices shaped (N,), got a {y.dtype} tensor "
            f"shaped {tuple(y.shape)}"
        )
    if rows is not None and y.shape[0] != rows:
        raise DataError(f"{who}: y has {y.shape[0]} labels for {rows} datapoints")
    low = MISSING if missing_allowed else 0
    bad = (y < low) | (y >= num_classes)
    if bool(bad.any()):
        idx = int(bad.nonzero()[0, 0])
        value = int(y[idx])
        if value == MISSING:
            raise DataError(
                f"{who} needs a label for every datapoint: {int(bad.sum())} missing (-1), the "
                f"first at index {idx + offset}"
            )
        raise DataError(
            f"{who}: label {value} at index {idx + offset} is outside the {num_classes} classes "
            f"0..{num_classes - 1}" + (" (-1 marks a missing label)" if missing_allowed else "")
        )


def sample_labels(
    n: int, y: torch.Tensor | int | None, num_classes: int, device: torch.device, who: str
) -> torch.Tensor:
    """The labels of ``n`` draws: all ``y`` (an int), the ``n`` labels ``y``, or (``None``) the
    classes in turn, ``0, 1, ..., K-1, 0, ...``; checked (no missing labels).

    :raises DataError: naming a label outside the classes, or a count other than ``n``.
    """
    if y is None:
        labels = torch.arange(n, device=device) % num_classes
    elif isinstance(y, int):
        labels = torch.full((n,), y, device=device)
    else:
        labels = y.to(device)
    check_labels(labels.cpu(), num_classes, rows=n, missing_allowed=False, who=who)
    return labels


def one_hot(y: torch.Tensor, num_classes: int, like: torch.Tensor) -> torch.Tensor:
    """The one-hot code of labels ``y`` (shaped like the batch dims of ``like``, or
    broadcastable to them: draws of ``z`` carry particle dims in front), as ``like``'s dtype,
    expanded to ``like.shape[:-1] + (num_classes,)``. (A scatter, not ``F.one_hot``, which reads
    the labels' largest value back to check it: the labels are checked once, before training,
    and the step stays free of host reads, so it can be captured.)"""
    code = like.new_zeros(*y.shape, num_classes)
    code.scatter_(-1, y.clamp_min(0).unsqueeze(-1), 1.0)
    return code.expand(*like.shape[:-1], num_classes)


class LabelPrior(nn.Module):
    r"""The learned conditional prior :math:`p(z \mid y) = \mathcal N(\mu_y,
    \operatorname{diag}\sigma_y^2)`: one mean and scale per class (a linear prior network on the
    one-hot label, as in Sohn et al. 2015), :math:`\sigma = \operatorname{softplus}(\cdot) +
    10^{-5}`, initialised at :math:`\mathcal N(0, I)` for every class.

    References:
        [1] Sohn, Lee, Yan. Learning Structured Output Representation using Deep Conditional
        Generative Models. NeurIPS 2015.
    """

    def __init__(self, num_classes: int, latent_dim: int) -> None:
        super().__init__()
        self.num_classes, self.latent_dim = num_classes, latent_dim
        self.loc = nn.Parameter(torch.zeros(num_classes, latent_dim))
        # softplus(0.5413) = 1: the standard normal for every class at the start
        self.raw_scale = nn.Parameter(torch.full((num_classes, latent_dim), 0.5413))

    def forward(self, y: torch.Tensor) -> dist.TorchDistribution:
        y = y.clamp_min(0)
        scale = F.softplus(self.raw_scale[y]) + 1e-5
        return dist.Normal(self.loc[y], scale).to_event(1)


class ConditionedDecoder(nn.Module):
    r"""A decoder of :math:`(z, y)`: ``decoder(concat(z, one_hot(y)))``, where ``decoder`` takes
    codes of size ``latent_dim + num_classes``."""

    def __init__(self, decoder: nn.Module, num_classes: int) -> None:
        super().__init__()
        self.decoder, self.num_classes = decoder, num_classes

    def forward(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.decoder(torch.cat([z, one_hot(y, self.num_classes, z)], dim=-1))
