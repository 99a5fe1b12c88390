"""Objectives beyond Pyro's own ELBOs; each is a ``pyro.infer.ELBO`` usable with ``SVI`` and
:func:`pyro_vaes.fit`. All of them take the terms of a draw from
:mod:`pyro_vaes.objectives.terms`, with one rule for scales and masks: a site's term, or what an
objective puts in its place, is weighed by that site's ``scale`` and ``mask``."""

from pyro_vaes.objectives.adversarial import (
    AdversarialAE,
    FactorVAELoss,
    VAEGANLoss,
    permute_dims,
)
from pyro_vaes.objectives.avb import AVBLoss
from pyro_vaes.objectives.combined import CIWAE, PIWAE
from pyro_vaes.objectives.elbo import ELBO
from pyro_vaes.objectives.free_bits import FreeBitsELBO, kl_by_dimension
from pyro_vaes.objectives.hierarchical_tc import HierarchicalTCELBO
from pyro_vaes.objectives.iwae import IWAE, MIWAE
from pyro_vaes.objectives.kl_balance import KLBalancedELBO, kl_balance_coefficients
from pyro_vaes.objectives.mmd import MMDELBO, imq_kernel, mmd, rbf_kernel
from pyro_vaes.objectives.regularized import DIPELBO, CapacityELBO, JointCapacityELBO, dip_penalty
from pyro_vaes.objectives.sliced_wasserstein import SlicedWassersteinELBO, sliced_wasserstein
from pyro_vaes.objectives.spectral import SpectralRegularizedELBO, power_iteration
from pyro_vaes.objectives.total_correlation import TCELBO

__all__ = [
    "CIWAE",
    "DIPELBO",
    "ELBO",
    "IWAE",
    "MIWAE",
    "MMDELBO",
    "PIWAE",
    "TCELBO",
    "AVBLoss",
    "AdversarialAE",
    "CapacityELBO",
    "FactorVAELoss",
    "FreeBitsELBO",
    "HierarchicalTCELBO",
    "JointCapacityELBO",
    "KLBalancedELBO",
    "SlicedWassersteinELBO",
    "SpectralRegularizedELBO",
    "VAEGANLoss",
    "dip_penalty",
    "imq_kernel",
    "kl_balance_coefficients",
    "kl_by_dimension",
    "mmd",
    "permute_dims",
    "power_iteration",
    "rbf_kernel",
    "sliced_wasserstein",
]
