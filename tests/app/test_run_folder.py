"""The run-folder contract (``pyro_vaes.app.runs``) and one-line errors from the CLI.

Every refusal is checked the same way: exit code 2, one line on stderr that names the problem
(the option, the file, the folder), no traceback, and every file that was in the folder before
is byte-identical afterwards (and nothing new appeared).
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from pyro_vaes.app import cli, runs
from pyro_vaes.catalogue import variants
from pyro_vaes.errors import RunFolderError, TrainingDiverged
from pyro_vaes.train import checkpoint

TINY = ["--data", "digits", "--hidden", "16", "--latent-dim", "2", "--eval-samples", "2"]
TRAIN = ["train", *TINY, "--epochs", "1", "--quiet"]
REPORT = ["--num-samples", "2", "--num-points", "10", "--classifier-epochs", "0", "--quiet"]


def snapshot(folder: Path) -> dict[str, str]:
    """Every file and folder under ``folder``: relative path -> sha256 (folders: "dir")."""
    if not folder.exists():
        return {}
    if folder.is_file():
        return {".": hashlib.sha256(folder.read_bytes()).hexdigest()}
    out = {}
    for path in sorted(folder.rglob("*")):
        rel = path.relative_to(folder).as_posix()
        out[rel] = "dir" if path.is_dir() else hashlib.sha256(path.read_bytes()).hexdigest()
    return out


def refused(argv: list[str], capsys: pytest.CaptureFixture[str], *names: str) -> str:
    """Run the CLI, expect a one-line refusal naming every one of ``names``; return it."""
    capsys.readouterr()
    assert cli.main([str(a) for a in argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("pyro-vaes: error: "), err
    assert err.count("\n") == 1 and err.endswith("\n"), err
    assert "Traceback" not in err
    for name in names:
        assert str(name) in err, (name, err)
    return err


def refused_unchanged(
    argv: list[str], capsys: pytest.CaptureFixture[str], folder: Path, *names: str
) -> str:
    before = snapshot(folder)
    err = refused(argv, capsys, *names)
    assert snapshot(folder) == before, "the folder changed"
    return err


def write_run(folder: Path, latent_dim: int = 2, epoch: int = 1) -> Path:
    """A run folder as ``train`` writes it, made without training (fast)."""
    folder.mkdir(parents=True)
    config = {
        "format": runs.RUN_FORMAT,
        "variant": "vae",
        "options": {"latent_dim": latent_dim, "net": "mlp", "likelihood": "bernoulli"}
        | {"hidden": [16]},
        "data": "digits",
        "data_root": None,
        "binarize": "dynamic",
        "epochs": 1,
        "batch_size": 100,
        "lr": 0.001,
        "seed": 0,
        "data_shape": [1, 8, 8],
    }
    (folder / runs.CONFIG).write_text(json.dumps(config, indent=2))
    torch.manual_seed(0)
    model = variants.build("vae", (1, 8, 8), latent_dim=latent_dim, hidden=[16])
    params = {f"module0.{k}": v for k, v in model.state_dict().items()}
    checkpoint.save({"epoch": epoch, "params": params}, folder / runs.CHECKPOINT)
    metrics = {"history": {"epoch": [1], "loss": [50.0], "val_loss": [49.0], "seconds": [0.1]}}
    metrics["test"] = {"num_samples": 2, "log_likelihood": -45.0, "elbo": -46.0}
    metrics["test"]["reconstruction"] = 40.0
    (folder / runs.METRICS).write_text(json.dumps(metrics))
    for name in ("samples.png", "loss.png", "reconstructions.png"):
        (folder / name).write_bytes(b"\x89PNG picture of " + name.encode())
    return folder


@pytest.fixture
def run(tmp_path: Path) -> Path:
    return write_run(tmp_path / "run")


def users_folder(folder: Path) -> Path:
    """A folder of the user's own files, named like a run's."""
    folder.mkdir(parents=True)
    (folder / "config.json").write_text('{"learning_rate": 0.1, "comment": "my own config"}')
    (folder / "samples.png").write_bytes(b"my holiday photo")
    (folder / "checkpoint.pt").write_bytes(os.urandom(256))
    (folder / "notes").mkdir()
    (folder / "notes" / "todo.txt").write_text("do not lose me")
    return folder


# ------------------------------------------------------------------------ train: the folder


def test_train_never_touches_a_folder_of_the_users_files(tmp_path, capsys):
    mine = users_folder(tmp_path / "mine")
    refused_unchanged([*TRAIN, "--out", mine], capsys, mine, str(mine), "holds no pyro-vaes run")
    err = refused_unchanged([*TRAIN, "--out", mine, "--overwrite"], capsys, mine, str(mine))
    assert "with --overwrite" in err
    refused_unchanged([*TRAIN, "--out", mine, "--resume"], capsys, mine, str(mine))
    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "a.txt").write_text("a")
    refused_unchanged([*TRAIN, "--out", notes, "--overwrite"], capsys, notes, "a.txt")


@pytest.mark.parametrize("content", [b"", b"{ not json", b"\xff\xfe\x00garbage", b"[1, 2]"])
def test_train_refuses_a_folder_whose_config_cannot_be_read(tmp_path, capsys, content):
    folder = write_run(tmp_path / "run")
    (folder / runs.CONFIG).write_bytes(content)
    for how in ([], ["--resume"], ["--overwrite"]):
        refused_unchanged([*TRAIN, "--out", folder, *how], capsys, folder, folder / runs.CONFIG)


def test_train_refuses_an_existing_run_without_resume_or_overwrite(run, capsys):
    refused_unchanged([*TRAIN, "--out", run], capsys, run, str(run), "--resume", "--overwrite")
    refused_unchanged([*TRAIN, "--out", run, "--resume", "--overwrite"], capsys, run, "--resume")


def test_train_out_that_is_a_file_or_under_a_file(tmp_path, capsys):
    f = tmp_path / "f"
    f.write_text("mine")
    refused_unchanged([*TRAIN, "--out", f], capsys, tmp_path, str(f), "is a file")
    refused_unchanged([*TRAIN, "--out", f / "sub" / "run"], capsys, tmp_path, str(f), "is a file")


def test_resume_needs_a_run(tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    refused_unchanged([*TRAIN, "--out", empty, "--resume"], capsys, tmp_path, str(empty))
    missing = tmp_path / "missing"
    refused_unchanged([*TRAIN, "--out", missing, "--resume"], capsys, tmp_path, "no run to resume")


@pytest.mark.parametrize(
    ("given", "named"),
    [
        (["--latent-dim", "8"], "--latent-dim 8"),
        (["--hidden", "16", "16"], "--hidden 16 16"),
        (["--variant", "beta_vae"], "--variant beta_vae"),
        (["--data", "tree"], "--data tree"),
        (["--likelihood", "gaussian"], "--likelihood gaussian"),
        (["--binarize", "static"], "--binarize static"),
        (["--lr", "0.01"], "--lr 0.01"),
        (["--batch-size", "50"], "--batch-size 50"),
        (["--seed", "3"], "--seed 3"),
        (["--beta", "2"], "--beta 2"),
        (["--prior", "vamp"], "--prior vamp"),
        (["--lr", "-1"], "--lr"),
        (["--lr", "nan"], "--lr"),
        (["--epochs", "-1"], "--epochs"),
        (["--epochs", "0"], "--epochs 0"),  # below the checkpoint's epoch 1
        (["--device", "cuda:99"], "--device cuda:99"),
        (["--device", "nonsense"], "--device nonsense"),
    ],
)
def test_resume_with_other_options_is_refused_before_anything_is_written(run, capsys, given, named):
    argv = ["train", "--out", run, "--resume", "--quiet", "--eval-samples", "2", *given]
    refused_unchanged(argv, capsys, run, named)
    assert not (run / runs.LOCK).exists()
    # the run still loads
    assert cli.main(["sample", str(run), "-n", "4", "--out", str(run.parent / "s.png")]) == 0


def test_resume_with_a_checkpoint_of_another_model(tmp_path, capsys):
    run = write_run(tmp_path / "run")
    other = write_run(tmp_path / "other", latent_dim=3)
    (run / runs.CHECKPOINT).write_bytes((other / runs.CHECKPOINT).read_bytes())
    refused_unchanged([*TRAIN, "--out", run, "--resume"], capsys, run, run / runs.CHECKPOINT)


@pytest.mark.parametrize("content", [b"", b"not a checkpoint", b"PK\x03\x04" + bytes(100)])
def test_a_damaged_checkpoint_is_named_by_every_command(tmp_path, capsys, content):
    run = write_run(tmp_path / "run")
    ckpt = run / runs.CHECKPOINT
    ckpt.write_bytes(content)
    refused_unchanged([*TRAIN, "--out", run, "--resume"], capsys, tmp_path, ckpt)
    refused_unchanged(["evaluate", run, "--num-samples", "2", "--quiet"], capsys, tmp_path, ckpt)
    refused_unchanged(["sample", run], capsys, tmp_path, ckpt)
    refused_unchanged(["report", run, *REPORT], capsys, tmp_path, ckpt)


def test_a_damaged_config_is_named_by_every_command(tmp_path, capsys):
    run = write_run(tmp_path / "run")
    config = run / runs.CONFIG
    for content in ("{", '{"variant": "vae"}', '{"format": "pyro-vaes/run/99"}'):
        config.write_text(content)
        refused_unchanged(["evaluate", run, "--quiet"], capsys, tmp_path, config)
        refused_unchanged(["sample", run], capsys, tmp_path, config)
        refused_unchanged(["report", run, *REPORT], capsys, tmp_path, config)
    config.write_text('{"format": "pyro-vaes/run/99"}')
    err = refused(["sample", run], capsys)
    assert "another pyro-vaes version" in err


def test_a_config_this_version_cannot_build_is_named(tmp_path, capsys):
    run = write_run(tmp_path / "run")
    config = json.loads((run / runs.CONFIG).read_text())
    config["options"]["wings"] = 2
    (run / runs.CONFIG).write_text(json.dumps(config))
    refused_unchanged(["sample", run], capsys, tmp_path, run / runs.CONFIG)


def test_a_run_written_before_the_format_key_still_loads(tmp_path, capsys):
    run = write_run(tmp_path / "run")
    config = json.loads((run / runs.CONFIG).read_text())
    del config["format"]
    (run / runs.CONFIG).write_text(json.dumps(config))
    assert runs.is_run(run)
    assert cli.main(["sample", str(run), "-n", "4"]) == 0
    refused_unchanged([*TRAIN, "--out", run], capsys, run, "already holds a run")


def test_nothing_is_created_when_a_check_fails(tmp_path, capsys):
    out = tmp_path / "new" / "run"
    refused([*TRAIN, "--out", out, "--variant", "nope"], capsys, "unknown variant 'nope'")
    refused([*TRAIN, "--out", out, "--device", "tpu:3"], capsys, "--device tpu:3")
    refused([*TRAIN, "--out", out, "--variant", "svae", "--latent-dim", "1"], capsys, "dim >= 2")
    empty = tmp_path / "data"
    empty.mkdir()
    refused([*TRAIN, "--out", out, "--data", "mnist10k", "--data-root", empty], capsys, "mnist10k")
    assert snapshot(tmp_path) == {"data": "dir"}


@pytest.mark.parametrize(
    ("argv", "named"),
    [
        (["train", "--lr", "0"], "--lr: must be > 0"),
        (["train", "--lr", "inf"], "--lr: must be a finite number"),
        (["train", "--beta", "-1"], "--beta: must be >= 0"),
        (["train", "--curvature", "0"], "--curvature"),
        (["train", "--latent-dim", "two"], "--latent-dim: not a number: 'two'"),
        (["train", "--hidden"], "--hidden"),
        (["train", "--frobnicate"], "--frobnicate"),
        (["train", "--data", "imagenet"], "--data"),
        (["sample"], "RUN"),
        (["train", "--val-fraction", "1"], "--val-fraction: must be below 1"),
        (["train", "--val-fraction", "-0.1"], "--val-fraction: must be >= 0"),
        (["sample", "x", "-n", "0"], "-n: must be >= 1"),
        (["report", "x", "--num-points", "0"], "--num-points"),
        (["fly"], "fly"),
        ([], "command"),
    ],
)
def test_usage_errors_are_one_line(tmp_path, capsys, monkeypatch, argv, named):
    monkeypatch.chdir(tmp_path)
    refused(argv, capsys, named)
    assert snapshot(tmp_path) == {}


# ------------------------------------------------------------------------- one writer only


def test_a_second_writer_is_refused_naming_the_folder_and_the_pid(run, tmp_path, capsys):
    lock = run / runs.LOCK
    lock.write_text(json.dumps({"pid": os.getpid(), "host": os.uname().nodename}))
    for how in ["--resume"], ["--overwrite"]:
        refused_unchanged([*TRAIN, "--out", run, *how], capsys, run, run, f"pid {os.getpid()}")
    # a new folder that another writer has just claimed
    new = tmp_path / "new"
    new.mkdir()
    (new / runs.LOCK).write_text(json.dumps({"pid": os.getpid()}))
    refused_unchanged([*TRAIN, "--out", new], capsys, new, new, f"pid {os.getpid()}")
    # and a report being written into the same folder
    report = tmp_path / "report"
    report.mkdir()
    (report / runs.LOCK).write_text(json.dumps({"pid": os.getpid()}))
    refused_unchanged(["report", run, "--out", report, *REPORT], capsys, tmp_path, report)


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_run_lock_takes_over_a_stale_lock_and_releases_on_errors(tmp_path):
    folder = tmp_path / "f"
    folder.mkdir()
    lock_path = folder / runs.LOCK
    lock_path.write_text(json.dumps({"pid": _dead_pid()}))
    with pytest.raises(TrainingDiverged), runs.RunLock(folder):
        assert json.loads(lock_path.read_text())["pid"] == os.getpid()
        with pytest.raises(runs.RunFolderError, match=f"pid {os.getpid()}"):
            runs.RunLock(folder).acquire()  # a second lock, even in this process
        raise TrainingDiverged("boom", epoch=1, step=1)
    assert not lock_path.exists()
    # an unreadable lock is someone's that is being written, until it is old
    lock_path.write_text("")
    with pytest.raises(runs.RunFolderError, match="pid unknown"):
        runs.RunLock(folder).acquire()
    old = time.time() - 60
    os.utime(lock_path, (old, old))
    with runs.RunLock(folder):
        pass
    assert os.listdir(folder) == []


@pytest.mark.parametrize(
    "error", [TrainingDiverged("diverged", epoch=1, step=3), KeyboardInterrupt]
)
def test_the_lock_is_released_when_training_fails(tmp_path, capsys, monkeypatch, error):
    def fail(*args, **kwargs):
        assert (out / runs.LOCK).is_file()
        raise error

    out = tmp_path / "run"
    monkeypatch.setattr(variants.Variant, "fit", fail)
    capsys.readouterr()
    code = cli.main([*TRAIN, "--out", str(out)])
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert code == (130 if error is KeyboardInterrupt else 2)
    assert not out.exists()  # created for the run, removed again: nothing was written


@pytest.mark.slow
def test_two_train_processes_into_one_folder(tmp_path):
    """Started together, one trains and the other is refused; the run is consistent."""
    out = tmp_path / "run"
    argv = [sys.executable, "-m", "pyro_vaes", *TRAIN[:-3], "--epochs", "3", "--out", str(out)]
    argv.append("--quiet")
    procs = [subprocess.Popen(argv, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    results = [(p.wait(timeout=300), p.stderr.read()) for p in procs]  # type: ignore[union-attr]
    codes = sorted(code for code, _ in results)
    assert codes == [0, 2], results
    err = next(e for c, e in results if c == 2)
    assert err.count("\n") == 1 and str(out) in err
    assert "in use by another pyro-vaes process (pid" in err or "already holds a run" in err
    assert not (out / runs.LOCK).exists()
    config, _ = runs.load_run(out)
    assert config["options"]["latent_dim"] == 2
    assert checkpoint.load(out / runs.CHECKPOINT)["epoch"] == 3


# ------------------------------------------------------------------- train: what it writes


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("trained") / "run"
    assert cli.main([*TRAIN, "--out", str(out)]) == 0
    return out


def copy_run(source: Path, target: Path) -> Path:
    import shutil

    shutil.copytree(source, target)
    return target


@pytest.mark.slow
def test_resume_takes_the_runs_options_and_continues(trained, tmp_path, capsys):
    run = copy_run(trained, tmp_path / "run")
    (run / runs.LOCK).write_text(json.dumps({"pid": _dead_pid()}))  # left by a killed train
    argv = ["train", "--out", run, "--resume", "--epochs", "2", "--quiet", "--eval-samples", "2"]
    assert cli.main([str(a) for a in argv]) == 0
    config = json.loads((run / runs.CONFIG).read_text())
    assert config["options"]["latent_dim"] == 2 and config["options"]["hidden"] == [16]
    assert config["epochs"] == 2 and config["format"] == runs.RUN_FORMAT
    assert checkpoint.load(run / runs.CHECKPOINT)["epoch"] == 2
    assert len(json.loads((run / runs.METRICS).read_text())["history"]["loss"]) == 2
    assert not (run / runs.LOCK).exists()


@pytest.mark.slow
def test_resume_without_a_checkpoint_says_it_starts_from_scratch(trained, tmp_path, capsys):
    run = copy_run(trained, tmp_path / "run")
    (run / runs.CHECKPOINT).unlink()
    capsys.readouterr()
    assert cli.main([*TRAIN, "--out", str(run), "--resume"]) == 0
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "no checkpoint.pt" in err and "from epoch 1" in err and str(run) in err
    assert checkpoint.load(run / runs.CHECKPOINT)["epoch"] == 1


@pytest.mark.slow
def test_overwrite_replaces_only_the_runs_own_files(trained, tmp_path, capsys):
    run = copy_run(trained, tmp_path / "run")
    (run / "notes.txt").write_text("mine")
    (run / "samples-1.png").write_bytes(b"an earlier sample")
    (run / "report").mkdir()
    (run / "report" / "index.html").write_text("an earlier report")
    kept = {k: v for k, v in snapshot(run).items() if k.split("/")[0] not in runs.TRAIN_FILES}
    assert cli.main([*TRAIN, "--out", str(run), "--overwrite", "--latent-dim", "3"]) == 0
    after = snapshot(run)
    assert {k: after[k] for k in kept} == kept
    assert set(after) == set(kept) | set(runs.TRAIN_FILES) - {"history.csv"}  # without --csv
    config, _ = runs.load_run(run)
    assert config["options"]["latent_dim"] == 3


# ------------------------------------------------------------------------------- sample


def test_sample_writes_new_files_and_never_the_runs_pictures(run, capsys):
    before = snapshot(run)
    assert cli.main(["sample", str(run), "-n", "4"]) == 0
    assert cli.main(["sample", str(run), "-n", "4", "--seed", "1"]) == 0
    after = snapshot(run)
    assert {k: after[k] for k in before} == before
    assert set(after) - set(before) == {"samples-1.png", "samples-2.png"}
    assert after["samples-1.png"] != after["samples-2.png"]
    (run / "samples-1.png").unlink()
    assert cli.main(["sample", str(run), "-n", "4"]) == 0
    assert (run / "samples-3.png").is_file() and not (run / "samples-1.png").exists()
    for name in ("samples.png", "config.json", "checkpoint.pt"):
        argv = ["sample", run, "--out", run / name, "--overwrite"]
        refused_unchanged(argv, capsys, run, run / name, "the run's own files")


def test_sample_out_needs_overwrite_to_replace_a_file(run, tmp_path, capsys):
    mine = tmp_path / "mine.png"
    mine.write_bytes(b"mine")
    refused_unchanged(["sample", run, "--out", mine], capsys, tmp_path, mine, "--overwrite")
    assert cli.main(["sample", str(run), "-n", "4", "--out", str(mine), "--overwrite"]) == 0
    assert mine.read_bytes().startswith(b"\x89PNG") and mine.stat().st_size > 500
    refused_unchanged(["sample", run, "--out", tmp_path], capsys, tmp_path, "is a folder")
    refused_unchanged(["sample", run, "--out", tmp_path / "s.txt"], capsys, tmp_path, ".txt")
    refused_unchanged(["sample", run, "--overwrite"], capsys, tmp_path, "--overwrite")
    new = tmp_path / "pictures" / "s.png"
    assert cli.main(["sample", str(run), "-n", "4", "--out", str(new)]) == 0
    assert new.is_file()


def test_sample_refuses_runs_that_are_not_images(tmp_path, capsys):
    run = write_run(tmp_path / "run")
    config = json.loads((run / runs.CONFIG).read_text())
    config["data"], config["data_shape"] = "tree", [50]
    (run / runs.CONFIG).write_text(json.dumps(config))
    refused_unchanged(["sample", run], capsys, tmp_path, "'tree'", "not images")


# ------------------------------------------------------------------------------- report


@pytest.mark.parametrize(
    "content", ["{", '"text"', '{"test": {"elbo": "high"}}', '{"history": {"loss": [1, 2]}}']
)
def test_report_checks_metrics_before_creating_its_folder(run, capsys, content):
    (run / runs.METRICS).write_text(content)
    refused_unchanged(["report", run, *REPORT], capsys, run, run / runs.METRICS)
    assert not (run / "report").exists()


def test_report_checks_the_run_and_its_folder_first(run, tmp_path, capsys):
    ckpt = run / runs.CHECKPOINT
    saved = ckpt.read_bytes()
    ckpt.unlink()
    refused_unchanged(["report", run, *REPORT], capsys, tmp_path, ckpt)
    ckpt.write_bytes(saved)
    refused_unchanged(["report", tmp_path / "nothing", *REPORT], capsys, tmp_path, "does not exist")
    f = tmp_path / "f.html"
    f.write_text("mine")
    refused_unchanged(["report", run, "--out", f, *REPORT], capsys, tmp_path, f, "is a file")
    mine = users_folder(tmp_path / "mine")
    refused_unchanged(["report", run, "--out", mine, *REPORT], capsys, tmp_path, mine)
    photos = tmp_path / "photos"  # named like report files, but not a report
    photos.mkdir()
    (photos / "samples.png").write_bytes(b"my photo")
    refused_unchanged(["report", run, "--out", photos, *REPORT], capsys, tmp_path, photos)
    other = write_run(tmp_path / "other")
    refused_unchanged(["report", run, "--out", other, *REPORT], capsys, tmp_path, "run folder")


@pytest.mark.slow
def test_report_rewrites_its_own_folder(run, tmp_path, capsys):
    assert cli.main(["report", str(run), *REPORT]) == 0
    assert cli.main(["report", str(run), *REPORT]) == 0  # an earlier report is replaced
    out = tmp_path / "elsewhere"
    assert cli.main(["report", str(run), "--out", str(out), *REPORT]) == 0
    assert cli.main(["report", str(run), "--out", str(out), *REPORT]) == 0
    assert not (out / runs.LOCK).exists() and not (run / "report" / runs.LOCK).exists()


def test_a_run_recorded_before_validation_splits_resumes_on_all_its_training_data(tmp_path):
    """Runs written before ``val_fraction`` was recorded trained on every training image: on
    ``--resume`` they keep doing so, and asking for a split is refused as a changed option."""
    saved = {"format": runs.RUN_FORMAT, "variant": "vae", "options": {"latent_dim": 2},
             "data": "digits", "binarize": "dynamic", "data_shape": [1, 8, 8], "seed": 0}  # fmt: skip
    args = cli.parser().parse_args(["train", "--resume"])
    assert cli._train_config(args, saved, tmp_path / "config.json")["val_fraction"] == 0.0
    args = cli.parser().parse_args(["train", "--resume", "--val-fraction", "0.1"])
    with pytest.raises(RunFolderError, match=r"--val-fraction 0.1 differs from the run's 0.0"):
        cli._train_config(args, saved, tmp_path / "config.json")
