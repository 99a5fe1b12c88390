"""Variants over sequences: datapoints shaped ``(T, *frame_shape)``, declared as
``datapoints="sequences"`` (the bundled ``oscillator`` and ``moving_sprites`` data of
:mod:`pyro_vaes.data.sequences`)."""

from __future__ import annotations

from collections.abc import Sequence

import pyro.infer

from pyro_vaes import likelihoods
from pyro_vaes.catalogue.variants import register
from pyro_vaes.models.tdvae import TDVAE


def _tdvae(
    data_shape: tuple[int, ...],
    *,
    latent_dim: int = 8,
    belief_dim: int = 64,
    hidden: Sequence[int] = (64,),
    net: str = "mlp",
    likelihood: str = "gaussian",
    scale: float = 0.1,
    max_skip: int = 4,
    min_context: int = 0,
    skip_input: bool = True,
) -> TDVAE:
    r"""A TD-VAE for sequences of ``data_shape[0]`` frames shaped ``data_shape[1:]``; a Gaussian
    likelihood learns its scale :math:`\sigma`, starting from ``scale``. The frame encoder and
    decoder are MLPs (``net="mlp"``).

    The small start matters: from :math:`\sigma = 1`, on frames whose spread is about that size,
    encoding :math:`x_{t_2}` in :math:`z_{t_2}` gains less in :math:`\log p_D` than it costs in
    the KL terms until the transition predicts, so the first steps switch the beliefs off
    (:math:`p_B(z \mid b_t)` the same for every history) and training stays at that collapsed
    point, the marginal of the frames (README, the TD-VAE benchmark)."""
    if net != "mlp":
        raise ValueError(
            f"tdvae encodes and decodes frames with MLPs: net must be 'mlp', got {net!r}"
        )
    if len(data_shape) < 2:
        raise ValueError(
            f"tdvae models sequences: data_shape must be (T, *frame_shape), got {data_shape}"
        )
    options = {"learn_scale": True, "scale": scale} if likelihood == "gaussian" else {}
    return TDVAE(
        data_shape[1:],
        data_shape[0],
        likelihoods.get(likelihood, **options),
        latent_dim=latent_dim,
        belief_dim=belief_dim,
        hidden=hidden,
        max_skip=max_skip,
        min_context=min_context,
        skip_input=skip_input,
    )


register(
    "tdvae",
    "TD-VAE: LSTM beliefs, trained on pairs t1 < t2 <= t1 + 4 with the belief at t2 as the "
    "proposal and a smoothing posterior at t1; jumpy rollouts",
    "Gregor et al. 2019, Temporal Difference Variational Auto-Encoder",
    objective=pyro.infer.Trace_ELBO,
    datapoints="sequences",
)(_tdvae)
