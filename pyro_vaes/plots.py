"""Pictures people would rather look at than read: loss curves and image grids (PNG files)."""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import torch

from pyro_vaes.callbacks import History

__all__ = ["image_grid", "loss_curve", "save_image_grid"]


def image_grid(images: torch.Tensor, ncol: int | None = None, pad: int = 1) -> torch.Tensor:
    """Tile images ``(N, C, H, W)`` (or ``(N, H, W)``, values in ``[0, 1]``) into one
    ``(H', W', C)`` array, ``ncol`` per row."""
    x = images.detach().float().cpu().clamp(0, 1)
    if x.dim() == 3:
        x = x.unsqueeze(1)
    if x.dim() != 4:
        raise ValueError(f"expected images (N, C, H, W), got shape {tuple(images.shape)}")
    n, c, h, w = x.shape
    ncol = ncol or math.ceil(math.sqrt(n))
    nrow = math.ceil(n / ncol)
    grid = torch.ones(c, nrow * (h + pad) + pad, ncol * (w + pad) + pad)
    for i in range(n):
        r, col = divmod(i, ncol)
        top, left = pad + r * (h + pad), pad + col * (w + pad)
        grid[:, top : top + h, left : left + w] = x[i]
    return grid.permute(1, 2, 0)


def save_image_grid(
    images: torch.Tensor, path: str | Path, title: str = "", ncol: int | None = None
) -> Path:
    """Write :func:`image_grid` of ``images`` to a PNG file."""
    grid = image_grid(images, ncol)
    fig, ax = plt.subplots(figsize=(6, 6 * grid.shape[0] / grid.shape[1] + 0.4))
    ax.imshow(grid.squeeze(-1) if grid.shape[-1] == 1 else grid, cmap="gray", vmin=0, vmax=1)
    ax.set_axis_off()
    if title:
        ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return Path(path)


def loss_curve(history: History, path: str | Path) -> Path:
    """Training and validation loss (nats per datapoint) against epoch, as a PNG file."""
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(history.epoch, history.loss, marker=".", label="train")
    val = [(e, v) for e, v in zip(history.epoch, history.val_loss, strict=True) if v is not None]
    if val:
        ax.plot(*zip(*val, strict=True), marker=".", label="validation")
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss (nats per datapoint)")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return Path(path)
