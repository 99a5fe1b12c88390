"""Test NLL on mnist10k after a fixed budget, for one or more variants, beside the hand-written
loop at the same budget.

Every model has the reference architecture (MLP 784-512-16) and the same initial weights (seed),
trains on the 8,000 training images with dynamic binarisation, Adam 1e-3, batch 100, and is
scored by ``evaluate.log_likelihood`` (IWAE bound, k draws) on the 2,000 test images binarised
once with a fixed seed. NLL is -log p(x) in nats per image: lower is better.

    python bench/nll.py --variant vae --epochs 50 --data-root ../shared/data
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import handwritten

import pyro_vaes as pv


def nll(model: torch.nn.Module, x_test: torch.Tensor, k: int) -> float:
    model.eval()
    return -float(pv.evaluate.log_likelihood(model.model, model.guide, x_test, k).mean())


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--variant", nargs="+", default=["vae"], choices=sorted(pv.variants.registry))
    p.add_argument("--epochs", type=int, default=50)
    p.add_argument("--num-samples", type=int, default=5000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--data-root", default="../shared/data")
    p.add_argument("--no-reference", action="store_true", help="skip the hand-written loop")
    p.add_argument("--json", default=None)
    args = p.parse_args()
    torch.set_num_threads(args.threads)

    splits = pv.data.load("mnist10k", args.data_root)
    x_train, x_test = splits.x_train, pv.data.binarize(splits.x_test, seed=1)
    rows: list[dict[str, object]] = []

    if not args.no_reference:
        ref = handwritten.reference_vae(splits.shape, args.seed)
        opt = torch.optim.Adam(ref.parameters(), lr=1e-3)
        torch.manual_seed(args.seed)
        start = time.perf_counter()
        for _ in range(args.epochs):
            handwritten.train_epoch(ref, x_train, opt, 100, pv.data.dynamic_binarize)
        rows.append(
            {
                "model": "hand-written loop (vae)",
                "train_s": time.perf_counter() - start,
                "nll": nll(ref, x_test, args.num_samples),
            }
        )

    for name in args.variant:
        torch.manual_seed(args.seed)
        model = pv.variants.build(name, splits.shape, latent_dim=16, hidden=(512,))
        start = time.perf_counter()
        pv.fit(
            model.model,
            model.guide,
            x_train,
            epochs=args.epochs,
            batch_size=100,
            transform=pv.data.dynamic_binarize,
            seed=args.seed,
            device="cpu",
            progress=False,
        )
        rows.append(
            {
                "model": f"pyro_vaes.fit ({name})",
                "train_s": time.perf_counter() - start,
                "nll": nll(model, x_test, args.num_samples),
            }
        )

    print(f"mnist10k, {args.epochs} epochs, IWAE k={args.num_samples}, seed {args.seed}\n")
    print("| model | test NLL (nats) |\n|---|---|")
    for r in rows:
        print(f"| {r['model']} | {r['nll']:.2f} |")
    if args.json:
        Path(args.json).write_text(json.dumps({"args": vars(args), "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
