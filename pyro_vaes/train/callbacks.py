"""Callbacks for :func:`pyro_vaes.fit`: hooks at the start and end of fitting, epochs and steps.

A callback reads and changes the :class:`FitState` it is handed; setting ``state.stop = True``
ends fitting after the current epoch. Callbacks whose state must survive a resume implement
``state_dict``/``load_state_dict`` (plain values only: checkpoints hold no code).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, ClassVar

__all__ = ["Callback", "EarlyStopping", "FitState", "History", "KLAnnealing"]


@dataclass
class History:
    """Per-epoch record of a fit: training loss and validation loss in nats per datapoint
    (``None`` without validation data), and wall-clock seconds."""

    epoch: list[int] = field(default_factory=list)
    loss: list[float] = field(default_factory=list)
    val_loss: list[float | None] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)

    def to_dict(self) -> dict[str, list[Any]]:
        return {k: list(v) for k, v in vars(self).items()}

    @classmethod
    def from_dict(cls, d: dict[str, list[Any]]) -> History:
        return cls(**{k: list(d.get(k, [])) for k in ("epoch", "loss", "val_loss", "seconds")})

    def __len__(self) -> int:
        return len(self.epoch)


@dataclass
class FitState:
    """What a callback sees: the epoch (1-based), the step within it (0-based), the number of
    optimisation steps taken so far, the history, and the flag that stops fitting."""

    model: Any
    guide: Any
    epochs: int
    steps_per_epoch: int | None  # None: a DataLoader over an unsized (streamed) dataset
    epoch: int = 0
    step: int = 0
    global_step: int = 0
    history: History = field(default_factory=History)
    stop: bool = False


class Callback:
    """Base class: every hook does nothing.

    A callback that changes the model or the objective while fitting (a schedule writing a
    weight before each step) declares :attr:`changes_model`: a compiled step
    (:mod:`pyro_vaes.train.compiled`) would freeze the value it read at capture, so ``fit`` runs
    such fits eager."""

    #: whether the hooks change what the model or the objective compute
    changes_model: ClassVar[bool] = False

    def on_fit_start(self, state: FitState) -> None: ...
    def on_epoch_start(self, state: FitState) -> None: ...
    def on_step_start(self, state: FitState) -> None: ...

    def on_step_losses(self, state: FitState, first_step: int, losses: list[float]) -> None:
        """The losses (nats per datapoint) of the steps ``first_step, first_step + 1, ...``
        (global, 0-based), handed over in groups as ``fit`` reads them from the device (every
        20 steps and at the end of an epoch) rather than one synchronisation per step."""

    def on_epoch_end(self, state: FitState) -> None: ...
    def on_fit_end(self, state: FitState) -> None: ...

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass


class EarlyStopping(Callback):
    """Stop when the monitored loss has not improved by ``min_delta`` for ``patience`` epochs.

    :param monitor: ``"val_loss"`` (falls back to ``"loss"`` without validation data) or ``"loss"``.
    """

    def __init__(
        self, patience: int = 5, min_delta: float = 0.0, monitor: str = "val_loss"
    ) -> None:
        if patience < 1:
            raise ValueError(f"patience must be >= 1, got {patience}")
        if monitor not in ("val_loss", "loss"):
            raise ValueError(f"monitor must be 'val_loss' or 'loss', got {monitor!r}")
        self.patience, self.min_delta, self.monitor = patience, min_delta, monitor
        self.best = math.inf
        self.wait = 0

    def on_epoch_end(self, state: FitState) -> None:
        value = getattr(state.history, self.monitor)[-1]
        if value is None:
            value = state.history.loss[-1]
        if value < self.best - self.min_delta:
            self.best, self.wait = value, 0
        else:
            self.wait += 1
            if self.wait >= self.patience:
                state.stop = True

    def state_dict(self) -> dict[str, Any]:
        return {"best": self.best, "wait": self.wait}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.best, self.wait = float(state["best"]), int(state["wait"])


class KLAnnealing(Callback):
    r"""Warm the KL weight up linearly: :math:`\beta_t = \beta_0 + (\beta_1 - \beta_0)
    \min(1, t / T)` at optimisation step :math:`t`, written to ``target.<attr>`` before each step.

    With :class:`pyro_vaes.VAE` the target is the VAE itself and ``attr="beta"``, so the schedule
    scales the latent site the Pyro way (``poutine.scale``). The value follows from the global
    step alone, so a resumed fit continues the schedule where it stopped.

    :param target: the object holding the weight.
    :param warmup_steps: :math:`T`; or give ``warmup_epochs``, or ``warmup_fraction`` of all the
        fit's steps, instead.
    :param start: :math:`\beta_0`.
    :param end: :math:`\beta_1`.

    References:
        [1] Bowman et al. Generating Sentences from a Continuous Space. CoNLL 2016.
    """

    changes_model = True

    def __init__(
        self,
        target: Any,
        *,
        warmup_steps: int | None = None,
        warmup_epochs: int | None = None,
        warmup_fraction: float | None = None,
        start: float = 0.0,
        end: float = 1.0,
        attr: str = "beta",
    ) -> None:
        given = [x for x in (warmup_steps, warmup_epochs, warmup_fraction) if x is not None]
        if len(given) != 1:
            raise ValueError("give exactly one of warmup_steps, warmup_epochs, warmup_fraction")
        if not given[0] >= 0 or (warmup_fraction is not None and warmup_fraction > 1):
            raise ValueError(f"the warm-up length must be >= 0 (a fraction <= 1), got {given[0]}")
        if not hasattr(target, attr):
            raise AttributeError(f"{type(target).__name__} has no attribute {attr!r} to anneal")
        self.target, self.attr = target, attr
        self.warmup_steps, self.warmup_epochs = warmup_steps, warmup_epochs
        self.warmup_fraction = warmup_fraction
        self.start, self.end = float(start), float(end)

    def value(self, global_step: int, steps_per_epoch: int, epochs: int = 0) -> float:
        """The weight at ``global_step`` of a fit of ``epochs`` epochs of ``steps_per_epoch``."""
        if self.warmup_steps is not None:
            total = float(self.warmup_steps)
        elif self.warmup_epochs is not None:
            total = float(self.warmup_epochs * steps_per_epoch)
        else:
            total = (self.warmup_fraction or 0.0) * epochs * steps_per_epoch
        frac = 1.0 if total == 0 else min(1.0, global_step / total)
        return self.start + (self.end - self.start) * frac

    def on_fit_start(self, state: FitState) -> None:
        if self.warmup_steps is None and state.steps_per_epoch is None:
            raise ValueError(
                "KLAnnealing by epochs or by fraction needs the steps per epoch, which a stream "
                "of unknown length does not give: anneal by warmup_steps"
            )

    def on_step_start(self, state: FitState) -> None:
        assert self.warmup_steps is not None or state.steps_per_epoch is not None
        value = self.value(state.global_step, state.steps_per_epoch or 0, state.epochs)
        setattr(self.target, self.attr, value)
