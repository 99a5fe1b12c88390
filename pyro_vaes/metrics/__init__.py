"""Disentanglement metrics: how well single code dimensions capture single known factors.

Both take the codes of a dataset whose generative factors are known (for example
:mod:`pyro_vaes.sprites`), one row per datapoint, and the integer factor values of each.
"""

from pyro_vaes.metrics.factor_vae import factor_vae_score
from pyro_vaes.metrics.mig import discretize, mig, mutual_information, mutual_information_matrix

__all__ = [
    "discretize",
    "factor_vae_score",
    "mig",
    "mutual_information",
    "mutual_information_matrix",
]
