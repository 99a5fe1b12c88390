"""Distributions Pyro lacks (von Mises-Fisher, uniform on the sphere, wrapped normal, ...)."""

__all__: list[str] = []
