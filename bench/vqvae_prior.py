"""Sample quality of the VQ-VAE and the VQ-VAE-2 with the learned PixelCNN prior over their codes
against the uniform prior, on mnist10k.

Each autoencoder is trained once (dynamic binarisation, batch 100, Adam 1e-3) under the uniform
prior, as in the papers; its PixelCNN prior (or, for the VQ-VAE-2, the top prior and the bottom
prior given the top codes) is then fitted to the codes of the training images
(``Variant.fit`` runs it, :class:`pyro_vaes.protocols.PostTraining`). The same autoencoder then
samples through each prior. Scores, as in ``bench/generative.py`` (whose classifier features this
reuses): the reconstruction error of the binarised test images, the Fréchet distance between the
classifier features of the 2,000 test images and of 2,000 samples (lower is better; not an FID),
and the negative log-likelihood of the test images' codes under each prior, in nats per image
(the uniform prior's is ``P log K``).

    python bench/vqvae_prior.py --epochs 5 --prior-epochs 8
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import torch

import pyro_vaes as pv
from pyro_vaes.analysis.plots import save_image_grid
from pyro_vaes.models.vqvae2 import VQVAE2

sys.path.insert(0, str(Path(__file__).resolve().parent))
from generative import features  # the classifier features of bench/generative.py

#: row name -> (variant, options)
MODELS = {
    "vqvae (MLP, 8 codes)": ("vqvae", {}),
    "vqvae (conv grid 7x7)": ("vqvae", {"grid": True, "embedding_dim": 16}),
    "vqvae2 (top 4x4, bottom 7x7)": ("vqvae2", {}),
}


@torch.no_grad()
def code_nll(model: object, x: torch.Tensor) -> tuple[float, float]:
    """The mean negative log-likelihood of the codes of ``x`` under the learned prior(s) and
    under the uniform prior, nats per image."""
    if isinstance(model, VQVAE2):
        k_top, k_bottom = model.codes(x)
        learned = model.top_prior.log_prob(k_top) + model.bottom_prior.log_prob(k_bottom, k_top)
        uniform = (k_top.shape[1] + k_bottom.shape[1]) * math.log(model.top.num_codes)
    else:
        k = model.codes(x)
        learned = model.code_prior.log_prob(k)
        uniform = k.shape[1] * math.log(model.quantizer.num_codes)
    return -float(learned.mean()), uniform


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", nargs="+", default=list(MODELS), choices=list(MODELS))
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--prior-epochs", type=int, default=8)
    p.add_argument("--samples", type=int, default=2000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--data-root", default="../shared/data")
    p.add_argument("--json", default=None)
    p.add_argument("--pictures", default=None, help="a folder for 64 samples of each row")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    splits = pv.data.load("mnist10k", args.data_root)
    x_train, x_test = splits.x_train, pv.data.binarize(splits.x_test, seed=1)
    start = time.perf_counter()
    clf = pv.classifier.train_classifier(x_train, splits.y_train, epochs=10, seed=args.seed)
    print(f"classifier {time.perf_counter() - start:.0f} s", flush=True)
    reference = features(clf, splits.x_test)
    rows = []
    for row in args.model:
        name, options = MODELS[row]
        torch.manual_seed(args.seed)
        options = {**options, "code_prior": "pixelcnn", "prior_epochs": args.prior_epochs}
        model = pv.variants.build(name, tuple(x_train.shape[1:]), **options)
        start = time.perf_counter()
        pv.fit(
            model.model,
            model.guide,
            x_train,
            epochs=args.epochs,
            transform=pv.data.dynamic_binarize,
            seed=args.seed,
            progress=False,
        )
        seconds = time.perf_counter() - start
        start = time.perf_counter()
        model.after_fit(pv.data.dynamic_binarize(x_train))  # what variant.fit runs last
        prior_seconds = time.perf_counter() - start
        assert model.learned_prior
        model.eval()
        recon = torch.cat([model.reconstruct(b) for b in pv.data.batches(x_test, 500)])
        error = float((recon - x_test).pow(2).flatten(1).sum(1).mean())
        learned_nll, uniform_nll = code_nll(model, x_test)
        for prior, uniform in (("PixelCNN", False), ("uniform", True)):
            torch.manual_seed(args.seed + 1)
            start = time.perf_counter()
            samples = torch.cat(
                [
                    model.sample(len(b), uniform=uniform)
                    for b in torch.arange(args.samples).split(500)
                ]
            )
            sample_seconds = time.perf_counter() - start
            distance = pv.metrics.frechet_distance(reference, features(clf, samples))
            if args.pictures:
                Path(args.pictures).mkdir(parents=True, exist_ok=True)
                stem = f"{name}{'_grid' if options.get('grid') else ''}_{prior.lower()}"
                save_image_grid(
                    samples[:64], Path(args.pictures) / f"{stem}.png", f"{row}, {prior}"
                )
            rows.append(
                {
                    "model": row,
                    "prior": prior,
                    "reconstruction": error,
                    "frechet": distance,
                    "code_nll": uniform_nll if uniform else learned_nll,
                    "train_seconds": seconds,
                    "prior_seconds": 0.0 if uniform else prior_seconds,
                    "sample_seconds": sample_seconds,
                }
            )
            print(rows[-1], flush=True)

    print(
        f"\nmnist10k, {args.epochs} epochs, prior {args.prior_epochs} epochs, seed {args.seed}, "
        f"{args.threads} thread(s)\n"
    )
    print(
        "| model | prior | reconstruction error | Fréchet distance | test codes' NLL (nats) "
        "| train s | prior fit s | sampling s |\n|---|---|---|---|---|---|---|---|"
    )
    for r in rows:
        print(
            f"| {r['model']} | {r['prior']} | {r['reconstruction']:.2f} | {r['frechet']:.1f} | "
            f"{r['code_nll']:.1f} | {r['train_seconds']:.0f} | {r['prior_seconds']:.0f} | "
            f"{r['sample_seconds']:.0f} |"
        )
    if args.json:
        Path(args.json).write_text(json.dumps({"args": vars(args), "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
