"""The one training loop: any Pyro model/guide pair, any ELBO, on CPU or CUDA.

``fit`` differentiates the objective's ``differentiable_loss`` itself and steps a single torch
optimizer over every parameter, which removes most of the per-step cost of ``pyro.infer.SVI``
(one optimizer per parameter, a parameter-store lookup per parameter per step). Data and
arguments are checked once, up front; the per-step distribution checks are then switched off.
"""

from __future__ import annotations

import functools
import math
import random
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyro
import pyro.infer
import pyro.optim
import torch
from torch import nn
from torch.distributions import constraints
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from pyro_vaes.data import as_tensor, check_finite, first_item
from pyro_vaes.errors import CheckpointError, DataError, TrainingDiverged
from pyro_vaes.objectives.elbo import ELBO, traces
from pyro_vaes.train import checkpoint as ckpt
from pyro_vaes.train.callbacks import Callback, FitState, History

__all__ = ["CHECKPOINT_NAME", "default_loss", "fit", "resolve_device"]

#: the file name of the checkpoint ``fit`` keeps in ``checkpoint_dir``
CHECKPOINT_NAME = "checkpoint.pt"

Data = torch.Tensor | Dataset | DataLoader | tuple | list


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


def owners(*fns: Callable[..., Any]) -> list[nn.Module]:
    """The ``nn.Module``\\ s that own ``fns`` (a module itself, or a bound method's ``self``)."""
    found: list[nn.Module] = []
    for fn in fns:
        owner = fn if isinstance(fn, nn.Module) else getattr(fn, "__self__", None)
        if isinstance(owner, nn.Module) and all(owner is not o for o in found):
            found.append(owner)
    return found


# ---------------------------------------------------------------- batches


class _Batches:
    """An epoch's batches: shuffled slices of a tensor already on the device, or a DataLoader's
    batches moved there."""

    def __init__(
        self,
        data: torch.Tensor | DataLoader,
        batch_size: int,
        device: torch.device,
        generator: torch.Generator,
        shuffle: bool,
        check: Callable[[torch.Tensor], None] | None = None,
    ) -> None:
        self.data, self.batch_size, self.device = data, batch_size, device
        self.generator, self.shuffle, self.check = generator, shuffle, check
        if isinstance(data, DataLoader):
            self.size = len(data.dataset)  # type: ignore[arg-type]
            self.steps = len(data)
        else:
            self.size = data.shape[0]
            self.steps = math.ceil(self.size / batch_size)

    def __iter__(self) -> Iterator[torch.Tensor]:
        if isinstance(self.data, DataLoader):
            for batch in self.data:
                x = first_item(batch)
                if self.check is not None:  # a loader's batches are checked as they come
                    self.check(x)
                yield x.to(self.device, non_blocking=True).float()
            return
        if self.shuffle:
            order = torch.randperm(self.size, generator=self.generator).to(self.device)
            for start in range(0, self.size, self.batch_size):
                yield self.data[order[start : start + self.batch_size]]
        else:
            for start in range(0, self.size, self.batch_size):
                yield self.data[start : start + self.batch_size]


def _prepare(data: Data, name: str, device: torch.device) -> torch.Tensor | DataLoader:
    if isinstance(data, DataLoader):
        return data
    x = as_tensor(data, name)
    check_finite(x, name)
    return x.to(device)


# ---------------------------------------------------------------- structure of the model


@dataclass
class _Structure:
    params: dict[str, torch.Tensor]  # every tensor a checkpoint holds, by name
    trainable: list[torch.Tensor]
    observed: dict[str, constraints.Constraint]  # observed site -> support, for data checks
    reparameterized: bool  # every latent guide site has rsample


