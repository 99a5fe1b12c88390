"""One optimisation step of any objective: the public building block of :func:`pyro_vaes.fit`,
for users who write their own loop, as with ``pyro.infer.SVI.step``.

    >>> step = Step(vae.model, vae.guide)            # objective and optimizer as in fit
    >>> for x, y in loader:
    ...     loss = step(x, y=y)                       # nats per datapoint, a 0-dim tensor

The objective's ``differentiable_loss`` is differentiated directly and one torch optimizer steps
every parameter (fused Adam by default), which removes most of ``SVI``'s per-step cost (one
optimizer per parameter, a parameter-store lookup per parameter per step). An
:class:`~pyro_vaes.protocols.Adversarial` objective's network gets an optimizer of its own.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy as np
import pyro
import pyro.infer
import pyro.optim
import torch
from torch import nn

from pyro_vaes.data.batch import Batch, accepting, call_args, check_batch, num_datapoints
from pyro_vaes.models.base import parameters_managed
from pyro_vaes.protocols import Adversarial, Differentiable, NeedsDatasetSize, Objective
from pyro_vaes.train.compiled import CompiledLoss, CompileWarning, replay, unsupported
from pyro_vaes.train.structure import (
    Structure,
    check_sites,
    default_loss,
    owners,
    trace_structure,
)

__all__ = ["CAPTURE_AFTER", "Step", "check_int", "make_optimizer"]

#: the eager steps a :class:`Step` takes before it captures its loss for replay (``capture=True``
#: without ``compile``): a capture costs about as much as some tens of eager steps, so short
#: fits never pay for one
CAPTURE_AFTER = 100


def check_int(name: str, value: Any, low: int) -> int:
    """``value`` as an int, or ``ValueError`` unless it is an integer ``>= low``."""
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < low:
        raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
    return int(value)


def make_optimizer(optim: Any, params: Iterable[torch.Tensor]) -> torch.optim.Optimizer:
    """A torch optimizer over ``params``: ``None`` (Adam, lr 1e-3, fused where available), a
    ``pyro.optim`` optimizer, or a factory ``params -> torch.optim.Optimizer``."""
    params = list(params)
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
    if not callable(optim):
        raise TypeError(f"optim must be None, a pyro.optim optimizer or a factory, got {optim!r}")
    opt = optim(params)
    if not isinstance(opt, torch.optim.Optimizer):
        raise TypeError(f"optim(params) must return a torch optimizer, got {type(opt).__name__}")
    return opt


_FIT_PREFIX = "pyro_vaes_fit_module"  # names registered for loss_and_grads ELBOs; kept private
_JIT_ELBOS = tuple(
    getattr(pyro.infer, name)
    for name in (
        "JitTrace_ELBO",
        "JitTraceGraph_ELBO",
        "JitTraceEnum_ELBO",
        "JitTraceMeanField_ELBO",
        "JitTraceTMC_ELBO",
    )
    if hasattr(pyro.infer, name)
)


def _with_params(fn: Callable[..., Any], modules: Sequence[nn.Module]) -> Callable[..., Any]:
    """``fn`` that also registers ``modules`` with the (private) parameter store, so that ELBOs
    which only backpropagate through ``param`` sites (``loss_and_grads``) reach them."""

    def wrapped(*args: Any, **kwargs: Any) -> Any:
        for i, module in enumerate(modules):
            pyro.module(f"{_FIT_PREFIX}{i}", module)
        return fn(*args, **kwargs)

    return wrapped


class Step:
    """One optimisation step of ``loss`` on a batch.

    The parameters, the default objective and the optimizers are set up from the first batch
    (:meth:`setup`, also run by the first call). Calls take the batch as ``model`` does:
    ``step(x)``, ``step(x, y=y)``.

    :param model: a Pyro model (a function using ``pyro.module``/``pyro.param``, or a method of an
        ``nn.Module``).
    :param guide: the matching guide.
    :param loss: any Pyro ELBO; default :class:`pyro_vaes.objectives.ELBO` for reparameterised
        guides, else ``Trace_ELBO``. ELBOs without ``differentiable_loss`` run through their
        ``loss_and_grads``, with the gradients (not the log densities) averaged over the batch.
    :param optim: see :func:`make_optimizer`.
    :param adversary_optim: the optimizer of an :class:`~pyro_vaes.protocols.Adversarial`
        objective's network (same forms); default Adam, lr 1e-3.
    :param compile: capture the objective once and compile it (:mod:`pyro_vaes.train.compiled`);
        where it cannot be, the step runs eager after a one-line
        :class:`~pyro_vaes.train.compiled.CompileWarning`.
    :param capture: after :data:`CAPTURE_AFTER` eager steps, capture the objective once and
        replay its tensor operations without Pyro's handlers: the same losses and gradients,
        bit for bit, at a fraction of the handlers' cost on small networks. Only for model and
        guide that are methods of ``nn.Module``\\ s (whose Python state the capture guards,
        :class:`~pyro_vaes.train.compiled.PythonState`); where the capture is not possible the
        step stays eager, silently (:attr:`compiled`'s ``fallback`` says why). ``False``: run
        Pyro's handlers on every step.
    """

    def __init__(
        self,
        model: Callable[..., Any],
        guide: Callable[..., Any],
        loss: Any = None,
        optim: Any = None,
        adversary_optim: Any = None,
        compile: bool = False,
        capture: bool = True,
    ) -> None:
        self.owners = owners(model, guide)
        if loss is not None and isinstance(loss, _JIT_ELBOS) and self.owners:
            raise TypeError(
                f"{type(loss).__name__} compiles the ELBO with torch.jit, which reads parameters "
                "only through pyro.param sites; these model/guide keep theirs in nn.Modules: use "
                "pyro_vaes.objectives.ELBO or Trace_ELBO"
            )
        self._model, self._guide = model, guide
        self.model: Callable[..., Any] = model  # with the inputs a batch carries (bind_inputs)
        self.guide: Callable[..., Any] = guide
        self.loss, self.optim, self.adversary_optim = loss, optim, adversary_optim
        self.structure: Structure | None = None
        self.optimizer: torch.optim.Optimizer | None = None
        self.adversary_optimizer: torch.optim.Optimizer | None = None
        self.adversary: nn.Module | None = None
        self._inputs: tuple[str, ...] | None = None
        #: ``(tensors, n)`` -> None: averages the gradients of summed losses over every rank's
        #: datapoints (set by ``fit`` under torch.distributed); ``None``: divide by the batch size
        self.reduce_gradients: Callable[[Sequence[torch.Tensor], int], None] | None = None
        self.adversary_trainable: list[torch.Tensor] = []
        for name, flag in (("compile", compile), ("capture", capture)):
            if not isinstance(flag, bool | np.bool_):
                raise TypeError(f"{name} must be True or False, got {flag!r}")
        self.compile = bool(compile)
        self.capture = bool(capture)
        #: the captured loss (compiled or replayed), where it was asked for and is possible
        self.compiled: CompiledLoss | None = None

    # ------------------------------------------------------------ setup

    def setup(
        self, batch: Batch, dataset_size: int | None = None, changes_model: Sequence[str] = ()
    ) -> Structure:
        """Check that model and guide agree on their latent sites (:func:`check_sites`), trace
        them on ``batch``, pick the objective and make the optimizers. ``changes_model`` names
        the callbacks that change the model while fitting (they keep a compiled step eager)."""
        self.bind_inputs(batch)
        with parameters_managed(self.owners):
            check_sites(self.model, self.guide, batch)
            with pyro.validation_enabled(False):
                structure = trace_structure(self.model, self.guide, batch)
        if self.loss is None:
            self.loss = default_loss(structure)
        if dataset_size is not None and isinstance(self.loss, NeedsDatasetSize):
            self.loss.bind_dataset_size(dataset_size)
        if not isinstance(self.loss, Objective):
            raise TypeError(f"{type(self.loss).__name__} is not a Pyro ELBO (no loss_and_grads)")
        self.differentiable = isinstance(self.loss, Differentiable)
        if not self.differentiable:
            self.model = _with_params(self.model, self.owners)
            self.guide = _with_params(self.guide, self.owners)
        self.optimizer = make_optimizer(self.optim, structure.trainable)
        if self.adversary_optim is not None and not isinstance(self.loss, Adversarial):
            raise ValueError("adversary_optim was given, but the objective has no adversary")
        if isinstance(self.loss, Adversarial):
            self._setup_adversary(batch)
            assert self.adversary is not None
            for key, value in self.adversary.state_dict(keep_vars=True).items():
                structure.params[f"adversary.{key}"] = value
        self.structure = structure
        reason = unsupported(self.loss, changes_model)
        state = [*self.owners, self.loss]
        model, guide = self._model, self._guide
        if self.compile:
            if reason is None:
                self.compiled = CompiledLoss(self._differentiable_loss, self.buffers(), state=state)
            else:
                warnings.warn(
                    f"compile=True: {reason}; the step runs eager", CompileWarning, stacklevel=2
                )
        elif self.capture and reason is None and all(owners(fn) for fn in (model, guide)):
            self.compiled = CompiledLoss(
                self._differentiable_loss,
                self.buffers(),
                compiler=replay,
                state=state,
                warmup=CAPTURE_AFTER,
                warn=False,
            )
        return structure

    def buffers(self) -> list[torch.Tensor]:
        """The tensors of the model that no optimizer steps (running statistics, codebook
        counters), of any dtype."""
        assert self.structure is not None
        trainable = {id(p) for p in self.structure.trainable} | {
            id(p) for p in self.adversary_trainable
        }
        return [p for p in self.structure.params.values() if id(p) not in trainable]

    def _differentiable_loss(self, batch: Batch) -> torch.Tensor:
        args, kwargs = call_args(batch)
        return self.loss.differentiable_loss(self.model, self.guide, *args, **kwargs)

    def bind_inputs(self, batch: Batch) -> None:
        """Fix the inputs a batch carries; model and guide receive those their signatures take."""
        keys = tuple(batch)
        if keys != self._inputs:
            self.model = accepting(self._model, keys, "model")
            self.guide = accepting(self._guide, keys, "guide")
            self._inputs = keys

    def _setup_adversary(self, batch: Batch) -> None:
        loss: Any = self.loss
        module = loss.adversary
        if not isinstance(module, nn.Module):
            raise TypeError(f"the objective's adversary must be an nn.Module, got {type(module)}")
        device = batch["x"].device
        module.to(device).train()
        args, kwargs = call_args(batch)
        if any(isinstance(p, nn.parameter.UninitializedParameter) for p in module.parameters()):
            with parameters_managed(self.owners):
                loss.adversary_loss(self.model, self.guide, *args, **kwargs)  # lazy layers
        self.adversary_steps = check_int("adversary_steps", loss.adversary_steps, 1)
        trainable = [p for p in module.parameters() if p.requires_grad]
        if not trainable:
            raise ValueError("the objective's adversary has no trainable parameters")
        self.adversary = module
        self.adversary_optimizer = make_optimizer(self.adversary_optim, trainable)
        self.adversary_trainable = list[torch.Tensor](trainable)

    # ------------------------------------------------------------ steps

    def __call__(self, x: torch.Tensor, **inputs: torch.Tensor) -> torch.Tensor:
        """One step on the batch ``(x, **inputs)``; returns its loss in nats per datapoint."""
        batch = {"x": x, **inputs}
        if self.structure is None:
            check_batch(batch, "the batch")
            self.setup(batch)
        else:
            self.bind_inputs(batch)
        with parameters_managed(self.owners):
            return self.step(batch) / x.shape[0]

    def step(self, batch: Batch) -> torch.Tensor:
        """One model step (and the adversary's steps) on ``batch``; returns the batch's summed
        loss as a detached tensor, without reading it back to the host.

        With :attr:`reduce_gradients` set (data-parallel training, see
        :mod:`pyro_vaes.train.distributed`), the gradients of the batch's *summed* loss are
        handed to it with the batch's size, to be averaged over every rank's datapoints; a batch
        of no rows (an empty shard) then takes part with no gradient of its own."""
        assert self.optimizer is not None and self.structure is not None, "call setup first"
        args, kwargs = call_args(batch)
        n = num_datapoints(batch)
        reduce = self.reduce_gradients
        if reduce is not None and n == 0:
            value = torch.zeros((), device=batch["x"].device)
        elif self.differentiable:
            value = (self.compiled or self._differentiable_loss)(batch)
            (value if reduce is not None else value / n).backward()
            value = value.detach()
        else:
            # Gradients come back for the summed loss; rescale them rather than the log
            # densities, which would move the scale inside RenyiELBO's logsumexp.
            value = torch.as_tensor(
                self.loss.loss_and_grads(self.model, self.guide, *args, **kwargs),
                device=batch["x"].device,
            )
            if reduce is None:
                for p in self.structure.trainable:
                    if p.grad is not None:
                        p.grad.div_(n)
        if reduce is not None:
            reduce(self.structure.trainable, n)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        if self.adversary_optimizer is not None:
            for _ in range(self.adversary_steps):
                self.adversary_optimizer.zero_grad(set_to_none=True)
                if reduce is None or n > 0:
                    adv = self.loss.adversary_loss(self.model, self.guide, *args, **kwargs)
                    (adv if reduce is not None else adv / n).backward()
                if reduce is not None:
                    reduce(self.adversary_trainable, n)
                self.adversary_optimizer.step()
            self.adversary_optimizer.zero_grad(set_to_none=True)
            self.optimizer.zero_grad(set_to_none=True)  # the adversary's loss reached the model
        return value

    @torch.no_grad()
    def value(self, batch: Batch) -> torch.Tensor:
        """The batch's summed loss, without gradients or a step: the objective's ``loss`` (a
        float: Pyro's ``differentiable_loss`` refuses to run without gradients for some ELBOs,
        ``TraceEnum_ELBO`` among them; this runs once per validation batch, not per step)."""
        args, kwargs = call_args(batch)
        return torch.as_tensor(
            self.loss.loss(self.model, self.guide, *args, **kwargs), device=batch["x"].device
        )
