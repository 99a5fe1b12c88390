"""Fit the Poincare VAE and the Euclidean VAE to the branching-diffusion tree data, compare
their test log-likelihoods, and draw the codes on the Poincare disc coloured by tree depth.

    python examples/poincare_tree.py
"""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import torch

import pyro_vaes as pv


def main() -> None:
    splits = pv.data.load("tree")
    fig, axes = plt.subplots(1, 2, figsize=(10, 5))
    for ax, name in zip(axes, ("pvae", "vae"), strict=True):
        torch.manual_seed(0)
        vae = pv.variants.build(
            name, splits.shape, latent_dim=2, hidden=(200,), likelihood="gaussian"
        )
        pv.fit(vae.model, vae.guide, splits.x_train, epochs=100, batch_size=64)
        ll = pv.evaluate.log_likelihood(vae.model, vae.guide, splits.x_test, 1000).mean()
        print(f"{name}: test log-likelihood {ll:.2f} nats")
        with torch.no_grad():
            q = vae.posterior(vae.encoder(splits.x_train))
            codes = q.loc if name == "pvae" else q.mean
        points = ax.scatter(*codes.T, c=splits.y_train, cmap="viridis", s=6)
        if name == "pvae":
            ax.add_patch(plt.Circle((0, 0), 1.0, fill=False, color="gray"))
            ax.set_xlim(-1.05, 1.05)
            ax.set_ylim(-1.05, 1.05)
        ax.set_aspect("equal")
        ax.set_title(f"{name}: codes by tree depth (test LL {ll:.1f})")
    fig.colorbar(points, ax=axes, label="depth")
    fig.savefig("poincare_tree.png", dpi=100)
    print("wrote poincare_tree.png")


if __name__ == "__main__":
    main()
