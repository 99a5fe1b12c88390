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
    locate_bad,
    num_datapoints,
    select,
    to_device,
)
from pyro_vaes.errors import DataError

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
    ) -> None:
        self.data, self.batch_size, self.device = data, batch_size, device
        self.generator, self.shuffle, self.name = generator, shuffle, name
        self.check: Callable[[Batch], None] | None = None
        if isinstance(data, DataLoader):
            self.size = len(data.dataset)  # type: ignore[arg-type]
            self.steps = len(data)
        else:
            self.size = num_datapoints(data)
            self.steps = math.ceil(self.size / batch_size)

    def _where(self, k: int) -> str:
        assert isinstance(self.data, DataLoader)
        index = locate_bad(self.data.dataset, self.name)
        where = f" (in batch {k} of the loader"
        return f"{where}; index {index} of its dataset)" if index is not None else f"{where})"

    def first(self) -> Batch:
        """The first batch, unshuffled (for the checks before training)."""
        if isinstance(self.data, DataLoader):
            return to_device(next(iterate(self.data, self.name)), self.device)
        return select(self.data, slice(0, self.batch_size))

    def __iter__(self) -> Iterator[Batch]:
        if isinstance(self.data, DataLoader):
            for k, batch in enumerate(iterate(self.data, self.name)):
                if self.check is not None:  # a loader's batches are checked as they come
                    try:
                        self.check(batch)
                    except DataError as err:
                        raise DataError(f"{err}{self._where(k)}") from err
                yield to_device(batch, self.device)
            return
        if self.shuffle:
            order = torch.randperm(self.size, generator=self.generator).to(self.device)
            for start in range(0, self.size, self.batch_size):
                yield select(self.data, order[start : start + self.batch_size])
        else:
            for start in range(0, self.size, self.batch_size):
                yield select(self.data, slice(start, start + self.batch_size))
