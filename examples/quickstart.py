"""Fit a VAE on the bundled 8x8 digits, score it, and draw samples.

python examples/quickstart.py
"""

from __future__ import annotations

import torch

import pyro_vaes as pv


def main() -> None:
    # 10% of the training images are held out for validation: early stopping reads them, and
    # the test images are scored once, at the end
    splits = pv.data.load("digits", val_fraction=0.1)
    x_val = pv.data.binarize(splits.x_val, seed=2)
    x_test = pv.data.binarize(splits.x_test, seed=1)

    torch.manual_seed(0)
    enc = pv.nets.MLPEncoder(splits.shape, hidden=(256,))
    vae = pv.VAE(
        enc,
        pv.nets.MLPDecoder(8, splits.shape, hidden=(256,)),
        prior=pv.priors.StandardNormal(8),
        posterior=pv.guides.DiagonalNormal(enc.out_features, 8),
        likelihood=pv.likelihoods.Bernoulli(),
    )
    history = pv.fit(
        vae.model,
        vae.guide,
        splits.x_train,
        epochs=40,
        batch_size=100,
        val_data=x_val,
        transform=pv.data.dynamic_binarize,  # a fresh binarisation every epoch
        callbacks=[pv.KLAnnealing(vae, warmup_epochs=10), pv.EarlyStopping(patience=5)],
    )
    ll = pv.evaluate.log_likelihood(vae.model, vae.guide, x_test, num_samples=1000)
    print(f"{len(history)} epochs; test log-likelihood {ll.mean():.2f} nats per image")
    pv.plots.save_image_grid(vae.sample(64), "quickstart_samples.png", "samples")


if __name__ == "__main__":
    main()
