r"""Data-parallel training on ``torch.distributed``: the process group, shards, the gradient
all-reduce, gathered scores, and a clear error when a rank dies.

A fit launched by ``torchrun`` (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR`` and
``MASTER_PORT`` in the environment), or given ``distributed=Distributed(...)``, runs on every
rank with the same data and seed:

* every rank draws the same permutation from the shared seed; global batch ``i`` (``world_size *
  batch_size`` datapoints) is cut into contiguous, disjoint shards, one per rank, so the union of
  the ranks' batch ``i`` is the single process's batch ``i`` of size ``world_size *
  batch_size``;
* each rank differentiates its shard's *summed* loss; the gradients are summed across ranks in
  flat buckets (one ``all_reduce`` per bucket, with the shard sizes riding along) and divided by
  the global batch size, so a ragged last batch, or an empty shard, weighs each datapoint
  exactly as one process does;
* the initial parameters are broadcast from rank 0; buffers (running statistics) are broadcast
  from rank 0 at the end of every epoch;
* collectives run under a timeout; a failed or timed-out collective raises
  :class:`DistributedError` naming the ranks that stopped answering.

Why an all-reduce of our own rather than ``DistributedDataParallel``: DDP hooks the ``forward``
of one module, but a Pyro model and guide are functions (or methods other than ``forward``) that
may touch several modules and ``pyro.param`` values kept in Pyro's parameter store, and ELBOs
without ``differentiable_loss`` backpropagate inside ``loss_and_grads``. The step already knows
every trainable tensor (:class:`~pyro_vaes.train.structure.Structure`), module-owned or not, and
the adversary's, so it reduces exactly those after ``backward``: the same buckets DDP would
build, without wrapping the model, and with the datapoint counts in the same message.
"""

from __future__ import annotations

import atexit
import contextlib
import datetime
import os
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

import torch
import torch.distributed as dist

__all__ = [
    "BUCKET_BYTES",
    "Distributed",
    "DistributedError",
    "Group",
    "active",
    "finish",
    "launched",
    "setup",
    "shard_bounds",
]

#: the size of one gradient bucket (as DDP's default, 25 MiB)
BUCKET_BYTES = 25 * 2**20
#: seconds the surviving ranks wait for each other to report after a failed collective
_GRACE = 3.0

T = TypeVar("T")


class DistributedError(RuntimeError):
    """A collective failed: another rank died, hung past the timeout, or failed on its own."""


@dataclass(frozen=True)
class Distributed:
    """How :func:`pyro_vaes.fit` joins a process group.

    Unset fields come from the environment as ``torch.distributed`` reads it (``RANK``,
    ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``, ``MASTER_PORT``; torchrun sets them all).

    :param rank: this process's rank.
    :param world_size: the number of processes.
    :param local_rank: the rank on this node (picks the GPU for ``device="auto"``).
    :param backend: ``"gloo"`` on CPU and ``"nccl"`` on CUDA by default.
    :param init_method: ``"env://"`` (the default) or ``"tcp://host:port"``.
    :param timeout: seconds a collective may wait for the other ranks before the fit stops with
        :class:`DistributedError`.
    """

    rank: int | None = None
    world_size: int | None = None
    local_rank: int | None = None
    backend: str | None = None
    init_method: str = "env://"
    timeout: float = 300.0


def launched() -> bool:
    """Whether the environment describes a group of more than one process (torchrun's)."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def active() -> Group | None:
    """The current process group as a :class:`Group`, or ``None`` without one (or with one
    process): what the scoring functions shard over."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() < 2:
        return None
    backend = dist.get_backend()
    device = (
        torch.device("cuda", torch.cuda.current_device())
        if backend == "nccl"
        else torch.device("cpu")
    )
    return Group(dist.get_rank(), dist.get_world_size(), device)


def shard_bounds(n: int, rank: int, world_size: int) -> tuple[int, int]:
    """Rows ``[start, stop)`` of ``n`` that ``rank`` takes: contiguous shards whose sizes differ
    by at most one, the larger ones first, in rank order."""
    base, extra = divmod(n, world_size)
    start = rank * base + min(rank, extra)
    return start, start + base + (1 if rank < extra else 0)


