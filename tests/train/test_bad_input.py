"""Bad input gets a clear error before training starts or a file is written; nothing is lost."""

from __future__ import annotations

import pytest
import torch

import pyro_vaes as pv
from pyro_vaes.train.callbacks import Callback, FitState


def _fit(vae, data, tmp_path=None, **kw):
    kw.setdefault("epochs", 1)
    kw.setdefault("progress", False)
    ckdir = tmp_path / "ck" if tmp_path is not None else None
    return pv.fit(vae.model, vae.guide, data, checkpoint_dir=ckdir, **kw)


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_non_finite_data(digits, small_vae, tmp_path, bad):
    x = digits.x_train.clone()
    x[7, 0, 3, 3] = bad
    with pytest.raises(pv.DataError, match=r"non-finite.*index 7"):
        _fit(small_vae, x, tmp_path)
    assert not (tmp_path / "ck").exists()


def test_non_finite_validation_data(digits, small_vae):
    v = digits.x_test.clone()
    v[2] = float("nan")
    with pytest.raises(pv.DataError, match="val_data"):
        _fit(small_vae, digits.x_train, val_data=v)


def test_shape_mismatch(small_vae, tmp_path):
    with pytest.raises(pv.DataError, match=r"shape \(100, 1, 28, 28\)"):
        _fit(small_vae, torch.zeros(300, 1, 28, 28), tmp_path)
    assert not (tmp_path / "ck").exists()


def test_values_outside_bernoulli_support(digits, small_vae, tmp_path):
    x = digits.x_train.clone()
    x[11, 0, 0, 0] = 0.5
    with pytest.raises(pv.DataError, match=r"support of observed site 'x'.*index 11"):
        _fit(small_vae, x, tmp_path)
    # grey-level data with dynamic binarisation is fine: the check applies after the transform
    raw = pv.data.load("digits").x_train
    _fit(small_vae, raw, transform=pv.data.dynamic_binarize)


@pytest.mark.parametrize("empty", [torch.zeros(0, 1, 8, 8), torch.zeros(0)])
def test_empty_data(small_vae, empty):
    with pytest.raises(pv.DataError, match=r"empty|shape"):
        _fit(small_vae, empty)


@pytest.mark.parametrize(
    ("kw", "msg"),
    [
        ({"batch_size": 0}, "batch_size"),
        ({"batch_size": -5}, "batch_size"),
        ({"batch_size": 2.5}, "batch_size"),
        ({"epochs": -1}, "epochs"),
    ],
)
def test_impossible_settings(digits, small_vae, kw, msg):
    with pytest.raises(ValueError, match=msg):
        _fit(small_vae, digits.x_train, **kw)


def test_zero_epochs_is_a_no_op(digits, small_vae):
    assert len(_fit(small_vae, digits.x_train, epochs=0)) == 0


@pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA device is present")
def test_cuda_without_gpu(digits, small_vae):
    with pytest.raises(RuntimeError, match="no CUDA device"):
        _fit(small_vae, digits.x_train, device="cuda")


def test_unknown_device(digits, small_vae):
    with pytest.raises(ValueError, match="unknown device"):
        _fit(small_vae, digits.x_train, device="abacus")


def test_optimizer_instance_is_refused(digits, small_vae):
    opt = torch.optim.Adam(small_vae.parameters())
    with pytest.raises(TypeError, match="factory"):
        _fit(small_vae, digits.x_train, optim=opt)


def _checkpoint(digits, small_vae, tmp_path):
    _fit(small_vae, digits.x_train, tmp_path)
    return tmp_path / "ck" / "checkpoint.pt"


def test_corrupt_checkpoint(digits, small_vae, tmp_path):
    path = _checkpoint(digits, small_vae, tmp_path)
    path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(pv.CheckpointError, match="corrupt"):
        _fit(small_vae, digits.x_train, tmp_path, epochs=2, resume=True)


def test_checkpoint_with_code_is_not_unpickled(tmp_path, digits, small_vae):
    path = tmp_path / "evil.pt"
    torch.save({"format": pv.checkpoint.FORMAT, "payload": _Evil()}, path)
    with pytest.raises(pv.CheckpointError, match="corrupt or holds objects"):
        _fit(small_vae, digits.x_train, resume=path)
    assert not _Evil.ran


def test_foreign_checkpoint(tmp_path, digits, small_vae):
    path = tmp_path / "foreign.pt"
    torch.save({"state_dict": {"w": torch.zeros(3)}}, path)
    with pytest.raises(pv.CheckpointError, match="not a pyro-vaes checkpoint"):
        _fit(small_vae, digits.x_train, resume=path)
    with pytest.raises(pv.CheckpointError, match="no checkpoint file"):
        _fit(small_vae, digits.x_train, resume=tmp_path / "missing.pt")


def test_checkpoint_of_another_model(digits, small_vae, tmp_path):
    path = _checkpoint(digits, small_vae, tmp_path)
    other = pv.variants.build("vae", digits.shape, latent_dim=3, hidden=(64,))
    with pytest.raises(pv.CheckpointError, match="shape"):
        pv.fit(other.model, other.guide, digits.x_train, epochs=2, resume=path, progress=False)


class _Evil:
    ran = False

    def __reduce__(self):
        return (_Evil._run, ())

    @staticmethod
    def _run():
        _Evil.ran = True
        return "ran"


def test_nan_during_training_names_epoch_and_step_and_keeps_checkpoint(digits, small_vae, tmp_path):
    class Poison(Callback):
        def on_step_start(self, state: FitState) -> None:
            if state.epoch == 2 and state.step == 3:
                with torch.no_grad():
                    small_vae.decoder.net[0].weight.fill_(float("nan"))

    with pytest.raises(pv.TrainingDiverged, match="epoch 2, step 3") as info:
        _fit(small_vae, digits.x_train, tmp_path, epochs=3, callbacks=[Poison()])
    assert (info.value.epoch, info.value.step) == (2, 3)
    saved = pv.checkpoint.load(tmp_path / "ck" / "checkpoint.pt")
    assert saved["epoch"] == 1
    assert all(torch.isfinite(v).all() for v in saved["params"].values())
    assert not list((tmp_path / "ck").glob(".*tmp"))  # no half-written file left behind


def test_bad_batch_from_a_dataloader(digits, small_vae):
    from torch.utils.data import DataLoader, TensorDataset

    x = digits.x_train.clone()
    x[1000, 0, 0, 0] = 0.5
    loader = DataLoader(TensorDataset(x), batch_size=100, shuffle=True)
    before = [p.detach().clone() for p in small_vae.parameters()]
    with pytest.raises(pv.DataError, match=r"support.*index 1000"):  # checked up front
        _fit(small_vae, loader)
    assert all(torch.equal(p, b) for p, b in zip(small_vae.parameters(), before, strict=True))


def test_bad_batch_from_an_unsized_stream_is_named_by_its_place_in_the_stream(digits, small_vae):
    from torch.utils.data import DataLoader, IterableDataset

    x = digits.x_train.clone()
    x[250, 0, 0, 0] = float("nan")

    class Stream(IterableDataset):
        def __iter__(self):
            return iter(x)

    with pytest.raises(pv.DataError, match=r"index 250 \(NaN\)"):
        _fit(small_vae, DataLoader(Stream(), batch_size=100))
