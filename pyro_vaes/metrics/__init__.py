"""Metrics: disentanglement (how well single code dimensions capture single known factors) and
the Fréchet distance between feature sets (sample quality).

The disentanglement metrics take the codes of a dataset whose generative factors are known (for example
:mod:`pyro_vaes.sprites`), one row per datapoint, and the integer factor values of each.
"""

from pyro_vaes.metrics.factor_vae import factor_vae_score
from pyro_vaes.metrics.frechet import frechet_distance
from pyro_vaes.metrics.mig import discretize, mig, mutual_information, mutual_information_matrix

__all__ = [
    "discretize",
    "factor_vae_score",
    "frechet_distance",
    "mig",
    "mutual_information",
    "mutual_information_matrix",
]
