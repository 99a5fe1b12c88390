"""pyro-vaes: variational autoencoder variants as composable Pyro model/guide pairs."""

from pyro_vaes import (
    callbacks,
    checkpoint,
    checks,
    classifier,
    data,
    evaluate,
    geometry,
    guides,
    likelihoods,
    metrics,
    nets,
    objectives,
    plots,
    predictive,
    priors,
    report,
    runs,
    sprites,
    variants,
)
from pyro_vaes.callbacks import EarlyStopping, History, KLAnnealing
from pyro_vaes.errors import CheckpointError, DataError, TrainingDiverged
from pyro_vaes.fit import fit
from pyro_vaes.predictive import posterior_predictive
from pyro_vaes.vae import VAE

__version__ = "0.1.0"

__all__ = [
    "VAE",
    "CheckpointError",
    "DataError",
    "EarlyStopping",
    "History",
    "KLAnnealing",
    "TrainingDiverged",
    "callbacks",
    "checkpoint",
    "checks",
    "classifier",
    "data",
    "evaluate",
    "fit",
    "geometry",
    "guides",
    "likelihoods",
    "metrics",
    "nets",
    "objectives",
    "plots",
    "posterior_predictive",
    "predictive",
    "priors",
    "report",
    "runs",
    "sprites",
    "variants",
]
