"""Bits per dimension of dequantised images: the f-VAE (a flow likelihood conditioned on z)
against VAEs with Gaussian likelihoods, on a validation split carved from the training data.

Every model has the same encoder, posterior, prior and decoder network (MLP D-h-d and d-h-D,
diagonal normal posterior, standard normal prior), the same seed, data order and budget. The
training images are dequantised afresh each batch (``data.dequantize``: ``(k + u) / L``,
``L = 17`` grey levels for ``digits``, 256 for ``mnist10k``); the validation images once (seed
1). Each model is scored by ``evaluate.log_likelihood`` (IWAE bound, k draws) on the
validation split and reported in bits per dimension ``(-log p(y) + D log L) / (D ln 2)``
(``models.fvae.bits_per_dim``), lower is better:

* ``vae_gauss``: the VAE with a Gaussian likelihood, one learned scale for every pixel;
* ``fvae_0``: the f-VAE's flow with no coupling: a Gaussian with a learned scale per pixel;
* ``fvae``: the f-VAE, ``--couplings`` affine coupling layers conditioned on z.

    python bench/fvae.py --data digits --epochs 200
    python bench/fvae.py --data mnist10k --epochs 10 --data-root ../shared/data
"""

from __future__ import annotations

import argparse
import functools
import json
import time
from typing import Any

import torch

import pyro_vaes as pv
from pyro_vaes import likelihoods
from pyro_vaes.catalogue.assembly import vae_parts
from pyro_vaes.models.fvae import bits_per_dim

LEVELS = {"digits": 17, "mnist10k": 256}


def build(kind: str, shape: tuple[int, ...], args: argparse.Namespace) -> Any:
    options = {"latent_dim": args.latent_dim, "hidden": tuple(args.hidden)}
    if kind == "vae_gauss":
        parts = vae_parts(shape, **options, likelihood="gaussian")
        return pv.VAE(**{**parts, "likelihood": likelihoods.Gaussian(learn_scale=True)})
    layers = 0 if kind == "fvae_0" else args.couplings
    return pv.variants.build(
        "fvae", shape, **options, coupling_layers=layers, coupling_hidden=tuple(args.hidden)
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", choices=sorted(LEVELS), default="digits")
    p.add_argument("--models", nargs="+", default=["vae_gauss", "fvae_0", "fvae"])
    p.add_argument("--latent-dim", type=int, default=16)
    p.add_argument("--hidden", type=int, nargs="+", default=[256])
    p.add_argument("--couplings", type=int, default=4)
    p.add_argument("--epochs", type=int, default=200)
    p.add_argument("--batch-size", type=int, default=100)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--num-samples", type=int, default=500)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--data-root", default="../shared/data")
    args = p.parse_args()
    torch.set_num_threads(args.threads)

    levels = LEVELS[args.data]
    splits = pv.data.load(args.data, args.data_root, val_fraction=0.1)
    assert splits.x_val is not None
    x_val = pv.data.dequantize(splits.x_val, levels, seed=1)
    transform = functools.partial(pv.data.dequantize, levels=levels)
    results: dict[str, Any] = {
        "data": args.data,
        "train": splits.x_train.shape[0],
        "val": x_val.shape[0],
        "levels": levels,
        "epochs": args.epochs,
    }
    for kind in args.models:
        torch.manual_seed(args.seed)
        model = build(kind, splits.shape, args)
        start = time.perf_counter()
        history = pv.fit(
            model.model,
            model.guide,
            splits.x_train,
            optim=functools.partial(torch.optim.Adam, lr=args.lr),
            epochs=args.epochs,
            batch_size=args.batch_size,
            transform=transform,
            seed=args.seed,
            progress=False,
        )
        seconds = time.perf_counter() - start
        model.eval()
        ll = pv.evaluate.log_likelihood(
            model.model, model.guide, x_val, args.num_samples, progress=False
        )
        bpd = bits_per_dim(ll, splits.shape, levels)
        results[kind] = {
            "val_bits_per_dim": round(float(bpd.mean()), 4),
            "val_nll_nats": round(-float(ll.mean()), 2),
            "final_train_loss": round(history.loss[-1], 2),
            "train_seconds": round(seconds, 1),
        }
        print(kind, json.dumps(results[kind]), flush=True)
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
