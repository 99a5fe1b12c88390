"""Data in: tensors, Datasets and DataLoaders; bundled and torchvision datasets; binarisation.

Datasets come back as :class:`Splits`: float images in ``[0, 1]`` shaped ``(N, C, H, W)`` with
integer labels. The offline default is scikit-learn's bundled 8x8 handwritten digits; MNIST,
FashionMNIST and CIFAR10 come through torchvision (downloaded where the machine has internet);
``mnist10k`` reads the real MNIST test set from a folder of IDX files and splits it 8,000/2,000.
"""

from __future__ import annotations

import gzip
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from pyro_vaes.data.batch import as_batch, check_finite
from pyro_vaes.errors import DataError
from pyro_vaes.registry import Registry

__all__ = [
    "Splits",
    "as_tensor",
    "binarize",
    "branching_diffusion",
    "check_finite",
    "dequantize",
    "dynamic_binarize",
    "load",
    "registry",
]


# ---------------------------------------------------------------- tensors, Datasets, DataLoaders


def as_tensor(data: torch.Tensor | Dataset | tuple | list, name: str = "data") -> torch.Tensor:
    """The data ``x`` of ``data`` (a tensor, an ``(x, y)`` pair, a dict batch or a ``Dataset`` of
    these; see :mod:`pyro_vaes.data.batch`) as one checked float tensor ``(N, ...)``.

    :raises DataError: if the data is empty, non-finite or not made of tensors.
    """
    return as_batch(data, name)["x"]


# ---------------------------------------------------------------- binarisation


def binarize(x: torch.Tensor, seed: int | None = 0) -> torch.Tensor:
    """Static binarisation: one Bernoulli draw per pixel with probability ``x`` in ``[0, 1]``,
    reproducible with ``seed`` (``None`` uses the global RNG)."""
    check_unit_interval(x, "binarize")
    gen = None if seed is None else torch.Generator(device=x.device).manual_seed(seed)
    return torch.bernoulli(x, generator=gen)


def dynamic_binarize(x: torch.Tensor) -> torch.Tensor:
    """Dynamic binarisation: a fresh Bernoulli draw each time a batch is seen. Pass it as
    ``fit(..., transform=dynamic_binarize)`` so that every epoch sees new binary images.

    Intensities outside ``[0, 1]`` raise :class:`DataError` naming the first bad datapoint (on
    the CPU; on a GPU the check would cost a synchronisation per step, so it is made where
    ``fit`` first applies the transform to the whole data, which is on the CPU then)."""
    if x.device.type == "cpu":
        check_unit_interval(x, "dynamic_binarize")
    return torch.bernoulli(x)


def dequantize(x: torch.Tensor, levels: int, seed: int | None = None) -> torch.Tensor:
    r"""Uniform dequantisation of images of ``levels`` grey levels :math:`L`: intensities
    :math:`x = k / (L - 1)` in ``[0, 1]`` become :math:`y = (k + u) / L` with
    :math:`u \sim U[0, 1)` per pixel, continuous data in :math:`[0, 1)` for a density model
    (:math:`L = 256` for 8-bit images, :math:`(x_{8bit} + u)/256`; 17 for the sklearn digits).
    A fresh draw on each call: pass ``functools.partial(dequantize, levels=L)`` as ``fit``'s
    ``transform``, and ``seed`` for held-out data dequantised once, reproducibly.

    :raises DataError: naming the first datapoint (row) whose intensities are not on the grid
        :math:`k / (L - 1)`.
    """
    if not isinstance(levels, int) or levels < 2:
        raise ValueError(f"dequantize: levels must be an int >= 2, got {levels!r}")
    k = torch.round(x * (levels - 1))
    bad = ((x * (levels - 1) - k).abs() > 1e-3).reshape(x.shape[0], -1).any(dim=1) | (
        ((k < 0) | (k > levels - 1)).reshape(x.shape[0], -1).any(dim=1)
    )
    if bool(bad.any()):
        idx = int(bad.nonzero()[0, 0])
        raise DataError(
            f"dequantize expects images of {levels} grey levels k / {levels - 1} in [0, 1]: "
            f"{int(bad.sum())} datapoint(s) off that grid, the first at index {idx}"
        )
    gen = None if seed is None else torch.Generator(device=x.device).manual_seed(seed)
    u = torch.rand(x.shape, generator=gen, dtype=x.dtype, device=x.device)
    return (k + u) / levels


