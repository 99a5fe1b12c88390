"""The logging callbacks: per-step losses, the CSV history and TensorBoard, through resume."""

from __future__ import annotations

import csv
import math

import pytest
import torch

import pyro_vaes as pv
from pyro_vaes.train.callbacks import Callback


@pytest.fixture(scope="module")
def digits():
    return pv.data.load("digits", val_fraction=0.1).map(pv.data.binarize)


def tiny(digits):
    torch.manual_seed(0)
    return pv.variants.build("vae", digits.shape, latent_dim=2, hidden=(16,))


class StepLosses(Callback):
    def __init__(self):
        self.first: list[int] = []
        self.losses: list[float] = []

    def on_step_losses(self, state, first_step, losses):
        assert first_step == len(self.losses)  # contiguous, in order
        self.first.append(first_step)
        self.losses += losses


def fit(vae, digits, epochs, callbacks=(), **kwargs):
    return pv.fit(
        vae.model,
        vae.guide,
        digits.x_train,
        epochs=epochs,
        batch_size=100,  # 1,293 images: 12 full batches and one of 93
        val_data=digits.x_val,
        seed=0,
        progress=False,
        callbacks=callbacks,
        **kwargs,
    )


def test_step_losses_are_every_steps_loss_per_datapoint(digits):
    vae, rec = tiny(digits), StepLosses()
    history = fit(vae, digits, 2, [rec])
    steps = math.ceil(1293 / 100)
    assert len(rec.losses) == 2 * steps
    assert rec.first == [0, 13]  # read at each epoch's end (and every 20 steps)
    sizes = torch.tensor([100.0] * 12 + [93.0])
    for epoch in range(2):
        per_step = torch.tensor(rec.losses[epoch * steps : (epoch + 1) * steps])
        mean = float((per_step * sizes).sum() / sizes.sum())
        assert mean == pytest.approx(history.loss[epoch], rel=1e-6)


def rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_csv_equals_the_history_and_survives_a_resume(digits, tmp_path):
    path = tmp_path / "history.csv"
    history = fit(tiny(digits), digits, 3, [pv.CSVLogger(path)])
    got = rows(path)
    assert [r["epoch"] for r in got] == ["1", "2", "3"]
    assert [int(r["step"]) for r in got] == [13, 26, 39]
    for r, loss, val in zip(got, history.loss, history.val_loss, strict=True):
        assert float(r["loss"]) == loss and float(r["val_loss"]) == val

    # stopped after 2 epochs, resumed to 3: the same file as the uninterrupted fit
    ckpt, path2 = tmp_path / "ckpt", tmp_path / "resumed.csv"
    fit(tiny(digits), digits, 2, [pv.CSVLogger(path2)], checkpoint_dir=ckpt)
    fit(tiny(digits), digits, 3, [pv.CSVLogger(path2)], checkpoint_dir=ckpt, resume=True)
    strip = lambda rs: [{k: v for k, v in r.items() if k != "seconds"} for r in rs]  # noqa: E731
    assert strip(rows(path2)) == strip(got)


def test_csv_without_validation_leaves_the_column_empty(digits, tmp_path):
    path = tmp_path / "h.csv"
    vae = tiny(digits)
    pv.fit(
        vae.model,
        vae.guide,
        digits.x_train,
        epochs=1,
        progress=False,
        callbacks=[pv.CSVLogger(path)],
    )
    assert rows(path)[0]["val_loss"] == ""


def scalars(log_dir, tag):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(log_dir), size_guidance={"scalars": 0, "images": 0})
    acc.Reload()
    return acc, [(e.step, e.value) for e in acc.Scalars(tag)]


def test_tensorboard_logs_losses_and_pictures_and_resumes_without_duplicates(digits, tmp_path):
    pytest.importorskip("tensorboard")
    board, rec = tmp_path / "tb", StepLosses()
    ckpt = tmp_path / "ckpt"
    vae = tiny(digits)
    history = fit(
        vae, digits, 2, [pv.TensorBoard(board, vae, digits.x_val[:8]), rec], checkpoint_dir=ckpt
    )
    acc, steps = scalars(board, "loss/step")
    assert [s for s, _ in steps] == list(range(1, 27))
    assert [v for _, v in steps] == pytest.approx(rec.losses, rel=1e-6)
    _, train = scalars(board, "loss/train")
    _, val = scalars(board, "loss/val")
    assert train == [(13, pytest.approx(history.loss[0])), (26, pytest.approx(history.loss[1]))]
    assert [v for _, v in val] == pytest.approx(history.val_loss)
    for tag in ("samples", "reconstructions"):
        images = acc.Images(tag)
        assert [im.step for im in images] == [13, 26]
        assert images[0].width > 0 and images[0].height > 0
    # the reconstruction grid: 8 validation images over their 8 reconstructions (one row each)
    assert acc.Images("reconstructions")[0].height == 2 * 9 + 1

    vae2 = tiny(digits)
    fit(vae2, digits, 3, [pv.TensorBoard(board, vae2)], checkpoint_dir=ckpt, resume=True)
    _, steps = scalars(board, "loss/step")
    assert [s for s, _ in steps] == list(range(1, 40))  # no step twice


def test_tensorboard_refuses_images_that_are_not_image_batches(digits, tmp_path):
    with pytest.raises(ValueError, match="images must be shaped"):
        pv.TensorBoard(tmp_path, images=torch.zeros(3, 64))


@pytest.mark.parametrize(("where", "error"), [("missing/h.csv", FileNotFoundError), ("", IsADirectoryError)])  # fmt: skip
def test_csv_logger_refuses_an_unusable_path_before_training(digits, tmp_path, where, error):
    vae = tiny(digits)
    before = [p.detach().clone() for p in vae.parameters()]
    with pytest.raises(error, match="CSVLogger"):
        fit(vae, digits, 1, [pv.CSVLogger(tmp_path / where)])
    assert all(torch.equal(a, b) for a, b in zip(before, vae.parameters(), strict=True))


def test_tensorboard_reconstructs_a_conditional_model_given_the_labels(digits, tmp_path):
    pytest.importorskip("tensorboard")
    torch.manual_seed(0)
    cvae = pv.variants.build("cvae", digits.shape, latent_dim=2, hidden=(16,))
    seen = []
    original = cvae.reconstruct
    cvae.reconstruct = lambda x, y=None: seen.append(y) or original(x, y)
    board = pv.TensorBoard(tmp_path, cvae, digits.x_val[:8], labels=digits.y_val[:8])
    pv.fit(cvae.model, cvae.guide, (digits.x_train, digits.y_train), epochs=1, progress=False,
           callbacks=[board])  # fmt: skip
    assert torch.equal(seen[0], digits.y_val[:8])
    with pytest.raises(ValueError, match="one per image"):
        pv.TensorBoard(tmp_path, cvae, digits.x_val[:8], labels=digits.y_val[:5])
