"""Objectives beyond Pyro's own ELBOs (IWAE, MIWAE, total correlation, MMD, ...)."""

__all__: list[str] = []