def _trace_structure(
    model: Callable[..., Any], guide: Callable[..., Any], batch: torch.Tensor
) -> _Structure:
    """Run guide and model once on ``batch`` to find their parameters and observed sites."""
    try:
        model_tr, guide_tr = traces(model, guide, (batch,), {})
    except (RuntimeError, ValueError, IndexError) as err:
        raise DataError(
            f"the model and guide cannot score a batch of shape {tuple(batch.shape)}; does the "
            f"data match the model? ({type(err).__name__}: {err})"
        ) from err

    params: dict[str, torch.Tensor] = {}
    seen: set[int] = set()
    for i, module in enumerate(owners(model, guide)):
        for key, tensor in module.state_dict(keep_vars=True).items():
            params[f"module{i}.{key}"] = tensor
            seen.add(id(tensor))
    model_sites: dict[str, Any] = model_tr.nodes
    guide_sites: dict[str, Any] = guide_tr.nodes
    for sites in (guide_sites, model_sites):
        for name, site in sites.items():
            if site["type"] == "param":
                unconstrained = site["value"].unconstrained()
                if id(unconstrained) not in seen:
                    params[f"param_store.{name}"] = unconstrained
                    seen.add(id(unconstrained))
    trainable = [p for p in params.values() if p.requires_grad]
    if not trainable:
        raise ValueError(
            "the model and guide have no trainable parameters: use nn.Module methods, "
            "pyro.module or pyro.param"
        )

    observed = {
        name: site["fn"].support
        for name, site in model_sites.items()
        if site["type"] == "sample"
        and site["is_observed"]
        and isinstance(site["value"], torch.Tensor)
        and site["value"].shape == batch.shape
    }
    reparameterized = all(
        site["fn"].has_rsample
        for site in guide_sites.values()
        if site["type"] == "sample" and not site["is_observed"]
    )
    return _Structure(params, trainable, observed, reparameterized)


def default_loss(model: Callable[..., Any], guide: Callable[..., Any], batch: torch.Tensor) -> Any:
    """:class:`pyro_vaes.objectives.ELBO` (closed-form KL terms where registered, no host
    synchronisation) when every latent site of the guide is reparameterised, else Pyro's
    ``Trace_ELBO`` with its score-function terms."""
    with pyro.validation_enabled(False):
        return _default_loss(_trace_structure(model, guide, batch))


def _default_loss(structure: _Structure) -> Any:
    return ELBO() if structure.reparameterized else pyro.infer.Trace_ELBO()


def _check_batch(x: torch.Tensor, observed: dict[str, constraints.Constraint], name: str) -> None:
    check_finite(x, f"a batch of {name}")
    _check_support(x, observed, f"a batch of {name}")


def _check_support(x: torch.Tensor, observed: dict[str, constraints.Constraint], name: str) -> None:
    for site, support in observed.items():
        if support is constraints.real or isinstance(support, type(constraints.real)):
            continue
        ok = support.check(x)
        ok = ok.reshape(ok.shape[0], -1).all(dim=1) if ok.dim() > 0 else ok.reshape(1)
        if not bool(ok.all()):
            idx = int((~ok).nonzero()[0, 0])
            raise DataError(
                f"{name} holds values outside the support of observed site {site!r} ({support}): "
                f"{int((~ok).sum())} datapoint(s), the first at index {idx}; binary likelihoods "
                "need binarised data (pyro_vaes.data.binarize or dynamic_binarize)"
            )


# ---------------------------------------------------------------- optimizer and objective


def _make_optimizer(optim: Any, params: list[torch.Tensor]) -> torch.optim.Optimizer:
    if optim is None:
        # the fused kernel (CPU and CUDA) updates all parameters in one pass per step: the same
        # update as the per-tensor loop, and faster (README, bench/overhead.py)
        try:
            return torch.optim.Adam(params, lr=1e-3, fused=True)
        except (RuntimeError, TypeError, ValueError):
            return torch.optim.Adam(params, lr=1e-3)
    if isinstance(optim, pyro.optim.PyroOptim):
        args = optim.pt_optim_args
        if callable(args):
            raise ValueError("per-parameter optimizer arguments are not supported; pass a dict")
        constructor: Any = optim.pt_optim_constructor
        return constructor(params, **args)
    if isinstance(optim, torch.optim.Optimizer):
        raise TypeError(
            "pass an optimizer factory (e.g. torch.optim.Adam or functools.partial("
            "torch.optim.Adam, lr=1e-3)), not an optimizer instance: fit collects the parameters"
        )
    opt = optim(params)
    if not isinstance(opt, torch.optim.Optimizer):
        raise TypeError(f"optim(params) must return a torch optimizer, got {type(opt).__name__}")
    return opt


_FIT_PREFIX = "pyro_vaes_fit_module"  # names fit registers itself; kept out of the global store


def _with_params(fn: Callable[..., Any], modules: Sequence[nn.Module]) -> Callable[..., Any]:
    """``fn`` that also registers ``modules`` with the (private) parameter store, so that ELBOs
    which only backpropagate through ``param`` sites (``loss_and_grads``) reach them."""

    def wrapped(*args: Any, **kwargs: Any) -> Any:
        for i, module in enumerate(modules):
            pyro.module(f"{_FIT_PREFIX}{i}", module)
        return fn(*args, **kwargs)

    return wrapped


