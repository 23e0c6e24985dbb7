"""Which class serves each ``(model_type, provider)`` pair."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import TypeVar

from msgflux.models.base import BaseModel

__all__ = ["lookup", "model_types", "providers", "register"]

_M = TypeVar("_M", bound=type[BaseModel])
_REGISTRY: dict[str, dict[str, type[BaseModel]]] = {}
_loaded = False


def register(model_type: str, provider: str) -> Callable[[_M], _M]:
    """Class decorator: make ``Model.<model_type>("<provider>/...")`` build this class."""

    def decorate(cls: _M) -> _M:
        _REGISTRY.setdefault(model_type, {})[provider] = cls
        return cls

    return decorate


def _load() -> None:
    global _loaded
    if not _loaded:
        importlib.import_module("msgflux.models.providers")
        _loaded = True


def lookup(model_type: str, provider: str) -> type[BaseModel]:
    _load()
    by_provider = _REGISTRY.get(model_type)
    if by_provider is None:
        raise ValueError(
            f"unknown model_type {model_type!r}; valid model types: {', '.join(model_types())}"
        )
    cls = by_provider.get(provider)
    if cls is None:
        raise ValueError(
            f"unknown provider {provider!r} for model_type {model_type!r}; "
            f"valid providers: {', '.join(sorted(by_provider))}"
        )
    return cls


def providers() -> dict[str, list[str]]:
    """``{model_type: [provider, ...]}`` for every registered pair."""
    _load()
    return {mt: sorted(p) for mt, p in sorted(_REGISTRY.items())}


def model_types() -> list[str]:
    _load()
    return sorted(_REGISTRY)
