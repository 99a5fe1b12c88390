"""The one training loop: any Pyro model/guide pair, any ELBO, on CPU or CUDA.

``fit`` orchestrates: it checks the arguments and the data once, up front (Pyro's validation on
for that check, off afterwards), sets up a :class:`~pyro_vaes.train.step.Step` (objective and
optimizers), and runs epochs of steps with callbacks, validation, atomic checkpoints and resume.
"""

from __future__ import annotations

import functools
import time
import warnings
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import pyro
import torch
from torch.utils.data import DataLoader, DistributedSampler
from tqdm.auto import tqdm

from pyro_vaes.data.batch import Batch, check_batch, iterate, num_datapoints
from pyro_vaes.errors import CheckpointError, DataError, TrainingDiverged
from pyro_vaes.models.base import inputs_checked, parameters_managed
from pyro_vaes.protocols import Labelled
from pyro_vaes.train import checkpoint as ckpt
from pyro_vaes.train.batches import Batches, prepare
from pyro_vaes.train.callbacks import Callback, FitState, History
from pyro_vaes.train.distributed import Distributed, Group
from pyro_vaes.train.distributed import setup as setup_distributed
from pyro_vaes.train.loggers import CSVLogger, TensorBoard
from pyro_vaes.train.state import load_params, rng_state, set_rng_state
from pyro_vaes.train.step import _FIT_PREFIX, Step, check_int
from pyro_vaes.train.structure import check_support, owners, scoring

__all__ = ["CHECKPOINT_NAME", "CHECK_EVERY", "fit", "owners", "resolve_device"]

#: the file name of the checkpoint ``fit`` keeps in ``checkpoint_dir``
CHECKPOINT_NAME = "checkpoint.pt"
#: steps between reads of the loss on the host (for the progress bar and the NaN check)
CHECK_EVERY = 20


def resolve_device(device: str | torch.device) -> torch.device:
    """``"auto"`` is CUDA when available, else CPU; asking for CUDA without one is an error."""
    if isinstance(device, str) and device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as err:
        raise ValueError(f"unknown device {device!r}") from err
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"device {device!r} was asked for, but no CUDA device is available")
    return dev


