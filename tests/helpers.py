"""Helpers shared by the objective tests."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pyro
import torch

import pyro_vaes as pv


def aggregate_gap(
    digits: pv.data.Splits,
    loss: Any,
    distance: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
) -> float:
    """Fit a small VAE on digits with ``loss`` (5 epochs, fixed seed) and return ``distance``
    between its test codes and as many standard normal draws."""
    torch.manual_seed(0)
    vae = pv.variants.build("vae", digits.shape, latent_dim=4, hidden=(64,))
    pv.fit(vae.model, vae.guide, digits.x_train, epochs=5, progress=False, loss=loss)
    with torch.no_grad():
        codes = vae.posterior(vae.encoder(digits.x_test)).rsample()
    torch.manual_seed(1)
    return float(distance(codes, torch.randn_like(codes)))


def seeded_loss(objective: Any, model: Any, guide: Any, x: torch.Tensor, seed: int = 11) -> float:
    """``objective.loss`` at a fixed RNG seed, after one call that lets an objective learn what
    it caches (IWAE's plate layout), so that two objectives see the same draws."""
    objective.loss(model, guide, x)
    pyro.set_rng_seed(seed)
    return objective.loss(model, guide, x)
