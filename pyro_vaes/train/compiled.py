r"""A captured loss: the objective of one step captured once as a graph of tensor operations and
replayed (the default of :func:`pyro_vaes.fit` and :class:`~pyro_vaes.train.Step` on long fits)
or compiled (``compile=True``).

Pyro evaluates a model through a stack of effect handlers, in Python, on every call: plates,
traces, replay, the distributions' constructors. For a small network that bookkeeping, not the
arithmetic, is most of a step. Yet for a fixed model, objective and batch shape the handlers
issue the same tensor operations every time. :class:`CompiledLoss` therefore

1. **captures** the objective's ``differentiable_loss`` once with
   :func:`torch.fx.experimental.proxy_tensor.make_fx`, above autograd (``pre_dispatch``): the
   operations the handlers issue, with the parameters and buffers kept by reference (so
   optimizer updates and running statistics reach the graph), the random draws as nodes of the
   graph (fresh noise on every call), and ``detach`` and ``no_grad`` regions as they are (the
   gradient routing of PIWAE, the straight-through estimator, EMA updates; a capture below
   autograd would turn a ``detach`` into an alias and let gradients through);
2. **checks** the graph: it refuses what it would freeze wrongly (an operation whose output's
   shape depends on the data, such as ``nonzero`` or a boolean mask; a tensor that a gradient
   taken inside the loss computed while capturing), and compares it with the eager loss, both
   run from the same random state and the same buffers;
3. **replays** it as it is (:func:`replay`: the same kernels in the same order as the eager
   path, so the same losses and gradients bit for bit, without Pyro's handlers), or
   **compiles** it with :func:`torch.compile` (inductor, which fuses the elementwise work;
   with ``mode="reduce-overhead"`` on a GPU, which replays the kernels as CUDA graphs). The
   compiled loss and gradients equal the eager ones to rounding; only the random numbers differ
   (inductor draws its own), so a test compares them with
   ``torch._inductor.config.fallback_random`` on.

What a capture freezes is what Python decides while the model runs: the values of plain
attributes it reads (``VAE.beta``) and shapes. Python branches on tensor values cannot be
captured at all (tracing refuses to read a value: the vMF's rejection sampler, say). Hence:

* the plain attributes of the model's modules and of the objective, and which tensor each
  parameter and buffer slot holds, are guarded (:class:`PythonState`): where one has changed
  since the capture (a schedule that is not declared, a user's assignment), every later step
  runs eager;
* batches of another shape than the first (the last, shorter batch of an epoch) run eager;
* objectives without ``differentiable_loss``, adversarial objectives, and schedules that change
  the model or the objective while fitting (:attr:`pyro_vaes.train.callbacks.Callback.changes_model`)
  are not captured: the step runs eager, with a one-line :class:`CompileWarning`
  (:func:`unsupported` says why);
* a capture that fails (data-dependent control flow), is refused by the checks, disagrees with
  the eager loss (Python state that moves on every call), or fails to compile, falls back in
  the same way.

References:
    [1] Ansel et al. PyTorch 2: Faster Machine Learning Through Dynamic Python Bytecode
    Transformation and Graph Compilation. ASPLOS 2024.
"""

from __future__ import annotations

import random
import warnings
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy as np
import pyro
import torch
from torch import nn
from torch._ops import OpOverload
from torch.fx.experimental.proxy_tensor import make_fx

from pyro_vaes.data.batch import Batch
from pyro_vaes.protocols import Adversarial, Differentiable

__all__ = ["CompileWarning", "CompiledLoss", "PythonState", "replay", "unsupported"]

Signature = tuple[tuple[str, tuple[int, ...], torch.dtype, torch.device], ...]


class CompileWarning(UserWarning):
    """``compile=True`` could not be honoured: the step runs eager (the message says why)."""


def unsupported(loss: Any, changes_model: Iterable[str] = ()) -> str | None:
    """Why the step of ``loss`` cannot be captured, or ``None`` when it can; ``changes_model``
    names the callbacks that change the model or the objective while fitting."""
    if not isinstance(loss, Differentiable):
        return f"{type(loss).__name__} has no differentiable_loss"
    if isinstance(loss, Adversarial):
        return f"{type(loss).__name__} trains an adversary between the model's steps"
    names = sorted(set(changes_model))
    if names:
        return f"{', '.join(names)} change(s) the model while fitting"
    return None


_PLAIN = (bool, int, float, str, type(None))


def _plain(value: Any) -> bool:
    return isinstance(value, _PLAIN) or (
        isinstance(value, tuple) and all(isinstance(v, _PLAIN) for v in value)
    )


def _guarded(value: Any) -> bool:
    return _plain(value) or isinstance(value, torch.Tensor)


