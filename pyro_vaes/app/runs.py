"""Run folders: what ``pyro-vaes train`` writes and ``evaluate``, ``sample`` and ``report`` read.

**What a run folder is.** A folder whose ``config.json`` is a JSON object with
``"format": "pyro-vaes/run/1"`` (:data:`RUN_FORMAT`) and the keys ``variant``, ``options``,
``data``, ``binarize`` and ``data_shape``. (A ``config.json`` written before the format key
existed, with those keys, counts as a run too.) ``train`` also writes ``checkpoint.pt``
(parameters only; loading it runs no code), ``metrics.json``, ``loss.png``, ``samples.png`` and
``reconstructions.png``, and with ``--csv`` ``history.csv``: these are :data:`TRAIN_FILES`, the
run's own files; with ``--tensorboard`` it writes event files in ``tensorboard/``. ``sample`` adds
``samples-1.png``, ``samples-2.png``, ...; ``report`` writes ``report/``.

**The rules ``train --out DIR`` follows**, every one checked before anything is written:

- ``DIR`` missing or empty: a new run.
- ``DIR`` holds a run: refused unless ``--resume`` (continue it) or ``--overwrite`` (replace
  it). ``--overwrite`` removes only :data:`TRAIN_FILES` and ``tensorboard/``'s event files
  (just before the first epoch, once
  every check has passed); anything else in the folder (the user's files, ``report/``,
  ``samples-N.png``) stays as it is.
- ``DIR`` is not empty and holds no run: refused, with or without ``--overwrite``. Files that
  are not a run's are never replaced or deleted; choose a new or empty folder.
- ``DIR`` is a file, or a ``config.json`` in it cannot be read: refused.
- ``--resume``: the options given on the command line must equal the saved ones (variant,
  data, binarisation, every model option, batch size, learning rate, seed); options not given
  are taken from the run. A mismatch is refused naming the option. ``--epochs`` may grow (not
  below the checkpoint's epoch). ``--resume`` on a run without ``checkpoint.pt`` (stopped
  before its first epoch ended) prints a one-line notice and trains from epoch 1;
  ``--resume`` on a folder that holds no run is refused.
- **One writer at a time.** ``train`` (and ``report``, in its own folder) holds
  ``DIR/run.lock`` (:data:`LOCK`) while it runs: created with ``O_CREAT | O_EXCL``, holding
  the pid and host name, removed on exit (also on errors and Ctrl-C). A second writer is
  refused with the folder and the pid. A lock whose process is gone (``os.kill(pid, 0)``
  fails; same host only) is taken over. ``evaluate`` and ``sample`` only read (``sample``
  adds a new file, claimed with ``O_EXCL``), so they run beside a training.

A failed check raises :class:`RunFolderError` (or the error of the check: ``DataError``,
``CheckpointError``, ``ValueError``) with a one-line message that names the folder, the file
or the option.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import os
import secrets
import socket
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from pyro_vaes import data
from pyro_vaes.catalogue import variants
from pyro_vaes.errors import CheckpointError, DataError, RunFolderError
from pyro_vaes.train import checkpoint
from pyro_vaes.train.callbacks import History
from pyro_vaes.train.fit import CHECKPOINT_NAME

__all__ = [
    "BINARIZE",
    "CHECKPOINT",
    "CONFIG",
    "LOCK",
    "METRICS",
    "RUN_FORMAT",
    "TRAIN_FILES",
    "Folder",
    "RunFolderError",
    "RunLock",
    "build_model",
    "check_checkpoint",
    "check_parent",
    "check_train_folder",
    "claim_file",
    "is_run",
    "load_run",
    "open_folder",
    "prepare_data",
    "read_config",
    "read_json",
    "read_metrics",
    "remove_train_files",
    "write_json",
]

CONFIG = "config.json"
METRICS = "metrics.json"
CHECKPOINT = CHECKPOINT_NAME
LOCK = "run.lock"
#: the ``format`` entry of a run's ``config.json``
RUN_FORMAT = "pyro-vaes/run/1"
#: the files ``train`` writes; ``--overwrite`` replaces these and nothing else
TRAIN_FILES = (
    CONFIG,
    CHECKPOINT,
    METRICS,
    "loss.png",
    "samples.png",
    "reconstructions.png",
    "history.csv",
)
#: the folder of ``train --tensorboard``'s event files; ``--overwrite`` removes the event files
TENSORBOARD = "tensorboard"
#: keys every run config has
CONFIG_KEYS = ("variant", "options", "data", "binarize", "data_shape")

#: a lock file that cannot be read (its writer died between creating and filling it) counts as
#: stale after this many seconds
_UNREADABLE_LOCK_GRACE_S = 10.0


def _binarize_held_out(s: data.Splits) -> data.Splits:
    """Dynamic binarisation's held-out splits: test and validation images binarised once, with
    fixed seeds, so that their scores are comparable from epoch to epoch and run to run."""
    x_val = None if s.x_val is None else data.binarize(s.x_val, 2)
    return dataclasses.replace(s, x_test=data.binarize(s.x_test, 1), x_val=x_val)


def _levels(s: data.Splits) -> int:
    if s.levels is None:
        raise DataError(
            f"{s.name} is not made of grey levels, so there is nothing to dequantise: "
            "use --binarize none"
        )
    return s.levels


def _dequantize(s: data.Splits) -> Callable[[torch.Tensor], torch.Tensor]:
    return functools.partial(data.dequantize, levels=_levels(s))


def _dequantize_held_out(s: data.Splits) -> data.Splits:
    """Dequantisation's held-out splits: test and validation images dequantised once, with fixed
    seeds (like dynamic binarisation's)."""
    levels = _levels(s)
    x_val = None if s.x_val is None else data.dequantize(s.x_val, levels, seed=2)
    return dataclasses.replace(s, x_test=data.dequantize(s.x_test, levels, seed=1), x_val=x_val)


def _none(s: data.Splits) -> None:
    return None


# What each way of presenting the intensities does: (the transform of every training batch, made
# from the dataset; the preparation of the stored images).
BINARIZE: dict[
    str,
    tuple[
        Callable[[data.Splits], Callable[[torch.Tensor], torch.Tensor] | None],
        Callable[[data.Splits], data.Splits],
    ],
] = {
    "dynamic": (lambda s: data.dynamic_binarize, _binarize_held_out),
    "static": (_none, lambda s: s.map(functools.partial(data.binarize, seed=0))),
    "none": (_none, lambda s: s),
    "dequantize": (_dequantize, _dequantize_held_out),
}


# ----------------------------------------------------------------------------------- files


def read_json(path: Path) -> Any:
    """The JSON value in ``path``. :raises RunFolderError: naming the file if it cannot be read
    or is not valid JSON."""
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise RunFolderError(f"{path} is not valid JSON (not UTF-8 text: {err.reason})") from err
    except OSError as err:
        raise RunFolderError(f"cannot read {path}: {err.strerror or err}") from err
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        where = "it is empty" if not text.strip() else f"line {err.lineno} column {err.colno}"
        raise RunFolderError(f"{path} is not valid JSON ({err.msg}: {where})") from err


def write_json(path: Path, value: Any) -> None:
    """Write ``value`` as JSON to ``path`` atomically (a temporary file moved into place)."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(value, f, indent=2)
            f.write("\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def claim_file(path: Path) -> bool:
    """Create ``path`` empty if nothing is there (atomically); ``False`` if something is."""
    try:
        os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644))
    except FileExistsError:
        return False
    return True


# ---------------------------------------------------------------------------------- configs


def _config_problem(config: Any) -> str | None:
    """Why a parsed ``config.json`` is not a run's (``None``: it is one)."""
    if not isinstance(config, dict):
        return "it is not a JSON object"
    fmt = config.get("format")
    if fmt is not None and fmt != RUN_FORMAT:
        if isinstance(fmt, str) and fmt.startswith("pyro-vaes/run/"):
            return f"its format {fmt!r} is not {RUN_FORMAT!r} (another pyro-vaes version?)"
        return f"its format is {fmt!r}, not {RUN_FORMAT!r}"
    missing = [k for k in CONFIG_KEYS if k not in config]
    if missing:
        return f"it lacks {missing}"
    if not isinstance(config["options"], dict):
        return "its 'options' is not an object"
    if not (
        isinstance(config["data_shape"], list)
        and config["data_shape"]
        and all(isinstance(n, int) and n > 0 for n in config["data_shape"])
    ):
        return f"its 'data_shape' {config['data_shape']!r} is not a list of positive sizes"
    if config["binarize"] not in BINARIZE:
        return f"its 'binarize' {config['binarize']!r} is not one of {sorted(BINARIZE)}"
    for key in ("variant", "data"):
        if not isinstance(config[key], str):
            return f"its {key!r} is not a string"
    return None


def is_run(folder: Path) -> bool:
    """Whether ``folder`` holds a run (a readable ``config.json`` of a run)."""
    try:
        return _config_problem(read_json(folder / CONFIG)) is None
    except RunFolderError:
        return False


def read_config(run: Path) -> dict[str, Any]:
    """The saved config of the run folder ``run``.

    :raises RunFolderError: naming the folder or ``config.json`` if ``run`` is no run folder.
    """
    if not run.exists():
        raise RunFolderError(f"{run} does not exist")
    if not run.is_dir():
        raise RunFolderError(f"{run} is a file, not a run folder")
    path = run / CONFIG
    if not path.is_file():
        raise RunFolderError(f"{run} is not a run folder (no {CONFIG})")
    config = read_json(path)
    problem = _config_problem(config)
    if problem is not None:
        raise RunFolderError(f"{path} is not the config of a pyro-vaes run: {problem}")
    return dict(config)


def prepare_data(
    config: dict[str, Any],
) -> tuple[data.Splits, Callable[[torch.Tensor], torch.Tensor] | None]:
    """The run's dataset, prepared as in training, and the transform of its training batches.
    The validation split is the config's ``val_fraction`` of the training data (none in runs
    written before it was recorded).

    :raises DataError: naming the dataset if it cannot be loaded (missing files, no download).
    """
    make_transform, prepare = BINARIZE[config["binarize"]]
    name, root = config["data"], config.get("data_root")
    try:
        splits = data.load(name, root, val_fraction=config.get("val_fraction", 0.0))
    except (RuntimeError, OSError) as err:  # torchvision: failed downloads, missing files
        where = f" from {root}" if root else ""
        lines = str(err).strip().splitlines()
        raise DataError(
            f"cannot load data {name!r}{where}: {lines[0] if lines else type(err).__name__}"
            + (" ..." if len(lines) > 1 else "")
        ) from err
    return prepare(splits), make_transform(splits)


def build_model(config: dict[str, Any], source: Path | None = None) -> Any:
    """The model ``config`` describes (freshly initialised). ``source``: the config file, named
    in the error if the config cannot be built."""
    try:
        return variants.build(config["variant"], config["data_shape"], **config["options"])
    except (TypeError, ValueError) as err:
        if source is None:
            raise
        raise RunFolderError(
            f"{source} does not describe a model this version builds: {err}"
        ) from err


def load_run(run: Path) -> tuple[dict[str, Any], Any]:
    """A run's config and its model, rebuilt from the registry with the saved parameters.

    :raises RunFolderError: if ``run`` is not a run folder or its config is damaged;
        :class:`~pyro_vaes.errors.CheckpointError` if the checkpoint is missing, damaged or does
        not fit the model.
    """
    config = read_config(run)
    model = build_model(config, run / CONFIG)
    checkpoint.restore(model, run / CHECKPOINT)
    return config, model.eval()


def read_metrics(run: Path) -> tuple[dict[str, float] | None, History] | None:
    """The test scores and the history in ``run/metrics.json``; ``None`` if it has none.

    :raises RunFolderError: naming the file if it is not valid JSON or not shaped as ``train``
        writes it.
    """
    path = run / METRICS
    if not path.exists():
        return None
    metrics = read_json(path)
    if not isinstance(metrics, dict):
        raise RunFolderError(f"{path} is not a metrics file of pyro-vaes: not a JSON object")
    test = metrics.get("test") or None
    if test is not None:
        keys = ("log_likelihood", "num_samples", "elbo", "reconstruction")
        if not isinstance(test, dict) or not all(
            isinstance(test.get(k), (int, float)) for k in keys
        ):
            raise RunFolderError(f"{path}: 'test' needs the numbers {list(keys)}")
    raw = metrics.get("history", {})
    try:
        if not isinstance(raw, dict):
            raise TypeError("not an object")
        history = History.from_dict(raw)
        columns = (history.epoch, history.loss, history.val_loss, history.seconds)
        n = len(history.epoch)
        if any(len(c) not in (0, n) for c in columns) or not all(
            isinstance(v, (int, float)) for v in history.epoch + history.loss
        ):
            raise ValueError("its columns differ in length or hold non-numbers")
        if any(v is not None and not isinstance(v, (int, float)) for v in history.val_loss):
            raise ValueError("'val_loss' holds non-numbers")
    except (TypeError, ValueError) as err:
        raise RunFolderError(f"{path}: 'history' is damaged ({err})") from err
    return test, history


# ------------------------------------------------------------------------------ the folder


@dataclass(frozen=True)
class Folder:
    """What is at a path, read without writing: ``kind`` is ``"missing"``, ``"file"``,
    ``"empty"``, ``"run"`` or ``"other"`` (a non-empty folder holding no run); ``entries`` its
    names (the lock file left out); ``config`` the run's config (``kind == "run"``)."""

    path: Path
    kind: str
    entries: tuple[str, ...] = ()
    config: dict[str, Any] | None = None
    #: why its ``config.json`` is not a run's; ``damaged``: it looks like a run's (unreadable,
    #: or a pyro-vaes format) rather than someone else's file
    problem: str | None = None
    damaged: bool = False

    @classmethod
    def inspect(cls, path: Path) -> Folder:
        if not path.exists():
            return cls(path, "missing")
        if not path.is_dir():
            return cls(path, "file")
        entries = tuple(sorted(e for e in os.listdir(path) if e != LOCK))
        if not entries:
            return cls(path, "empty")
        if CONFIG not in entries:
            return cls(path, "other", entries)
        try:
            config = read_json(path / CONFIG)
        except RunFolderError as err:
            return cls(path, "other", entries, problem=str(err), damaged=True)
        problem = _config_problem(config)
        if problem is None:
            return cls(path, "run", entries, dict(config))
        fmt = config.get("format") if isinstance(config, dict) else None
        damaged = isinstance(fmt, str) and fmt.startswith("pyro-vaes/")  # a run's, or newer
        return cls(path, "other", entries, problem=f"{path / CONFIG}: {problem}", damaged=damaged)

    def describe(self, most: int = 4) -> str:
        shown = ", ".join(self.entries[:most])
        more = f" and {len(self.entries) - most} more" if len(self.entries) > most else ""
        return shown + more


def check_parent(path: Path) -> None:
    """The nearest existing folder above ``path`` must be a folder we can write in."""
    parent = path.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise RunFolderError(f"cannot create {path}: {parent} is a file, not a folder")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise RunFolderError(f"cannot create {path}: {parent} is not writable")


def check_train_folder(
    out: Path, *, resume: bool, overwrite: bool, lock: RunLock | None = None
) -> Folder:
    """Check that ``train --out out`` may write there (the rules in this module's docstring);
    returns what is there. Reads only. ``lock``: this process's own lock on ``out``, if held.

    :raises RunFolderError: naming the folder and the rule.
    """
    if resume and overwrite:
        raise RunFolderError("--resume continues a run and --overwrite replaces it: give one")
    folder = Folder.inspect(out)
    if folder.kind == "file":
        raise RunFolderError(f"--out {out} is a file, not a folder")
    if folder.kind == "missing":
        check_parent(out)
    elif not os.access(out, os.W_OK | os.X_OK):
        raise RunFolderError(f"--out {out} is not writable")
    holder = (lock or RunLock(out)).holder()
    if holder is not None:
        raise RunFolderError(RunLock.held_message(out, holder))
    if folder.kind == "other":
        if folder.damaged:
            raise RunFolderError(
                f"{folder.problem}; {out} is not a readable run, so train neither resumes nor "
                "replaces it: repair or move that file, or choose another --out"
            )
        why = f"; {folder.problem}" if folder.problem else ""
        what = "with --overwrite" if overwrite else "--overwrite replaces only runs"
        raise RunFolderError(
            f"--out {out} is not empty and holds no pyro-vaes run ({folder.describe()}{why}); "
            f"its files are left alone ({what}): choose a new or empty folder"
        )
    if folder.kind == "run" and not (resume or overwrite):
        raise RunFolderError(
            f"--out {out} already holds a run: pass --resume to continue it or --overwrite to "
            "replace it, or choose another folder"
        )
    if folder.kind in ("missing", "empty") and resume:
        raise RunFolderError(f"--resume: {out} holds no run to resume")
    return folder


def remove_train_files(out: Path) -> None:
    """Remove the files ``train`` writes (:data:`TRAIN_FILES`) and its interrupted temporary
    files from ``out``; nothing else."""
    for name in TRAIN_FILES:
        (out / name).unlink(missing_ok=True)
    (out / ".history.csv.tmp").unlink(missing_ok=True)
    board = out / TENSORBOARD
    if board.is_dir():
        for f in board.glob("events.out.tfevents.*"):
            f.unlink()
        with contextlib.suppress(OSError):  # a user's own file in it: the folder stays
            board.rmdir()
    checkpoint.clean_temporary(out / CHECKPOINT)


# --------------------------------------------------------------------------------- locking


def _alive(pid: int) -> bool:
    if os.name == "nt":  # os.kill would end the process there; never take a lock over
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # it exists, as another user's process
        return True
    return True


class RunLock:
    """The lock of one writer on ``folder``: the file ``folder/run.lock``, created atomically,
    holding ``{"pid", "host", "token"}``. Use as a context manager, or :meth:`acquire` and
    :meth:`release`."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.path = folder / LOCK
        self.token = secrets.token_hex(8)
        self.held = False

    def _read(self, path: Path | None = None) -> dict[str, Any] | None:
        """The lock's content; ``{}`` if it cannot be parsed; ``None`` if there is none."""
        path = path or self.path
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return None
        except (OSError, UnicodeDecodeError):
            return {}
        try:
            content = json.loads(text)
        except json.JSONDecodeError:
            return {}
        if not isinstance(content, dict) or not isinstance(content.get("pid"), int):
            return {}
        return content

    def _stale(self, content: dict[str, Any], path: Path) -> bool:
        if not content:  # unreadable: stale once its writer has had time to fill it
            try:
                age = time.time() - path.stat().st_mtime
            except FileNotFoundError:
                return False
            return age > _UNREADABLE_LOCK_GRACE_S
        if content.get("host") not in (None, socket.gethostname()):
            return False  # another machine's process: cannot tell, so it holds
        pid = content["pid"]
        return pid > 0 and not _alive(pid)

    def holder(self) -> dict[str, Any] | None:
        """The content of a live lock on the folder held by someone else (``None``: free, or
        only a stale lock)."""
        content = self._read()
        if content is None or content.get("token") == self.token:
            return None
        return None if self._stale(content, self.path) else content

    @staticmethod
    def held_message(folder: Path, content: dict[str, Any]) -> str:
        pid = content.get("pid", "unknown")
        host = content.get("host")
        where = f" on {host}" if host and host != socket.gethostname() else ""
        return (
            f"{folder} is in use by another pyro-vaes process (pid {pid}{where}, lock "
            f"{folder / LOCK}): wait for it to finish, or delete the lock file if that process "
            "is not running"
        )

    def acquire(self) -> None:
        """:raises RunFolderError: naming the folder and the pid, if another process holds it."""
        content = {"pid": os.getpid(), "host": socket.gethostname(), "token": self.token}
        for _ in range(3):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                holder = self.holder()
                if holder is not None:
                    raise RunFolderError(self.held_message(self.folder, holder)) from None
                self._take_over_stale()
                continue
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                json.dump(content, f)
            self.held = True
            return
        raise RunFolderError(f"cannot lock {self.folder}: {self.path} keeps changing; try again")

    def _take_over_stale(self) -> None:
        """Remove a stale lock. Only the holder of ``run.lock.takeover`` (created atomically)
        re-reads and removes it, so two processes never both remove a lock and one of them a
        live one."""
        guard = self.path.with_name(LOCK + ".takeover")
        if not claim_file(guard):
            try:
                old = time.time() - guard.stat().st_mtime > _UNREADABLE_LOCK_GRACE_S
            except FileNotFoundError:
                return
            if old:  # left by a process that died while taking over
                guard.unlink(missing_ok=True)
            return
        try:
            content = self._read()
            if content is not None and self._stale(content, self.path):
                self.path.unlink(missing_ok=True)
        finally:
            guard.unlink(missing_ok=True)

    def release(self) -> None:
        if self.held:
            content = self._read()
            if content is not None and content.get("token") == self.token:
                self.path.unlink(missing_ok=True)
            self.held = False

    def __enter__(self) -> RunLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


@contextlib.contextmanager
def open_folder(folder: Path) -> Iterator[RunLock]:
    """Create ``folder`` if needed and hold its lock for the block. If the block fails, the
    folders created here that are empty again are removed: a refused command leaves no
    trace."""
    created = [p for p in (folder, *folder.parents) if not p.exists()]  # deepest first
    folder.mkdir(parents=True, exist_ok=True)
    try:
        with RunLock(folder) as lock:
            yield lock
    except BaseException:
        for path in created:
            try:
                path.rmdir()  # only if empty
            except OSError:
                break
        raise


def check_checkpoint(run: Path, model: Any) -> int | None:
    """The epoch of ``run``'s checkpoint after checking it loads into ``model`` (``None``: no
    checkpoint). :raises CheckpointError: naming the file if it is damaged or does not fit."""
    path = run / CHECKPOINT
    if not path.exists():
        return None
    state = checkpoint.load(path)
    checkpoint.restore(model, path)
    epoch = state.get("epoch")
    if not isinstance(epoch, int):
        raise CheckpointError(f"{path} is not a checkpoint of fit: it has no epoch")
    return epoch
