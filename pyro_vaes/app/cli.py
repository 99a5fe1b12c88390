"""The ``pyro-vaes`` command: ``train``, ``evaluate``, ``sample``, ``report`` and ``list``.

What a run folder is, and when ``train`` may write into one, is :mod:`pyro_vaes.app.runs`.
Every user error (bad option, unusable folder or file, data that cannot be loaded, a damaged
checkpoint, a diverged fit) is one line on stderr, ``pyro-vaes: error: ...``, and exit code 2;
nothing is written before every check has passed.
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import os
import re
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NoReturn

import torch
from torch.distributions import constraints

from pyro_vaes import data, likelihoods
from pyro_vaes.analysis import evaluate, plots
from pyro_vaes.app import runs
from pyro_vaes.app.report import write_report
from pyro_vaes.app.runs import BINARIZE, CONFIG, METRICS, RunFolderError
from pyro_vaes.catalogue import variants
from pyro_vaes.distributions.geometry import Euclidean
from pyro_vaes.errors import CheckpointError, DataError, TrainingDiverged
from pyro_vaes.models import expost
from pyro_vaes.protocols import Labelled, PostTraining, Predicts, Sequential
from pyro_vaes.train import checkpoint, distributed
from pyro_vaes.train.callbacks import Callback, FitState
from pyro_vaes.train.distributed import DistributedError, Group
from pyro_vaes.train.fit import resolve_device
from pyro_vaes.train.loggers import CSVLogger, TensorBoard
from pyro_vaes.train.step import CAPTURE_AFTER

#: what ``main`` reports in one line (exit code 2) instead of a traceback
USER_ERRORS: tuple[type[BaseException], ...] = (
    RunFolderError,
    DataError,
    CheckpointError,
    TrainingDiverged,
    DistributedError,
    ValueError,
    TypeError,
    OSError,
    torch.cuda.OutOfMemoryError,
)


def _pictures(model: Any, splits: data.Splits, out: Path, n: int = 64) -> None:
    if len(splits.shape) != 3:  # sample grids and reconstructions are for images (C, H, W)
        return
    torch.manual_seed(0)
    plots.save_image_grid(model.sample(n), out / "samples.png", "samples from the prior")
    x = splits.x_test[:32]
    # a model that takes labels reconstructs each image given its own
    rec = model.reconstruct(x, splits.y_test[:32]) if isinstance(model, Labelled) else None
    both = torch.cat([x, model.reconstruct(x) if rec is None else rec])
    plots.save_image_grid(
        both, out / "reconstructions.png", "test images (top), reconstructions", 16
    )


def cmd_list(args: argparse.Namespace) -> int:
    width = max(len(name) for name in variants.registry)
    for name, v in sorted(variants.registry.items()):
        print(f"{name:<{width}}  {v.summary}  [{v.reference}]")
    return 0


# ------------------------------------------------------------------------------------ train

#: ``train`` options: dest -> (flag, default). Their argparse default is ``None``, so a value
#: means "given on the command line"; with ``--resume`` the options not given are the run's.
TRAIN_OPTIONS: dict[str, tuple[str, Any]] = {
    "variant": ("--variant", "vae"),
    "data": ("--data", "digits"),
    "data_root": ("--data-root", None),
    "epochs": ("--epochs", 30),
    "batch_size": ("--batch-size", 100),
    "lr": ("--lr", 1e-3),
    "latent_dim": ("--latent-dim", 16),
    "hidden": ("--hidden", [512]),
    "net": ("--net", None),
    "likelihood": ("--likelihood", "bernoulli"),
    "beta": ("--beta", None),
    "prior": ("--prior", None),
    "posterior": ("--posterior", None),
    "flow_steps": ("--flow-steps", None),
    "components": ("--components", None),
    "curvature": ("--curvature", None),
    "binarize": ("--binarize", None),
    "seed": ("--seed", 0),
    "val_fraction": ("--val-fraction", 0.1),
}
#: what runs written before an option existed did: their value on ``--resume``
_BEFORE_RECORDED = {"val_fraction": 0.0}
#: model options always saved; the others (``None`` by default) are saved only when given
_MODEL_ALWAYS = ("latent_dim", "likelihood", "hidden")
_MODEL_OPTIONAL = ("net", "beta", "prior", "posterior", "flow_steps", "components", "curvature")
#: options of the config's top level that a resumed run must keep
_RUN_KEYS = ("variant", "data", "binarize", "batch_size", "lr", "seed", "val_fraction")


def _shown(value: Any) -> str:
    if isinstance(value, list):
        return " ".join(map(str, value))
    return str(value)


def _binary(likelihood: str) -> bool:
    """Whether the likelihood registered as ``likelihood`` scores binary data (its declared
    support): its training images are then binarised by default."""
    entry = likelihoods.registry[likelihood]
    return (
        isinstance(entry, type)
        and issubclass(entry, likelihoods.Likelihood)
        and (entry.support is constraints.boolean)
    )


def _train_config(
    args: argparse.Namespace, saved: dict[str, Any] | None, source: Path
) -> dict[str, Any]:
    """The run's config from the command line: given options, else the saved run's
    (``saved``, when resuming), else the defaults. A given option that differs from the saved
    run's is refused, naming it."""
    given = {k: getattr(args, k) for k in TRAIN_OPTIONS if getattr(args, k) is not None}
    saved_options: dict[str, Any] = dict(saved["options"]) if saved is not None else {}

    def value(key: str) -> Any:
        if key in given:
            return given[key]
        if saved is not None:
            where = saved_options if key in _MODEL_ALWAYS + _MODEL_OPTIONAL else saved
            if key in where:
                return where[key]
            if key in _BEFORE_RECORDED:
                return _BEFORE_RECORDED[key]
        return TRAIN_OPTIONS[key][1]

    options: dict[str, Any] = {k: value(k) for k in _MODEL_ALWAYS}
    for key in _MODEL_OPTIONAL:
        v = value(key)
        if v is not None:  # unset: the variant's default
            options[key] = v
    config: dict[str, Any] = {
        "format": runs.RUN_FORMAT,
        "variant": value("variant"),
        "options": options,
        "data": value("data"),
        "data_root": value("data_root"),
        "binarize": value("binarize") or ("dynamic" if _binary(options["likelihood"]) else "none"),
        "epochs": value("epochs"),
        "batch_size": value("batch_size"),
        "lr": value("lr"),
        "seed": value("seed"),
        "val_fraction": value("val_fraction"),
    }
    if saved is None:
        return config
    variant = variants.registry.get(saved["variant"])
    for key in _RUN_KEYS + _MODEL_ALWAYS + _MODEL_OPTIONAL:
        if key not in given:
            continue
        if key in _RUN_KEYS:
            if key not in saved and key not in _BEFORE_RECORDED:
                continue  # an older run that did not record it
            before = saved.get(key, _BEFORE_RECORDED.get(key))
            theirs = f"the run's {_shown(before)}"
        elif key in saved_options:
            before, theirs = saved_options[key], f"the run's {_shown(saved_options[key])}"
        else:
            before = variant.defaults.get(key) if variant is not None else None
            shown = f" ({_shown(before)})" if before is not None else ""
            theirs = f"the run, which has the variant's default{shown}"
        if given[key] != before:
            flag = TRAIN_OPTIONS[key][0]
            raise RunFolderError(
                f"--resume: {flag} {_shown(given[key])} differs from {theirs} ({source}); "
                f"leave {flag} out to keep the run's, or train into another --out"
            )
    return config


