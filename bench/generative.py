"""Reconstruction error and sample quality of the autoencoder variants, at equal budget.

mnist10k (the 8,000/2,000 split of the real MNIST test images, dynamic binarisation for
training, the test images binarised once), MLP 784-512-d, batch 100, the same seed and epochs
for every variant. For each: the reconstruction error, the summed squared error between the
binarised test images and their reconstructions (likelihood means, pixels in [0, 1]; lower is
better), and a Fréchet distance between the features of the 2,000 (grey) test images and of
2,000 samples (likelihood means; lower is better). The features are
the last hidden layer of a small classifier the project trains on the training images
(``pyro_vaes.classifier``): Inception weights cannot be downloaded here. RAEs sample from their
ex-post Gaussian mixture, fitted on the training codes.

    python bench/generative.py --epochs 30
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

import pyro_vaes as pv

VARIANTS = [
    "vae",
    "rae_l2",
    "rae_gp",
    "vqvae",
    "aae",
    "factor_vae",
    "vaegan",
    "msssim_vae",
    "categorical_vae",
    "joint_vae",
]


def features(clf: pv.classifier.Classifier, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return torch.cat([clf.features(b) for b in pv.data.batches(x, 1000)])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--variant", nargs="+", default=VARIANTS, choices=sorted(pv.variants.registry))
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--latent-dim", type=int, default=16)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--data-root", default="../shared/data")
    p.add_argument("--json", default=None)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    splits = pv.data.load("mnist10k", args.data_root)
    x_train, x_test = splits.x_train, pv.data.binarize(splits.x_test, seed=1)
    clf = pv.classifier.train_classifier(x_train, splits.y_train, epochs=10, seed=args.seed)
    accuracy = pv.classifier.accuracy(clf, splits.x_test, splits.y_test)
    reference = features(clf, splits.x_test)  # grey test images: samples are likelihood means
    rows = []
    for name in args.variant:
        variant = pv.variants.registry[name]
        torch.manual_seed(args.seed)
        options = {"latent_dim": args.latent_dim} if name != "categorical_vae" else {}
        model = pv.variants.build(name, tuple(x_train.shape[1:]), **options)
        start = time.perf_counter()
        variant.fit(
            model,
            x_train,
            epochs=args.epochs,
            transform=pv.data.dynamic_binarize,
            seed=args.seed,
            device="cpu",
            progress=False,
        )
        seconds = time.perf_counter() - start
        model.eval()
        if hasattr(model, "fit_expost"):
            model.fit_expost(x_train)
        torch.manual_seed(args.seed + 1)
        recon = torch.cat([model.reconstruct(b) for b in pv.data.batches(x_test, 500)])
        error = float((recon - x_test).pow(2).flatten(1).sum(1).mean())
        samples = model.sample(len(x_test))
        distance = pv.metrics.frechet_distance(reference, features(clf, samples))
        rows.append(
            {"variant": name, "reconstruction": error, "frechet": distance, "seconds": seconds}
        )
        print(rows[-1], flush=True)

    print(
        f"\nmnist10k, {args.epochs} epochs, latent dim {args.latent_dim}, seed {args.seed}; "
        f"classifier test accuracy {accuracy:.3f}\n"
    )
    print("| variant | reconstruction error | Fréchet distance | train s |\n|---|---|---|---|")
    for r in rows:
        print(
            f"| `{r['variant']}` | {r['reconstruction']:.2f} | {r['frechet']:.2f} | "
            f"{r['seconds']:.0f} |"
        )
    if args.json:
        Path(args.json).write_text(json.dumps({"args": vars(args), "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
