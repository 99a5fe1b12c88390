"""One draw of a model/guide pair as two traces: the guide's, and the model's replayed against
it, without subsample sites. Every objective of :mod:`pyro_vaes.objectives` starts from them.

They are what ``prune_subsample_sites(poutine.trace(guide).get_trace(...))`` and the same of
``poutine.trace(poutine.replay(model, trace=guide_trace))`` give, minus the ``_INPUT`` and
``_RETURN`` nodes, taken with one handler per program instead of two, and without the two
copies of each trace that ``get_trace`` and the pruning make: the same sample and param sites,
the same replay (a latent site of the model takes the guide's value and ``infer``; a subsampled
plate takes the guide's indices), on every step of training.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pyro.poutine.messenger import Messenger
from pyro.poutine.trace_struct import Trace
from pyro.poutine.util import site_is_subsample

__all__ = ["Record", "traces"]


class Record(Messenger):
    """Records the sample and param sites of a program into :attr:`trace`, leaving out subsample
    sites (kept apart in :attr:`subsamples`) and sites marked ``_do_not_trace``; with
    ``replay``, the record of another program (the guide's), its latent sites and subsample
    sites take their values from it, as ``poutine.replay`` does.

    :param replay: the :class:`Record` of the guide, for the model's run.
    """

    def __init__(self, replay: Record | None = None) -> None:
        super().__init__()
        self.replay = replay
        self.trace = Trace()
        self.subsamples: dict[str, Any] = {}

    def _pyro_sample(self, msg: Any) -> None:
        if self.replay is None or msg["is_observed"]:
            return
        name = msg["name"]
        site = self.replay.trace.nodes.get(name) or self.replay.subsamples.get(name)
        if site is None:
            return
        if site["type"] != "sample" or site["is_observed"]:
            raise RuntimeError(f"site {name} must be sampled in trace")
        msg["done"] = True
        msg["value"] = site["value"]
        msg["infer"] = site["infer"]

    def _pyro_post_sample(self, msg: Any) -> None:
        if msg["infer"].get("_do_not_trace"):
            return
        if site_is_subsample(msg):
            self.subsamples[msg["name"]] = msg.copy()
            return
        self.trace.add_node(msg["name"], **msg)

    def _pyro_post_param(self, msg: Any) -> None:
        self.trace.add_node(msg["name"], **msg)


def traces(
    model: Callable[..., Any], guide: Callable[..., Any], args: tuple, kwargs: dict
) -> tuple[Trace, Trace]:
    """One draw of the guide and the model replayed against it (subsample sites left out):
    ``(model_trace, guide_trace)``."""
    with Record() as guide_record:
        guide(*args, **kwargs)
    with Record(replay=guide_record) as model_record:
        model(*args, **kwargs)
    return model_record.trace, guide_record.trace