def _check_device(device: str) -> None:
    try:
        dev = resolve_device(device)
    except RuntimeError as err:  # CUDA asked for, none available
        raise ValueError(f"--device {device}: {err}") from err
    except ValueError as err:
        raise ValueError(f"--device {device}: {err}") from err
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise ValueError(f"--device {device}: there are {torch.cuda.device_count()} CUDA device(s)")


def _loggers(
    args: argparse.Namespace, model: Any, splits: data.Splits, out: Path
) -> list[Callback]:
    """The logging callbacks asked for: ``--csv`` (``RUN/history.csv``) and ``--tensorboard``
    (``RUN/tensorboard/``, with sample and reconstruction grids of validation images)."""
    callbacks: list[Callback] = []
    if args.csv:
        callbacks.append(CSVLogger(out / "history.csv"))
    if args.tensorboard:
        images, labels = (
            (splits.x_val, splits.y_val)
            if splits.x_val is not None and splits.y_val is not None
            else (splits.x_train, splits.y_train)
        )
        try:
            board = TensorBoard(
                out / runs.TENSORBOARD,
                model=model if len(splits.shape) == 3 else None,
                images=images[:32] if len(splits.shape) == 3 else None,
                labels=labels[:32] if len(splits.shape) == 3 else None,
            )
        except ImportError as err:
            raise ValueError(f"--tensorboard: {err}") from err
        callbacks.append(board)
    return callbacks


