"""pyro-vaes: variational autoencoder variants as composable Pyro model/guide pairs.

The public names are imported lazily (PEP 562), so ``import pyro_vaes`` costs little more than
importing torch and Pyro: arviz, matplotlib and scikit-learn load only when a name that needs them
is first used.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

#: public name -> (module, attribute); attribute ``None`` means the module itself
_LAZY: dict[str, tuple[str, str | None]] = {
    # subpackages by concept
    "analysis": ("pyro_vaes.analysis", None),
    "app": ("pyro_vaes.app", None),
    "catalogue": ("pyro_vaes.catalogue", None),
    "data": ("pyro_vaes.data", None),
    "distributions": ("pyro_vaes.distributions", None),
    "guides": ("pyro_vaes.guides", None),
    "likelihoods": ("pyro_vaes.likelihoods", None),
    "metrics": ("pyro_vaes.metrics", None),
    "models": ("pyro_vaes.models", None),
    "nets": ("pyro_vaes.nets", None),
    "objectives": ("pyro_vaes.objectives", None),
    "priors": ("pyro_vaes.priors", None),
    "protocols": ("pyro_vaes.protocols", None),
    "train": ("pyro_vaes.train", None),
    # modules where users find them
    "callbacks": ("pyro_vaes.train.callbacks", None),
    "checkpoint": ("pyro_vaes.train.checkpoint", None),
    "loggers": ("pyro_vaes.train.loggers", None),
    "checks": ("pyro_vaes.analysis.checks", None),
    "classifier": ("pyro_vaes.analysis.classifier", None),
    "evaluate": ("pyro_vaes.analysis.evaluate", None),
    "geometry": ("pyro_vaes.distributions.geometry", None),
    "plots": ("pyro_vaes.analysis.plots", None),
    "predictive": ("pyro_vaes.analysis.predictive", None),
    "report": ("pyro_vaes.app.report", None),
    "runs": ("pyro_vaes.app.runs", None),
    "sprites": ("pyro_vaes.data.sprites", None),
    "variants": ("pyro_vaes.catalogue.variants", None),
    # functions and classes
    "VAE": ("pyro_vaes.models.vae", "VAE"),
    "CheckpointError": ("pyro_vaes.errors", "CheckpointError"),
    "DataError": ("pyro_vaes.errors", "DataError"),
    "TrainingDiverged": ("pyro_vaes.errors", "TrainingDiverged"),
    "RunFolderError": ("pyro_vaes.errors", "RunFolderError"),
    "EarlyStopping": ("pyro_vaes.train.callbacks", "EarlyStopping"),
    "History": ("pyro_vaes.train.callbacks", "History"),
    "KLAnnealing": ("pyro_vaes.train.callbacks", "KLAnnealing"),
    "CSVLogger": ("pyro_vaes.train.loggers", "CSVLogger"),
    "TensorBoard": ("pyro_vaes.train.loggers", "TensorBoard"),
    "fit": ("pyro_vaes.train.fit", "fit"),
    "posterior_predictive": ("pyro_vaes.analysis.predictive", "posterior_predictive"),
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    try:
        module_name, attr = _LAZY[name]
    except KeyError:
        raise AttributeError(f"module 'pyro_vaes' has no attribute {name!r}") from None
    module = importlib.import_module(module_name)
    value = module if attr is None else getattr(module, attr)
    globals()[name] = value  # later lookups skip __getattr__
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY])


if TYPE_CHECKING:  # what type checkers and IDEs see
    from pyro_vaes import (
        analysis,
        app,
        catalogue,
        data,
        distributions,
        guides,
        likelihoods,
        metrics,
        models,
        nets,
        objectives,
        priors,
        protocols,
        train,
    )
    from pyro_vaes.analysis import checks, classifier, evaluate, plots, predictive
    from pyro_vaes.analysis.predictive import posterior_predictive
    from pyro_vaes.app import report, runs
    from pyro_vaes.catalogue import variants
    from pyro_vaes.data import sprites
    from pyro_vaes.distributions import geometry
    from pyro_vaes.errors import CheckpointError, DataError, RunFolderError, TrainingDiverged
    from pyro_vaes.models.vae import VAE
    from pyro_vaes.train import callbacks, checkpoint, loggers
    from pyro_vaes.train.callbacks import EarlyStopping, History, KLAnnealing
    from pyro_vaes.train.fit import fit
    from pyro_vaes.train.loggers import CSVLogger, TensorBoard