class PythonState:
    """The Python-side state a captured graph may have read, to tell when it no longer holds:
    every plain attribute (``bool``, ``int``, ``float``, ``str``, ``None`` and tuples of them)
    of ``objects`` and of every submodule of those that are ``nn.Module``\\ s, and which tensor
    each tensor attribute, parameter and buffer slot holds (the graph keeps those tensors by
    reference). Not guarded: global variables, closures, and values inside mutable containers.

    :param objects: the model's modules and the objective.
    """

    def __init__(self, objects: Iterable[Any]) -> None:
        self.entries: list[tuple[str, dict[str, Any], str, Any]] = []
        for obj in objects:
            parts = obj.named_modules() if isinstance(obj, nn.Module) else [("", obj)]
            for path, part in parts:
                label = ".".join(n for n in (type(obj).__name__, path) if n)
                attrs: dict[str, Any] = getattr(part, "__dict__", {})
                self.entries += [(label, attrs, k, v) for k, v in attrs.items() if _guarded(v)]
                if isinstance(part, nn.Module):
                    for slots in (part._parameters, part._buffers):
                        self.entries += [(label, slots, k, t) for k, t in slots.items()]

    def changed(self) -> str | None:
        """The first attribute or slot that no longer holds its captured value, or ``None``."""
        missing = object()
        for label, attrs, key, value in self.entries:
            now = attrs.get(key, missing)
            if now is not value and not (_plain(value) and now == value):
                return f"{label}.{key}"
        return None


def replay(graph: torch.fx.GraphModule) -> Callable[..., torch.Tensor]:
    """The captured graph run as it is: the eager kernels, without Pyro's handlers."""
    return graph


def _signature(batch: Batch) -> Signature:
    return tuple((k, tuple(v.shape), v.dtype, v.device) for k, v in batch.items())


def _numpy_state() -> tuple[Any, ...]:
    state = np.random.get_state(legacy=False)
    return (
        state["state"]["key"].tobytes(),
        state["state"]["pos"],
        state["has_gauss"],
        state["gauss"],
    )


class _State:
    """The random state and the buffers, to run the same step twice from the same start; and
    the states of Python's and NumPy's generators, whose draws a graph cannot hold."""

    def __init__(self, buffers: Sequence[torch.Tensor], device: torch.device) -> None:
        self.buffers = list(buffers)
        self.device = device
        self.saved_buffers = [b.detach().clone() for b in self.buffers]
        self.cpu_rng = torch.random.get_rng_state()
        self.cuda_rng = torch.cuda.get_rng_state(device) if device.type == "cuda" else None
        self.python_rng = random.getstate()
        self.numpy_rng = _numpy_state()

    def python_draws(self) -> bool:
        """Whether Python's or NumPy's generator has drawn since: a loss that draws from them
        decides in Python, which a capture would freeze."""
        return random.getstate() != self.python_rng or _numpy_state() != self.numpy_rng

    @torch.no_grad()
    def restore(self) -> None:
        for b, saved in zip(self.buffers, self.saved_buffers, strict=True):
            b.copy_(saved)
        torch.random.set_rng_state(self.cpu_rng)
        if self.cuda_rng is not None:
            torch.cuda.set_rng_state(self.cuda_rng, self.device)