class _OnFitStart(Callback):
    """Runs ``begin`` once ``fit`` has checked model, guide, data and checkpoint, just before
    the first epoch: the run folder is written only then."""

    def __init__(self, begin: Callable[[], None]) -> None:
        self.begin = begin

    def on_fit_start(self, state: FitState) -> None:
        self.begin()


def _join(device: str) -> Group | None:
    """The process group when launched by torchrun (``WORLD_SIZE`` > 1), else ``None``."""
    if not distributed.launched():
        return None
    return distributed.setup(None, device)


def _run_folder(args: argparse.Namespace) -> Path:
    variant_name = args.variant or TRAIN_OPTIONS["variant"][1]
    data_name = args.data or TRAIN_OPTIONS["data"][1]
    return Path(args.out) if args.out is not None else Path("runs") / f"{variant_name}-{data_name}"


def cmd_train(args: argparse.Namespace) -> int:
    """Fit a variant and write its run folder. Under torchrun every rank trains, and rank 0
    alone checks, locks and writes the folder: the others wait for its checks, take its
    config, and write nothing."""
    group = _join(args.device)
    if group is not None and not group.is_main:
        return _train_follower(args, group)
    out = _run_folder(args)
    if group is None:
        return _train(args, out, None)
    told = False

    def checked(config: dict[str, Any]) -> None:  # every check has passed: the others start
        nonlocal told
        assert group is not None
        told = True
        group.agree(None, "checking the run")
        group.broadcast_object(config, "broadcasting the run's config")

    try:
        code = _train(args, out, checked)
    except Exception as err:  # the other ranks wait for the checks: tell them they failed
        if not told:
            group.agree(err, "checking the run")  # re-raises err
        raise
    distributed.finish(group)
    return code


def _train_follower(args: argparse.Namespace, group: Group) -> int:
    """A rank other than 0 under torchrun: rank 0's checks and config, then the same fit and
    scoring, writing nothing."""
    group.agree(None, "checking the run")
    config: dict[str, Any] = group.broadcast_object(None, "broadcasting the run's config")
    out = _run_folder(args)
    splits, transform = runs.prepare_data(config)
    torch.manual_seed(config["seed"])
    model: Any = variants.build(config["variant"], splits.shape, **config["options"])
    variants.registry[config["variant"]].fit(
        model,
        (splits.x_train, splits.y_train),
        optim=functools.partial(torch.optim.Adam, lr=config["lr"]),
        epochs=config["epochs"],
        batch_size=config["batch_size"],
        device=args.device,
        val_data=None if splits.x_val is None else (splits.x_val, splits.y_val),
        transform=transform,
        checkpoint_dir=out,
        resume=args.resume,
        seed=config["seed"],
        progress=False,
        compile=args.compile,
        capture=not args.eager,
    )
    model.eval()
    test = (splits.x_test, splits.y_test)
    evaluate.scores(model.model, model.guide, test, args.eval_samples or 500, progress=False)
    distributed.finish(group)  # rank 0 writes the run's files meanwhile
    return 0


