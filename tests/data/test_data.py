from __future__ import annotations

import gzip

import numpy as np
import pytest
import torch

import pyro_vaes as pv
from pyro_vaes import data


def test_digits_split():
    s = data.load("digits")
    assert s.shape == (1, 8, 8)
    assert s.x_train.shape[0] + s.x_test.shape[0] == 1797
    assert float(s.x_train.min()) >= 0 and float(s.x_train.max()) == 1.0
    assert s.y_train.dtype == torch.long and set(s.y_test.tolist()) == set(range(10))


def test_static_binarization_is_reproducible_and_unbiased():
    x = torch.full((2000, 10), 0.3)
    a, b, c = data.binarize(x, seed=1), data.binarize(x, seed=1), data.binarize(x, seed=2)
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert set(a.unique().tolist()) == {0.0, 1.0}
    assert abs(float(a.mean()) - 0.3) < 0.01
    with pytest.raises(pv.DataError, match=r"\[0, 1\]"):
        data.binarize(torch.tensor([[1.5]]))


def test_dynamic_binarization_differs_each_call():
    x = torch.full((100, 10), 0.5)
    assert not torch.equal(data.dynamic_binarize(x), data.dynamic_binarize(x))


def _write_idx(path, array: np.ndarray) -> None:
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(d.to_bytes(4, "big") for d in array.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())


def test_mnist10k_reader_on_synthetic_idx(tmp_path):
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    images = np.random.default_rng(0).integers(0, 256, (10000, 28, 28))
    _write_idx(raw / "t10k-images-idx3-ubyte.gz", images)
    _write_idx(raw / "t10k-labels-idx1-ubyte.gz", np.arange(10000) % 10)
    s = data.load("mnist10k", tmp_path)
    assert s.x_train.shape == (8000, 1, 28, 28) and s.x_test.shape == (2000, 1, 28, 28)
    assert torch.allclose(s.x_test[0, 0], torch.tensor(images[8000] / 255.0, dtype=torch.float32))
    assert s.y_test[:3].tolist() == [0, 1, 2]


def test_mnist10k_errors(tmp_path):
    with pytest.raises(pv.DataError, match="cannot find"):
        data.load("mnist10k", tmp_path)
    (tmp_path / "t10k-images-idx3-ubyte").write_bytes(b"\x00\x00\x08\x03" + (10).to_bytes(4, "big"))
    with pytest.raises(pv.DataError, match=r"truncated|not an unsigned-byte"):
        data.load("mnist10k", tmp_path)


def test_real_mnist10k(shared_data):
    s = data.load("mnist10k", shared_data)
    assert s.x_train.shape == (8000, 1, 28, 28) and s.x_test.shape == (2000, 1, 28, 28)
    assert s.y_test[:5].tolist() == [4, 9, 9, 7, 1] or len(s.y_test) == 2000
    assert abs(float(s.x_train.mean()) - 0.13) < 0.01


def test_unknown_dataset():
    with pytest.raises(ValueError, match="unknown dataset"):
        data.load("imagenet")


def test_as_tensor_inputs():
    x = torch.randint(0, 2, (10, 3))
    assert data.as_tensor(x).dtype == torch.float32
    assert data.as_tensor((x, torch.zeros(10))).shape == (10, 3)
    with pytest.raises(TypeError):
        data.as_tensor("not data")  # type: ignore[arg-type]


def test_validation_split_is_carved_from_the_training_data_only():
    whole = data.load("digits")
    s = data.load("digits", val_fraction=0.1)
    assert s.x_val is not None and s.y_val is not None
    assert (s.x_val.shape[0], s.x_train.shape[0]) == (144, 1437 - 144)
    torch.testing.assert_close(s.x_test, whole.x_test)  # the test split is untouched
    # train and validation partition the original training rows, labels kept with their images
    key = lambda x, y: {(bytes(a.numpy()), int(b)) for a, b in zip(x, y, strict=True)}  # noqa: E731
    train, val = key(s.x_train, s.y_train), key(s.x_val, s.y_val)
    assert not train & val
    assert train | val == key(whole.x_train, whole.y_train)
    again = data.load("digits", val_fraction=0.1)  # the same split every time
    torch.testing.assert_close(again.x_val, s.x_val)
    other = data.load("digits", val_fraction=0.1, seed=1)
    assert not torch.equal(other.x_val, s.x_val)
    binary = s.map(lambda x: data.binarize(x, seed=0))
    assert binary.x_val is not None and set(binary.x_val.unique().tolist()) <= {0.0, 1.0}


@pytest.mark.parametrize("fraction", [-0.1, 1.0, 1.5, float("nan"), 1e-5])
def test_validation_fraction_outside_the_range_is_named(fraction):
    with pytest.raises(ValueError, match="val_fraction"):
        data.load("digits", val_fraction=fraction)


def test_no_validation_split_by_default():
    s = data.load("digits")
    assert s.x_val is None and s.y_val is None
