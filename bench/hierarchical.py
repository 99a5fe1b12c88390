"""Test NLL of the deep hierarchical VAEs (lvae, nvae) against the VAE at equal budget.

mnist10k: the 10,000 real MNIST test images split 8,000/2,000, with 10% of the 8,000 (800
images) held out as the validation split; dynamic binarisation for training, the validation and
test images binarised once (seeds 2 and 1). Every model gets the same epochs, batch size (100),
data order and seed, its variant's own objective and schedule (KL warm-up, and for nvae spectral
regularisation and KL balancing). Model choice on the validation split alone: every
``--val-every`` epochs the validation NLL (k = ``--val-samples``) is measured and the state of
the best epoch is kept; that state is scored once on the test split with
``evaluate.log_likelihood`` (IWAE bound, k = ``--num-samples``, as ``bench/nll.py``). NLL is
-log p(x) in nats per datapoint: lower is better.

    python bench/hierarchical.py --epochs 30 --num-samples 1000 --threads 1
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from nll import SETTINGS, nll

import pyro_vaes as pv
from pyro_vaes.train.callbacks import Callback, FitState

#: the variants compared, and their options (the VAE as in bench/nll.py)
MODELS: dict[str, dict[str, Any]] = {
    "vae": {"latent_dim": 16, "hidden": (512,)},
    "lvae": {"latent_dim": 16, "groups": 3, "hidden": (256,)},
    "nvae": {"latent_dim": 16, "groups": 3, "hidden": (256,), "cells": 1},
}


class KeepBest(Callback):
    """Every ``every`` epochs (and at the last), the validation NLL; keeps the best state."""

    def __init__(self, model: torch.nn.Module, x_val: torch.Tensor, every: int, k: int) -> None:
        self.model, self.x_val, self.every, self.k = model, x_val, every, k
        self.best = float("inf")
        self.best_epoch = 0
        self.state: dict[str, torch.Tensor] | None = None
        self.curve: list[tuple[int, float]] = []

    def on_epoch_end(self, state: FitState) -> None:
        if state.epoch % self.every and state.epoch != state.epochs:
            return
        value = nll(self.model, self.x_val, self.k)
        self.model.train()
        self.curve.append((state.epoch, value))
        if value < self.best:
            self.best, self.best_epoch = value, state.epoch
            self.state = copy.deepcopy(self.model.state_dict())


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--variant", nargs="+", default=list(MODELS), choices=sorted(MODELS))
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--num-samples", type=int, default=5000)
    p.add_argument("--val-every", type=int, default=5)
    p.add_argument("--val-samples", type=int, default=100)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--data-root", default="../shared/data")
    p.add_argument("--json", default=None)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    setting = SETTINGS["mnist10k"]
    splits = pv.data.load("mnist10k", args.data_root, val_fraction=0.1)
    assert splits.x_val is not None
    x_train = splits.x_train
    x_val = pv.data.binarize(splits.x_val, seed=2)
    x_test = pv.data.binarize(splits.x_test, seed=1)
    rows: list[dict[str, Any]] = []
    for name in args.variant:
        torch.manual_seed(args.seed)
        model = pv.variants.build(
            name, tuple(x_train.shape[1:]), likelihood=setting.likelihood, **MODELS[name]
        )
        keep = KeepBest(model, x_val, args.val_every, args.val_samples)
        start = time.perf_counter()
        pv.variants.registry[name].fit(
            model,
            x_train,
            epochs=args.epochs,
            batch_size=setting.batch_size,
            transform=setting.transform,
            seed=args.seed,
            device="cpu",
            progress=False,
            callbacks=[keep],
        )
        seconds = time.perf_counter() - start
        assert keep.state is not None
        model.load_state_dict(keep.state)
        start = time.perf_counter()
        test = nll(model, x_test, args.num_samples)
        rows.append(
            {
                "model": name,
                "options": {
                    k: list(v) if isinstance(v, tuple) else v for k, v in MODELS[name].items()
                },
                "parameters": sum(q.numel() for q in model.parameters()),
                "train_seconds": seconds,
                "best_epoch": keep.best_epoch,
                "val_nll": keep.best,
                "val_curve": keep.curve,
                "test_nll": test,
                "eval_seconds": time.perf_counter() - start,
            }
        )
        print(json.dumps(rows[-1]), flush=True)

    print(
        f"\nmnist10k (7,200 train / 800 validation / 2,000 test), {args.epochs} epochs, batch "
        f"{setting.batch_size}, IWAE k={args.num_samples}, seed {args.seed}, "
        f"{args.threads} thread(s)\n"
    )
    print("| model | parameters | s/epoch | best epoch (val) | val NLL | test NLL (nats) |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| `{r['model']}` | {r['parameters']:,} | {r['train_seconds'] / args.epochs:.1f} | "
            f"{r['best_epoch']} | {r['val_nll']:.2f} | {r['test_nll']:.2f} |"
        )
    if args.json:
        Path(args.json).write_text(json.dumps({"args": vars(args), "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