def _train(
    args: argparse.Namespace, out: Path, checked: Callable[[dict[str, Any]], None] | None
) -> int:
    # 1. checks that read only: the folder, the options, the device, the data, the model
    folder = runs.check_train_folder(out, resume=args.resume, overwrite=args.overwrite)
    saved = folder.config if args.resume else None
    config = _train_config(args, saved, out / CONFIG)
    if config["variant"] not in variants.registry:
        raise ValueError(f"unknown variant {config['variant']!r}; see `pyro-vaes list`")
    _check_device(args.device)
    splits, transform = runs.prepare_data(config)
    config["data_shape"] = list(splits.shape)
    if "num_classes" in variants.registry[config["variant"]].defaults:  # from the data's labels
        config["options"]["num_classes"] = int(max(splits.y_train.max(), splits.y_test.max())) + 1
    if saved is not None and saved["data_shape"] != config["data_shape"]:
        raise RunFolderError(
            f"--resume: the data are shaped {config['data_shape']}, the run's "
            f"{saved['data_shape']} ({out / CONFIG})"
        )
    torch.manual_seed(config["seed"])
    model: Any = variants.build(config["variant"], splits.shape, **config["options"])
    loggers = _loggers(args, model, splits, out)

    # 2. the folder is ours: check again under the lock, then the checkpoint to resume from
    with runs.open_folder(out) as lock:
        now = runs.check_train_folder(out, resume=args.resume, overwrite=args.overwrite, lock=lock)
        new = ("missing", "empty")  # the folder was created just now
        if now.config != folder.config or (now.kind != folder.kind and now.kind not in new):
            raise RunFolderError(f"{out} changed while train was starting; run it again")
        if args.resume:
            epoch = runs.check_checkpoint(out, model)
            if epoch is None:
                print(
                    f"pyro-vaes: note: {out} has no {runs.CHECKPOINT} yet (the run stopped "
                    "before its first epoch ended); --resume trains it from epoch 1",
                    file=sys.stderr,
                )
            elif epoch > config["epochs"]:
                raise ValueError(
                    f"--resume: the run's checkpoint is at epoch {epoch}, beyond --epochs "
                    f"{config['epochs']}; ask for at least {epoch}"
                )
        if checked is not None:  # under torchrun: the other ranks may start
            checked(config)

        def begin() -> None:  # 3. every check has passed: write
            if args.overwrite:
                runs.remove_train_files(out)
            runs.write_json(out / CONFIG, config)

        history = variants.registry[config["variant"]].fit(
            model,
            (splits.x_train, splits.y_train),  # labels reach models that take y
            optim=functools.partial(torch.optim.Adam, lr=config["lr"]),
            epochs=config["epochs"],
            batch_size=config["batch_size"],
            device=args.device,
            val_data=None if splits.x_val is None else (splits.x_val, splits.y_val),
            transform=transform,
            callbacks=[_OnFitStart(begin), *loggers],
            checkpoint_dir=out,
            resume=args.resume,
            seed=config["seed"],
            progress=not args.quiet,
            compile=args.compile,
            capture=not args.eager,
        )
        if isinstance(model, PostTraining):
            _checkpoint_post_training(model, out)
        model.eval()
        test = (splits.x_test, splits.y_test)
        eval_samples = args.eval_samples or 500
        s = evaluate.scores(model.model, model.guide, test, eval_samples, progress=not args.quiet)
        metrics: dict[str, Any] = {
            "history": history.to_dict(),
            "test": {
                "num_samples": eval_samples,
                "log_likelihood": float(s.log_likelihood.mean()),
                "elbo": float(s.elbo.mean()),
                "reconstruction": float(s.reconstruction.mean()),
                **_accuracy(model, splits),
            },
        }
        runs.write_json(out / METRICS, metrics)
        plots.loss_curve(history, out / "loss.png")
        _pictures(model.cpu(), splits, out)
    print(
        f"test log-likelihood {metrics['test']['log_likelihood']:.2f} nats "
        f"(IWAE, k={eval_samples}); run written to {out}"
    )
    return 0


def _checkpoint_post_training(model: Any, out: Path) -> None:
    """Write what a model's post-training stage fitted (the RAE's ex-post mixture, the VQ-VAEs'
    learned priors) into the run's checkpoint, which the fit wrote before the stage ran, so that
    ``load_run`` (``sample``, ``evaluate``, ``report``) restores it."""
    path = out / runs.CHECKPOINT
    if not path.exists():
        return
    state = checkpoint.load(path)
    params = state["params"]
    for key, value in model.state_dict().items():
        if f"module0.{key}" in params:  # the model is the one module of its model/guide pair
            params[f"module0.{key}"] = value.detach().cpu()
    checkpoint.save(state, path)