def fit(
    model: Callable[..., Any],
    guide: Callable[..., Any],
    data: Any,
    *,
    loss: Any = None,
    optim: Any = None,
    adversary_optim: Any = None,
    epochs: int = 10,
    batch_size: int = 100,
    device: str | torch.device = "auto",
    val_data: Any = None,
    transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
    callbacks: Iterable[Callback] = (),
    checkpoint_dir: str | Path | None = None,
    resume: bool | str | Path = False,
    seed: int | None = None,
    progress: bool = True,
    distributed: bool | Distributed | None = None,
    compile: bool = False,
    capture: bool = True,
) -> History:
    r"""Fit ``model`` and ``guide`` to ``data`` by stochastic variational inference.

    Each step draws a batch, evaluates the objective (a Pyro ELBO; its value is
    :math:`-\mathrm{ELBO}` summed over the batch), and takes an optimizer step on the mean over the
    batch. Reported losses are nats per datapoint.

    :param model: a Pyro model called as ``model(x, **inputs)`` on each batch (``model(x, y=y)``
        for labelled data): a function using ``pyro.module``/``pyro.param``, or a method of an
        ``nn.Module`` (whose parameters are found from it).
    :param guide: the matching guide.
    :param data: a tensor ``(N, ...)``, an ``(x, y)`` pair, a dict of named tensors, a ``Dataset``
        of any of these (materialised once on the device), or a ``DataLoader`` (iterated as it
        is); see :mod:`pyro_vaes.data.batch`. Model and guide receive the inputs their
        signatures accept, so labels reach a ``model(x, y=None)`` and pass by a ``model(x)``.
    :param loss: any Pyro ELBO. Default: :class:`pyro_vaes.objectives.ELBO` (the KL in closed
        form where registered, like ``TraceMeanField_ELBO``) for reparameterised guides, else
        ``Trace_ELBO``. ELBOs without ``differentiable_loss`` (e.g.
        ``RenyiELBO``) run through their ``loss_and_grads``.
    :param optim: ``None`` (Adam, lr 1e-3, the fused implementation where available), a ``pyro.optim`` optimizer such as
        ``pyro.optim.Adam({"lr": 1e-3})``, or a factory ``params -> torch.optim.Optimizer``.
    :param adversary_optim: the optimizer (same forms as ``optim``) of an
        :class:`~pyro_vaes.protocols.Adversarial` objective's second network, stepped
        ``adversary_steps`` times after every model step (see
        :mod:`pyro_vaes.objectives.adversarial`). Default: Adam, lr 1e-3.
    :param epochs: total number of epochs (a resumed fit continues up to it).
    :param batch_size: datapoints per step (ignored for a ``DataLoader``).
    :param device: ``"auto"`` (CUDA when available), ``"cpu"``, ``"cuda"``, ...
    :param val_data: held-out data (same forms as ``data``) scored at the end of every epoch.
    :param transform: applied to ``x`` of every training batch on the device, e.g.
        :func:`pyro_vaes.data.dynamic_binarize`.
    :param callbacks: :class:`pyro_vaes.callbacks.Callback` objects.
    :param checkpoint_dir: where ``checkpoint.pt`` is written (atomically) after every epoch.
    :param resume: ``True`` to continue from ``checkpoint_dir/checkpoint.pt`` when it exists, or a
        checkpoint path.
    :param seed: seeds Python, NumPy and torch (and the shuffling) for a reproducible fit.
    :param progress: show a tqdm progress bar.
    :param distributed: data-parallel training on ``torch.distributed``
        (:mod:`pyro_vaes.train.distributed`). ``None`` (default): when launched by torchrun (or
        a process group is initialised); ``True``: insist; ``False``: never; or a
        :class:`~pyro_vaes.train.distributed.Distributed` with explicit settings. Every rank
        passes the same data and seed; ``batch_size`` is per rank; rank 0 alone shows progress,
        runs the loggers and writes the checkpoints, which every rank reads on resume.
    :param compile: capture the objective once and compile it with ``torch.compile`` (CUDA
        graphs on a GPU; :mod:`pyro_vaes.train.compiled`): the same loss and gradients, a
        cheaper step once compiled (a first step of seconds to a minute). Objectives and
        schedules it cannot capture run eager after a one-line warning.
    :param capture: after :data:`~pyro_vaes.train.step.CAPTURE_AFTER` eager steps, replay the
        objective's captured tensor operations without Pyro's handlers: the same losses and
        gradients bit for bit, a cheaper step on small networks; for model/guide methods of
        ``nn.Module``\ s, where the capture is possible (:class:`~pyro_vaes.train.Step`).
        ``False``: Pyro's handlers run on every step.
    :returns: the :class:`~pyro_vaes.callbacks.History` of all epochs (resumed ones included).
    :raises ValueError: for impossible settings, and for a model and guide that disagree on their
        latent sites or their shapes (naming the site); :class:`~pyro_vaes.errors.DataError` for
        data that is empty, non-finite, outside the likelihood's support, shaped unlike the
        model's, or lacking an input the model requires;
        :class:`~pyro_vaes.errors.CheckpointError` for a bad checkpoint;
        :class:`~pyro_vaes.errors.TrainingDiverged` when the loss turns NaN or infinite.
    """
    epochs = check_int("epochs", epochs, 0)
    batch_size = check_int("batch_size", batch_size, 1)
    callbacks = list(callbacks)
    for cb in callbacks:
        if not isinstance(cb, Callback):
            raise TypeError(
                f"callbacks must be pyro_vaes.callbacks.Callback objects, got {type(cb).__name__}"
            )
    group = setup_distributed(distributed, device)
    dev = group.device if group is not None else resolve_device(device)
    main = group is None or group.is_main
    # the loggers write files: rank 0 alone runs them (the others keep them for their state)
    active = [cb for cb in callbacks if main or not isinstance(cb, CSVLogger | TensorBoard)]
    resume_path = _resume_path(resume, checkpoint_dir)
    saved = _load_checkpoint(resume_path, epochs) if resume_path is not None else None

    shared_seed = seed if seed is not None else int(torch.randint(2**62, ()))
    if group is not None:
        shared_seed = group.broadcast_int(shared_seed)  # every rank shuffles alike
        if seed is not None:  # each rank its own stream of noise; rank 0 as a lone process
            pyro.set_rng_seed((seed + 7919 * group.rank) % 2**32)
    elif seed is not None:
        pyro.set_rng_seed(seed)
    shuffle_gen = torch.Generator().manual_seed(shared_seed)

    step = Step(model, guide, loss, optim, adversary_optim, compile=compile, capture=capture)
    for module in step.owners:
        module.to(dev)
    train = prepare(data, "data", dev)
    val = prepare(val_data, "val_data", dev) if val_data is not None else None
    shard = (group.rank, group.world_size) if group is not None else None
    if group is not None:
        for loader in (train, val):
            _check_sharded_loader(loader)
    batches = Batches(train, batch_size, dev, shuffle_gen, shuffle=True, shard=shard)
    val_batches = (
        Batches(val, batch_size, dev, shuffle_gen, shuffle=False, name="val_data", shard=shard)
        if val is not None
        else None
    )
    if batches.steps == 0:
        raise DataError("data is empty")

    _check_labels(batches, val_batches, step.owners)
    store = pyro.get_param_store()
    with store.scope() as private:
        first = _transformed(batches.first(), transform)
        # the dataset size objectives need is the global one: every rank holds all the data
        changes_model = [type(cb).__name__ for cb in callbacks if cb.changes_model]
        structure = step.setup(first, dataset_size=batches.size, changes_model=changes_model)
        for p in structure.params.values():
            if p.device != dev:
                p.data = p.data.to(dev)
        if group is not None:  # every rank starts from rank 0's parameters
            group.broadcast_(list(structure.params.values()), "broadcasting the parameters")
            step.reduce_gradients = group.average_gradients
        _check_data(batches, val_batches, structure.observed, transform, step)

        state = FitState(model, guide, epochs=epochs, steps_per_epoch=batches.steps)
        start_epoch = 1
        if saved is not None:
            assert resume_path is not None
            _restore(saved, resume_path, step, callbacks, active, shuffle_gen, state, group)
            start_epoch = int(saved["epoch"]) + 1

        ckpt_path = Path(checkpoint_dir) / CHECKPOINT_NAME if checkpoint_dir is not None else None
        if ckpt_path is not None:  # the last check; the first write follows only after it
            error: BaseException | None = None
            if main:
                try:
                    ckpt.check_writable(ckpt_path.parent, _checkpoint_bytes(step))
                    ckpt.clean_temporary(ckpt_path)
                except CheckpointError as err:
                    error = err
            if group is not None:
                group.agree(error, "checking checkpoint_dir")
            elif error is not None:
                raise error
        last_good = _LastGood(structure.params)
        bar = tqdm(
            total=batches.steps * epochs if batches.steps is not None else None,
            initial=(batches.steps or 0) * (start_epoch - 1),
            disable=not progress or not main,
            unit="step",
            dynamic_ncols=True,
        )
        for cb in active:
            cb.on_fit_start(state)
        try:
            with (
                pyro.validation_enabled(False),
                parameters_managed(step.owners),
                inputs_checked(step.owners),  # _check_data and _check_labels did
            ):
                for epoch in range(start_epoch, epochs + 1):
                    state.epoch = epoch
                    for cb in active:
                        cb.on_epoch_start(state)
                    began = time.perf_counter()
                    train_loss = _train_epoch(
                        state, batches, step, transform, active, bar, last_good, group
                    )
                    if group is not None:  # running statistics: rank 0's, on every rank
                        group.broadcast_(step.buffers(), "broadcasting the buffers")
                    val_loss = _score(step, val_batches, group)
                    history = state.history
                    history.epoch.append(epoch)
                    history.loss.append(train_loss)
                    history.val_loss.append(val_loss)
                    history.seconds.append(time.perf_counter() - began)
                    for cb in active:
                        cb.on_epoch_end(state)
                    if ckpt_path is not None:
                        _save(ckpt_path, state, step, callbacks, shuffle_gen, group)
                    if group is not None:  # early stopping decided on rank 0's view
                        state.stop = bool(group.broadcast_int(int(state.stop)))
                    if state.stop:
                        break
        finally:
            bar.close()
        for cb in active:
            cb.on_fit_end(state)
    # trained pyro.param values stay reachable after the fit, as with SVI
    keep: Any = {
        part: {k: v for k, v in entries.items() if not k.startswith(_FIT_PREFIX)}
        for part, entries in dict[str, Any](private).items()
    }
    store.set_state(keep)
    return state.history


