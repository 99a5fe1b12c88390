"""The hand-written reference: a pure-PyTorch VAE training loop with the analytic KL.

It trains the very modules of a :class:`pyro_vaes.VAE` (encoder, posterior head, decoder) so the
benchmarks compare the loops, not the networks, and score both with the same evaluator.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import torch
import torch.nn.functional as F

import pyro_vaes as pv


def train_epoch(
    vae: pv.VAE,
    x: torch.Tensor,
    opt: torch.optim.Optimizer,
    batch_size: int,
    transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> float:
    """One epoch of the textbook loop; returns its seconds."""
    start = time.perf_counter()
    perm = torch.randperm(x.shape[0])
    for i in range(0, x.shape[0], batch_size):
        xb = x[perm[i : i + batch_size]]
        if transform is not None:
            xb = transform(xb)
        loc, raw = vae.posterior.head(vae.encoder(xb)).chunk(2, dim=-1)
        scale = F.softplus(raw) + vae.posterior.min_scale
        z = loc + scale * torch.randn_like(loc)
        rec = F.binary_cross_entropy_with_logits(vae.decoder(z), xb, reduction="sum")
        kl = 0.5 * (loc.pow(2) + scale.pow(2) - 1).sum() - scale.log().sum()
        loss = (rec + kl) / xb.shape[0]
        opt.zero_grad()
        loss.backward()
        opt.step()
    return time.perf_counter() - start


def reference_vae(data_shape: tuple[int, ...], seed: int = 0) -> pv.VAE:
    """The reference VAE: MLP 784-512-16, ReLU, Bernoulli logits."""
    torch.manual_seed(seed)
    return pv.variants.build("vae", data_shape, latent_dim=16, hidden=(512,))