def check_unit_interval(x: torch.Tensor, what: str) -> None:
    """:raises DataError: naming the first datapoint (row) of ``x`` with an intensity outside
    ``[0, 1]``."""
    bad = ((x < 0) | (x > 1)).reshape(x.shape[0], -1).any(dim=1)
    if bool(bad.any()):
        idx = int(bad.nonzero()[0, 0])
        lo, hi = float(x[idx].min()), float(x[idx].max())
        raise DataError(
            f"{what} expects intensities in [0, 1]: {int(bad.sum())} datapoint(s) outside, the "
            f"first at index {idx} (values from {lo:g} to {hi:g}); scale the data to [0, 1]"
        )


# ---------------------------------------------------------------- named datasets


@dataclass(frozen=True)
class Splits:
    """Train, validation and test splits of images in ``[0, 1]``, shaped ``(N, C, H, W)``, with
    labels. The validation split is carved out of the training data
    (:meth:`with_validation`); it is empty until then. Early stopping and model choice read
    ``x_val``; the test split is for the final score alone."""

    name: str
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    x_val: torch.Tensor | None = None
    y_val: torch.Tensor | None = None
    #: the images' grey levels :math:`L` (intensities :math:`k / (L - 1)`), for
    #: :func:`dequantize`; ``None`` for data that is not made of grey levels
    levels: int | None = None

    @property
    def shape(self) -> tuple[int, ...]:
        """The shape of one datapoint."""
        return tuple(self.x_train.shape[1:])

    def map(self, fn: Callable[[torch.Tensor], torch.Tensor]) -> Splits:
        """Apply ``fn`` to the images of every split (e.g. static binarisation); the images'
        grey levels are then unknown (``levels=None``)."""
        x_val = None if self.x_val is None else fn(self.x_val)
        return replace(
            self, x_train=fn(self.x_train), x_test=fn(self.x_test), x_val=x_val, levels=None
        )

    def with_validation(self, fraction: float, seed: int = 0) -> Splits:
        """Carve a validation split of ``round(fraction * N)`` datapoints out of the training
        data, chosen by a permutation seeded with ``seed`` (the same split on every call); the
        rest stays the training split, in its order. ``fraction = 0`` leaves no validation
        split. The test split is untouched.

        :raises ValueError: if ``fraction`` is outside ``[0, 1)`` or leaves either split empty.
        """
        if not 0 <= fraction < 1:
            raise ValueError(f"val_fraction must be in [0, 1), got {fraction!r}")
        if fraction == 0:
            return self
        if self.x_val is not None:
            raise ValueError(f"{self.name} already has a validation split")
        n = self.x_train.shape[0]
        n_val = round(fraction * n)
        if not 0 < n_val < n:
            raise ValueError(
                f"val_fraction {fraction} of the {n} training datapoints of {self.name} leaves "
                f"{n_val} for validation and {n - n_val} for training; both need at least one"
            )
        perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
        val, train = perm[:n_val], perm[n_val:].sort().values
        return replace(
            self,
            x_train=self.x_train[train],
            y_train=self.y_train[train],
            x_val=self.x_train[val],
            y_val=self.y_train[val],
        )