def _checkpoint_bytes(step: Step) -> int:
    """A generous estimate of a checkpoint's size: the parameters, twice their size of optimizer
    state, and a megabyte for the rest."""
    assert step.structure is not None
    params = sum(p.numel() * p.element_size() for p in step.structure.params.values())
    return 3 * params + 2**20


def _transformed(batch: Batch, transform: Callable[[torch.Tensor], torch.Tensor] | None) -> Batch:
    return batch if transform is None else {**batch, "x": transform(batch["x"])}


def _resume_path(resume: bool | str | Path, checkpoint_dir: str | Path | None) -> Path | None:
    if resume is True:
        if checkpoint_dir is None:
            raise ValueError("resume=True needs checkpoint_dir")
        candidate = Path(checkpoint_dir) / CHECKPOINT_NAME
        if candidate.exists():
            return candidate
        warnings.warn(
            f"resume=True, but there is no checkpoint at {candidate}: training starts from scratch",
            stacklevel=3,
        )
        return None
    if resume:
        path = Path(resume)  # type: ignore[arg-type]
        if not path.exists():
            raise CheckpointError(f"no checkpoint file at {path}")
        return path
    return None


def _load_checkpoint(path: Path, epochs: int) -> dict[str, Any]:
    saved = ckpt.load(path)
    missing = sorted({"epoch", "global_step", "params", "optimizer", "history", "rng"} - set(saved))
    if missing:
        raise CheckpointError(f"{path} is not a checkpoint of fit: it lacks {missing}")
    if int(saved["epoch"]) > epochs:
        raise ValueError(
            f"the checkpoint is at epoch {saved['epoch']}, beyond epochs={epochs}; ask for more"
        )
    return saved


