"""Pictures people would rather look at than read, as PNG files: image grids (samples,
reconstructions, traversals, interpolations), loss curves, 2-D latent scatters, posterior
predictive checks and pixel calibration.

Figures are ``matplotlib.figure.Figure`` objects saved directly, never pyplot's: drawing a
picture neither needs a display nor changes the caller's matplotlib backend or open figures."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from pyro_vaes.train.callbacks import History

if TYPE_CHECKING:
    import arviz as az
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    from pyro_vaes.analysis.checks import Calibration

__all__ = [
    "calibration_plot",
    "image_grid",
    "latent_scatter",
    "loss_curve",
    "ppc_plot",
    "pvalue_plot",
    "save_image_grid",
]


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


def _figure(figsize: tuple[float, float], ncols: int = 1, nrows: int = 1) -> tuple[Figure, Any]:
    """A figure outside pyplot and its axes (``nrows`` rows of ``ncols``)."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize)
    axes = fig.subplots(nrows, ncols, squeeze=False)
    return fig, axes


def _panels(n: int, most: int = 3) -> tuple[int, int]:
    """Columns and rows for ``n`` panels, at most ``most`` to a row."""
    ncols = max(1, min(n, most))
    return ncols, math.ceil(n / ncols)


def save_image_grid(
    images: torch.Tensor,
    path: str | Path,
    title: str = "",
    ncol: int | None = None,
    *,
    row_labels: Sequence[str] | None = None,
    col_labels: Sequence[str] | None = None,
    xlabel: str = "",
    ylabel: str = "",
) -> Path:
    """Write :func:`image_grid` of ``images`` to a PNG file.

    ``row_labels`` and ``col_labels`` name the rows and columns of the grid (a traversal's
    latent dimensions and step values, an interpolation's times) at the cells' centres;
    ``xlabel`` and ``ylabel`` say what they are. Without labels the grid is drawn bare."""
    grid = image_grid(images, ncol)
    n, h, w = len(images), images.shape[-2], images.shape[-1]
    ncol = ncol or math.ceil(math.sqrt(n))
    nrow = math.ceil(n / ncol)
    labelled = bool(row_labels or col_labels or xlabel or ylabel)
    fig, axes = _figure((6, 6 * grid.shape[0] / grid.shape[1] + (1.0 if labelled else 0.4)))
    ax: Axes = axes[0][0]
    ax.imshow(grid.squeeze(-1) if grid.shape[-1] == 1 else grid, cmap="gray", vmin=0, vmax=1)
    if not labelled:
        ax.set_axis_off()
    else:
        for where, labels, count, size in (("x", col_labels, ncol, w), ("y", row_labels, nrow, h)):
            if labels is not None and len(labels) != count:
                raise ValueError(f"{len(labels)} {where} labels for {count} grid cells")
            centres = [1 + i * (size + 1) + (size - 1) / 2 for i in range(count)]  # pad 1
            set_ticks = ax.set_xticks if where == "x" else ax.set_yticks
            set_ticks(centres if labels is not None else [], list(labels or []), fontsize=8)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.tick_params(length=0)
        for spine in ax.spines.values():
            spine.set_visible(False)
    if title:
        ax.set_title(title)
    return _save(fig, path)


def loss_curve(history: History, path: str | Path) -> Path:
    """Training and validation loss (nats per datapoint) against epoch, as a PNG file."""
    fig, axes = _figure((6, 4))
    ax = axes[0][0]
    ax.plot(history.epoch, history.loss, marker=".", label="train")
    val = [(e, v) for e, v in zip(history.epoch, history.val_loss, strict=True) if v is not None]
    if val:
        ax.plot(*zip(*val, strict=True), marker=".", label="validation")
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss (nats per datapoint)")
    ax.legend()
    ax.grid(alpha=0.3)
    return _save(fig, path)


def _save(fig: Figure, path: str | Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    return Path(path)


def latent_scatter(
    codes: torch.Tensor, labels: torch.Tensor | None, path: str | Path, title: str = ""
) -> Path:
    """Codes ``(N, d)`` as points coloured by label; codes of more than two dimensions are
    projected on their first two principal components (the axes say which)."""
    z = codes.detach().double().cpu()
    if z.dim() != 2 or z.shape[1] < 1:
        raise ValueError(f"expected codes (N, d), got shape {tuple(codes.shape)}")
    if z.shape[1] == 1:
        z, names = torch.cat([z, torch.zeros_like(z)], 1), ("z1", "")
    elif z.shape[1] == 2:
        names = ("z1", "z2")
    else:
        centred = z - z.mean(0)
        _, _, v = torch.linalg.svd(centred, full_matrices=False)
        z, names = centred @ v[:2].T, ("principal component 1", "principal component 2")
    fig, axes = _figure((5.5, 5))
    ax = axes[0][0]
    if labels is None:
        ax.scatter(z[:, 0], z[:, 1], s=8, alpha=0.8)
    else:
        points = ax.scatter(z[:, 0], z[:, 1], c=labels.cpu().numpy(), cmap="tab10", s=8, alpha=0.8)
        fig.colorbar(points, ax=ax, label="label")
    ax.set_xlabel(names[0])
    ax.set_ylabel(names[1])
    ax.set_title(title)
    return _save(fig, path)


def calibration_plot(cal: Calibration, path: str | Path) -> Path:
    """Reliability diagram: observed frequency of on-pixels against predicted probability."""
    fig, axes = _figure((5, 5))
    ax = axes[0][0]
    seen = cal.count > 0
    ax.plot([0, 1], [0, 1], color="grey", linestyle="--", label="perfect calibration")
    ax.plot(cal.predicted[seen], cal.observed[seen], marker="o", label="model")
    ax.set_xlabel("predicted probability of an on-pixel")
    ax.set_ylabel("observed frequency")
    ax.set_title(f"pixel calibration (ECE {cal.ece:.3f})")
    ax.legend()
    ax.grid(alpha=0.3)
    return _save(fig, path)


def ppc_plot(stat_idata: az.InferenceData, path: str | Path) -> Path:
    """``az.plot_ppc`` of every test statistic: replicated against observed distributions."""
    import arviz as az

    names = list(stat_idata["observed_data"].data_vars)
    ncols, nrows = _panels(len(names))
    fig, axes = _figure((4.5 * ncols, 3.6 * nrows), ncols, nrows)
    for ax in axes.flat[len(names) :]:
        ax.set_visible(False)
    draws = stat_idata["posterior_predictive"].sizes["draw"]
    az.plot_ppc(
        stat_idata,
        var_names=names,
        ax=axes.flat[: len(names)],
        num_pp_samples=min(50, draws),
        random_seed=0,
    )
    return _save(fig, path)


def pvalue_plot(pvalues: dict[str, np.ndarray], path: str | Path) -> Path:
    """Histograms of the per-datapoint posterior predictive p-values of each statistic."""
    ncols, nrows = _panels(len(pvalues))
    fig, axes = _figure((4 * ncols, 3.2 * nrows), ncols, nrows)
    for ax in axes.flat[len(pvalues) :]:
        ax.set_visible(False)
    for ax, (name, p) in zip(axes.flat, pvalues.items(), strict=False):
        ax.hist(p, bins=np.linspace(0, 1, 21), color="tab:blue", alpha=0.8)
        ax.set_title(name)
        ax.set_xlabel("posterior predictive p-value")
    for row in axes:
        row[0].set_ylabel("datapoints")
    return _save(fig, path)