def _resolve_device(device: str | torch.device, local_rank: int) -> torch.device:
    if isinstance(device, str) and device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", local_rank % torch.cuda.device_count())
        return torch.device("cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and dev.index is None:
        dev = torch.device("cuda", local_rank % max(torch.cuda.device_count(), 1))
    return dev


def setup(distributed: bool | Distributed | None, device: str | torch.device) -> Group | None:
    """Join (or create) the process group ``fit`` asks for; ``None`` when it runs alone.

    ``distributed=None`` joins when a process group is already initialised or the environment
    names more than one process; ``True`` insists on a group; ``False`` never joins.

    :raises ValueError: for ``distributed=True`` with nothing to join, or a rank out of range.
    """
    if distributed is False:
        return None
    cfg = distributed if isinstance(distributed, Distributed) else Distributed()
    if dist.is_available() and dist.is_initialized():
        rank, world = dist.get_rank(), dist.get_world_size()
        local = cfg.local_rank if cfg.local_rank is not None else _env_int("LOCAL_RANK", rank)
        dev = _resolve_device(device, local)
        return Group(rank, world, dev, timeout=cfg.timeout)
    world = cfg.world_size if cfg.world_size is not None else _env_int("WORLD_SIZE", 1)
    if distributed is None and world < 2:
        return None
    if not dist.is_available():
        raise ValueError("this torch build has no torch.distributed")
    rank = cfg.rank if cfg.rank is not None else _env_int("RANK", -1)
    if rank < 0 or world < 1 or rank >= world:
        raise ValueError(
            f"distributed training needs a rank in [0, world_size): got rank {rank}, world_size "
            f"{world}; launch with torchrun (which sets RANK, WORLD_SIZE, LOCAL_RANK, "
            "MASTER_ADDR, MASTER_PORT) or pass distributed=Distributed(rank=..., world_size=...)"
        )
    local = cfg.local_rank if cfg.local_rank is not None else _env_int("LOCAL_RANK", rank)
    dev = _resolve_device(device, local)
    backend = cfg.backend or ("nccl" if dev.type == "cuda" else "gloo")
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    if cfg.init_method == "env://":
        missing = [k for k in ("MASTER_ADDR", "MASTER_PORT") if k not in os.environ]
        if missing:
            raise ValueError(
                f"distributed training from the environment needs {missing}; torchrun sets them"
            )
    dist.init_process_group(
        backend,
        init_method=cfg.init_method,
        rank=rank,
        world_size=world,
        timeout=datetime.timedelta(seconds=cfg.timeout),
    )
    atexit.register(_destroy)
    return Group(rank, world, dev, timeout=cfg.timeout)


def finish(group: Group | None) -> None:
    """Leave the process group together: a barrier, then its destruction, so no rank tears
    its connections down while another still talks over them."""
    if group is None or not dist.is_initialized():
        return
    group.barrier("finishing")
    _destroy()


def _destroy() -> None:
    if dist.is_initialized():
        with contextlib.suppress(Exception):  # best effort at exit
            dist.destroy_process_group()


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    return int(value) if value not in (None, "") else default


class Group:
    """This rank's place in the process group, and the collectives ``fit`` uses."""

    def __init__(self, rank: int, world_size: int, device: torch.device, timeout: float = 300.0):
        self.rank, self.world_size, self.device, self.timeout = rank, world_size, device, timeout
        self._failures = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def __repr__(self) -> str:
        return f"Group(rank={self.rank}, world_size={self.world_size}, device={self.device})"

    # ------------------------------------------------------------ errors

    @contextmanager
    def guarded(self, what: str) -> Iterator[None]:
        """Turn a failed collective into a :class:`DistributedError` naming the silent ranks."""
        began = time.monotonic()
        try:
            yield
        except DistributedError:
            raise
        except RuntimeError as err:
            raise self._failure(what, err, time.monotonic() - began) from err

    def _failure(self, what: str, err: BaseException, waited: float) -> DistributedError:
        first = (str(err).strip().splitlines() or [type(err).__name__])[0][:300]
        silent = self._silent_ranks()
        if silent is None:
            who = (
                "rank 0 (which hosts the rendezvous store) is gone"
                if self.rank != 0
                else "the rendezvous store is unreachable"
            )
        elif silent:
            who = f"rank(s) {silent} of {self.world_size} stopped answering (died or hung)"
        else:
            who = "every rank is still alive, but the collective failed"
        return DistributedError(
            f"distributed training stopped on rank {self.rank}: {who}; {what} failed after "
            f"{waited:.1f} s ({type(err).__name__}: {first})"
        )

    def _silent_ranks(self) -> list[int] | None:
        """The ranks that do not check in on the store within a few seconds, or ``None`` when
        the store itself is gone."""
        self._failures += 1
        try:
            store: Any = dist.distributed_c10d._get_default_store()
            prefix = f"pyro_vaes/failed/{self._failures}/"
            store.set(f"{prefix}{self.rank}", "1")
            deadline = time.monotonic() + min(_GRACE, self.timeout)
            others = [r for r in range(self.world_size) if r != self.rank]
            while True:
                silent = [r for r in others if not store.check([f"{prefix}{r}"])]
                if not silent or time.monotonic() > deadline:
                    return silent
                time.sleep(0.1)
        except Exception:
            return None

    def agree(self, error: BaseException | None, what: str) -> None:
        """Every rank learns whether ``what`` failed on any rank: the local error is re-raised,
        another rank's becomes a :class:`DistributedError` naming it, so no rank goes on to wait
        for one that stopped."""
        messages: list[Any] = [None] * self.world_size
        note = None if error is None else f"{type(error).__name__}: {error}"
        with self.guarded(what):
            dist.all_gather_object(messages, note)
        if error is not None:
            raise error
        for r, message in enumerate(messages):
            if message is not None:
                raise DistributedError(f"rank {r} failed {what}: {message}")

    # ------------------------------------------------------------ collectives

    def broadcast_int(self, value: int) -> int:
        """Rank 0's ``value`` on every rank."""
        t = torch.tensor([value], dtype=torch.int64, device=self.device)
        with self.guarded("broadcasting the seed"):
            dist.broadcast(t, 0)
        return int(t.item())

    def broadcast_(self, tensors: Sequence[torch.Tensor], what: str = "broadcast") -> None:
        """Overwrite ``tensors`` in place with rank 0's values."""
        with torch.no_grad(), self.guarded(what):
            for t in tensors:
                buf = t.detach()
                moved = buf.device != self.device
                if moved:
                    buf = buf.to(self.device)
                dist.broadcast(buf, 0)
                if moved:
                    t.copy_(buf)

    def all_sum(self, values: torch.Tensor, what: str = "summing the losses") -> torch.Tensor:
        """``values`` summed over ranks (a new tensor on this rank's device)."""
        out = values.detach().to(self.device, copy=True)
        with self.guarded(what):
            dist.all_reduce(out)
        return out.to(values.device)

    def all_gather_object(self, obj: T, what: str = "gathering") -> list[T]:
        out: list[Any] = [None] * self.world_size
        with self.guarded(what):
            dist.all_gather_object(out, obj)
        return out

    def broadcast_object(self, obj: Any, what: str = "broadcasting") -> Any:
        """Rank 0's ``obj`` (picklable) on every rank."""
        box: list[Any] = [obj]
        with self.guarded(what):
            dist.broadcast_object_list(box, 0)
        return box[0]

    def barrier(self, what: str = "the barrier") -> None:
        """Wait for every rank; on gloo a monitored barrier, which names a rank that does not
        arrive within the timeout."""
        with self.guarded(what):
            if dist.get_backend() == "gloo":
                dist.monitored_barrier(timeout=datetime.timedelta(seconds=self.timeout))
            else:
                dist.barrier()

    def average_gradients(self, params: Sequence[torch.Tensor], count: int) -> None:
        """Replace each ``p.grad`` (the gradient of this rank's *summed* loss over ``count``
        datapoints) by the sum over ranks divided by the global number of datapoints.

        The gradients travel in flat buckets of at most :data:`BUCKET_BYTES`, per device and
        dtype, each with the counts and a has-a-gradient flag per tensor appended: a tensor no
        rank has a gradient for keeps ``grad=None`` (as one process would leave it), and the
        division uses the global count of the same message. The buckets' all-reduces are
        issued together and waited for together."""
        groups: dict[tuple[torch.device, torch.dtype], list[torch.Tensor]] = {}
        for p in params:
            groups.setdefault((p.device, p.dtype), []).append(p)
        pending = []
        with self.guarded("averaging the gradients"):
            for (device, dtype), members in groups.items():
                for bucket in _buckets(members, BUCKET_BYTES):
                    flat = torch.cat(
                        [
                            (p.grad if p.grad is not None else torch.zeros_like(p)).reshape(-1)
                            for p in bucket
                        ]
                        + [
                            torch.tensor(
                                [float(count)] + [float(p.grad is not None) for p in bucket],
                                dtype=dtype,
                                device=device,
                            )
                        ]
                    )
                    if flat.device != self.device:
                        flat = flat.to(self.device)
                    pending.append((bucket, flat, dist.all_reduce(flat, async_op=True)))
            for bucket, flat, work in pending:
                work.wait()
                total = flat[-len(bucket) - 1]
                flags = flat[-len(bucket) :].tolist()
                offset = 0
                for p, flag in zip(bucket, flags, strict=True):
                    n = p.numel()
                    if flag > 0:
                        grad = (flat[offset : offset + n] / total).view_as(p).to(p.device)
                        p.grad = grad
                    else:
                        p.grad = None
                    offset += n

    def gather_rows(self, local: torch.Tensor, what: str = "gathering the scores") -> torch.Tensor:
        """Concatenate the ranks' ``local`` tensors along dim 0, in rank order (shards may differ
        in size by rows)."""
        sizes = self.all_gather_object(int(local.shape[0]), what)
        longest = max(sizes)
        buf = torch.zeros((longest, *local.shape[1:]), dtype=local.dtype, device=self.device)
        buf[: local.shape[0]] = local.to(self.device)
        parts = [torch.empty_like(buf) for _ in range(self.world_size)]
        with self.guarded(what):
            dist.all_gather(parts, buf)
        return torch.cat([p[:s] for p, s in zip(parts, sizes, strict=True)]).to(local.device)

    def shard(self, n: int) -> tuple[int, int]:
        """This rank's rows ``[start, stop)`` of ``n``."""
        return shard_bounds(n, self.rank, self.world_size)


def _buckets(params: list[torch.Tensor], limit: int) -> Iterator[list[torch.Tensor]]:
    bucket: list[torch.Tensor] = []
    size = 0
    for p in params:
        nbytes = p.numel() * p.element_size()
        if bucket and size + nbytes > limit:
            yield bucket
            bucket, size = [], 0
        bucket.append(p)
        size += nbytes
    if bucket:
        yield bucket
