"""Checkpoints: written atomically, read without unpickling code.

A checkpoint is a dictionary of tensors and plain values saved with :func:`torch.save` and read
with ``torch.load(weights_only=True)``, so loading one never runs code from the file. It is first
written to a temporary file beside the target and then moved over it with :func:`os.replace`, so a
crash mid-write leaves the previous checkpoint intact.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import torch

from pyro_vaes.errors import CheckpointError

__all__ = ["FORMAT", "load", "restore", "save"]

#: the ``format`` entry that marks a pyro-vaes checkpoint
FORMAT = "pyro-vaes/checkpoint/1"


def save(state: dict[str, Any], path: str | Path) -> Path:
    """Write ``state`` (tensors, numbers, strings, lists and dicts of them) to ``path`` atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save({"format": FORMAT, **state}, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def load(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a checkpoint written by :func:`save`.

    :raises CheckpointError: if the file is missing, corrupt, holds anything but tensors and plain
        values, or was not written by pyro-vaes.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no checkpoint file at {path}")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # torch raises many types for a damaged or unsafe file
        raise CheckpointError(
            f"cannot read checkpoint {path}: the file is corrupt or holds objects other than "
            f"tensors and plain values ({type(err).__name__}: {str(err).splitlines()[0][:200]})"
        ) from err
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a pyro-vaes checkpoint (expected format {FORMAT!r})")
    return state


def restore(module: torch.nn.Module, path: str | Path, index: int = 0) -> torch.nn.Module:
    """Load the parameters that :func:`pyro_vaes.fit` saved for the ``index``-th module that owns
    the model and guide (0 for a :class:`pyro_vaes.VAE`) into ``module``.

    :raises CheckpointError: if the checkpoint is unreadable or does not fit ``module``.
    """
    prefix = f"module{index}."
    params = load(path)["params"]
    state = {k[len(prefix) :]: v for k, v in params.items() if k.startswith(prefix)}
    try:
        module.load_state_dict(state, strict=True)
    except RuntimeError as err:
        raise CheckpointError(f"{path} does not fit this model: {err}") from err
    return module