# ------------------------------------------------------------------ evaluate, sample, report


def cmd_evaluate(args: argparse.Namespace) -> int:
    """Score a run on its test split; under torchrun every rank scores a share of it and
    rank 0 prints the result."""
    group = _join("cpu")
    config, model = runs.load_run(Path(args.run))
    if args.data_root:
        config["data_root"] = args.data_root
    splits, _ = runs.prepare_data(config)
    test = (splits.x_test, splits.y_test)
    main = group is None or group.is_main
    s = evaluate.scores(
        model.model, model.guide, test, args.num_samples, progress=not args.quiet and main
    )
    distributed.finish(group)
    if not main:
        return 0
    result = {
        "num_samples": args.num_samples,
        "log_likelihood": float(s.log_likelihood.mean()),
        "elbo": float(s.elbo.mean()),
        "reconstruction": float(s.reconstruction.mean()),
        **_accuracy(model, splits),
    }
    print(json.dumps(result, indent=2))
    return 0


def _accuracy(model: Any, splits: data.Splits) -> dict[str, float]:
    """``{"accuracy": ...}`` on the test split for a model that classifies (M2), else ``{}``."""
    if not isinstance(model, Predicts):
        return {}
    device = next(model.parameters()).device if isinstance(model, torch.nn.Module) else None
    batches = data.batches(splits.x_test, 1000)
    predicted = torch.cat([model.predict(x.to(device)).cpu() for x in batches])
    return {"accuracy": float((predicted == splits.y_test).float().mean())}


_SAMPLES = re.compile(r"samples-(\d+)\.png")


def _sample_target(run: Path, out: str | None, overwrite: bool) -> Path | None:
    """Check where ``sample`` may write (``None``: a new ``RUN/samples-N.png``)."""
    if out is None:
        if overwrite:
            raise ValueError("--overwrite applies to --out PATH; without it a new file is chosen")
        return None
    path = Path(out)
    if path.is_dir():
        raise RunFolderError(f"--out {path} is a folder; give a file name such as samples.png")
    if path.name in (*runs.TRAIN_FILES, runs.LOCK) and runs.is_run(path.parent):
        raise RunFolderError(
            f"--out {path} is one of the run's own files (train wrote it); choose another name"
        )
    if path.exists() and not overwrite:
        raise RunFolderError(f"--out {path} exists; pass --overwrite to replace it")
    from matplotlib.backend_bases import FigureCanvasBase

    kind = path.suffix.lstrip(".").lower()
    if kind and kind not in FigureCanvasBase.get_supported_filetypes():
        raise ValueError(
            f"--out {path}: cannot write .{kind} pictures; use .png, .pdf, .svg or .jpg"
        )
    if not path.parent.exists():
        runs.check_parent(path)
    return path


def _claim_samples_file(run: Path) -> Path:
    """A new ``run/samples-N.png``, created empty (atomically) so no other command takes it."""
    taken = [int(m.group(1)) for m in map(_SAMPLES.fullmatch, os.listdir(run)) if m]
    n = max(taken, default=0) + 1
    while not runs.claim_file(run / f"samples-{n}.png"):
        n += 1
    return run / f"samples-{n}.png"


def _expost_samples(model: Any, config: dict[str, Any], name: str, n: int, seed: int) -> Any:
    """``n`` decoded draws from the ex-post density ``name`` fitted to the codes of the run's
    training images (:mod:`pyro_vaes.models.expost`)."""
    splits, _ = runs.prepare_data(config)
    codes = expost.codes_of(model, splits.x_train)
    sampler = expost.fit(name, codes, seed=seed)
    with torch.no_grad():
        return model.decode(sampler.sample(n))


def _check_sampler(model: Any, run: Path, name: str) -> None:
    """An ex-post sampler needs codes in R^d and no labels."""
    if name == "prior":
        return
    if isinstance(model, Labelled):
        raise ValueError(
            f"--sampler {name}: {run} is conditional; it samples by label from its prior "
            "(--sampler prior)"
        )
    if not isinstance(model.geometry, Euclidean):
        raise ValueError(
            f"--sampler {name}: {run}'s codes live on a {type(model.geometry).__name__.lower()}, "
            "not in R^d (--sampler prior)"
        )


