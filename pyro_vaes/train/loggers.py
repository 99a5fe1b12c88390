"""Logging callbacks for :func:`pyro_vaes.fit`: a CSV file of the history and TensorBoard.

Both follow a resumed fit: the CSV file is rewritten from the restored history at the end of
every epoch, and TensorBoard drops the events written after the checkpoint it resumes from
(``purge_step``), so a resumed run's curves have no duplicated or orphaned steps.
"""

from __future__ import annotations

import csv
import io
import os
from pathlib import Path
from typing import Any

import torch

from pyro_vaes.protocols import GenerativeModel, Labelled
from pyro_vaes.train.callbacks import Callback, FitState

__all__ = ["CSVLogger", "TensorBoard"]


class CSVLogger(Callback):
    """Write the fit's history to ``path`` as CSV after every epoch, one row per epoch:
    ``epoch, step, loss, val_loss, seconds`` (losses in nats per datapoint; ``val_loss`` empty
    without validation data; ``step``: optimisation steps taken by the end of the epoch).

    The file is replaced atomically (written beside it, then renamed), so a reader never sees
    half a row, and it always equals the history, also after a resume.
    """

    FIELDS = ("epoch", "step", "loss", "val_loss", "seconds")

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.steps: list[int | None] = []

    def on_fit_start(self, state: FitState) -> None:
        """Refuse, before the first epoch, a path whose folder is missing or is a folder."""
        if not self.path.parent.is_dir():
            raise FileNotFoundError(f"CSVLogger: the folder of {self.path} does not exist")
        if self.path.is_dir():
            raise IsADirectoryError(f"CSVLogger: {self.path} is a folder; give a file name")

    def on_epoch_end(self, state: FitState) -> None:
        h = state.history
        del self.steps[len(h) - 1 :]
        while len(self.steps) < len(h) - 1:  # restored epochs this logger did not see
            per_epoch = state.steps_per_epoch
            self.steps.append(h.epoch[len(self.steps)] * per_epoch if per_epoch else None)
        self.steps.append(state.global_step)
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(self.FIELDS)
        for row in zip(h.epoch, self.steps, h.loss, h.val_loss, h.seconds, strict=True):
            writer.writerow(["" if v is None else v for v in row])
        tmp = self.path.with_name(f".{self.path.name}.tmp")
        tmp.write_text(buf.getvalue(), encoding="utf-8")
        os.replace(tmp, self.path)

    def state_dict(self) -> dict[str, Any]:
        return {"steps": list(self.steps)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.steps = [None if s is None else int(s) for s in state.get("steps", [])]


class TensorBoard(Callback):
    """Log a fit to TensorBoard (``torch.utils.tensorboard``) in ``log_dir``:

    * ``loss/step``: the training loss of every step (nats per datapoint);
    * ``loss/train`` and ``loss/val``: the epoch means (``val`` with validation data);
    * with ``model`` (a :class:`~pyro_vaes.protocols.GenerativeModel` of images), every
      ``images_every`` epochs: ``samples``, a grid of ``num_images`` draws from the prior's
      codes, and ``reconstructions``, the fixed ``images`` (top rows) over their
      reconstructions (bottom rows).

    :param log_dir: the folder of the event files (created).
    :param model: the model whose pictures are logged (``None``: scalars only).
    :param images: the datapoints ``(N, C, H, W)`` to reconstruct (the first ``num_images // 2``
        are used); ``None``: no reconstructions.
    :param labels: their labels, for a model that takes labels
        (:class:`~pyro_vaes.protocols.Labelled`), which reconstructs each image given its own.
    :raises ImportError: naming the package to install if ``tensorboard`` is missing.
    """

    def __init__(
        self,
        log_dir: str | Path,
        model: GenerativeModel | None = None,
        images: torch.Tensor | None = None,
        num_images: int = 64,
        labels: torch.Tensor | None = None,
        images_every: int = 1,
    ) -> None:
        try:
            import tensorboard  # noqa: F401
        except ImportError as err:
            raise ImportError(
                "the TensorBoard callback needs the tensorboard package: "
                "pip install 'pyro-vaes[tensorboard]'"
            ) from err
        if num_images < 1 or images_every < 1:
            raise ValueError(
                f"num_images and images_every must be >= 1, got {num_images} and {images_every}"
            )
        if images is not None and images.dim() != 4:
            raise ValueError(f"images must be shaped (N, C, H, W), got {tuple(images.shape)}")
        if labels is not None and (images is None or labels.shape != images.shape[:1]):
            raise ValueError("labels must come with images, one per image")
        self.log_dir = Path(log_dir)
        self.model = model
        if images is not None:  # whole rows of 16 at most: originals above reconstructions
            images = images[: max(1, num_images // 2)]
            self.ncol = min(len(images), 16)
            images = images[: len(images) // self.ncol * self.ncol]
            labels = None if labels is None else labels[: len(images)]
        self.images, self.labels = images, labels
        self.num_images = num_images
        self.images_every = images_every
        self.writer: Any = None

    def on_fit_start(self, state: FitState) -> None:
        from torch.utils.tensorboard import SummaryWriter

        # a resumed fit starts after its checkpoint (step global_step, as the events count
        # steps from 1): events written past it, by the run that stopped, are dropped
        purge = state.global_step + 1 if state.global_step else None
        self.writer = SummaryWriter(str(self.log_dir), purge_step=purge)

    def on_step_losses(self, state: FitState, first_step: int, losses: list[float]) -> None:
        for i, value in enumerate(losses):
            self.writer.add_scalar("loss/step", value, first_step + i + 1)

    def on_epoch_end(self, state: FitState) -> None:
        h, step = state.history, state.global_step
        self.writer.add_scalar("loss/train", h.loss[-1], step)
        if h.val_loss[-1] is not None:
            self.writer.add_scalar("loss/val", h.val_loss[-1], step)
        if self.model is not None and state.epoch % self.images_every == 0:
            self._pictures(self.model, step)
        self.writer.flush()

    def on_fit_end(self, state: FitState) -> None:
        if self.writer is not None:
            self.writer.close()

    def _pictures(self, model: GenerativeModel, step: int) -> None:
        from pyro_vaes.analysis.plots import image_grid

        was_training = model.training if isinstance(model, torch.nn.Module) else False
        if isinstance(model, torch.nn.Module):
            model.eval()
        try:
            samples = model.sample(self.num_images)
            if samples.dim() == 4:
                self.writer.add_image("samples", image_grid(samples), step, dataformats="HWC")
            if self.images is not None:
                x = self.images.to(samples.device)
                if isinstance(model, Labelled) and self.labels is not None:
                    rec = model.reconstruct(x, self.labels.to(x.device))
                else:
                    rec = model.reconstruct(x)
                both = torch.cat([x, rec.reshape(x.shape)])
                grid = image_grid(both, ncol=self.ncol)
                self.writer.add_image("reconstructions", grid, step, dataformats="HWC")
        finally:
            if isinstance(model, torch.nn.Module):
                model.train(was_training)
