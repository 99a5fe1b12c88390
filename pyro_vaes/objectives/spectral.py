r"""NVAE's spectral regularisation: the sum of the largest singular values of the network's
layers, estimated by power iteration, added to any differentiable objective."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import pyro.infer
import torch
import torch.nn.functional as F
from torch import nn

from pyro_vaes.objectives.elbo import ELBO, DifferentiableObjective

__all__ = ["SpectralRegularizedELBO", "power_iteration"]

_LAYERS = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose2d)


def power_iteration(
    weight: torch.Tensor,
    u: torch.Tensor | None = None,
    steps: int = 1,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    r"""The largest singular value of the matrix ``weight`` ``(m, n)`` by power iteration [1]:
    ``steps`` times :math:`v \leftarrow W^\top u / \|W^\top u\|`,
    :math:`u \leftarrow W v / \|W v\|` (without gradient), then
    :math:`\sigma = u^\top W v`, differentiable in :math:`W` (its gradient is
    :math:`u v^\top`, that of the exact :math:`\sigma_{\max}` at convergence).

    :param u: the left vector ``(m,)`` from the previous call (``None``: a random start).
    :returns: :math:`\sigma`, and the new :math:`u` and :math:`v` to start the next call from.

    References:
        [1] Yoshida, Miyato. Spectral Norm Regularization for Improving the Generalizability of
        Deep Learning. 2017.
    """
    if weight.dim() != 2:
        raise ValueError(f"weight must be a matrix, got shape {tuple(weight.shape)}")
    if not (isinstance(steps, int) and steps >= 1):
        raise ValueError(f"steps must be a positive integer, got {steps!r}")
    with torch.no_grad():
        w = weight.detach()
        if u is None or u.shape != (w.shape[0],):
            u = F.normalize(torch.randn(w.shape[0], dtype=w.dtype, device=w.device), dim=0)
        u = u.to(w)
        for _ in range(steps):
            v = F.normalize(w.T @ u, dim=0, eps=1e-12)
            u = F.normalize(w @ v, dim=0, eps=1e-12)
    return u @ weight @ v, u, v


class SpectralRegularizedELBO(DifferentiableObjective, pyro.infer.ELBO):
    r"""A differentiable objective plus NVAE's spectral regularisation [1] (section 3.2):

    .. math::
        \mathcal L_{SR} = \lambda \sum_i s^{(i)},

    :math:`s^{(i)}` the largest singular value of layer :math:`i` (every linear and
    convolutional layer of the modules that own the model and the guide, a convolution's kernel
    flattened to ``(out, in * k...)``), each estimated by one step of :func:`power_iteration` a
    call (ten on a layer's first call), its vector kept between calls. Bounding the layers'
    Lipschitz constants keeps the top-down path smooth, which NVAE found essential for stable
    training of deep hierarchies. The objectives of this package sum over the datapoints of a
    batch and NVAE's :math:`\lambda` is per datapoint, so :math:`B\,\mathcal L_{SR}` is added
    for a batch of :math:`B`.

    :param objective: the objective regularised (any with ``differentiable_loss``; default
        :class:`~pyro_vaes.objectives.ELBO`). Reachable as :attr:`objective`, so a schedule can
        anneal its attributes.
    :param lambda_: :math:`\lambda \ge 0` (NVAE uses :math:`10^{-2}` on MNIST).
    :param steps: power-iteration steps per call.

    References:
        [1] Vahdat, Kautz. NVAE: A Deep Hierarchical Variational Autoencoder. NeurIPS 2020.
        [2] Yoshida, Miyato. Spectral Norm Regularization for Improving the Generalizability of
        Deep Learning. 2017.
    """

    def __init__(self, objective: Any = None, lambda_: float = 1e-2, steps: int = 1) -> None:
        if not lambda_ >= 0:
            raise ValueError(f"lambda_ must be >= 0, got {lambda_!r}")
        if not (isinstance(steps, int) and steps >= 1):
            raise ValueError(f"steps must be a positive integer, got {steps!r}")
        objective = ELBO() if objective is None else objective
        if not callable(getattr(objective, "differentiable_loss", None)):
            raise TypeError(
                f"objective must have differentiable_loss, got {type(objective).__name__}"
            )
        super().__init__(num_particles=1)
        self.objective, self.lambda_, self.steps = objective, float(lambda_), steps
        self._vectors: dict[tuple[int, str], torch.Tensor] = {}

    def spectral_norms(self, modules: Iterable[nn.Module]) -> list[torch.Tensor]:
        """:math:`s^{(i)}` of every linear and convolutional layer of ``modules``, in order."""
        out = []
        for index, module in enumerate(modules):
            for name, layer in module.named_modules():
                if not isinstance(layer, _LAYERS):
                    continue
                weight = layer.weight
                if isinstance(layer, nn.ConvTranspose2d):
                    weight = weight.transpose(0, 1)
                key = (index, name)
                u = self._vectors.get(key)
                steps = self.steps if u is not None else 10 * self.steps
                sigma, u, _ = power_iteration(weight.flatten(1), u, steps)
                self._vectors[key] = u
                out.append(sigma)
        return out

    def penalty(self, modules: Iterable[nn.Module]) -> torch.Tensor:
        r""":math:`\sum_i s^{(i)}` over the layers of ``modules``."""
        norms = self.spectral_norms(modules)
        return torch.stack(norms).sum() if norms else torch.zeros(())

    def differentiable_loss(
        self, model: Callable[..., Any], guide: Callable[..., Any], *args: Any, **kwargs: Any
    ) -> torch.Tensor:
        from pyro_vaes.train.structure import owners  # structure imports the objectives

        loss = self.objective.differentiable_loss(model, guide, *args, **kwargs)
        if self.lambda_ == 0:
            return loss
        x = args[0] if args else kwargs.get("x")
        if not isinstance(x, torch.Tensor):
            raise ValueError(
                "SpectralRegularizedELBO needs the batch x (the first argument of model and "
                "guide) to weigh the penalty by its number of datapoints"
            )
        modules = owners(model, guide)
        if not modules:
            raise ValueError(
                "SpectralRegularizedELBO regularises the layers of the nn.Module that owns the "
                "model or the guide (a module, or its bound method); it found none"
            )
        return loss + x.shape[0] * self.lambda_ * self.penalty(modules)