def _check_data(
    batches: Batches,
    val_batches: Batches | None,
    observed: dict[str, Any],
    transform: Callable[[torch.Tensor], torch.Tensor] | None,
    step: Step,
) -> None:
    """Finiteness and supports of all the data before the first step: tensors at once, a
    DataLoader's sized dataset in one pass of its own (an unsized one batch by batch as it
    comes), every bad datapoint named by its index in the dataset; then a dry run of the
    objective on the first validation batch."""
    for bs in (batches, val_batches):
        if bs is None:
            continue
        fn = transform if bs is batches else None
        if isinstance(bs.data, dict):
            x = bs.data["x"]
            if fn is not None:
                x = fn(x.cpu())  # on the CPU, where a transform can check its input
            check_support(x, observed, bs.name)
        elif _sized(bs.data.dataset):
            offset = 0
            loader = DataLoader(bs.data.dataset, batch_size=1024, collate_fn=bs.data.collate_fn)
            for part in iterate(loader, bs.name):
                _check_part(part, offset, observed, fn, bs.name)
                offset += num_datapoints(part)
        else:
            labelled = [m for m in step.owners if isinstance(m, Labelled)]
            bs.check = functools.partial(
                _check_part, observed=observed, transform=fn, name=bs.name, labelled=labelled
            )
    if val_batches is not None:
        first = val_batches.first()
        step.bind_inputs(first)
        with (
            scoring(first, "val_data"),
            parameters_managed(step.owners),
            pyro.validation_enabled(False),
        ):
            step.value(first)