class _Objective:
    """``step(x)`` runs backward on the per-datapoint mean loss of a batch and returns the
    batch's summed loss as a detached tensor; ``value(x)`` only evaluates it."""

    def __init__(self, loss: Any, model: Callable[..., Any], guide: Callable[..., Any]) -> None:
        self.loss, self.model, self.guide = loss, model, guide
        self.differentiable = hasattr(loss, "differentiable_loss")
        if not self.differentiable:
            if not hasattr(loss, "loss_and_grads"):
                raise TypeError(f"{type(loss).__name__} is not a Pyro ELBO (no loss_and_grads)")
            mods = owners(model, guide)
            self.model, self.guide = _with_params(model, mods), _with_params(guide, mods)

    def step(self, x: torch.Tensor, params: list[torch.Tensor]) -> torch.Tensor:
        n = x.shape[0]
        if self.differentiable:
            value = self.loss.differentiable_loss(self.model, self.guide, x)
            (value / n).backward()
            return value.detach()
        # Gradients come back for the summed loss; rescale them rather than the log densities,
        # which would move the scale inside RenyiELBO's logsumexp and change the bound.
        value = self.loss.loss_and_grads(self.model, self.guide, x)
        for p in params:
            if p.grad is not None:
                p.grad.div_(n)
        return torch.as_tensor(value, device=x.device)

    @torch.no_grad()
    def value(self, x: torch.Tensor) -> torch.Tensor:
        if self.differentiable:
            return self.loss.differentiable_loss(self.model, self.guide, x).detach()
        return torch.as_tensor(self.loss.loss(self.model, self.guide, x), device=x.device)


class _Adversary:
    """The second network of an adversarial objective and its own optimizer: ``step(x)`` takes
    ``adversary_steps`` optimizer steps on ``adversary_loss`` (per-datapoint mean), touching only
    the adversary's parameters."""

    def __init__(
        self,
        loss: Any,
        model: Callable[..., Any],
        guide: Callable[..., Any],
        module: nn.Module,
        optim: Any,
    ) -> None:
        self.loss, self.model, self.guide, self.module = loss, model, guide, module
        self.steps = _check_int("adversary_steps", getattr(loss, "adversary_steps", 1), 1)
        self.params = {f"adversary.{k}": v for k, v in module.state_dict(keep_vars=True).items()}
        trainable: list[torch.Tensor] = [p for p in module.parameters() if p.requires_grad]
        if not trainable:
            raise ValueError("the objective's adversary has no trainable parameters")
        self.optimizer = _make_optimizer(optim, trainable)

    @classmethod
    def of(
        cls,
        loss: Any,
        model: Callable[..., Any],
        guide: Callable[..., Any],
        optim: Any,
        device: torch.device,
        batch: torch.Tensor,
    ) -> _Adversary | None:
        module = getattr(loss, "adversary", None)
        if module is None or not callable(getattr(loss, "adversary_loss", None)):
            if optim is not None:
                raise ValueError("adversary_optim was given, but the objective has no adversary")
            return None
        if not isinstance(module, nn.Module):
            raise TypeError(f"the objective's adversary must be an nn.Module, got {type(module)}")
        module.to(device).train()
        if any(isinstance(p, nn.parameter.UninitializedParameter) for p in module.parameters()):
            loss.adversary_loss(model, guide, batch)  # lazily sized layers learn their shapes
        return cls(loss, model, guide, module, optim)

    def step(self, x: torch.Tensor) -> None:
        for _ in range(self.steps):
            self.optimizer.zero_grad(set_to_none=True)
            (self.loss.adversary_loss(self.model, self.guide, x) / x.shape[0]).backward()
            self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)


# ---------------------------------------------------------------- checkpoints


def _rng_state(shuffle: torch.Generator) -> dict[str, Any]:
    np_state: Any = np.random.get_state()
    py_state: Any = random.getstate()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "python": [py_state[0], list(py_state[1])],
        "numpy": [np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), *np_state[2:]],
        "shuffle": shuffle.get_state(),
    }


def _set_rng_state(state: dict[str, Any], shuffle: torch.Generator) -> None:
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    random.setstate((state["python"][0], tuple(state["python"][1]), None))
    kind, keys, *rest = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), *rest))
    shuffle.set_state(state["shuffle"])


