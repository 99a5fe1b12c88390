"""Data-parallel ``pyro_vaes.fit``: samples per second of 1 rank against N ranks.

Weak scaling: each rank keeps ``--batch-size`` datapoints a step, so N ranks take global batches
of ``N * batch_size`` and an epoch has ``1/N`` as many steps. The model is the reference VAE (MLP
784-512-16, Bernoulli logits, Adam 1e-3) on random binary 28x28 images (``--size`` of them; the
timings do not depend on the pixels). Every configuration starts its ranks afresh (spawned
processes, ``--threads`` threads each, gloo on CPU and nccl on CUDA), runs ``--epochs`` epochs
and reports the median epoch after the first: samples/s = images per epoch / seconds, and the
scaling efficiency (samples/s with N ranks) / (N * samples/s with 1 rank).

    python bench/ddp.py                          # CPU: 1 and 2 ranks
    python bench/ddp.py --device cpu --ranks 1 2 4
    python bench/ddp.py --device cuda            # 1 .. all GPUs, one rank each

On CUDA it then runs the cuda-marked test of tests/train/test_distributed.py (``--no-test``
skips it).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import torch


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _rank(rank: int, world: int, port: int, args: dict[str, Any], out: str) -> None:
    torch.set_num_threads(args["threads"])
    os.environ.update(
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
        RANK=str(rank),
        WORLD_SIZE=str(world),
        LOCAL_RANK=str(rank),
    )
    import pyro_vaes as pv
    from pyro_vaes.train.distributed import Distributed

    x = torch.rand(args["size"], 1, 28, 28, generator=torch.Generator().manual_seed(0)) < 0.3
    x = x.float()
    torch.manual_seed(0)
    vae = pv.variants.build("vae", (1, 28, 28), latent_dim=16, hidden=(512,))
    history = pv.fit(
        vae.model,
        vae.guide,
        x,
        epochs=args["epochs"],
        batch_size=args["batch_size"],
        device=args["device"],
        seed=0,
        progress=False,
        distributed=Distributed() if world > 1 else False,
    )
    if rank == 0:
        Path(out).write_text(json.dumps(history.seconds))


def measure(world: int, args: dict[str, Any]) -> dict[str, Any]:
    ctx = mp.get_context("spawn")
    port = _free_port()
    with tempfile.TemporaryDirectory() as tmp:
        out = str(Path(tmp) / "seconds.json")
        procs = [ctx.Process(target=_rank, args=(r, world, port, args, out)) for r in range(world)]
        for p in procs:
            p.start()
        for p in procs:
            p.join()
        if any(p.exitcode != 0 for p in procs):
            raise RuntimeError(f"{world} rank(s): exit codes {[p.exitcode for p in procs]}")
        seconds = json.loads(Path(out).read_text())
    epoch = statistics.median(seconds[1:] if len(seconds) > 1 else seconds)
    return {"ranks": world, "epoch_seconds": epoch, "samples_per_second": args["size"] / epoch}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument(
        "--ranks", type=int, nargs="+", default=None, help="default: 1 and 2 on CPU, 1 .. all GPUs"
    )
    p.add_argument("--size", type=int, default=8000, help="images in the training set")
    p.add_argument("--batch-size", type=int, default=100, help="images a rank takes per step")
    p.add_argument("--epochs", type=int, default=4)
    p.add_argument("--threads", type=int, default=1, help="torch threads per rank")
    p.add_argument("--no-test", action="store_true", help="skip the cuda-marked test")
    p.add_argument("--json", default=None, help="write the figures here")
    a = p.parse_args()
    if a.device == "cuda" and not torch.cuda.is_available():
        sys.exit("bench/ddp.py: --device cuda, but no CUDA device is available")
    ranks = a.ranks or (
        [1, 2] if a.device == "cpu" else list(range(1, torch.cuda.device_count() + 1))
    )
    if 1 not in ranks:
        ranks = [1, *ranks]
    args = {k: getattr(a, k) for k in ("device", "size", "batch_size", "epochs", "threads")}
    rows = [measure(n, args) for n in ranks]
    base = rows[0]["samples_per_second"]
    for row in rows:
        row["efficiency"] = row["samples_per_second"] / (row["ranks"] * base)
    print(
        f"# {a.device} ({torch.cuda.get_device_name() if a.device == 'cuda' else platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} cores), torch {torch.__version__}, batch {a.batch_size} a rank, "
        f"{a.size} images, {a.threads} thread(s) a rank"
    )
    print("| ranks | epoch (s) | samples/s | scaling efficiency |")
    print("|---|---|---|---|")
    for row in rows:
        print(
            f"| {row['ranks']} | {row['epoch_seconds']:.3f} | {row['samples_per_second']:.0f} "
            f"| {row['efficiency']:.2f} |"
        )
    result = {"device": a.device, "settings": args, "rows": rows}
    if a.json:
        Path(a.json).write_text(json.dumps(result, indent=2))
    if a.device == "cuda" and not a.no_test:
        root = Path(__file__).resolve().parents[1]
        test = root / "tests" / "train" / "test_distributed.py"
        code = subprocess.call([sys.executable, "-m", "pytest", "-q", "-m", "cuda", str(test)])
        print(f"cuda-marked DDP test: exit code {code}")


if __name__ == "__main__":
    main()
