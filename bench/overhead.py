"""The cost of a step: ``pyro_vaes.fit`` (captured, eager, compiled) against a hand-written loop
and plain Pyro SVI, side by side in one process; and the cost of the importance-sampled
log-likelihood against the bare decoder forward passes on the same draws.

Two models, as in the README:

* **tiny**: 8-dimensional binary data (3,200 points), a 2-dimensional latent, hidden width 8,
  batch 32, one thread. The compute is negligible, so a step costs what the framework costs.
* **reference**: the MLP 784-512-16 VAE, batch 100, on the mnist10k training split (8,000
  images), ``--threads`` threads (default 2).

The loops run interleaved, round after round; figures are medians over epochs, with the fastest
epoch of each loop beside them (for ``fit``, its per-epoch history, which leaves out the checks
before the first epoch; the first epochs of each fit, which hold its first ``CAPTURE_AFTER``
eager steps and the capture or the compilation, are left out too), and ratios are to the
hand-written loop (the textbook loop with the analytic KL and ``torch.optim.Adam``).

    python bench/overhead.py --data-root ../shared/data            # both models, then the LL
    python bench/overhead.py --models tiny --ll-samples 0
    python bench/overhead.py --device cuda --models conv             # the GPU path (32x32, b128)
"""

from __future__ import annotations

import argparse
import functools
import json
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyro
import pyro.infer
import pyro.optim
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
import handwritten

import pyro_vaes as pv
from pyro_vaes.train.fit import resolve_device
from pyro_vaes.train.step import CAPTURE_AFTER


def svi_epoch(svi: pyro.infer.SVI, x: torch.Tensor, batch_size: int) -> float:
    start = time.perf_counter()
    perm = torch.randperm(x.shape[0], device=x.device)
    for i in range(0, x.shape[0], batch_size):
        svi.step(x[perm[i : i + batch_size]])
    return time.perf_counter() - start


def plain_functions(vae: pv.VAE, name: str) -> tuple[Callable[..., Any], Callable[..., Any]]:
    """The VAE's model and guide as plain Pyro functions (``pyro.module`` inside)."""

    def model(x):
        pyro.module(name, vae)
        vae.model(x)

    def guide(x):
        pyro.module(name, vae)
        vae.guide(x)

    return model, guide


