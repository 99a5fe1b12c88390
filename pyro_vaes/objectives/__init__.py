"""Objectives beyond Pyro's own ELBOs; each is a ``pyro.infer.ELBO`` usable with ``SVI`` and
:func:`pyro_vaes.fit`."""

from pyro_vaes.objectives.elbo import ELBO
from pyro_vaes.objectives.iwae import IWAE, MIWAE
from pyro_vaes.objectives.total_correlation import TCELBO

__all__ = ["ELBO", "IWAE", "MIWAE", "TCELBO"]
