r"""Batches of named inputs: the data ``x`` and whatever else a model takes (labels ``y``,
conditions, masks).

One convention runs through :func:`pyro_vaes.fit`, :mod:`pyro_vaes.evaluate` and
:func:`pyro_vaes.posterior_predictive`: a batch is a dict of tensors that share their leading
(datapoint) dim, with the data under ``"x"``, and a model is called as ``model(x, **others)``,
e.g. ``model(x, y=y)``. Data comes in as

* a tensor ``x``;
* an ``(x, y)`` pair (or ``(x,)``), as a tuple or list;
* a dict of named tensors, ``{"x": x, "y": y, ...}``;
* a map-style ``Dataset`` whose items are any of the above (a ``TensorDataset(x, y)`` say),
  materialised once; or a ``DataLoader`` of such batches, converted batch by batch.

A model receives only the inputs its signature accepts (:func:`accepting`), so unconditional
models keep working on labelled data; a model that requires an input the data lacks is refused
before anything runs. Missing labels, for semi-supervised learning, are marked with
:data:`MISSING` (``-1``) in an integer ``y``.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Collection, Iterator, Mapping
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset

from pyro_vaes.errors import DataError

__all__ = [
    "MISSING",
    "Batch",
    "accepting",
    "as_batch",
    "call_args",
    "check_batch",
    "check_finite",
    "iterate",
    "num_datapoints",
    "select",
    "to_device",
]

#: a batch: named tensors with one row per datapoint, the data under ``"x"``
Batch = dict[str, torch.Tensor]

#: the label value that marks a missing label in an integer ``y``
MISSING = -1

_PAIR_NAMES = ("x", "y")


def _from_item(item: Any, name: str) -> Batch:
    if isinstance(item, torch.Tensor):
        return {"x": item}
    if isinstance(item, Mapping):
        batch = dict(item)
    elif isinstance(item, list | tuple):
        if not 1 <= len(item) <= 2:
            raise DataError(
                f"{name}: a batch is x, an (x, y) pair or a dict of named tensors; got a "
                f"{type(item).__name__} of {len(item)} items (use a dict to name more inputs)"
            )
        batch = dict(zip(_PAIR_NAMES, item, strict=False))
    else:
        raise TypeError(
            f"{name} must be a tensor, an (x, y) pair, a dict of tensors, a Dataset or a "
            f"DataLoader, got {type(item).__name__}"
        )
    if "x" not in batch:
        raise DataError(f"{name}: a dict batch needs the data under 'x', got keys {sorted(batch)}")
    for key, value in batch.items():
        if not isinstance(value, torch.Tensor):
            raise DataError(f"{name}: input {key!r} must be a tensor, got {type(value).__name__}")
    return batch


def as_batch(data: Any, name: str = "data") -> Batch:
    """``data`` (anything but a ``DataLoader``; see the module docstring) as one batch, checked
    with :func:`check_batch`; ``x`` as a float tensor."""
    if isinstance(data, DataLoader):
        raise TypeError(f"{name}: iterate a DataLoader with `iterate`, not as_batch")
    if isinstance(data, list) and len(data) >= 2 and _same_shaped_tensors(data):
        raise DataError(
            f"{name} is a list of {len(data)} tensors of one shape {tuple(data[0].shape)}: "
            "stack rows into one tensor (torch.stack), or pass data and labels as a tuple (x, y)"
        )
    if isinstance(data, Dataset) and not isinstance(data, torch.Tensor):
        try:
            size = len(data)  # type: ignore[arg-type]
        except TypeError:
            raise DataError(f"{name}: a Dataset without len(); pass a DataLoader instead") from None
        if size == 0:
            raise DataError(f"{name} is empty")
        parts = [_from_item(b, name) for b in DataLoader(data, batch_size=1024, shuffle=False)]
        batch = {key: torch.cat([p[key] for p in parts]) for key in parts[0]}
    else:
        batch = _from_item(data, name)
    if not batch["x"].is_floating_point():
        batch["x"] = batch["x"].float()
    check_batch(batch, name)
    return batch


def _same_shaped_tensors(items: list) -> bool:
    return all(isinstance(t, torch.Tensor) for t in items) and len({t.shape for t in items}) == 1


def num_datapoints(batch: Mapping[str, torch.Tensor]) -> int:
    """The number of datapoints in ``batch``."""
    return batch["x"].shape[0]


def check_batch(batch: Mapping[str, torch.Tensor], name: str = "data", offset: int = 0) -> None:
    """Check a batch of named inputs before it is used.

    :raises DataError: unless ``x`` is ``(N, ...)`` with ``N > 0``, every input has ``N``
        rows, and every floating-point input is finite (naming the input and the first bad
        datapoint: its row plus ``offset``, for a part of a dataset).
    """
    x = batch["x"]
    if x.dim() < 2:
        raise DataError(
            f"{name} must have shape (N, ...) with one row per datapoint, got {tuple(x.shape)}"
        )
    if x.shape[0] == 0:
        raise DataError(f"{name} is empty")
    for key, value in batch.items():
        if value.dim() == 0 or value.shape[0] != x.shape[0]:
            raise DataError(
                f"{name}: input {key!r} has shape {tuple(value.shape)}, but x has {x.shape[0]} "
                "rows; every input needs one row per datapoint"
            )
        if value.is_floating_point():
            check_finite(value, name, "x" if key == "x" else f"input {key!r}", offset)


def check_finite(value: torch.Tensor, name: str = "data", what: str = "x", offset: int = 0) -> None:
    """Check that every datapoint (row) of ``value`` is finite.

    :raises DataError: naming the first datapoint (row) of ``value`` that holds a NaN or an
        infinity.
    """
    bad = ~torch.isfinite(value.reshape(value.shape[0], -1)).all(dim=1)
    if bool(bad.any()):
        row = int(bad.nonzero()[0, 0])
        idx = row + offset
        kind = "NaN" if bool(torch.isnan(value[row]).any()) else "Inf"
        raise DataError(
            f"{name} holds non-finite values in {what}: {int(bad.sum())} datapoint(s), the "
            f"first at index {idx} ({kind})"
        )


def iterate(loader: DataLoader, name: str = "data") -> Iterator[Batch]:
    """A ``DataLoader``'s batches as :data:`Batch` dicts."""
    for item in loader:
        batch = _from_item(item, name)
        if not batch["x"].is_floating_point():
            batch["x"] = batch["x"].float()
        yield batch


