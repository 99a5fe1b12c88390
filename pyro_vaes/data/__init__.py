"""Data in: datasets by name, batches of named inputs, binarisation, and the procedural sprites."""

from pyro_vaes.data.loaders import (
    Splits,
    as_tensor,
    batches,
    binarize,
    branching_diffusion,
    check_finite,
    dequantize,
    dynamic_binarize,
    load,
    registry,
)

__all__ = [
    "Splits",
    "as_tensor",
    "batches",
    "binarize",
    "branching_diffusion",
    "check_finite",
    "dequantize",
    "dynamic_binarize",
    "load",
    "registry",
]
