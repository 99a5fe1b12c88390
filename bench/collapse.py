"""Posterior collapse under a PixelCNN decoder: active units and KL of the VAE and its remedies.

Every model has the same encoder (MLP 784-256), a 16-dimensional code, the same PixelCNN
likelihood (3 gated layers of 32 channels, kernel 3, conditioned on the decoder's 28 x 28 map),
the same initial seed, data order and budget; they differ only in the remedy:

* ``pixelcnn_vae``: none (the decoder's map enters the PixelCNN's first layer),
* ``bn_pixelcnn_vae``: the BN-VAE posterior (gamma 0.5),
* ``free_bits_pixelcnn_vae``: free bits, 0.5 nats per latent dimension,
* ``skip_pixelcnn_vae``: generative skip connections (skip MLP decoder, its map into every layer),

and ``vae`` (the MLP decoder with independent Bernoulli pixels) is the reference without an
autoregressive decoder. Data: mnist10k, 10% of the training images held out for validation,
dynamic binarisation for training, the validation and test images binarised once (seeds 2 and 1).
Reported on the test images (no choice is made on them):

* active units (Burda et al. 2016): dimensions d with :math:`\\mathrm{Cov}_x(\\mathbb
  E_{q(z|x)}[z_d]) > 0.01`,
* KL: :math:`\\mathrm{KL}(q(z \\mid x) \\| p(z))` in closed form, mean over the test images,
* -ELBO and NLL (the IWAE bound with ``--num-samples`` draws) on the first ``--eval-size``
  test images, in nats; the -ELBO on as many validation images as well.

    OMP_NUM_THREADS=1 python bench/collapse.py --data-root ../shared/data --epochs 3
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
from torch.distributions import kl_divergence

import pyro_vaes as pv

VARIANTS = ["vae", "pixelcnn_vae", "bn_pixelcnn_vae", "free_bits_pixelcnn_vae", "skip_pixelcnn_vae"]


@torch.no_grad()
def collapse_statistics(
    model: pv.VAE, x: torch.Tensor, threshold: float = 0.01
) -> dict[str, float]:
    """Active units of the posterior means and the mean closed-form KL over ``x``."""
    model.eval()
    q = model.posterior(model.encoder(x))
    means = q.mean
    return {
        "active_units": int((means.var(0) > threshold).sum()),
        "kl": float(kl_divergence(q, model.prior()).mean()),
    }


def bounds(model: pv.VAE, x: torch.Tensor, k: int) -> dict[str, float]:
    """-ELBO and the IWAE bound's NLL, nats per datapoint (``k`` draws each)."""
    s = pv.evaluate.scores(model.model, model.guide, x, k, progress=False)
    return {"neg_elbo": -float(s.elbo.mean()), "nll": -float(s.log_likelihood.mean())}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--variant", nargs="+", default=VARIANTS, choices=sorted(pv.variants.registry))
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--train-size", type=int, default=None, help="default: all of them")
    p.add_argument("--latent-dim", type=int, default=16)
    p.add_argument("--pixelcnn-layers", type=int, default=3)
    p.add_argument("--pixelcnn-channels", type=int, default=32)
    p.add_argument("--eval-size", type=int, default=500, help="test (and validation) images scored")
    p.add_argument("--num-samples", type=int, default=5, help="draws per image for -ELBO, NLL")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--data-root", default="../shared/data")
    p.add_argument("--json", default=None)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    splits = pv.data.load("mnist10k", args.data_root, val_fraction=0.1)
    x_train = splits.x_train[: args.train_size]
    x_val = pv.data.binarize(splits.x_val, seed=2)
    x_test = pv.data.binarize(splits.x_test, seed=1)
    rows = []
    for name in args.variant:
        torch.manual_seed(args.seed)
        options: dict[str, object] = {"latent_dim": args.latent_dim, "hidden": (256,)}
        if "pixelcnn" in name:
            options |= {
                "pixelcnn_layers": args.pixelcnn_layers,
                "pixelcnn_channels": args.pixelcnn_channels,
            }
        model = pv.variants.build(name, splits.shape, **options)
        start = time.perf_counter()
        pv.variants.registry[name].fit(
            model,
            x_train,
            epochs=args.epochs,
            batch_size=100,
            transform=pv.data.dynamic_binarize,
            seed=args.seed,
            device="cpu",
            progress=False,
        )
        seconds = time.perf_counter() - start
        torch.manual_seed(args.seed)
        row = {"model": name, "train_seconds": seconds, **collapse_statistics(model, x_test)}
        test = bounds(model, x_test[: args.eval_size], args.num_samples)
        val = bounds(model, x_val[: args.eval_size], args.num_samples)
        row |= {**test, "val_neg_elbo": val["neg_elbo"]}
        rows.append(row)
        print(json.dumps(row), flush=True)

    print(
        f"\nmnist10k, {len(x_train)} training images, {args.epochs} epochs, latent dim "
        f"{args.latent_dim}, PixelCNN {args.pixelcnn_layers} x {args.pixelcnn_channels}, "
        f"k={args.num_samples} on {args.eval_size} test images, seed {args.seed}\n"
    )
    print(
        "| model | active units (of 16) | KL (nats) | test -ELBO | test NLL | val -ELBO | train s |"
    )
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| `{r['model']}` | {r['active_units']} | {r['kl']:.2f} | {r['neg_elbo']:.2f} | "
            f"{r['nll']:.2f} | {r['val_neg_elbo']:.2f} | {r['train_seconds']:.0f} |"
        )
    if args.json:
        Path(args.json).write_text(json.dumps({"args": vars(args), "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
