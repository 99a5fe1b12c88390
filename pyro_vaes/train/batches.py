"""An epoch's batches: shuffled slices of data already on the device, or a DataLoader's batches
moved there, as :data:`pyro_vaes.data.batch.Batch` dicts."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch.utils.data import DataLoader

from pyro_vaes.data.batch import (
    Batch,
    as_batch,
    iterate,
    num_datapoints,
    select,
    to_device,
)
from pyro_vaes.train.distributed import shard_bounds

__all__ = ["Batches", "prepare"]


def prepare(data: Any, name: str, device: torch.device) -> Batch | DataLoader:
    """``data`` as one checked batch on ``device``, or the ``DataLoader`` itself."""
    if isinstance(data, DataLoader):
        return data
    return to_device(as_batch(data, name), device)


class Batches:
    """The batches of one pass over ``data``: shuffled (with ``generator``) or in order; a
    ``DataLoader`` is iterated as it is and each of its batches passed to ``check``."""

    def __init__(
        self,
        data: Batch | DataLoader,
        batch_size: int,
        device: torch.device,
        generator: torch.Generator,
        shuffle: bool,
        name: str = "data",
        shard: tuple[int, int] | None = None,
    ) -> None:
        self.data, self.batch_size, self.device = data, batch_size, device
        self.shard = shard  # (rank, world size) under torch.distributed
        self.generator, self.shuffle, self.name = generator, shuffle, name
        self.check: Callable[[Batch, int], None] | None = None  # (batch, rows seen before it)
        self.size: int | None
        self.steps: int | None
        if isinstance(data, DataLoader):  # an unsized (iterable) dataset: both unknown
            try:
                self.size, self.steps = len(data.dataset), len(data)  # type: ignore[arg-type]
            except TypeError:
                self.size = self.steps = None
        else:
            self.size = num_datapoints(data)
            world = shard[1] if shard is not None and shuffle else 1
            self.steps = math.ceil(num_datapoints(data) / (batch_size * world))

    def first(self) -> Batch:
        """The first batch, unshuffled (for the checks before training)."""
        if isinstance(self.data, DataLoader):
            return to_device(next(iterate(self.data, self.name)), self.device)
        return select(self.data, slice(0, self.batch_size))

    def __iter__(self) -> Iterator[Batch]:
        if isinstance(self.data, DataLoader):
            seen = 0
            for batch in iterate(self.data, self.name):
                if self.check is not None:  # an unsized dataset's batches: checked as they come
                    self.check(batch, seen)
                seen += num_datapoints(batch)
                yield to_device(batch, self.device)
            return
        size = num_datapoints(self.data)
        if self.shuffle:
            # every rank draws the same permutation; global batch i (batch_size rows per rank)
            # is cut into contiguous shards, so the ranks' batches i together are the single
            # process's batch i of world_size * batch_size rows
            rank, world = self.shard if self.shard is not None else (0, 1)
            order = torch.randperm(size, generator=self.generator).to(self.device)
            step = self.batch_size * world
            for start in range(0, size, step):
                chunk = order[start : start + step]
                lo, hi = shard_bounds(len(chunk), rank, world)
                yield select(self.data, chunk[lo:hi])
        else:
            # in order; under torch.distributed each rank passes over its contiguous share
            lo, hi = (0, size) if self.shard is None else shard_bounds(size, *self.shard)
            for start in range(lo, hi, self.batch_size):
                yield select(self.data, slice(start, min(start + self.batch_size, hi)))
