"""MIG and FactorVAE score of variants trained on the procedural sprites, at equal budget.

Every model has the same architecture (MLP 1024-512-256-d, Bernoulli likelihood), initial weights
(per seed), data order and number of steps. All 4,608 sprites are trained on and scored, as is
usual for these metrics: the codes are the posterior means. Means and standard deviations over
seeds; higher is better for both scores.

    python bench/disentanglement.py --variant vae beta_tcvae --epochs 60 --seeds 0 1 2
    python bench/disentanglement.py --variant hfvae beta_tcvae --epochs 60 --seeds 0 1 2 --threads 1

``hfvae`` trains on its registered objective (``HierarchicalTCELBO``: MI, TC between groups, TC
within groups and dimension-wise KL weighted 1, 6, 2, 1), with the 10 latent dimensions in five
groups of two, one per generative factor of the sprites.

``--pictures DIR`` also writes a latent traversal grid per variant (first seed).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch

import pyro_vaes as pv


def codes(model: torch.nn.Module, x: torch.Tensor, batch_size: int = 1024) -> torch.Tensor:
    model.eval()
    with torch.no_grad():
        return torch.cat([model.encode(b) for b in pv.data.batches(x, batch_size)])


def factor_vae(z: torch.Tensor, factors: torch.Tensor, seed: int) -> float:
    """The FactorVAE score, NaN when every code dimension has collapsed to the prior."""
    try:
        return pv.metrics.factor_vae_score(z, factors, seed=seed)
    except ValueError:
        return float("nan")


def traversal(model: torch.nn.Module, z: torch.Tensor, path: Path, title: str) -> None:
    """Decoded traversals from the code of one sprite: a row per latent dimension, -2.5 to 2.5."""
    path.parent.mkdir(parents=True, exist_ok=True)
    walk = pv.geometry.traverse(pv.geometry.Euclidean(), z[1000], torch.linspace(-2.5, 2.5, 9))
    with torch.no_grad():
        images = model.likelihood.mean(model.decoder(walk.reshape(-1, z.shape[1])))
    pv.plots.save_image_grid(images, path, f"{title}: one row per latent dimension", ncol=9)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--variant", nargs="+", default=["vae", "beta_tcvae"])
    p.add_argument("--epochs", type=int, default=60)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--latent-dim", type=int, default=10)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--json", default=None)
    p.add_argument(
        "--pictures", default=None, help="folder for latent traversals of each variant (seed 0)"
    )
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    data = pv.sprites.generate()
    x, factors = data.images, data.factors
    rows = []
    for name in args.variant:
        variant = pv.variants.registry[name]
        runs = []
        for seed in args.seeds:
            torch.manual_seed(seed)
            model = pv.variants.build(
                name, tuple(x.shape[1:]), latent_dim=args.latent_dim, hidden=(512, 256)
            )
            start = time.perf_counter()
            history = variant.fit(
                model,
                x,
                epochs=args.epochs,
                batch_size=args.batch_size,
                seed=seed,
                device="cpu",
                progress=False,
            )
            z = codes(model, x)
            if args.pictures and seed == args.seeds[0]:
                traversal(model, z, Path(args.pictures) / f"traversal_{name}.png", name)
            runs.append(
                {
                    "seed": seed,
                    "mig": pv.metrics.mig(z, factors),
                    "factor_vae": factor_vae(z, factors, seed),
                    "loss": history.loss[-1],
                    "seconds": time.perf_counter() - start,
                }
            )
            print(name, runs[-1], flush=True)
        rows.append({"variant": name, "runs": runs})

    print(
        f"\nsprites (4,608 images, 32x32), latent dim {args.latent_dim}, {args.epochs} epochs of "
        f"batch {args.batch_size}, seeds {args.seeds}\n"
    )
    print("| variant | MIG | FactorVAE score |\n|---|---|---|")
    for r in rows:
        cells = []
        for key in ("mig", "factor_vae"):
            vals = [run[key] for run in r["runs"]]
            sd = statistics.stdev(vals) if len(vals) > 1 else 0.0
            cells.append(f"{statistics.mean(vals):.3f} +- {sd:.3f}")
        print(f"| `{r['variant']}` | {' | '.join(cells)} |")
    if args.json:
        Path(args.json).write_text(json.dumps({"args": vars(args), "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