def _digits(root: Path | None) -> Splits:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    x = torch.tensor(bunch.images, dtype=torch.float32).unsqueeze(1) / 16.0
    y = torch.tensor(bunch.target, dtype=torch.long)
    perm = torch.randperm(len(x), generator=torch.Generator().manual_seed(0))
    x, y = x[perm], y[perm]
    n_train = 1437  # the usual 80/20 split of the 1,797 images
    return Splits("digits", x[:n_train], y[:n_train], x[n_train:], y[n_train:], levels=17)


def _read_idx(path: Path) -> np.ndarray:
    """Read an IDX file (optionally gzipped), the format MNIST is distributed in."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        raw = f.read()
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise DataError(f"{path} is not an unsigned-byte IDX file")
    ndim = raw[3]
    if len(raw) < 4 + 4 * ndim:
        raise DataError(f"{path} is truncated: its header is incomplete")
    dims = [int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
    if data.size != int(np.prod(dims)):
        raise DataError(
            f"{path} is truncated: expected {int(np.prod(dims))} values, found {data.size}"
        )
    return data.reshape(dims)


def _find_idx(root: Path, stem: str) -> Path:
    for folder in (root / "MNIST" / "raw", root / "raw", root):
        for name in (stem, stem + ".gz"):
            if (folder / name).is_file():
                return folder / name
    raise DataError(
        f"mnist10k: cannot find {stem}[.gz] under {root} (looked in MNIST/raw, raw and the folder "
        "itself); pass --data-root or set PYRO_VAES_DATA"
    )


def _mnist10k(root: Path | None) -> Splits:
    root = Path(root or os.environ.get("PYRO_VAES_DATA", "data"))
    images = _read_idx(_find_idx(root, "t10k-images-idx3-ubyte"))
    labels = _read_idx(_find_idx(root, "t10k-labels-idx1-ubyte"))
    if images.shape != (10000, 28, 28) or labels.shape != (10000,):
        raise DataError(f"mnist10k expects the 10,000 MNIST test images, found {images.shape}")
    x = torch.from_numpy(images.copy()).float().div_(255.0).unsqueeze(1)
    y = torch.from_numpy(labels.astype(np.int64))
    return Splits("mnist10k", x[:8000], y[:8000], x[8000:], y[8000:], levels=256)


def _torchvision(cls_name: str) -> Callable[[Path | None], Splits]:
    def load_split(root: Path | None) -> Splits:
        import torchvision

        cls = getattr(torchvision.datasets, cls_name)
        folder = str(root or os.environ.get("PYRO_VAES_DATA", "data"))
        parts: list[tuple[torch.Tensor, torch.Tensor]] = []
        for train in (True, False):
            ds = cls(folder, train=train, download=True)
            x = torch.as_tensor(np.asarray(ds.data)).float().div_(255.0)
            x = x.permute(0, 3, 1, 2) if x.dim() == 4 else x.unsqueeze(1)  # to (N, C, H, W)
            parts.append(
                (x.contiguous(), torch.as_tensor(np.asarray(ds.targets), dtype=torch.long))
            )
        (x_train, y_train), (x_test, y_test) = parts
        return Splits(cls_name.lower(), x_train, y_train, x_test, y_test, levels=256)

    return load_split


def branching_diffusion(
    depth: int = 6,
    branching: int = 2,
    dim: int = 50,
    sigma: float = 1.0,
    noise_ratio: float = 5.0,
    per_node: int = 10,
    seed: int = 0,
) -> tuple[torch.Tensor, torch.Tensor]:
    r"""The synthetic tree data of the Poincare VAE paper: a branching diffusion from the
    origin of :math:`\mathbb R^{dim}`, each node a Gaussian step from its parent,
    :math:`y_{child} \sim \mathcal N(y_{parent}, \sigma^2 I)`, observed ``per_node`` times with
    noise :math:`x \sim \mathcal N(y, (\sigma/\nu)^2 I)`, :math:`\nu` = ``noise_ratio``.
    Returns the observations ``(N, dim)`` and the depth of each one's node (0 for the root).

    References:
        [1] Mathieu et al. Continuous Hierarchical Representations with Poincare Variational
        Auto-Encoders. NeurIPS 2019, section 5.1.
    """
    if (
        depth < 1
        or branching < 1
        or dim < 1
        or per_node < 1
        or not sigma > 0
        or not noise_ratio > 0
    ):
        raise ValueError("branching_diffusion needs positive sizes, sigma and noise_ratio")
    gen = torch.Generator().manual_seed(seed)
    nodes, depths = [torch.zeros(1, dim)], [torch.zeros(1, dtype=torch.long)]
    level = nodes[0]
    for d in range(1, depth + 1):
        parents = level.repeat_interleave(branching, dim=0)
        level = parents + sigma * torch.randn(parents.shape, generator=gen)
        nodes.append(level)
        depths.append(torch.full((level.shape[0],), d, dtype=torch.long))
    y, depth_of = torch.cat(nodes), torch.cat(depths)
    x = y.repeat_interleave(per_node, dim=0)
    x = x + (sigma / noise_ratio) * torch.randn(x.shape, generator=gen)
    return x, depth_of.repeat_interleave(per_node)


def _tree(root: Path | None) -> Splits:
    x, depth = branching_diffusion()
    perm = torch.randperm(len(x), generator=torch.Generator().manual_seed(1))
    x, depth = x[perm], depth[perm]
    n_train = int(0.8 * len(x))
    return Splits("tree", x[:n_train], depth[:n_train], x[n_train:], depth[n_train:])


def _sprites(root: Path | None) -> Splits:
    from pyro_vaes.data import sprites

    s = sprites.generate()
    perm = torch.randperm(len(s.images), generator=torch.Generator().manual_seed(2))
    x, y = s.images[perm], s.factors[perm, 0]  # label: the shape
    n_train = int(0.9 * len(x))
    return Splits("sprites", x[:n_train], y[:n_train], x[n_train:], y[n_train:], levels=2)


def _oscillator(root: Path | None) -> Splits:
    from pyro_vaes.data import sequences

    return sequences.oscillator_splits(root)


def _moving_sprites(root: Path | None) -> Splits:
    from pyro_vaes.data import sequences

    return sequences.moving_sprites_splits(root)


#: name -> loader ``(root) -> Splits``
registry: Registry[Callable[[Path | None], Splits]] = Registry("dataset")
for _name, _loader in (
    ("digits", _digits),
    ("mnist10k", _mnist10k),
    ("mnist", _torchvision("MNIST")),
    ("fashion_mnist", _torchvision("FashionMNIST")),
    ("cifar10", _torchvision("CIFAR10")),
    ("tree", _tree),
    ("sprites", _sprites),
    ("oscillator", _oscillator),
    ("moving_sprites", _moving_sprites),
):
    registry.register(_name, _loader)


def load(
    name: str, root: str | Path | None = None, *, val_fraction: float = 0.0, seed: int = 0
) -> Splits:
    """Load the dataset registered as ``name`` (see :data:`registry`).

    :param root: the folder that holds (or receives) the files; defaults to ``$PYRO_VAES_DATA``
        or ``./data``. Not used by ``digits``, which ships with scikit-learn.
    :param val_fraction: the share of the training data held out as the validation split
        (``x_val``, ``y_val``; see :meth:`Splits.with_validation`). Validate, stop early and
        choose models on it, never on the test split.
    :param seed: the seed of the validation split's permutation.
    """
    if not 0 <= val_fraction < 1:  # before reading any file
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction!r}")
    return registry[name](Path(root) if root is not None else None).with_validation(
        val_fraction, seed
    )


def batches(x: torch.Tensor, batch_size: int) -> Iterable[torch.Tensor]:
    """Consecutive slices of ``x`` of at most ``batch_size`` datapoints."""
    for start in range(0, x.shape[0], batch_size):
        yield x[start : start + batch_size]