def _rollouts(model: Sequential, config: dict[str, Any], n: int) -> tuple[Any, str, list[str]]:
    """The first ``n`` test sequences of the run's data, one per row: their first half as
    observed, then the model's rollout of the rest."""
    x = runs.prepare_data(config)[0].x_test[:n]
    seen = x.shape[1] // 2
    future = model.rollout(x[:, :seen], x.shape[1] - seen).to(x)
    title = f"{len(x)} test sequences: {seen} frames seen, then {x.shape[1] - seen} rolled out"
    return torch.cat([x[:, :seen], future], dim=1).flatten(0, 1), title, [""] * len(x)


def cmd_sample(args: argparse.Namespace) -> int:
    run = Path(args.run)
    config = runs.read_config(run)
    sequences = variants.registry[config["variant"]].datapoints == "sequences"
    if len(config["data_shape"]) != (4 if sequences else 3):  # images, or sequences of them
        raise RunFolderError(
            f"{run} was trained on {config['data']!r}, which are not images (shape "
            f"{config['data_shape']}): sample draws image grids"
        )
    target = _sample_target(run, args.out, args.overwrite)
    _, model = runs.load_run(run)
    _check_sampler(model, run, args.sampler)
    torch.manual_seed(args.seed)
    title, rows = f"{args.n} samples", None
    if isinstance(model, Sequential):  # test sequences, the second half imagined
        images, title, rows = _rollouts(model, config, args.n)
    elif isinstance(model, Labelled):
        k = model.num_classes
        if args.label is not None and not 0 <= args.label < k:
            raise ValueError(f"--label {args.label}: {run} has the labels 0..{k - 1}")
        if args.label is not None:
            images, title = (
                model.sample(args.n, args.label),
                f"{args.n} samples of label {args.label}",
            )
        else:  # one row per label
            per = max(1, args.n // k)
            images = model.sample(per * k, torch.arange(k).repeat_interleave(per))
            title, rows = f"{per} samples of each label", [f"y={j}" for j in range(k)]
    elif args.label is not None:
        raise ValueError(
            f"--label {args.label}: {run}'s variant {config['variant']!r} takes no labels "
            "(the conditional variants: cvae, cmma, m2)"
        )
    elif args.sampler != "prior":
        images = _expost_samples(model, config, args.sampler, args.n, args.seed)
        title = f"{args.n} samples, {args.sampler} fitted to the training codes"
    else:
        images = model.sample(args.n)
    if target is None:
        path, claimed = _claim_samples_file(run), True
    else:
        path = target
        path.parent.mkdir(parents=True, exist_ok=True)
        claimed = runs.claim_file(path)
        if not claimed and not args.overwrite:  # created since the check
            raise RunFolderError(f"--out {path} exists; pass --overwrite to replace it")
    try:
        ncol = len(images) // len(rows) if rows else None
        plots.save_image_grid(images, path, title, ncol, row_labels=rows)
    except BaseException:
        if claimed:
            path.unlink(missing_ok=True)
        raise
    print(f"wrote {path}")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    index = write_report(
        args.run,
        out=args.out,
        num_samples=args.num_samples,
        num_points=args.num_points,
        classifier_epochs=args.classifier_epochs,
        progress=not args.quiet,
    )
    print(f"wrote {index}")
    return 0


# ---------------------------------------------------------------------------------- parsing


class _UsageError(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    """Reports a usage error in one line (``main`` prints it) instead of usage and exit."""

    def error(self, message: str) -> NoReturn:
        raise _UsageError(f"{message} (see `{self.prog} --help`)")


def _number(cast: Callable[[str], Any], low: float, inclusive: bool) -> Callable[[str], Any]:
    def parse(text: str) -> Any:
        try:
            value = cast(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
        if isinstance(value, float) and not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"must be a finite number, got {text}")
        if value < low or (value == low and not inclusive):
            raise argparse.ArgumentTypeError(
                f"must be {'>=' if inclusive else '>'} {low:g}, got {text}"
            )
        return value

    return parse


_positive_int = _number(int, 1, True)
_non_negative_int = _number(int, 0, True)
_positive_float = _number(float, 0, False)
_non_negative_float = _number(float, 0, True)


def _fraction(text: str) -> float:
    value = _non_negative_float(text)
    if value >= 1:
        raise argparse.ArgumentTypeError(f"must be below 1, got {text}")
    return float(value)


def parser() -> argparse.ArgumentParser:
    p = _Parser(prog="pyro-vaes", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)

    t = sub.add_parser(
        "train",
        help="fit a variant and write a run folder",
        description="Fit a variant and write a run folder (see README: Command line).",
    )

    def option(dest: str, help: str, **kwargs: Any) -> None:
        flag, default = TRAIN_OPTIONS[dest]
        shown = "the variant's" if default is None else _shown(default)
        t.add_argument(flag, dest=dest, default=None, help=f"{help} (default: {shown})", **kwargs)

    variant_help = "the variant to fit; `pyro-vaes list` shows the catalogue"
    option("variant", variant_help, metavar="NAME")
    option(
        "data",
        "the dataset (digits is bundled; mnist10k reads --data-root)",
        choices=sorted(data.registry),
    )
    t.add_argument(
        "--data-root",
        dest="data_root",
        default=None,
        help="the folder with the dataset's files (default: $PYRO_VAES_DATA, else ./data)",
    )
    option("epochs", "total epochs; a resumed run continues up to it", type=_non_negative_int)
    option("batch_size", "datapoints per optimisation step", type=_positive_int)
    option("lr", "Adam's learning rate, > 0", type=_positive_float)
    option("latent_dim", "size of the code z", type=_positive_int)
    option(
        "hidden",
        "hidden layer widths of the encoder (the decoder mirrors them)",
        type=_positive_int,
        nargs="+",
    )
    option(
        "net",
        "encoder and decoder networks: MLP, convolutional, or the MLP decoder with skip "
        "connections from z",
        choices=sorted(variants.networks),
    )
    option("likelihood", "p(x | z)", choices=sorted(likelihoods.registry))
    option("beta", "weight of the KL term, >= 0 (beta_vae's is 4)", type=_non_negative_float)
    option("prior", "p(z), replacing the variant's", choices=sorted(variants.priors))
    option("posterior", "q(z | x), replacing the variant's", choices=sorted(variants.posteriors))
    option("flow_steps", "steps of a flow posterior", type=_positive_int)
    option("curvature", "curvature c of the Poincare ball, > 0", type=_positive_float)
    option("components", "mixture components, or VampPrior pseudo-inputs", type=_positive_int)
    t.add_argument(
        "--binarize",
        dest="binarize",
        default=None,
        choices=sorted(BINARIZE),
        help="dynamic: a fresh binary draw of each training image every epoch; static: one "
        "draw; none: the intensities; dequantize: uniform noise within each grey level, fresh "
        "every batch, for density models such as fvae (held-out images: one draw each) "
        "(default: dynamic for a likelihood of binary pixels, else none)",
    )
    option("seed", "seed of the initial weights, the data order and the draws", type=int)
    option(
        "val_fraction",
        "share of the training data held out for validation (the loss curve's val line); the "
        "test split is scored only once, at the end; 0: no validation",
        type=_fraction,
    )
    t.add_argument(
        "--device",
        default="auto",
        help="auto, cpu, cuda, cuda:1, ... (default: %(default)s: the GPU where there is one)",
    )
    t.add_argument(
        "--compile",
        action="store_true",
        help="capture the objective once and compile it with torch.compile (CUDA graphs on a "
        "GPU): a cheaper step after a first one of seconds to a minute; objectives it cannot "
        "capture run eager after a warning (default: off)",
    )
    t.add_argument(
        "--eager",
        action="store_true",
        help=f"run Pyro's handlers on every step (default: off: after its first {CAPTURE_AFTER} "
        "steps a fit captures the objective's tensor operations once and replays them, with the same "
        "losses and a cheaper step)",
    )
    t.add_argument(
        "--eval-samples",
        type=_positive_int,
        default=None,
        help="importance samples per test image for the final log-likelihood (default: 500)",
    )
    t.add_argument(
        "--out", default=None, help="the run folder (default: runs/VARIANT-DATA)", metavar="DIR"
    )
    how = t.add_mutually_exclusive_group()
    how.add_argument(
        "--resume", action="store_true", help="continue the run in --out (default: off)"
    )
    how.add_argument(
        "--overwrite",
        action="store_true",
        help="replace the run in --out: only its own files, never a folder that holds no run "
        "(default: off)",
    )
    t.add_argument(
        "--csv", action="store_true", help="write RUN/history.csv, a row per epoch (default: off)"
    )
    t.add_argument(
        "--tensorboard",
        action="store_true",
        help="log losses per step and per epoch, sample and reconstruction grids per epoch to "
        "RUN/tensorboard/ (needs pip install 'pyro-vaes[tensorboard]'; default: off)",
    )
    t.add_argument("--quiet", action="store_true", help="no progress bars (default: off)")
    t.set_defaults(func=cmd_train)

    e = sub.add_parser("evaluate", help="importance-sampled test log-likelihood of a run")
    e.add_argument("run", help="the run folder", metavar="RUN")
    e.add_argument(
        "--num-samples",
        type=_positive_int,
        default=5000,
        help="importance samples per test datapoint (default: %(default)s)",
    )
    e.add_argument("--data-root", default=None, help="the dataset's folder (default: the run's)")
    e.add_argument("--quiet", action="store_true", help="no progress bar (default: off)")
    e.set_defaults(func=cmd_evaluate)

    s = sub.add_parser(
        "sample", help="write a grid of samples from a run (a new RUN/samples-N.png)"
    )
    s.add_argument("run", help="the run folder", metavar="RUN")
    s.add_argument(
        "-n", type=_positive_int, default=64, help="number of samples (default: %(default)s)"
    )
    s.add_argument("--seed", type=int, default=0, help="seed of the draws (default: %(default)s)")
    s.add_argument(
        "--label",
        type=_non_negative_int,
        default=None,
        help="for a conditional run (cvae, cmma, m2): draw samples of this label (default: a "
        "grid with one row per label, -n split among them)",
    )
    s.add_argument(
        "--sampler",
        choices=expost.NAMES,
        default="prior",
        help="where the codes come from: the model's prior, or an ex-post density fitted to the "
        "codes of the training images, gmm (a 10-component Gaussian mixture) or maf (a masked "
        "autoregressive flow) (default: %(default)s)",
    )
    s.add_argument(
        "--out",
        default=None,
        help="the picture's path, .png/.pdf/.svg/.jpg (default: a new RUN/samples-N.png)",
    )
    s.add_argument(
        "--overwrite", action="store_true", help="replace an existing --out file (default: off)"
    )
    s.set_defaults(func=cmd_sample)

    r = sub.add_parser("report", help="pictures and posterior predictive checks as an HTML page")
    r.add_argument("run", help="the run folder", metavar="RUN")
    r.add_argument("--out", default=None, help="the report's folder (default: RUN/report)")
    r.add_argument(
        "--num-samples",
        type=_positive_int,
        default=100,
        help="posterior predictive draws per datapoint (default: %(default)s)",
    )
    r.add_argument(
        "--num-points",
        type=_positive_int,
        default=300,
        help="test datapoints checked (default: %(default)s)",
    )
    r.add_argument(
        "--classifier-epochs",
        type=_non_negative_int,
        default=5,
        help="training epochs of the classifier behind the class check (default: %(default)s)",
    )
    r.add_argument("--quiet", action="store_true", help="no progress bars (default: off)")
    r.set_defaults(func=cmd_report)

    ls = sub.add_parser("list", help="the catalogue of variants")
    ls.set_defaults(func=cmd_list)
    return p


def _say(message: str) -> None:
    print(f"pyro-vaes: error: {' '.join(message.split())}", file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command; returns the exit code: 0, or 2 after a one-line error on stderr."""
    try:
        args = parser().parse_args(argv)
    except _UsageError as err:
        _say(str(err))
        return 2
    try:
        return int(args.func(args))
    except USER_ERRORS as err:
        _say(str(err) or type(err).__name__)
        return 2
    except KeyboardInterrupt:
        print("pyro-vaes: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
