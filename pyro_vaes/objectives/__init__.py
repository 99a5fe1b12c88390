"""Objectives beyond Pyro's own ELBOs; each is a ``pyro.infer.ELBO`` usable with ``SVI`` and
:func:`pyro_vaes.fit`."""

from pyro_vaes.objectives.adversarial import (
    AdversarialAE,
    FactorVAELoss,
    VAEGANLoss,
    permute_dims,
)
from pyro_vaes.objectives.elbo import ELBO
from pyro_vaes.objectives.iwae import IWAE, MIWAE
from pyro_vaes.objectives.mmd import MMDELBO, imq_kernel, mmd, rbf_kernel
from pyro_vaes.objectives.regularized import DIPELBO, CapacityELBO, JointCapacityELBO, dip_penalty
from pyro_vaes.objectives.sliced_wasserstein import SlicedWassersteinELBO, sliced_wasserstein
from pyro_vaes.objectives.total_correlation import TCELBO

__all__ = [
    "DIPELBO",
    "ELBO",
    "IWAE",
    "MIWAE",
    "MMDELBO",
    "TCELBO",
    "AdversarialAE",
    "CapacityELBO",
    "FactorVAELoss",
    "JointCapacityELBO",
    "SlicedWassersteinELBO",
    "VAEGANLoss",
    "dip_penalty",
    "imq_kernel",
    "mmd",
    "permute_dims",
    "rbf_kernel",
    "sliced_wasserstein",
]
