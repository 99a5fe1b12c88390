r"""The plate of a batch's datapoints: ``pyro.plate`` without the broadcasts that change nothing.

``pyro.plate`` expands every site's distribution to the plates' batch shape. Where the shape
already is that batch shape (a posterior computed from the batch, a likelihood decoded from it)
the expansion changes nothing, yet it builds a new distribution and puts an ``expand`` node per
parameter into the autograd graph, on every site of every step. :class:`DataPlate` expands only
where Pyro's broadcasting would change the shape (a prior without a batch dim), by Pyro's own
rule; everything else is ``pyro.plate``'s: the subsample site and its replay, the
conditional-independence frame, the subsample scale. A site's distribution, value and log
density are those ``pyro.plate`` gives it, and enumeration, vectorised particles and every ELBO
treat it as the ``pyro.plate`` it is.
"""

from __future__ import annotations

from typing import Any

import pyro
from pyro.distributions.torch_distribution import TorchDistributionMixin
from pyro.poutine.broadcast_messenger import BroadcastMessenger
from pyro.poutine.subsample_messenger import SubsampleMessenger

__all__ = ["DataPlate"]


def needs_broadcast(msg: Any) -> bool:
    """Whether Pyro's broadcasting would change the site's distribution: some plate frame's dim
    is missing from its batch shape or has another size there. (Where every frame's dim has the
    frame's size, the target shape of Pyro's rule is the batch shape itself.)"""
    fn = msg["fn"]
    if msg["done"] or msg["type"] != "sample" or not isinstance(fn, TorchDistributionMixin):
        return False
    shape = fn.batch_shape
    for frame in msg["cond_indep_stack"]:
        if frame.dim is None or frame.size == -1:
            continue
        if len(shape) < -frame.dim or shape[frame.dim] != frame.size:
            return True
    return False


class DataPlate(pyro.plate):
    """``pyro.plate(name, size, ...)`` that broadcasts a site's distribution only where that
    changes its shape (see the module docstring); same arguments as ``pyro.plate``."""

    def _process_message(self, msg: Any) -> None:
        SubsampleMessenger._process_message(self, msg)  # the frame and the scale
        if needs_broadcast(msg):
            BroadcastMessenger._pyro_sample(msg)
