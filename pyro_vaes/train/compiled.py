r"""A compiled loss: the objective of one step captured once as a graph of tensor operations and
compiled, for :func:`pyro_vaes.fit` ``(..., compile=True)`` and :class:`~pyro_vaes.train.Step`.

Pyro evaluates a model through a stack of effect handlers, in Python, on every call: plates,
traces, replay, the distributions' constructors. For a small network that bookkeeping, not the
arithmetic, is most of a step. Yet for a fixed model, objective and batch shape the handlers
issue the same tensor operations every time. :class:`CompiledLoss` therefore

1. **captures** the objective's ``differentiable_loss`` on the first batch with
   :func:`torch.fx.experimental.proxy_tensor.make_fx`: the operations the handlers issue, with
   the parameters and buffers kept by reference (so optimizer updates and running statistics
   reach the graph) and the random draws as nodes of the graph (fresh noise on every call);
2. **checks** the graph against the eager loss, both run from the same random state and the
   same buffers, and refuses a graph that disagrees;
3. **compiles** it with :func:`torch.compile` (inductor, which fuses the elementwise work;
   with ``mode="reduce-overhead"`` on a GPU, which replays the kernels as CUDA graphs).

The loss and its gradients are those of the eager path; only the random numbers differ (inductor
draws its own), so a test compares them with ``torch._inductor.config.fallback_random`` on.

What a capture freezes is what Python decides while the model runs: the values of plain
attributes it reads (``VAE.beta``) and shapes. Python branches on tensor values cannot be
captured at all (tracing refuses to read a value: the vMF's rejection sampler, say). Hence:

* batches of another shape than the first (the last, shorter batch of an epoch) run eager;
* objectives without ``differentiable_loss``, adversarial objectives, and schedules that change
  the model or the objective while fitting (:attr:`pyro_vaes.train.callbacks.Callback.changes_model`)
  are not captured: the step runs eager, with a one-line :class:`CompileWarning`
  (:func:`unsupported` says why);
* a capture that fails (data-dependent control flow), or disagrees with the eager loss (Python
  state that moves on every call), or fails to compile, falls back in the same way.

References:
    [1] Ansel et al. PyTorch 2: Faster Machine Learning Through Dynamic Python Bytecode
    Transformation and Graph Compilation. ASPLOS 2024.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import pyro
import torch
from torch.fx.experimental.proxy_tensor import make_fx

from pyro_vaes.data.batch import Batch
from pyro_vaes.protocols import Adversarial, Differentiable

__all__ = ["CompileWarning", "CompiledLoss", "unsupported"]

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


def _signature(batch: Batch) -> Signature:
    return tuple((k, tuple(v.shape), v.dtype, v.device) for k, v in batch.items())


class _State:
    """The random state and the buffers, to run the same step twice from the same start."""

    def __init__(self, buffers: Sequence[torch.Tensor], device: torch.device) -> None:
        self.buffers = list(buffers)
        self.device = device
        self.saved_buffers = [b.detach().clone() for b in self.buffers]
        self.cpu_rng = torch.random.get_rng_state()
        self.cuda_rng = torch.cuda.get_rng_state(device) if device.type == "cuda" else None

    @torch.no_grad()
    def restore(self) -> None:
        for b, saved in zip(self.buffers, self.saved_buffers, strict=True):
            b.copy_(saved)
        torch.random.set_rng_state(self.cpu_rng)
        if self.cuda_rng is not None:
            torch.cuda.set_rng_state(self.cuda_rng, self.device)


class CompiledLoss:
    """``loss_fn(batch)`` (a differentiable scalar), captured on the first batch it sees,
    checked against ``loss_fn`` and compiled (see the module docstring). Batches of another
    signature, and every batch after a fallback, run ``loss_fn`` itself.

    :param loss_fn: the eager loss of a batch.
    :param buffers: the tensors the loss may change in place (running statistics), restored
        around the capture and the check.
    :param compiler: ``graph -> callable``; default :func:`torch.compile` (``mode=
        "reduce-overhead"`` on CUDA). ``lambda g: g`` runs the captured graph uncompiled.
    :param rtol: the relative tolerance of the check.
    """

    def __init__(
        self,
        loss_fn: Callable[[Batch], torch.Tensor],
        buffers: Sequence[torch.Tensor] = (),
        compiler: Callable[[torch.fx.GraphModule], Callable[..., torch.Tensor]] | None = None,
        rtol: float = 1e-4,
    ) -> None:
        self.loss_fn = loss_fn
        self.buffers = list(buffers)
        self.compiler = compiler
        self.rtol = rtol
        self.signature: Signature | None = None
        self.graph: torch.fx.GraphModule | None = None
        self.compiled: Callable[..., torch.Tensor] | None = None
        #: why the loss runs eager, once it has fallen back
        self.fallback: str | None = None

    @property
    def active(self) -> bool:
        """Whether batches of the captured signature run the compiled graph."""
        return self.compiled is not None and self.fallback is None

    def __call__(self, batch: Batch) -> torch.Tensor:
        if self.fallback is None and self.signature is None:
            self._capture(batch)
        if not self.active or _signature(batch) != self.signature:
            return self.loss_fn(batch)
        assert self.compiled is not None
        try:
            value = self.compiled(*batch.values())
        except Exception as err:  # any compiler error: fall back, as documented
            self._give_up(f"torch.compile failed ({type(err).__name__}: {_first_line(err)})")
            return self.loss_fn(batch)
        # CUDA graphs reuse their output memory on the next replay: keep this step's own value
        return value.clone() if value.device.type == "cuda" else value

    def _capture(self, batch: Batch) -> None:
        keys = tuple(batch)
        self.signature = _signature(batch)

        def flat(*tensors: torch.Tensor) -> torch.Tensor:
            return self.loss_fn(dict(zip(keys, tensors, strict=True)))

        start = _State(self.buffers, batch["x"].device)
        try:  # the checks of Pyro's validation read values; setup ran them on the first batch
            with pyro.validation_enabled(False):
                graph = make_fx(flat)(*batch.values())
        except Exception as err:  # a model make_fx cannot trace runs eager
            start.restore()
            why = (
                "the model reads a tensor's value in Python (data-dependent control flow)"
                if "_local_scalar_dense" in str(err) or "data-dependent" in str(err)
                else f"{type(err).__name__}: {_first_line(err)}"
            )
            self._give_up(f"the loss cannot be captured ({why})")
            return
        graph.graph.eliminate_dead_code()
        graph.recompile()
        with torch.no_grad(), pyro.validation_enabled(False):
            start.restore()
            eager = self.loss_fn(batch)
            start.restore()
            replay = graph(*batch.values())
            start.restore()
        if not torch.allclose(replay, eager, rtol=self.rtol, atol=self.rtol):
            self._give_up(
                f"the captured loss ({float(replay):.6g}) differs from the eager one "
                f"({float(eager):.6g}): the model decides something in Python from its data"
            )
            return
        self.graph = graph
        self.compiled = (self.compiler or _default_compiler(batch["x"].device))(graph)

    def _give_up(self, reason: str) -> None:
        self.fallback = reason
        warnings.warn(f"compile=True: {reason}; the step runs eager", CompileWarning, stacklevel=4)


def _default_compiler(device: torch.device) -> Callable[[torch.fx.GraphModule], Any]:
    mode = "reduce-overhead" if device.type == "cuda" else None
    return lambda graph: torch.compile(graph, mode=mode, dynamic=False)


def _first_line(err: BaseException) -> str:
    return (str(err).strip().splitlines() or [""])[0][:120]