def to_device(batch: Mapping[str, torch.Tensor], device: torch.device) -> Batch:
    """Every input of ``batch`` on ``device``."""
    return {k: v.to(device, non_blocking=True) for k, v in batch.items()}


def select(batch: Mapping[str, torch.Tensor], index: torch.Tensor | slice) -> Batch:
    """The datapoints ``index`` of every input."""
    return {k: v[index] for k, v in batch.items()}


def call_args(batch: Mapping[str, torch.Tensor]) -> tuple[tuple, dict[str, torch.Tensor]]:
    """``(args, kwargs)`` of a model call on ``batch``: ``x`` positionally, the rest by name."""
    return (batch["x"],), {k: v for k, v in batch.items() if k != "x"}


def accepting(fn: Callable[..., Any], inputs: Collection[str], role: str = "model") -> Any:
    """``fn`` called with only those of ``inputs`` (besides ``x``) that its signature accepts.

    Returns ``fn`` itself where it accepts them all (or takes ``**kwargs``).

    :raises DataError: where ``fn`` requires an input (a parameter without a default after the
        first) that the data does not carry.
    """
    try:
        params = list(inspect.signature(fn).parameters.values())
    except (TypeError, ValueError):  # builtins and C functions: pass everything
        return fn
    named = params[1:] if params and params[0].kind != params[0].VAR_KEYWORD else params
    if any(p.kind is p.VAR_KEYWORD for p in named):
        return fn
    by_name = {p.name for p in named if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
    required = [
        p.name
        for p in named
        if p.default is p.empty and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
    ]
    missing = [n for n in required if n not in inputs]
    if missing:
        raise DataError(
            f"the {role} requires input(s) {missing}, but the data carries only "
            f"{sorted({'x', *inputs})}: pass (x, y) pairs or a dict batch"
        )
    others = set(inputs) - {"x"}
    keep = others & by_name
    if keep == others:
        return fn

    @functools.wraps(fn)
    def restricted(*args: Any, **kwargs: Any) -> Any:
        return fn(*args, **{k: v for k, v in kwargs.items() if k in keep})

    return restricted
