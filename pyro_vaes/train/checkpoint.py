"""Checkpoints: written atomically, read without unpickling code.

A checkpoint is a dictionary of tensors and plain values saved with :func:`torch.save` and read
with ``torch.load(weights_only=True)``, so loading one never runs code from the file. It is first
written to a temporary file beside the target and then moved over it with :func:`os.replace`, so a
crash mid-write leaves the previous checkpoint intact.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch

from pyro_vaes.errors import CheckpointError

__all__ = ["FORMAT", "check_writable", "clean_temporary", "load", "restore", "save"]

#: the ``format`` entry that marks a pyro-vaes checkpoint
FORMAT = "pyro-vaes/checkpoint/1"


def _temporary_prefix(path: Path) -> str:
    return f".{path.name}."


def save(state: dict[str, Any], path: str | Path) -> Path:
    """Write ``state`` (tensors, numbers, strings, lists and dicts of them) to ``path`` atomically.

    :raises CheckpointError: naming the file and the free space, where it cannot be written (a
        full disk, say); the previous checkpoint at ``path`` is then left as it was.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=_temporary_prefix(path), suffix=".tmp", dir=path.parent)
    except OSError as err:
        raise CheckpointError(f"cannot write checkpoint {path}: {err.strerror or err}") from err
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save({"format": FORMAT, **state}, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except (OSError, RuntimeError) as err:  # torch reports a full disk as a RuntimeError
        Path(tmp).unlink(missing_ok=True)
        free = shutil.disk_usage(path.parent).free / 2**20
        raise CheckpointError(
            f"cannot write checkpoint {path} ({free:.1f} MiB free on its file system): "
            f"{_first_line(err)}; the previous checkpoint, if any, is unchanged"
        ) from err
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def clean_temporary(path: str | Path) -> list[Path]:
    """Remove the temporary files that interrupted writes of ``path`` left beside it (only those:
    ``.<name>.*.tmp``); returns what was removed."""
    path = Path(path)
    if not path.parent.is_dir():
        return []
    removed = []
    for tmp in path.parent.glob(f"{_temporary_prefix(path)}*.tmp"):
        tmp.unlink(missing_ok=True)
        removed.append(tmp)
    return removed


def check_writable(folder: str | Path, needed_bytes: int) -> None:
    """Check that a checkpoint fits in ``folder``; creates the folder (and nothing else) if it
    is missing.

    :raises CheckpointError: unless ``folder`` is (or can be made) a writable folder with at
        least ``needed_bytes`` free.
    """
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise CheckpointError(f"checkpoint_dir {folder} is a file, not a folder")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".pyro-vaes-probe.", dir=folder)
        os.close(fd)
        os.unlink(probe)
    except OSError as err:
        raise CheckpointError(
            f"checkpoint_dir {folder} is not writable: {err.strerror or err}"
        ) from err
    free = shutil.disk_usage(folder).free
    if free < needed_bytes:
        raise CheckpointError(
            f"checkpoint_dir {folder} has {free / 2**20:.1f} MiB free; a checkpoint needs about "
            f"{needed_bytes / 2**20:.1f} MiB"
        )


def _first_line(err: BaseException) -> str:
    lines = str(err).strip().splitlines()
    return f"{type(err).__name__}: {lines[0][:200]}" if lines else type(err).__name__


def load(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a checkpoint written by :func:`save`.

    :raises CheckpointError: if the file is missing, corrupt, holds anything but tensors and plain
        values, or was not written by pyro-vaes.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no checkpoint file at {path}")
    if path.stat().st_size == 0:
        raise CheckpointError(f"cannot read checkpoint {path}: the file is empty (0 bytes)")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # torch raises many types for a damaged or unsafe file
        raise CheckpointError(
            f"cannot read checkpoint {path}: the file is corrupt or holds objects other than "
            f"tensors and plain values ({_first_line(err)})"
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