def _check_labels(batches: Batches, val_batches: Batches | None, models: list[Any]) -> None:
    """The labels of all the data, for models that take them
    (:class:`~pyro_vaes.protocols.Labelled`), before anything runs: each bad label named by
    its index in the dataset. An unsized stream's labels are checked batch by batch as they
    come (:func:`_check_part`)."""
    labelled = [m for m in models if isinstance(m, Labelled)]
    for bs in (batches, val_batches) if labelled else ():
        if bs is None:
            continue
        if isinstance(bs.data, dict):
            parts: Iterable[Batch] = [bs.data]
        elif _sized(bs.data.dataset):
            parts = iterate(
                DataLoader(bs.data.dataset, batch_size=1024, collate_fn=bs.data.collate_fn),
                bs.name,
            )
        else:
            continue
        offset = 0
        for part in parts:
            _check_part_labels(part, offset, labelled, bs.name)
            offset += num_datapoints(part)


def _check_part_labels(part: Batch, offset: int, labelled: Iterable[Any], name: str) -> None:
    y = part.get("y")
    for model in labelled:
        try:
            model.check_labels(None if y is None else y.cpu(), num_datapoints(part), offset)
        except DataError as err:
            raise DataError(f"{name}: {err}") from None


def _sized(dataset: Any) -> bool:
    try:
        len(dataset)
    except TypeError:
        return False
    return True


def _check_part(
    part: Batch,
    offset: int,
    observed: dict[str, Any],
    transform: Callable[[torch.Tensor], torch.Tensor] | None,
    name: str,
    labelled: Iterable[Any] = (),
) -> None:
    """Finiteness, supports and labels (of ``labelled`` models) of ``part``, rows ``offset``
    onwards of a dataset."""
    check_batch(part, name, offset)
    x = part["x"] if transform is None else transform(part["x"].cpu())
    check_support(x, observed, name, offset)
    _check_part_labels(part, offset, labelled, name)


def _restore(
    saved: dict[str, Any],
    path: Path,
    step: Step,
    callbacks: list[Callback],
    active: list[Callback],
    shuffle_gen: torch.Generator,
    state: FitState,
    group: Group | None = None,
) -> None:
    assert step.structure is not None and step.optimizer is not None
    optimizers = [("optimizer", step.optimizer, "optimizer")]
    if step.adversary_optimizer is not None:
        optimizers.append(
            ("adversary_optimizer", step.adversary_optimizer, "adversary's optimizer")
        )
    for key, optimizer, what in optimizers:  # the optimizers first: the parameters stay as they
        _load_optimizer(optimizer, saved, key, what, path)  # are if either does not match
    load_params(saved["params"], step.structure.params, path)
    for cb, cb_state in zip(callbacks, saved.get("callbacks", []), strict=False):
        if any(cb is a for a in active):
            cb.load_state_dict(cb_state)
    ranks = saved.get("rng_ranks", [])
    if group is not None and len(ranks) == group.world_size:
        set_rng_state(ranks[group.rank], shuffle_gen)  # each rank its own streams
    else:
        set_rng_state(saved["rng"], shuffle_gen)
        if group is not None and group.rank > 0:  # another world size: fresh streams per rank
            pyro.set_rng_seed(int(torch.randint(2**31, (), generator=shuffle_gen)) + group.rank)
    state.history = History.from_dict(saved["history"])
    state.global_step = int(saved["global_step"])


