"""Shared by the tests of objectives that match the aggregate posterior to the prior."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

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
