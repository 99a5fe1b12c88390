r"""A small image classifier the project trains itself: class frequencies of generated images in
posterior predictive checks, and the feature space of sample-quality (Fréchet) distances where
Inception weights cannot be downloaded.

A two-layer convolutional network (3x3 convolutions, 32 and 64 channels, max pooling), a
128-unit feature layer, and a linear read-out; cross-entropy, Adam, a fixed number of epochs.

    >>> clf = train_classifier(splits.x_train, splits.y_train, epochs=10)
    >>> accuracy(clf, splits.x_test, splits.y_test)
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F
from tqdm.auto import tqdm

from pyro_vaes.data import batches, check_finite

__all__ = ["Classifier", "accuracy", "train_classifier"]


class Classifier(nn.Module):
    """Conv-conv-dense classifier for images ``(N, C, H, W)`` with ``H, W >= 4``."""

    def __init__(self, shape: tuple[int, ...], num_classes: int, features: int = 128) -> None:
        super().__init__()
        if len(shape) != 3 or min(shape[1:]) < 4 or num_classes < 2:
            raise ValueError(
                f"need images (C, H, W) of at least 4x4 and >= 2 classes, got {shape}, "
                f"{num_classes}"
            )
        c, h, w = shape
        self.shape = tuple(shape)
        self.body = nn.Sequential(
            nn.Conv2d(c, 32, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Flatten(),
            nn.Linear(64 * (h // 4) * (w // 4), features),
            nn.ReLU(),
        )
        self.head = nn.Linear(features, num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The penultimate layer's activations ``(N, features)``."""
        return self.body(x.reshape(-1, *self.shape))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Class logits ``(N, num_classes)``."""
        return self.head(self.features(x))

    @torch.no_grad()
    def predict(self, x: torch.Tensor, batch_size: int = 1000) -> torch.Tensor:
        """The most probable class of each image, ``(N,)``."""
        was = self.training
        self.eval()
        device = next(self.parameters()).device
        out = torch.cat([self(b.to(device)).argmax(-1).cpu() for b in batches(x, batch_size)])
        self.train(was)
        return out


def train_classifier(
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    epochs: int = 10,
    batch_size: int = 128,
    lr: float = 1e-3,
    seed: int = 0,
    progress: bool = False,
) -> Classifier:
    """Fit a :class:`Classifier` to images ``x`` ``(N, C, H, W)`` and integer labels ``y``."""
    if x.dim() != 4 or y.shape != (x.shape[0],) or y.dtype.is_floating_point:
        raise ValueError(
            f"need images (N, C, H, W) and integer labels (N,), got {tuple(x.shape)} and "
            f"{tuple(y.shape)} {y.dtype}"
        )
    check_finite(x)
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    clf = Classifier(tuple(x.shape[1:]), int(y.max()) + 1)
    opt = torch.optim.Adam(clf.parameters(), lr=lr)
    steps = epochs * math.ceil(len(x) / batch_size)
    with tqdm(total=steps, disable=not progress, unit="step", desc="classifier") as bar:
        for _ in range(epochs):
            perm = torch.randperm(len(x), generator=gen)
            for idx in batches(perm, batch_size):
                loss = F.cross_entropy(clf(x[idx]), y[idx])
                opt.zero_grad()
                loss.backward()
                opt.step()
                bar.update(1)
    clf.eval()
    return clf


def accuracy(clf: Classifier, x: torch.Tensor, y: torch.Tensor) -> float:
    """The fraction of ``x`` that ``clf`` labels ``y``."""
    return float((clf.predict(x) == y).double().mean())
