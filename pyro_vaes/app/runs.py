"""Run folders: what ``pyro-vaes train`` writes and ``evaluate``, ``sample`` and ``report`` read.

A run folder holds ``config.json`` (what to build: variant, options, data), ``checkpoint.pt``
(parameters only; loading it runs no code), ``metrics.json`` and pictures.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from pyro_vaes import data
from pyro_vaes.catalogue import variants
from pyro_vaes.errors import CheckpointError
from pyro_vaes.train import checkpoint
from pyro_vaes.train.fit import CHECKPOINT_NAME

__all__ = ["BINARIZE", "CONFIG", "METRICS", "load_run", "prepare_data"]

CONFIG = "config.json"
METRICS = "metrics.json"


# What each binarisation does: (transform applied to every training batch, preparation of the
# stored images). Test images are binarised once with a fixed seed so scores are comparable.
BINARIZE: dict[
    str, tuple[Callable[[torch.Tensor], torch.Tensor] | None, Callable[[data.Splits], data.Splits]]
] = {
    "dynamic": (
        data.dynamic_binarize,
        lambda s: data.Splits(s.name, s.x_train, s.y_train, data.binarize(s.x_test, 1), s.y_test),
    ),
    "static": (None, lambda s: s.map(functools.partial(data.binarize, seed=0))),
    "none": (None, lambda s: s),
}


def prepare_data(
    config: dict[str, Any],
) -> tuple[data.Splits, Callable[[torch.Tensor], torch.Tensor] | None]:
    """The run's dataset, prepared as in training, and the transform of its training batches."""
    transform, prepare = BINARIZE[config["binarize"]]
    return prepare(data.load(config["data"], config.get("data_root"))), transform


def load_run(run: Path) -> tuple[dict[str, Any], Any]:
    """A run's config and its model, rebuilt from the registry with the saved parameters."""
    config_path = run / CONFIG
    if not config_path.is_file():
        raise CheckpointError(f"{run} is not a run folder (no {CONFIG})")
    config = json.loads(config_path.read_text())
    model: Any = variants.build(config["variant"], config["data_shape"], **config["options"])
    checkpoint.restore(model, run / CHECKPOINT_NAME)
    return config, model.eval()