def _load_optimizer(
    optimizer: torch.optim.Optimizer, saved: dict[str, Any], key: str, what: str, path: Path
) -> None:
    """Load the optimizer state saved under ``key``, refusing another optimizer's state; the
    hyperparameters given now (a new learning rate, say) replace the saved ones, with a
    warning that names them."""
    kind = saved.get(f"{key}_type")
    if kind is not None and kind != type(optimizer).__name__:
        raise CheckpointError(
            f"{path}: the {what} state was written by {kind}, but this fit uses "
            f"{type(optimizer).__name__}; resume with the same optimizer"
        )
    wanted = [{k: v for k, v in g.items() if k != "params"} for g in optimizer.param_groups]
    try:
        optimizer.load_state_dict(saved[key])
    except (ValueError, KeyError) as err:
        raise CheckpointError(f"{path}: the {what} state does not match: {err}") from err
    changed = set()
    for group, new in zip(optimizer.param_groups, wanted, strict=True):
        for name, value in new.items():
            if name in group and not _same(group[name], value):
                changed.add(f"{name} {group[name]!r} -> {value!r}")
            group[name] = value
    if changed:
        warnings.warn(
            f"resuming with other settings for the {what} than {path} holds: "
            f"{', '.join(sorted(changed))} (the new ones apply)",
            stacklevel=4,
        )


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, list | tuple) and isinstance(b, list | tuple):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        return bool(torch.equal(torch.as_tensor(a), torch.as_tensor(b)))
    return bool(a == b)


def _save(
    path: Path,
    state: FitState,
    step: Step,
    callbacks: list[Callback],
    shuffle_gen: torch.Generator,
    group: Group | None,
) -> None:
    """Rank 0 writes the checkpoint (with every rank's RNG states); every rank learns whether
    it could."""
    if group is None:
        ckpt.save(_snapshot(state, step, callbacks, shuffle_gen), path)
        return
    ranks = group.all_gather_object(rng_state(shuffle_gen), "gathering the RNG states")
    error: BaseException | None = None
    if group.is_main:
        try:
            ckpt.save({**_snapshot(state, step, callbacks, shuffle_gen), "rng_ranks": ranks}, path)
        except CheckpointError as err:
            error = err
    group.agree(error, "writing the checkpoint")


def _check_sharded_loader(data: Any) -> None:
    """Under torch.distributed a DataLoader shards by itself, with equal batch counts."""
    if not isinstance(data, DataLoader):
        return
    sampler = getattr(data.batch_sampler, "sampler", data.sampler)
    if not isinstance(sampler, DistributedSampler):
        raise ValueError(
            "under torch.distributed a DataLoader must shard its dataset with "
            "torch.utils.data.DistributedSampler (the same number of batches on every rank); "
            "or pass tensors, which fit shards itself"
        )


def _snapshot(
    state: FitState, step: Step, callbacks: list[Callback], shuffle_gen: torch.Generator
) -> dict[str, Any]:
    assert step.structure is not None and step.optimizer is not None
    out: dict[str, Any] = {
        "epoch": state.epoch,
        "global_step": state.global_step,
        "params": {k: v.detach().cpu() for k, v in step.structure.params.items()},
        "optimizer": step.optimizer.state_dict(),
        "optimizer_type": type(step.optimizer).__name__,
        "history": state.history.to_dict(),
        "callbacks": [cb.state_dict() for cb in callbacks],
        "rng": rng_state(shuffle_gen),
    }
    if step.adversary_optimizer is not None:
        out["adversary_optimizer"] = step.adversary_optimizer.state_dict()
        out["adversary_optimizer_type"] = type(step.adversary_optimizer).__name__
    return out


