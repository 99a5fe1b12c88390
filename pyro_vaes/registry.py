"""One registry type for everything chosen by name: variants, priors, posteriors, likelihoods,
networks and datasets.

A part registers itself in its own file, so adding one touches that file, its package's
``__init__`` export and the README's table:

    >>> from pyro_vaes.parts import PartContext, priors
    >>> @priors.register("my_prior")
    ... def _build(ctx: PartContext) -> nn.Module:
    ...     return MyPrior(ctx.latent_dim)
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Generic, TypeVar, overload

__all__ = ["Registry", "UnknownName"]

T = TypeVar("T")


class UnknownName(KeyError, ValueError):
    """A name that is not registered: a ``KeyError`` for mapping semantics, and a
    ``ValueError`` (bad user input) with a message that lists the choices."""

    def __str__(self) -> str:
        return str(self.args[0])


class Registry(Mapping[str, T], Generic[T]):
    """Names to entries of one ``kind``, in registration order.

    :param kind: what the entries are, for error messages (``"variant"``, ``"prior"``, ...).
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, T] = {}

    @overload
    def register(self, name: str) -> Callable[[T], T]: ...

    @overload
    def register(self, name: str, entry: T) -> T: ...

    def register(self, name: str, entry: T | None = None) -> T | Callable[[T], T]:
        """Add ``entry`` under ``name``; without ``entry``, a decorator that adds what it
        decorates.

        :raises ValueError: if ``name`` is taken.
        """

        def add(value: T) -> T:
            if name in self._entries:
                raise ValueError(f"{self.kind} {name!r} is already registered")
            self._entries[name] = value
            return value

        return add if entry is None else add(entry)

    def unregister(self, name: str) -> T:
        """Remove ``name`` and return its entry."""
        entry = self[name]
        del self._entries[name]
        return entry

    def __getitem__(self, name: str) -> T:
        try:
            return self._entries[name]
        except KeyError:
            raise UnknownName(
                f"unknown {self.kind} {name!r}; choose from {sorted(self._entries)}"
            ) from None

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}: {sorted(self._entries)})"
