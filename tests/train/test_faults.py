"""Faults: a fit killed at random moments (in training and in checkpoint writes) always leaves a
loadable checkpoint and resumes bit-identically; a disk that fills up keeps the previous
checkpoint and names the problem."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import torch

import pyro_vaes as pv
from pyro_vaes.train import checkpoint as ckpt

SCRIPT = """
import sys, torch, pyro_vaes as pv
splits = pv.data.load("digits").map(pv.data.binarize)
torch.manual_seed(0)
vae = pv.variants.build("vae", splits.shape, latent_dim=4, hidden=(64,))
pv.fit(vae.model, vae.guide, splits.x_train[:300], epochs=int(sys.argv[2]), batch_size=50,
       checkpoint_dir=sys.argv[1], resume=True, seed=0, progress=False)
torch.save(vae.state_dict(), sys.argv[1] + "/final.pt")
"""

EPOCHS = 40


def _start(folder: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    return subprocess.Popen(
        [sys.executable, "-c", SCRIPT, str(folder), str(EPOCHS)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


@pytest.mark.slow
def test_sigkill_at_random_moments_leaves_a_loadable_checkpoint_and_resumes_bit_identically(
    tmp_path,
):
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    assert _start(straight).wait(timeout=300) == 0
    rng = random.Random(0)
    kills = 0
    for _ in range(12):  # kill until one run gets to the end
        proc = _start(killed)
        time.sleep(rng.uniform(2.0, 4.5))  # the imports take about two seconds; then ~0.04 s/epoch
        if proc.poll() is not None:
            assert proc.returncode == 0, proc.stderr.read().decode() if proc.stderr else ""
            break
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        kills += 1
        if (killed / "checkpoint.pt").exists():  # whatever the moment, the checkpoint loads
            assert ckpt.load(killed / "checkpoint.pt")["epoch"] >= 1
    else:
        assert _start(killed).wait(timeout=300) == 0
    assert kills >= 1
    a = torch.load(straight / "final.pt", weights_only=True)
    b = torch.load(killed / "final.pt", weights_only=True)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert not list(killed.glob(".checkpoint.pt.*.tmp"))  # interrupted writes cleaned up


@contextmanager
def _tmpfs(folder: Path, options: str) -> Iterator[Path]:
    """A tmpfs mounted at ``folder`` with ``options``; the test skips where mounting is not
    permitted."""
    folder.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(folder)], capture_output=True
    )
    if done.returncode != 0:
        pytest.skip(f"mounting a tmpfs ({options}) is not permitted here")
    try:
        yield folder
    finally:
        subprocess.run(["umount", str(folder)], check=False)


@pytest.fixture
def small_disk(tmp_path):
    with _tmpfs(tmp_path / "disk", "size=2m") as disk:
        yield disk


def test_a_full_disk_keeps_the_previous_checkpoint_and_names_the_problem(
    digits, small_vae, small_disk
):
    class FillTheDisk(pv.callbacks.Callback):
        def on_epoch_end(self, state):
            if state.epoch == 2:  # after the first checkpoint, before the second
                with open(small_disk / "filler", "wb") as f:
                    try:
                        while True:
                            f.write(b"\0" * 65536)
                    except OSError:
                        pass

    with pytest.raises(pv.CheckpointError, match=r"checkpoint\.pt.*MiB free") as info:
        pv.fit(
            small_vae.model,
            small_vae.guide,
            digits.x_train[:200],
            epochs=3,
            checkpoint_dir=small_disk,
            callbacks=[FillTheDisk()],
            progress=False,
        )
    assert "\n" not in str(info.value)
    assert ckpt.load(small_disk / "checkpoint.pt")["epoch"] == 1
    assert not list(small_disk.glob(".checkpoint.pt.*.tmp"))


def test_a_disk_too_small_for_a_checkpoint_is_refused_before_training(digits, small_disk):
    torch.manual_seed(0)
    big = pv.variants.build("vae", digits.shape, latent_dim=4, hidden=(1024, 1024))
    before = [p.detach().clone() for p in big.parameters()]
    with pytest.raises(pv.CheckpointError, match="MiB free; a checkpoint needs about"):
        pv.fit(
            big.model,
            big.guide,
            digits.x_train[:100],
            epochs=1,
            checkpoint_dir=small_disk,
            progress=False,
        )
    assert all(torch.equal(p, b) for p, b in zip(big.parameters(), before, strict=True))
    assert list(Path(small_disk).iterdir()) == []


def test_a_read_only_file_system_is_refused_before_training(digits, small_vae, tmp_path):
    with (
        _tmpfs(tmp_path / "ro", "size=1m,ro") as disk,
        pytest.raises(pv.CheckpointError, match=r"not writable: Read-only file system"),
    ):
        pv.fit(
            small_vae.model,
            small_vae.guide,
            digits.x_train[:100],
            epochs=1,
            checkpoint_dir=disk / "run",
            progress=False,
        )
