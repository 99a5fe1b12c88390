"""A battery of bad inputs to fit, evaluate, posterior_predictive and the checkpoints. Each case
asserts the error's type, that its message names the problem, that it came before any step
(the parameters are untouched) and that every file already in the checkpoint folder is
byte-identical afterwards."""

from __future__ import annotations

import functools
import hashlib
import math
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pyro
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

import pyro_vaes as pv
from pyro_vaes.train.checkpoint import load as load_checkpoint


def _files(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


@pytest.fixture
def run(digits, small_vae, tmp_path):
    """A checkpoint folder holding a finished one-epoch fit and a user's own file."""
    ck = tmp_path / "ck"
    pv.fit(
        small_vae.model,
        small_vae.guide,
        digits.x_train[:200],
        epochs=1,
        checkpoint_dir=ck,
        progress=False,
        seed=0,
    )
    (ck / "notes.txt").write_text("the user's own notes")
    return ck


def _x(digits, n=200):
    return digits.x_train[:n]


def _with(x, index, value):
    x = x.clone()
    x.view(x.shape[0], -1)[index, 0] = value
    return x


# each case: (id, call(vae, digits, ck) raising, expected type, pattern the message must match)
Case = tuple[str, Callable[[Any, Any, Path], Any], type[BaseException], str]


def _fit(vae, data, ck, **kw):
    kw.setdefault("epochs", 2)
    kw.setdefault("progress", False)
    kw.setdefault("checkpoint_dir", ck)
    kw.setdefault("resume", True)
    return pv.fit(vae.model, vae.guide, data, **kw)


def _evaluate(vae, data, **kw):
    return pv.evaluate.log_likelihood(vae.model, vae.guide, data, **kw)


def _predictive(vae, data, **kw):
    return pv.posterior_predictive(vae.model, vae.guide, data, **kw)


CASES: list[Case] = [
    # ---- fit: data
    (
        "nan",
        lambda v, d, ck: _fit(v, _with(_x(d), 7, math.nan), ck),
        pv.DataError,
        r"index 7 \(NaN\)",
    ),
    (
        "inf",
        lambda v, d, ck: _fit(v, _with(_x(d), 9, math.inf), ck),
        pv.DataError,
        r"index 9 \(Inf\)",
    ),
    (
        "grey for bernoulli",
        lambda v, d, ck: _fit(v, _with(_x(d), 11, 0.5), ck),
        pv.DataError,
        r"support of observed site 'x'.*index 11",
    ),
    (
        "wrong image size",
        lambda v, d, ck: _fit(v, torch.zeros(50, 1, 28, 28), ck),
        pv.DataError,
        r"shape \(50, 1, 28, 28\)",
    ),
    ("empty", lambda v, d, ck: _fit(v, torch.zeros(0, 1, 8, 8), ck), pv.DataError, "empty"),
    (
        "no batch dim",
        lambda v, d, ck: _fit(v, torch.zeros(64), ck),
        pv.DataError,
        r"shape \(N, \.\.\.\)",
    ),
    ("string", lambda v, d, ck: _fit(v, "digits", ck), TypeError, "got str"),
    (
        "list of rows",
        lambda v, d, ck: _fit(v, list(_x(d, 5)), ck),
        pv.DataError,
        "list of 5 tensors",
    ),
    (
        "labels of another length",
        lambda v, d, ck: _fit(v, (_x(d), d.y_train[:10]), ck),
        pv.DataError,
        "'y' has shape",
    ),
    ("dict without x", lambda v, d, ck: _fit(v, {"images": _x(d)}, ck), pv.DataError, "under 'x'"),
    (
        "triple",
        lambda v, d, ck: _fit(v, (_x(d), d.y_train[:200], d.y_train[:200]), ck),
        pv.DataError,
        "use a dict",
    ),
    (
        "nan in a loader's dataset",
        lambda v, d, ck: _fit(
            v, DataLoader(TensorDataset(_with(_x(d), 133, math.nan)), batch_size=50), ck
        ),
        pv.DataError,
        r"index 133 \(NaN\)",
    ),
    (
        "above 1 with dynamic binarisation",
        lambda v, d, ck: _fit(v, _with(_x(d), 4, 3.0), ck, transform=pv.data.dynamic_binarize),
        pv.DataError,
        r"\[0, 1\].*index 4",
    ),
    (
        "val_data of another shape",
        lambda v, d, ck: _fit(v, _x(d), ck, val_data=torch.zeros(20, 1, 28, 28)),
        pv.DataError,
        "val_data",
    ),
    (
        "nan in val_data",
        lambda v, d, ck: _fit(v, _x(d), ck, val_data=_with(d.x_test, 3, math.nan)),
        pv.DataError,
        r"val_data.*index 3",
    ),
    # ---- fit: settings
    ("epochs < 0", lambda v, d, ck: _fit(v, _x(d), ck, epochs=-1), ValueError, "epochs"),
    ("batch_size 0", lambda v, d, ck: _fit(v, _x(d), ck, batch_size=0), ValueError, "batch_size"),
    (
        "batch_size float",
        lambda v, d, ck: _fit(v, _x(d), ck, batch_size=2.5),
        ValueError,
        "batch_size",
    ),
    (
        "cuda without a gpu",
        lambda v, d, ck: (
            _fit(v, _x(d), ck, device="cuda")
            if not torch.cuda.is_available()
            else pytest.skip("has a GPU")
        ),
        RuntimeError,
        "no CUDA device",
    ),
    (
        "unknown device",
        lambda v, d, ck: _fit(v, _x(d), ck, device="tpu9"),
        ValueError,
        "unknown device",
    ),
    (
        "optimizer instance",
        lambda v, d, ck: _fit(v, _x(d), ck, optim=torch.optim.Adam(v.parameters())),
        TypeError,
        "factory",
    ),
    ("optimizer not callable", lambda v, d, ck: _fit(v, _x(d), ck, optim=3), TypeError, "optim"),
    (
        "not an objective",
        lambda v, d, ck: _fit(v, _x(d), ck, loss=object()),
        TypeError,
        "not a Pyro ELBO",
    ),
    (
        "jit objective",
        lambda v, d, ck: _fit(v, _x(d), ck, loss=pyro.infer.JitTrace_ELBO()),
        TypeError,
        "JitTrace_ELBO",
    ),
    (
        "adversary optimizer without an adversary",
        lambda v, d, ck: _fit(v, _x(d), ck, adversary_optim=torch.optim.Adam),
        ValueError,
        "no adversary",
    ),
    (
        "plain function as callback",
        lambda v, d, ck: _fit(v, _x(d), ck, callbacks=[print]),
        TypeError,
        "Callback",
    ),
    (
        "checkpoint beyond epochs",
        lambda v, d, ck: _fit(v, _x(d), ck, epochs=0),
        ValueError,
        "beyond epochs=0",
    ),
    # ---- fit: checkpoints and their folder
    (
        "checkpoint_dir is a file",
        lambda v, d, ck: _fit(v, _x(d), ck / "notes.txt", resume=False),
        pv.CheckpointError,
        "is a file",
    ),
    (
        "resume from a missing file",
        lambda v, d, ck: _fit(v, _x(d), ck, resume=ck / "other.pt"),
        pv.CheckpointError,
        "no checkpoint file",
    ),
    (
        "resume from the user's file",
        lambda v, d, ck: _fit(v, _x(d), ck, resume=ck / "notes.txt"),
        pv.CheckpointError,
        "notes.txt",
    ),
    (
        "resume another model",
        lambda v, d, ck: pv.fit(
            pv.variants.build("vae", d.shape, latent_dim=3, hidden=(8,)).model,
            pv.variants.build("vae", d.shape, latent_dim=3, hidden=(8,)).guide,
            _x(d),
            epochs=2,
            checkpoint_dir=ck,
            resume=True,
            progress=False,
        ),
        pv.CheckpointError,
        "parameter|does not belong",
    ),
    (
        "resume with another optimizer",
        lambda v, d, ck: _fit(v, _x(d), ck, optim=functools.partial(torch.optim.SGD, lr=0.1)),
        pv.CheckpointError,
        "written by Adam.*SGD",
    ),
    # ---- evaluate and posterior_predictive
    (
        "evaluate nan",
        lambda v, d, ck: _evaluate(v, _with(d.x_test, 5, math.nan), num_samples=2),
        pv.DataError,
        "index 5",
    ),
    (
        "evaluate zero samples",
        lambda v, d, ck: _evaluate(v, d.x_test, num_samples=0),
        ValueError,
        "num_samples",
    ),
    (
        "evaluate float samples",
        lambda v, d, ck: _evaluate(v, d.x_test, num_samples=2.0),
        ValueError,
        "num_samples",
    ),
    (
        "evaluate chunk 0",
        lambda v, d, ck: _evaluate(v, d.x_test, num_samples=2, chunk_size=0),
        ValueError,
        "chunk_size",
    ),
    (
        "evaluate wrong shape",
        lambda v, d, ck: _evaluate(v, torch.zeros(4, 1, 28, 28), num_samples=2),
        ValueError,
        r"shape|expects",
    ),
    (
        "evaluate a loader",
        lambda v, d, ck: _evaluate(v, DataLoader(TensorDataset(d.x_test)), num_samples=2),
        TypeError,
        "DataLoader",
    ),
    (
        "predictive nan",
        lambda v, d, ck: _predictive(v, _with(d.x_test, 2, math.nan), num_samples=2),
        pv.DataError,
        "index 2",
    ),
    (
        "predictive zero samples",
        lambda v, d, ck: _predictive(v, d.x_test, num_samples=0),
        ValueError,
        "num_samples",
    ),
    (
        "predictive unknown latent",
        lambda v, d, ck: _predictive(v, d.x_test[:5], num_samples=2, latent="w"),
        ValueError,
        "'w'",
    ),
    (
        "predictive unknown observed",
        lambda v, d, ck: _predictive(v, d.x_test[:5], num_samples=2, observed="y"),
        ValueError,
        "'y'",
    ),
    (
        "predictive labels of another length",
        lambda v, d, ck: _predictive(v, (d.x_test, d.y_test[:3]), num_samples=2),
        pv.DataError,
        "'y' has shape",
    ),
]


@pytest.mark.parametrize(("name", "call", "kind", "pattern"), CASES, ids=[c[0] for c in CASES])
def test_bad_input_is_refused_before_anything_runs_or_is_written(
    run, small_vae, digits, name, call, kind, pattern
):
    files = _files(run)
    params = {k: v.detach().clone() for k, v in small_vae.state_dict().items()}
    with pytest.raises(kind, match=pattern) as info:
        call(small_vae, digits, run)
    assert "\n" not in str(info.value).strip(), "a one-line message"
    assert _files(run) == files, "files already there are byte-identical"
    same = {k: torch.equal(v, params[k]) for k, v in small_vae.state_dict().items()}
    assert all(same.values()), "no step was taken"


def test_empty_and_truncated_checkpoints_are_named(run, tmp_path):
    empty = tmp_path / "empty.pt"
    empty.write_bytes(b"")
    with pytest.raises(pv.CheckpointError, match=r"empty.pt.*empty"):
        load_checkpoint(empty)
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes((run / "checkpoint.pt").read_bytes()[:100])
    with pytest.raises(pv.CheckpointError, match=r"truncated.pt.*corrupt"):
        load_checkpoint(truncated)


def test_resume_without_a_checkpoint_says_so(digits, small_vae, tmp_path):
    with pytest.warns(UserWarning, match="no checkpoint.*from scratch"):
        pv.fit(
            small_vae.model,
            small_vae.guide,
            _x(digits),
            epochs=1,
            checkpoint_dir=tmp_path,
            resume=True,
            progress=False,
        )


def test_resume_with_a_new_learning_rate_uses_it_and_says_so(run, digits, small_vae):
    optim = functools.partial(torch.optim.Adam, lr=1e-4)
    with pytest.warns(UserWarning, match=r"lr 0\.001 -> 0\.0001"):
        pv.fit(
            small_vae.model,
            small_vae.guide,
            _x(digits),
            epochs=2,
            optim=optim,
            checkpoint_dir=run,
            resume=True,
            progress=False,
        )
    saved = load_checkpoint(run / "checkpoint.pt")
    assert saved["optimizer"]["param_groups"][0]["lr"] == 1e-4


def test_temporary_files_of_interrupted_writes_are_cleaned(run, digits, small_vae):
    (run / ".checkpoint.pt.abc123.tmp").write_bytes(b"half a checkpoint")
    (run / ".other.tmp").write_bytes(b"not ours")
    pv.fit(
        small_vae.model,
        small_vae.guide,
        _x(digits),
        epochs=2,
        checkpoint_dir=run,
        resume=True,
        progress=False,
    )
    assert not (run / ".checkpoint.pt.abc123.tmp").exists()
    assert (run / ".other.tmp").read_bytes() == b"not ours"
    assert (run / "notes.txt").read_text() == "the user's own notes"


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes anywhere")
def test_unwritable_checkpoint_folder_is_refused_before_training(digits, small_vae, tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        with pytest.raises(pv.CheckpointError, match="not writable"):
            pv.fit(
                small_vae.model,
                small_vae.guide,
                _x(digits),
                epochs=1,
                checkpoint_dir=locked,
                progress=False,
            )
    finally:
        locked.chmod(0o700)


def test_a_diverged_fit_puts_the_last_finite_parameters_back(digits, small_vae):
    class Poison(pv.callbacks.Callback):
        def on_step_start(self, state):
            if state.global_step == 25:
                with torch.no_grad():
                    small_vae.decoder.net[0].weight.fill_(math.nan)

    with pytest.raises(pv.TrainingDiverged) as info:
        pv.fit(
            small_vae.model,
            small_vae.guide,
            digits.x_train,
            epochs=3,
            batch_size=10,
            callbacks=[Poison()],
            progress=False,
        )
    assert info.value.epoch == 1 and info.value.step == 25
    assert all(bool(torch.isfinite(p).all()) for p in small_vae.parameters())


def test_numpy_integers_are_integers_everywhere(digits, small_vae):
    ll = _evaluate(small_vae, digits.x_test[:4], num_samples=np.int64(3))
    assert ll.shape == (4,)