class _LastGood:
    """The parameters at the last check that found the losses and the parameters finite, on the
    device (copied into buffers of their own every ``CHECK_EVERY`` steps, about 0.05 ms for the
    reference model): what a diverged fit puts back."""

    def __init__(self, params: dict[str, torch.Tensor]) -> None:
        self.params = [p for p in params.values() if p.is_floating_point()]
        self.saved = [p.detach().clone() for p in self.params]

    def keep(self) -> None:
        with torch.no_grad():
            for saved, p in zip(self.saved, self.params, strict=True):
                saved.copy_(p)

    def finite(self) -> bool:
        # a sum is finite exactly when every entry is (short of overflow): one small reduction
        # per tensor instead of an elementwise test
        return bool(torch.isfinite(torch.stack([p.detach().sum() for p in self.params])).all())

    def restore(self) -> None:
        with torch.no_grad():
            for p, saved in zip(self.params, self.saved, strict=True):
                p.copy_(saved)


def _train_epoch(
    state: FitState,
    batches: Batches,
    step: Step,
    transform: Callable[[torch.Tensor], torch.Tensor] | None,
    callbacks: list[Callback],
    bar: Any,
    last_good: _LastGood,
    group: Group | None = None,
) -> float:
    """One pass over the data; returns the mean training loss per datapoint. The step losses stay
    on the device and are read (summed, and checked for NaN or Inf, as are the parameters) every
    ``CHECK_EVERY`` steps; on a bad check the parameters go back to the last good ones and
    :class:`TrainingDiverged` is raised. Under torch.distributed the losses and batch sizes are
    summed over the ranks at each check (one all-reduce), so every rank sees the global losses
    and stops alike on a NaN."""
    for m in step.owners:
        m.train()
    total, count = 0.0, 0
    pending: list[torch.Tensor] = []
    sizes: list[int] = []

    def check(last_step: int) -> None:
        nonlocal total, count, pending, sizes
        values = torch.stack(pending).double()
        counts = torch.tensor(sizes, dtype=torch.float64)
        if group is not None:
            both = group.all_sum(torch.stack([values, counts.to(values.device)]))
            values, counts = both[0], both[1].cpu()
        bad = (~torch.isfinite(values)).nonzero()
        if len(bad) or not last_good.finite():
            first = (
                last_step + 1 - len(pending) + (int(bad[0, 0]) if len(bad) else len(pending) - 1)
            )
            last_good.restore()
            what = "the loss" if len(bad) else "a parameter"
            raise TrainingDiverged(
                f"{what} became NaN or infinite at epoch {state.epoch}, step {first}; "
                f"training stopped, the parameters are back at their values of up to "
                f"{CHECK_EVERY} steps earlier (the last finite check), and the last good "
                "checkpoint (if any) is kept",
                epoch=state.epoch,
                step=first,
            )
        last_good.keep()
        total += float(values.sum())
        count += int(counts.sum())
        if callbacks:
            per_datapoint = (values.cpu() / counts).tolist()
            for cb in callbacks:
                cb.on_step_losses(state, state.global_step - len(pending), per_datapoint)
        pending, sizes = [], []
        bar.set_postfix(epoch=state.epoch, loss=f"{total / count:.3f}", refresh=False)

    i = -1
    for i, batch in enumerate(batches):
        state.step = i
        for cb in callbacks:
            cb.on_step_start(state)
        batch = _transformed(batch, transform)
        pending.append(step.step(batch))
        sizes.append(batch["x"].shape[0])
        state.global_step += 1
        bar.update(1)
        if len(pending) == CHECK_EVERY:
            check(i)
    if pending:
        check(i)
    if count == 0:
        raise DataError(f"{batches.name} gave no batches this epoch")
    return total / count


def _score(step: Step, batches: Batches | None, group: Group | None = None) -> float | None:
    """The mean loss per datapoint over ``batches`` (no gradients, modules in eval mode); under
    torch.distributed each rank scores its share and the sums are added up."""
    if batches is None:
        return None
    for m in step.owners:
        m.eval()
    total, count = 0.0, 0
    for batch in batches:
        step.bind_inputs(batch)
        total += float(step.value(batch))
        count += batch["x"].shape[0]
    for m in step.owners:
        m.train()
    if group is not None:
        sums = group.all_sum(torch.tensor([total, count], dtype=torch.float64))
        total, count = float(sums[0]), int(sums[1])
    return total / count
