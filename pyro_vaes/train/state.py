"""What a checkpoint of :func:`pyro_vaes.fit` holds beyond the parameters: every RNG state, and
the parameters' restoration with checks that name what does not match."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pyro_vaes.errors import CheckpointError

__all__ = ["load_params", "rng_state", "set_rng_state"]


def rng_state(shuffle: torch.Generator) -> dict[str, Any]:
    """The torch, CUDA, Python and NumPy RNG states and the shuffling generator's, as tensors and
    plain values (loadable with ``weights_only=True``)."""
    np_state: Any = np.random.get_state()
    py_state: Any = random.getstate()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "python": [py_state[0], list(py_state[1])],
        "numpy": [np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), *np_state[2:]],
        "shuffle": shuffle.get_state(),
    }


def set_rng_state(state: dict[str, Any], shuffle: torch.Generator) -> None:
    """Restore what :func:`rng_state` saved."""
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    random.setstate((state["python"][0], tuple(state["python"][1]), None))
    kind, keys, *rest = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), *rest))
    shuffle.set_state(state["shuffle"])


def load_params(
    saved: dict[str, torch.Tensor], params: dict[str, torch.Tensor], path: Path
) -> None:
    """Copy ``saved`` into ``params`` in place.

    :raises CheckpointError: naming the missing, unexpected or misshapen parameters.
    """
    if set(saved) != set(params):
        missing, extra = sorted(set(params) - set(saved)), sorted(set(saved) - set(params))
        raise CheckpointError(
            f"{path} does not belong to this model: missing {missing[:5]}, unexpected {extra[:5]}"
        )
    for name, tensor in params.items():
        if saved[name].shape != tensor.shape:
            raise CheckpointError(
                f"{path}: parameter {name!r} has shape {tuple(saved[name].shape)} in the "
                f"checkpoint but {tuple(tensor.shape)} in the model"
            )
    with torch.no_grad():
        for name, tensor in params.items():
            tensor.copy_(saved[name])
