"""Conditional and semi-supervised models on mnist10k: M2's test error with few labels, and the
CVAE's log p(x | y) beside the VAE's log p(x) at equal budget.

* M2 (Kingma et al. 2014): ``--labels`` labelled training images (an equal number per class,
  chosen with the seed), every other training image unlabelled (``-1``); the test error of
  argmax q(y | x) on the 2,000 test images. The paper: 11.97% with 100 labels on the 50,000
  MNIST training images (Table 1); here there are 8,000.
* CVAE against VAE: the same MLP (784-512-d), epochs, batches and seed; the test NLL in nats
  (importance-sampled, k draws), -log p(x | y) for the CVAE and -log p(x) for the VAE.

Training images are binarised dynamically, test images once (seed 1).

    python bench/conditional.py --epochs 30 --labels 100 --data-root ../shared/data
"""

from __future__ import annotations

import argparse
import time

import torch

import pyro_vaes as pv


def labelled_subset(y: torch.Tensor, n: int, num_classes: int, seed: int) -> torch.Tensor:
    """``y`` with all but ``n // num_classes`` labels of each class set to -1 (missing)."""
    gen = torch.Generator().manual_seed(seed)
    kept = torch.full_like(y, -1)
    for k in range(num_classes):
        idx = (y == k).nonzero()[:, 0]
        pick = idx[torch.randperm(len(idx), generator=gen)[: n // num_classes]]
        kept[pick] = k
    return kept


def fit(name: str, data: object, args: argparse.Namespace, **options: object) -> torch.nn.Module:
    torch.manual_seed(args.seed)
    model = pv.variants.build(
        name, (1, 28, 28), latent_dim=args.latent_dim, hidden=(args.hidden,), **options
    )
    start = time.perf_counter()
    pv.variants.registry[name].fit(
        model,
        data,
        epochs=args.epochs,
        batch_size=100,
        transform=pv.data.dynamic_binarize,
        seed=args.seed,
        device="cpu",
        progress=not args.quiet,
    )
    print(f"  {name}: {time.perf_counter() - start:.0f} s", flush=True)
    return model.eval()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--epochs", type=int, default=30, help="epochs of every model (default: 30)")
    p.add_argument("--labels", type=int, default=100, help="M2's labelled images (default: 100)")
    p.add_argument("--alpha", type=float, default=50.0, help="M2's alpha (default: 50)")
    p.add_argument(
        "--repeat-labelled",
        type=int,
        default=1,
        help="M2's labelled images appear this many times in the training set, so that most "
        "batches hold some, as in Pyro's SS-VAE example's supervised batches (default: 1)",
    )
    p.add_argument("--latent-dim", type=int, default=16, help="size of z (default: 16)")
    p.add_argument("--hidden", type=int, default=512, help="hidden width (default: 512)")
    p.add_argument("--num-samples", type=int, default=1000, help="IWAE draws (default: 1000)")
    p.add_argument("--seed", type=int, default=0, help="seed (default: 0)")
    p.add_argument("--threads", type=int, default=2, help="torch threads (default: 2)")
    p.add_argument("--only", choices=["m2", "cvae"], default=None, help="one half (default: both)")
    p.add_argument("--data-root", default="../shared/data", help="mnist10k's folder")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    s = pv.data.load("mnist10k", args.data_root)
    x_test = pv.data.binarize(s.x_test, seed=1)
    rows = []
    if args.only in (None, "m2"):
        y = labelled_subset(s.y_train, args.labels, 10, args.seed)
        known = y >= 0
        x_l, y_l = s.x_train[known], y[known]
        r = args.repeat_labelled - 1
        x_m2 = torch.cat([s.x_train, x_l.repeat(r, 1, 1, 1)])
        y_m2 = torch.cat([y, y_l.repeat(r)])
        m2 = fit("m2", (x_m2, y_m2), args, alpha=args.alpha)
        error = float((m2.predict(x_test) != s.y_test).float().mean())
        rows.append(
            f"| m2, {args.labels} labels (x{args.repeat_labelled}), alpha {args.alpha:g} "
            f"| test error {100 * error:.2f}% |"
        )
    if args.only in (None, "cvae"):
        k = args.num_samples
        for name, test in (("vae", x_test), ("cvae", (x_test, s.y_test))):
            model = fit(name, (s.x_train, s.y_train), args)
            nll = -float(pv.evaluate.log_likelihood(model.model, model.guide, test, k).mean())
            what = "-log p(x | y)" if name == "cvae" else "-log p(x)"
            rows.append(f"| {name} | test {what} = {nll:.2f} nats (k={k}) |")
    print(
        f"\nmnist10k, MLP 784-{args.hidden}-{args.latent_dim}, {args.epochs} epochs, "
        f"seed {args.seed}\n\n| model | result |\n|---|---|"
    )
    print("\n".join(rows))


if __name__ == "__main__":
    main()
