"""Per-epoch cost of ``pyro_vaes.fit`` against a hand-written PyTorch loop and plain Pyro SVI.

The reference VAE (MLP 784-512-16, ReLU, Bernoulli logits, Adam 1e-3, batch 100) on the mnist10k
training split (8,000 images), 2 threads. The three loops run interleaved, round after round, in
one process; the figures are medians over rounds and the ratios are to the hand-written loop.
Then ``evaluate.log_likelihood`` with k=5000 on the 2,000 test images: seconds and peak memory.

    python bench/overhead.py --data-root ../shared/data
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import statistics
import sys
import time
from pathlib import Path

import pyro
import pyro.infer
import pyro.optim
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import handwritten

import pyro_vaes as pv
from pyro_vaes.train.fit import resolve_device


def svi_epoch(vae: pv.VAE, svi: pyro.infer.SVI, x: torch.Tensor, batch_size: int) -> float:
    start = time.perf_counter()
    perm = torch.randperm(x.shape[0])
    for i in range(0, x.shape[0], batch_size):
        svi.step(x[perm[i : i + batch_size]])
    return time.perf_counter() - start


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data-root", default="../shared/data")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--epochs-per-round", type=int, default=2)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--device", default="cpu")
    p.add_argument("--ll-samples", type=int, default=5000, help="0 skips the log-likelihood timing")
    p.add_argument("--json", default=None, help="write the figures here")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    dev = resolve_device(args.device)

    splits = pv.data.load("mnist10k", args.data_root).map(pv.data.binarize)
    x, x_test = splits.x_train.to(dev), splits.x_test
    hand = handwritten.reference_vae(splits.shape).to(dev)
    hand_fused = handwritten.reference_vae(splits.shape).to(dev)
    ours = handwritten.reference_vae(splits.shape).to(dev)
    ours_plain_adam = handwritten.reference_vae(splits.shape).to(dev)
    plain = handwritten.reference_vae(splits.shape).to(dev)
    hand_opt = torch.optim.Adam(hand.parameters(), lr=1e-3)
    hand_fused_opt = torch.optim.Adam(hand_fused.parameters(), lr=1e-3, fused=True)

    def model(xb):
        pyro.module("vae", plain)
        plain.model(xb)

    def guide(xb):
        pyro.module("vae", plain)
        plain.guide(xb)

    svi = pyro.infer.SVI(model, guide, pyro.optim.Adam({"lr": 1e-3}), pyro.infer.Trace_ELBO())
    fits = {
        "pyro_vaes.fit (defaults: fused Adam)": (ours, None),
        "pyro_vaes.fit, optim=torch.optim.Adam": (ours_plain_adam, torch.optim.Adam),
    }
    times: dict[str, list[float]] = {
        "hand-written": [],
        "hand-written, fused Adam": [],
        **{k: [] for k in fits},
        "pyro SVI": [],
    }
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    for _ in range(args.rounds):
        for _ in range(args.epochs_per_round):
            times["hand-written"].append(handwritten.train_epoch(hand, x, hand_opt, 100))
            sync()
            times["hand-written, fused Adam"].append(
                handwritten.train_epoch(hand_fused, x, hand_fused_opt, 100)
            )
            sync()
        for name, (vae, optim) in fits.items():
            history = pv.fit(
                vae.model,
                vae.guide,
                x,
                epochs=args.epochs_per_round,
                optim=optim,
                batch_size=100,
                device=dev,
                progress=False,
            )
            sync()
            times[name] += history.seconds
        for _ in range(args.epochs_per_round):
            times["pyro SVI"].append(svi_epoch(plain, svi, x, 100))
            sync()
    base = statistics.median(times["hand-written"])
    result: dict[str, object] = {
        "machine": f"{platform.processor() or platform.machine()}, {args.threads} threads, {dev}",
        "torch": torch.__version__,
        "pyro": pyro.__version__,
        "seconds_per_epoch": {k: statistics.median(v) for k, v in times.items()},
        "ratio_to_hand_written": {k: statistics.median(v) / base for k, v in times.items()},
    }
    print("| loop | s/epoch (median) | ratio |\n|---|---|---|")
    for k, v in times.items():
        print(f"| {k} | {statistics.median(v):.3f} | {statistics.median(v) / base:.2f}x |")

    if args.ll_samples:
        ours.eval()
        peak_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        start = time.perf_counter()
        ll = pv.evaluate.log_likelihood(ours.model, ours.guide, x_test, args.ll_samples)
        sync()
        secs = time.perf_counter() - start
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        if dev.type == "cuda":
            peak = torch.cuda.max_memory_allocated() / 2**20
        result["log_likelihood"] = {
            "k": args.ll_samples,
            "images": len(x_test),
            "seconds": secs,
            "peak_memory_mib": peak,
            "peak_rss_before_mib": peak_before,
            "mean_nats": float(ll.mean()),
        }
        print(
            f"\nlog_likelihood k={args.ll_samples} on {len(x_test)} images: {secs:.1f} s, "
            f"peak {'GPU memory' if dev.type == 'cuda' else 'RSS'} {peak:.0f} MiB "
            f"(process peak before it: {peak_before:.0f} MiB), "
            f"mean {float(ll.mean()):.2f} nats (after {len(times['hand-written'])} epochs)"
        )
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