def compare(
    build: Callable[[], pv.VAE],
    x: torch.Tensor,
    batch_size: int,
    rounds: int,
    epochs: int,
    sync: Callable[[], None],
) -> dict[str, list[float]]:
    """Seconds per epoch of every loop, ``epochs`` epochs a round, interleaved. Every fit first
    runs the epochs that hold its first CAPTURE_AFTER + 1 steps (eager, then the capture or the
    compilation), which are left out: the figures are the steady state."""
    steps = -(-x.shape[0] // batch_size)
    warmup = -(-(CAPTURE_AFTER + 1) // steps)
    hand, default, eager, compiled, plain_vae, svi_vae, like_for_like = (build() for _ in range(7))
    hand_opt = torch.optim.Adam(hand.parameters(), lr=1e-3)
    plain = plain_functions(plain_vae, "plain")
    svi = pyro.infer.SVI(
        *plain_functions(svi_vae, "svi"), pyro.optim.Adam({"lr": 1e-3}), pyro.infer.Trace_ELBO()
    )
    adam = functools.partial(torch.optim.Adam, lr=1e-3)
    # (row, model, guide, optim, compile, capture)
    fits: list[tuple[str, Any, Any, Any, bool, bool]] = [
        (
            "pyro_vaes.fit, defaults (fused Adam, captured)",
            default.model,
            default.guide,
            None,
            False,
            True,
        ),
        (
            "pyro_vaes.fit, capture=False (Pyro's handlers every step)",
            eager.model,
            eager.guide,
            None,
            False,
            False,
        ),
        (
            "pyro_vaes.fit, optim=torch.optim.Adam",
            like_for_like.model,
            like_for_like.guide,
            adam,
            False,
            True,
        ),
        ("pyro_vaes.fit, compile=True", compiled.model, compiled.guide, None, True, True),
        ("pyro_vaes.fit on plain Pyro functions", *plain, None, False, True),
    ]
    times: dict[str, list[float]] = {"hand-written, torch.optim.Adam": []}
    times.update({row[0]: [] for row in fits})
    times["Pyro SVI + Trace_ELBO"] = []
    for r in range(rounds):
        for _ in range(epochs):
            times["hand-written, torch.optim.Adam"].append(
                handwritten.train_epoch(hand, x, hand_opt, batch_size)
            )
            sync()
        for name, model, guide, optim, compile, capture in fits:
            history = pv.fit(
                model,
                guide,
                x,
                epochs=warmup + epochs,
                optim=optim,
                batch_size=batch_size,
                device=x.device,
                progress=False,
                compile=compile,
                capture=capture,
            )
            sync()
            times[name] += history.seconds[warmup:]
        for _ in range(epochs):
            times["Pyro SVI + Trace_ELBO"].append(svi_epoch(svi, x, batch_size))
            sync()
        print(f"  round {r + 1}/{rounds} done", file=sys.stderr)
    return times


def report(title: str, times: dict[str, list[float]], steps: int) -> dict[str, Any]:
    """Medians over epochs, and the fastest epoch (noise on a shared machine only adds time,
    so the fastest epochs are the least disturbed), with their ratios to the hand loop's."""
    hand = times["hand-written, torch.optim.Adam"]
    base, best_base = statistics.median(hand), min(hand)
    print(f"\n{title}\n| loop | per step | ratio | fastest epoch: per step | ratio |")
    print("|---|---|---|---|---|")
    rows = {}
    for k, v in times.items():
        med, best = statistics.median(v), min(v)
        rows[k] = {
            "us_per_step": med / steps * 1e6,
            "ratio": med / base,
            "best_us_per_step": best / steps * 1e6,
            "best_ratio": best / best_base,
            "epochs": len(v),
        }
        print(
            f"| {k} | {med / steps * 1e6:.0f} µs | {med / base:.2f}x "
            f"| {best / steps * 1e6:.0f} µs | {best / best_base:.2f}x |"
        )
    return rows


def tiny_vae() -> pv.VAE:
    return pv.variants.build("vae", (8,), latent_dim=2, hidden=(8,))


def conv_vae() -> pv.VAE:
    return pv.variants.build("vae", (1, 32, 32), latent_dim=16, net="conv")


@torch.no_grad()
def bare_decoder_seconds(vae: pv.VAE, x: torch.Tensor, k: int, chunk: int, batch: int) -> float:
    """The decoder's forward passes, and the likelihood's log density, on draws of q shaped as
    ``evaluate.log_likelihood`` takes them (``chunk`` draws x ``batch`` images at a time)."""
    start = time.perf_counter()
    for i in range(0, x.shape[0], batch):
        xb = x[i : i + batch]
        q = vae.posterior(vae.encoder(xb))
        for _ in range(0, k, chunk):
            z = q.rsample((chunk,))
            F.binary_cross_entropy_with_logits(
                vae.decoder(z), xb.expand(chunk, *xb.shape), reduction="none"
            ).sum(-1)
    return time.perf_counter() - start


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data-root", default="../shared/data")
    p.add_argument("--models", nargs="+", default=["tiny", "reference"])
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--epochs-per-round", type=int, default=2)
    p.add_argument("--threads", type=int, default=2, help="threads of the reference model")
    p.add_argument("--device", default="cpu")
    p.add_argument("--ll-samples", type=int, default=5000, help="0 skips the log-likelihood")
    p.add_argument("--json", default=None, help="write the figures here")
    args = p.parse_args()
    dev = resolve_device(args.device)
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    result: dict[str, Any] = {
        "machine": f"{platform.processor() or platform.machine()}, {dev}",
        "torch": torch.__version__,
        "pyro": pyro.__version__,
    }
    torch.manual_seed(0)
    if "tiny" in args.models:
        torch.set_num_threads(1)
        x = torch.bernoulli(torch.rand(3200, 8)).to(dev)
        times = compare(tiny_vae, x, 32, args.rounds, args.epochs_per_round, sync)
        result["tiny"] = report("tiny model, batch 32, 1 thread", times, 100)
    splits = None
    if "reference" in args.models or args.ll_samples:
        splits = pv.data.load("mnist10k", args.data_root).map(pv.data.binarize)
    if "reference" in args.models:
        assert splits is not None
        torch.set_num_threads(args.threads)
        x = splits.x_train.to(dev)

        def build() -> pv.VAE:
            return handwritten.reference_vae(splits.shape)

        times = compare(build, x, 100, args.rounds, args.epochs_per_round, sync)
        steps = -(-x.shape[0] // 100)
        title = f"reference model, batch 100, {args.threads} threads"
        result["reference"] = report(title, times, steps)
    if "conv" in args.models:
        x = torch.bernoulli(torch.rand(12800, 1, 32, 32)).to(dev)
        times = compare(conv_vae, x, 128, args.rounds, args.epochs_per_round, sync)
        rows = report("conv VAE, 32x32, batch 128", times, 100)
        for row in rows.values():
            row["samples_per_s"] = 128 / (row["us_per_step"] * 1e-6)
            print(f"  {row['samples_per_s']:.0f} samples/s")
        result["conv"] = rows
    if args.ll_samples:
        assert splits is not None
        torch.set_num_threads(args.threads)
        vae = handwritten.reference_vae(splits.shape).to(dev)
        pv.fit(vae.model, vae.guide, splits.x_train, epochs=2, device=dev, progress=False)
        vae.eval()
        x_test = splits.x_test.to(dev)
        bare = bare_decoder_seconds(vae, x_test, args.ll_samples, 100, 100)
        sync()
        start = time.perf_counter()
        ll = pv.evaluate.log_likelihood(vae.model, vae.guide, x_test, args.ll_samples)
        sync()
        secs = time.perf_counter() - start
        bare_again = bare_decoder_seconds(vae, x_test, args.ll_samples, 100, 100)
        sync()
        bare = min(bare, bare_again)
        result["log_likelihood"] = {
            "k": args.ll_samples,
            "images": len(x_test),
            "seconds": secs,
            "bare_decoder_seconds": bare,
            "ratio": secs / bare,
            "mean_nats": float(ll.mean()),
        }
        print(
            f"\nlog_likelihood k={args.ll_samples} on {len(x_test)} images: {secs:.1f} s; the "
            f"bare decoder passes and log densities on the same draws: {bare:.1f} s "
            f"({secs / bare:.2f}x)"
        )
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
