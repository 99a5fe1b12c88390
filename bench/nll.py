"""Test NLL after a fixed budget, for one or more variants, beside the hand-written loop.

Every model has the same architecture, initial weights (seed), data order and budget, and is
scored by ``evaluate.log_likelihood`` (IWAE bound, k draws) on the test split. NLL is -log p(x)
in nats per datapoint: lower is better.

* ``--data mnist10k`` (default): the 8,000/2,000 split of the real MNIST test images, dynamic
  binarisation for training, the test images binarised once (seed 1), Bernoulli likelihood, MLP
  784-512-d, batch 100; ``--reference`` adds the hand-written PyTorch loop (vae only).
* ``--data tree``: the branching-diffusion tree data of the Poincare VAE paper, Gaussian
  likelihood (sigma 1), MLP 50-200-d, batch 64.

    python bench/nll.py --variant vae --reference --epochs 50 --data-root ../shared/data
    python bench/nll.py --variant vae svae --latent-dim 5 --epochs 50
    python bench/nll.py --data tree --variant vae pvae --latent-dim 2 --epochs 200
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import handwritten

import pyro_vaes as pv


@dataclass(frozen=True)
class Setting:
    """How one dataset is trained and scored."""

    load: Callable[[str], tuple[torch.Tensor, torch.Tensor]]  # root -> (train, test)
    transform: Callable[[torch.Tensor], torch.Tensor] | None
    likelihood: str
    hidden: tuple[int, ...]
    batch_size: int
    latent_dim: int


def _mnist10k(root: str) -> tuple[torch.Tensor, torch.Tensor]:
    splits = pv.data.load("mnist10k", root)
    return splits.x_train, pv.data.binarize(splits.x_test, seed=1)


def _tree(root: str) -> tuple[torch.Tensor, torch.Tensor]:
    splits = pv.data.load("tree")
    return splits.x_train, splits.x_test


SETTINGS = {
    "mnist10k": Setting(_mnist10k, pv.data.dynamic_binarize, "bernoulli", (512,), 100, 16),
    "tree": Setting(_tree, None, "gaussian", (200,), 64, 2),
}


def nll(model: torch.nn.Module, x_test: torch.Tensor, k: int) -> float:
    model.eval()
    return -float(pv.evaluate.log_likelihood(model.model, model.guide, x_test, k).mean())


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", choices=sorted(SETTINGS), default="mnist10k")
    p.add_argument("--variant", nargs="+", default=["vae"], choices=sorted(pv.variants.registry))
    p.add_argument("--latent-dim", type=int, default=None, help="default: 16 (mnist10k), 2 (tree)")
    p.add_argument(
        "--hidden", type=int, nargs="+", default=None, help="encoder widths (default: 512)"
    )
    p.add_argument("--epochs", type=int, default=50)
    p.add_argument("--num-samples", type=int, default=5000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--data-root", default="../shared/data")
    p.add_argument("--reference", action="store_true", help="add the hand-written loop (mnist10k)")
    p.add_argument("--json", default=None)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    setting = SETTINGS[args.data]
    latent_dim = args.latent_dim or setting.latent_dim
    x_train, x_test = setting.load(args.data_root)
    rows: list[dict[str, object]] = []

    if args.reference:
        if args.data != "mnist10k":
            raise SystemExit("the hand-written reference is the Bernoulli VAE on mnist10k")
        ref = handwritten.reference_vae(tuple(x_train.shape[1:]), args.seed)
        opt = torch.optim.Adam(ref.parameters(), lr=1e-3)
        torch.manual_seed(args.seed)
        for _ in range(args.epochs):
            handwritten.train_epoch(ref, x_train, opt, 100, pv.data.dynamic_binarize)
        rows.append({"model": "hand-written loop (vae)", "nll": nll(ref, x_test, args.num_samples)})

    for name in args.variant:
        torch.manual_seed(args.seed)
        model = pv.variants.build(
            name,
            tuple(x_train.shape[1:]),
            latent_dim=latent_dim,
            hidden=tuple(args.hidden) if args.hidden else setting.hidden,
            likelihood=setting.likelihood,
        )
        pv.variants.registry[name].fit(
            model,
            x_train,
            epochs=args.epochs,
            batch_size=setting.batch_size,
            transform=setting.transform,
            seed=args.seed,
            device="cpu",
            progress=False,
        )
        rows.append(
            {"model": f"pyro_vaes.fit ({name})", "nll": nll(model, x_test, args.num_samples)}
        )

    print(
        f"{args.data}, latent dim {latent_dim}, hidden {args.hidden or setting.hidden}, "
        f"{args.epochs} epochs, IWAE k={args.num_samples}, "
        f"seed {args.seed}\n"
    )
    print("| model | test NLL (nats) |\n|---|---|")
    for r in rows:
        print(f"| {r['model']} | {r['nll']:.2f} |")
    if args.json:
        Path(args.json).write_text(json.dumps({"args": vars(args), "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