def _load_params(
    saved: dict[str, torch.Tensor], params: dict[str, torch.Tensor], path: Path
) -> None:
    if set(saved) != set(params):
        missing, extra = sorted(set(params) - set(saved)), sorted(set(saved) - set(params))
        raise CheckpointError(
            f"{path} does not belong to this model: missing {missing[:5]}, unexpected {extra[:5]}"
        )
    for name, tensor in params.items():
        if saved[name].shape != tensor.shape:
            raise CheckpointError(
                f"{path}: parameter {name!r} has shape {tuple(saved[name].shape)} in the "
                f"checkpoint but {tuple(tensor.shape)} in the model"
            )
    with torch.no_grad():
        for name, tensor in params.items():
            tensor.copy_(saved[name])


# ---------------------------------------------------------------- fit


def _check_int(name: str, value: Any, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < low:
        raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
    return int(value)


def fit(
    model: Callable[..., Any],
    guide: Callable[..., Any],
    data: Data,
    *,
    loss: Any = None,
    optim: Any = None,
    adversary_optim: Any = None,
    epochs: int = 10,
    batch_size: int = 100,
    device: str | torch.device = "auto",
    val_data: Data | None = None,
    transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
    callbacks: Iterable[Callback] = (),
    checkpoint_dir: str | Path | None = None,
    resume: bool | str | Path = False,
    seed: int | None = None,
    progress: bool = True,
) -> History:
    r"""Fit ``model`` and ``guide`` to ``data`` by stochastic variational inference.

    Each step draws a batch, evaluates the objective (a Pyro ELBO; its value is
    :math:`-\mathrm{ELBO}` summed over the batch), and takes an optimizer step on the mean over the
    batch. Reported losses are nats per datapoint.

    :param model: a Pyro model taking one batch ``x``: a function using ``pyro.module``/
        ``pyro.param``, or a method of an ``nn.Module`` (whose parameters are found from it).
    :param guide: the matching guide.
    :param data: a tensor ``(N, ...)``, an ``(x, y)`` pair, a ``Dataset`` (materialised once as a
        tensor on the device), or a ``DataLoader`` (iterated as it is). Labels are ignored.
    :param loss: any Pyro ELBO. Default: :class:`pyro_vaes.objectives.ELBO` (the KL in closed
        form where registered, like ``TraceMeanField_ELBO``) for reparameterised guides, else
        ``Trace_ELBO``. ELBOs without ``differentiable_loss`` (e.g.
        ``RenyiELBO``) run through their ``loss_and_grads``.
    :param optim: ``None`` (Adam, lr 1e-3, the fused implementation where available), a ``pyro.optim`` optimizer such as
        ``pyro.optim.Adam({"lr": 1e-3})``, or a factory ``params -> torch.optim.Optimizer``.
    :param adversary_optim: the optimizer (same forms as ``optim``) of an adversarial objective's
        second network: an objective with an ``adversary`` module and an
        ``adversary_loss(model, guide, x)`` gets its own optimizer over that module alone, stepped
        ``adversary_steps`` times after every model step (see
        :mod:`pyro_vaes.objectives.adversarial`). Default: Adam, lr 1e-3.
    :param epochs: total number of epochs (a resumed fit continues up to it).
    :param batch_size: datapoints per step (ignored for a ``DataLoader``).
    :param device: ``"auto"`` (CUDA when available), ``"cpu"``, ``"cuda"``, ...
    :param val_data: held-out data scored at the end of every epoch.
    :param transform: applied to every training batch on the device, e.g.
        :func:`pyro_vaes.data.dynamic_binarize`.
    :param callbacks: :class:`pyro_vaes.callbacks.Callback` objects.
    :param checkpoint_dir: where ``checkpoint.pt`` is written (atomically) after every epoch.
    :param resume: ``True`` to continue from ``checkpoint_dir/checkpoint.pt`` when it exists, or a
        checkpoint path.
    :param seed: seeds Python, NumPy and torch (and the shuffling) for a reproducible fit.
    :param progress: show a tqdm progress bar.
    :returns: the :class:`~pyro_vaes.callbacks.History` of all epochs (resumed ones included).
    :raises ValueError: for impossible settings; :class:`~pyro_vaes.errors.DataError` for data that
        is empty, non-finite, outside the likelihood's support or shaped unlike the model's;
        :class:`~pyro_vaes.errors.CheckpointError` for a bad checkpoint;
        :class:`~pyro_vaes.errors.TrainingDiverged` when the loss turns NaN or infinite.
    """
    epochs = _check_int("epochs", epochs, 0)
    batch_size = _check_int("batch_size", batch_size, 1)
    dev = resolve_device(device)
    callbacks = list(callbacks)
    resume_path: Path | None = None
    if resume is True:
        if checkpoint_dir is None:
            raise ValueError("resume=True needs checkpoint_dir")
        candidate = Path(checkpoint_dir) / CHECKPOINT_NAME
        resume_path = candidate if candidate.exists() else None
    elif resume:
        resume_path = Path(resume)  # type: ignore[arg-type]
        if not resume_path.exists():
            raise CheckpointError(f"no checkpoint file at {resume_path}")
    saved = ckpt.load(resume_path) if resume_path is not None else None
    if saved is not None:
        missing = sorted(
            {"epoch", "global_step", "params", "optimizer", "history", "rng"} - set(saved)
        )
        if missing:
            raise CheckpointError(f"{resume_path} is not a checkpoint of fit: it lacks {missing}")
        if int(saved["epoch"]) > epochs:
            raise ValueError(
                f"the checkpoint is at epoch {saved['epoch']}, beyond epochs={epochs}; ask for more"
            )

    if seed is not None:
        pyro.set_rng_seed(seed)
    shuffle_gen = torch.Generator().manual_seed(
        seed if seed is not None else int(torch.randint(2**62, ()))
    )

    for module in owners(model, guide):
        module.to(dev)
    train = _prepare(data, "data", dev)
    val = _prepare(val_data, "val_data", dev) if val_data is not None else None
    batches = _Batches(train, batch_size, dev, shuffle_gen, shuffle=True)
    val_batches = (
        _Batches(val, batch_size, dev, shuffle_gen, shuffle=False) if val is not None else None
    )
    if batches.steps == 0:
        raise DataError("data is empty")

    store = pyro.get_param_store()
    with store.scope() as private:
        first = next(iter(_Batches(train, batch_size, dev, torch.Generator(), shuffle=False)))
        if transform is not None:
            first = transform(first)
        with pyro.validation_enabled(False):
            structure = _trace_structure(model, guide, first)
        for p in structure.params.values():
            if p.device != dev:
                p.data = p.data.to(dev)
        for x, name, bs in ((train, "data", batches), (val, "val_data", val_batches)):
            if isinstance(x, torch.Tensor):
                _check_support(
                    transform(x) if transform and name == "data" else x, structure.observed, name
                )
            elif bs is not None:
                bs.check = functools.partial(_check_batch, observed=structure.observed, name=name)
        if loss is None:
            loss = _default_loss(structure)
        bind = getattr(loss, "bind_dataset_size", None)
        if callable(bind):  # objectives whose estimators need N (the total-correlation ELBO)
            bind(batches.size)
        objective = _Objective(loss, model, guide)
        optimizer = _make_optimizer(optim, structure.trainable)
        adversary = _Adversary.of(loss, model, guide, adversary_optim, dev, first)
        if adversary is not None:
            structure.params.update(adversary.params)

        state = FitState(model, guide, epochs=epochs, steps_per_epoch=batches.steps)
        start_epoch = 1
        if saved is not None:
            _load_params(saved["params"], structure.params, resume_path)  # type: ignore[arg-type]
            try:
                optimizer.load_state_dict(saved["optimizer"])
            except (ValueError, KeyError) as err:
                raise CheckpointError(
                    f"{resume_path}: optimizer state does not match: {err}"
                ) from err
            if adversary is not None:
                try:
                    adversary.optimizer.load_state_dict(saved["adversary_optimizer"])
                except (ValueError, KeyError) as err:
                    raise CheckpointError(
                        f"{resume_path}: the adversary's optimizer state does not match: {err}"
                    ) from err
            for cb, cb_state in zip(callbacks, saved.get("callbacks", []), strict=False):
                cb.load_state_dict(cb_state)
            _set_rng_state(saved["rng"], shuffle_gen)
            state.history = History.from_dict(saved["history"])
            state.global_step = int(saved["global_step"])
            start_epoch = int(saved["epoch"]) + 1

        ckpt_path = Path(checkpoint_dir) / CHECKPOINT_NAME if checkpoint_dir is not None else None
        check_every = 20  # steps between reads of the loss on the host
        bar = tqdm(
            total=batches.steps * epochs,
            initial=batches.steps * (start_epoch - 1),
            disable=not progress,
            unit="step",
            dynamic_ncols=True,
        )
        for cb in callbacks:
            cb.on_fit_start(state)
        try:
            with pyro.validation_enabled(False):
                for epoch in range(start_epoch, epochs + 1):
                    state.epoch = epoch
                    for cb in callbacks:
                        cb.on_epoch_start(state)
                    began = time.perf_counter()
                    train_loss = _train_epoch(
                        state,
                        batches,
                        objective,
                        optimizer,
                        structure.trainable,
                        transform,
                        callbacks,
                        bar,
                        check_every,
                        adversary,
                    )
                    val_loss = _score(objective, val_batches, model, guide)
                    history = state.history
                    history.epoch.append(epoch)
                    history.loss.append(train_loss)
                    history.val_loss.append(val_loss)
                    history.seconds.append(time.perf_counter() - began)
                    for cb in callbacks:
                        cb.on_epoch_end(state)
                    if ckpt_path is not None:
                        ckpt.save(
                            {
                                "epoch": epoch,
                                "global_step": state.global_step,
                                "params": {
                                    k: v.detach().cpu() for k, v in structure.params.items()
                                },
                                "optimizer": optimizer.state_dict(),
                                **(
                                    {"adversary_optimizer": adversary.optimizer.state_dict()}
                                    if adversary is not None
                                    else {}
                                ),
                                "history": history.to_dict(),
                                "callbacks": [cb.state_dict() for cb in callbacks],
                                "rng": _rng_state(shuffle_gen),
                            },
                            ckpt_path,
                        )
                    if state.stop:
                        break
        finally:
            bar.close()
        for cb in callbacks:
            cb.on_fit_end(state)
    # trained pyro.param values stay reachable after the fit, as with SVI
    keep: Any = {
        part: {k: v for k, v in entries.items() if not k.startswith(_FIT_PREFIX)}
        for part, entries in dict[str, Any](private).items()
    }
    store.set_state(keep)
    return state.history


def _train_epoch(
    state: FitState,
    batches: _Batches,
    objective: _Objective,
    optimizer: torch.optim.Optimizer,
    params: list[torch.Tensor],
    transform: Callable[[torch.Tensor], torch.Tensor] | None,
    callbacks: list[Callback],
    bar: Any,
    check_every: int,
    adversary: _Adversary | None = None,
) -> float:
    """One pass over the data; returns the mean training loss per datapoint. The step losses stay
    on the device and are read (summed, and checked for NaN or Inf) every ``check_every`` steps."""
    for m in owners(state.model, state.guide):
        m.train()
    total, count, pending = 0.0, 0, []
    for step, x in enumerate(batches):
        state.step = step
        for cb in callbacks:
            cb.on_step_start(state)
        if transform is not None:
            x = transform(x)
        pending.append(objective.step(x, params))
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if adversary is not None:
            adversary.step(x)
            optimizer.zero_grad(set_to_none=True)  # the adversary's loss reached the model too
        count += x.shape[0]
        state.global_step += 1
        bar.update(1)
        if len(pending) == check_every or step + 1 == batches.steps:
            values = torch.stack(pending).double()
            bad = (~torch.isfinite(values)).nonzero()
            if len(bad):
                first = step + 1 - len(pending) + int(bad[0, 0])
                raise TrainingDiverged(
                    f"the loss became NaN or infinite at epoch {state.epoch}, step {first}; "
                    "training stopped and the last good checkpoint (if any) is kept",
                    epoch=state.epoch,
                    step=first,
                )
            total += float(values.sum())
            pending = []
            bar.set_postfix(epoch=state.epoch, loss=f"{total / count:.3f}", refresh=False)
    return total / count


def _score(
    objective: _Objective,
    batches: _Batches | None,
    model: Callable[..., Any],
    guide: Callable[..., Any],
) -> float | None:
    """The mean loss per datapoint over ``batches`` (no gradients, modules in eval mode)."""
    if batches is None:
        return None
    mods = owners(model, guide)
    for m in mods:
        m.eval()
    total, count = 0.0, 0
    for x in batches:
        total += float(objective.value(x))
        count += x.shape[0]
    for m in mods:
        m.train()
    return total / count