class CompiledLoss:
    """``loss_fn(batch)`` (a differentiable scalar), captured once, checked against ``loss_fn``
    and compiled (see the module docstring). The first ``warmup`` calls run ``loss_fn`` itself;
    the capture takes the next batch shaped as the first one. Batches of another signature, and
    every batch after a fallback, run ``loss_fn``.

    :param loss_fn: the eager loss of a batch.
    :param buffers: the tensors the loss may change in place (running statistics), restored
        around the capture and the check.
    :param compiler: ``graph -> callable``; default :func:`torch.compile` (``mode=
        "reduce-overhead"`` on CUDA); :func:`replay` runs the captured graph as it is.
    :param rtol: the relative tolerance of the check.
    :param state: the objects whose Python state the graph freezes (:class:`PythonState`),
        guarded on every call.
    :param warmup: the calls that run eager before the capture (a capture costs about as much
        as some tens of eager steps).
    :param warn: announce a fallback with a :class:`CompileWarning` (when compiling was asked
        for); otherwise the fallback is silent and :attr:`fallback` says why.
    """

    def __init__(
        self,
        loss_fn: Callable[[Batch], torch.Tensor],
        buffers: Sequence[torch.Tensor] = (),
        compiler: Callable[[torch.fx.GraphModule], Callable[..., torch.Tensor]] | None = None,
        rtol: float = 1e-4,
        state: Iterable[Any] = (),
        warmup: int = 0,
        warn: bool = True,
    ) -> None:
        self.loss_fn = loss_fn
        self.buffers = list(buffers)
        self.compiler = compiler
        self.rtol = rtol
        self.objects = list(state)
        self.warmup = warmup
        self.warn = warn
        self.calls = 0
        self.signature: Signature | None = None
        self.graph: torch.fx.GraphModule | None = None
        self.compiled: Callable[..., torch.Tensor] | None = None
        self.state: PythonState | None = None
        #: why the loss runs eager, once it has fallen back
        self.fallback: str | None = None

    @property
    def active(self) -> bool:
        """Whether batches of the captured signature run the compiled graph."""
        return self.compiled is not None and self.fallback is None

    def __call__(self, batch: Batch) -> torch.Tensor:
        if self.compiled is None and self.fallback is None:
            self.calls += 1
            if self.signature is None:
                self.signature = _signature(batch)
            if self.calls <= self.warmup or _signature(batch) != self.signature:
                return self.loss_fn(batch)
            self._capture(batch)
        if not self.active or _signature(batch) != self.signature:
            return self.loss_fn(batch)
        assert self.compiled is not None and self.state is not None
        moved = self.state.changed()
        if moved is not None:
            self._give_up(f"{moved} changed after the capture")
            return self.loss_fn(batch)
        try:
            value = self.compiled(*batch.values())
        except Exception as err:  # any compiler error: fall back, as documented
            self._give_up(f"torch.compile failed ({type(err).__name__}: {_first_line(err)})")
            return self.loss_fn(batch)
        # CUDA graphs reuse their output memory on the next replay: keep this step's own value
        return value.clone() if value.device.type == "cuda" else value

    def _capture(self, batch: Batch) -> None:
        keys = tuple(batch)
        self.state = PythonState(self.objects)

        def flat(*tensors: torch.Tensor) -> torch.Tensor:
            return self.loss_fn(dict(zip(keys, tensors, strict=True)))

        start = _State(self.buffers, batch["x"].device)
        try:  # the checks of Pyro's validation read values; setup ran them on the first batch
            with pyro.validation_enabled(False):
                # above autograd (pre-dispatch): detach and no_grad regions stay in the graph
                graph = make_fx(flat, pre_dispatch=True)(*batch.values())
        except Exception as err:  # a model make_fx cannot trace runs eager
            start.restore()
            why = (
                "the model reads a tensor's value in Python (data-dependent control flow)"
                if "_local_scalar_dense" in str(err) or "data-dependent" in str(err)
                else f"{type(err).__name__}: {_first_line(err)}"
            )
            self._give_up(f"the loss cannot be captured ({why})")
            return
        if start.python_draws():
            start.restore()
            self._give_up(
                "the loss cannot be captured (it draws from Python's or NumPy's random "
                "generator: a capture would freeze the draws)"
            )
            return
        graph.graph.eliminate_dead_code()
        graph.recompile()
        frozen = _frozen(graph)
        if frozen is not None:
            start.restore()
            self._give_up(f"the loss cannot be captured (a capture would freeze {frozen})")
            return
        with pyro.validation_enabled(False):  # with gradients, as every replay runs
            start.restore()
            eager = self.loss_fn(batch).detach()
            start.restore()
            replayed = graph(*batch.values()).detach()
            start.restore()
        if not torch.allclose(replayed, eager, rtol=self.rtol, atol=self.rtol):
            self._give_up(
                f"the captured loss ({float(replayed):.6g}) differs from the eager one "
                f"({float(eager):.6g}): the model decides something in Python from its data"
            )
            return
        self.graph = graph
        self.compiled = (self.compiler or _default_compiler(batch["x"].device))(graph)

    def _give_up(self, reason: str) -> None:
        self.fallback = reason
        if self.warn:
            warnings.warn(
                f"compile=True: {reason}; the step runs eager", CompileWarning, stacklevel=4
            )


#: operations whose output's shape depends on their input's values (a capture records the shape
#: of the capturing batch, and Python code that reads it, ``len(torch.nonzero(...))``, runs once)
_DATA_DEPENDENT = {
    "aten.nonzero",
    "aten.argwhere",
    "aten.masked_select",
    "aten.unique",
    "aten._unique",
    "aten._unique2",
    "aten.unique_dim",
    "aten.unique_consecutive",
    "aten.bincount",
    "aten.repeat_interleave",
}


def _frozen(graph: torch.fx.GraphModule) -> str | None:
    """What ``graph`` froze that must not be frozen, or ``None``: an operation whose output
    shape depends on the data (a boolean mask as an index included), or a tensor computed
    while capturing that carries its own autograd history (a gradient taken inside the loss,
    ``torch.autograd.grad``, ran outside the graph and would be replayed stale)."""
    for node in graph.graph.nodes:
        if node.op == "get_attr":
            value = getattr(graph, str(node.target))
            if isinstance(value, torch.Tensor) and value.grad_fn is not None:
                return "a tensor with a gradient history of the capturing step (autograd.grad?)"
        if node.op != "call_function":
            continue
        target = node.target
        name = str(target.overloadpacket if isinstance(target, OpOverload) else target)
        if name in _DATA_DEPENDENT:
            return f"{name}, whose output's shape depends on the data"
        if name in ("aten.index", "aten.index_put", "aten.index_put_"):
            indices = node.args[1] if len(node.args) > 1 else ()
            for index in indices or ():
                value = index.meta.get("val") if isinstance(index, torch.fx.Node) else None
                if isinstance(value, torch.Tensor) and value.dtype == torch.bool:
                    return f"{name} with a boolean mask, whose output's shape depends on the data"
    return None


def _default_compiler(device: torch.device) -> Callable[[torch.fx.GraphModule], Any]:
    mode = "reduce-overhead" if device.type == "cuda" else None
    return lambda graph: torch.compile(graph, mode=mode, dynamic=False)


def _first_line(err: BaseException) -> str:
    return (str(err).strip().splitlines() or [""])[0][:120]
