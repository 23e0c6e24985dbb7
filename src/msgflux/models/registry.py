"""Which class serves each ``(model_type, provider)`` pair.

``model_registry`` is msgflux's ``{model_type: {provider: class}}`` dict; reading it loads the
built-in providers first. ``@register_model`` (msgflux's decorator: the class names its own
``model_type`` and ``provider``) and ``register(model_type, provider)`` add to it, so a user's
class becomes reachable through ``Model.chat_completion("myprovider/x")`` and any gateway.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any, TypeVar

from msgflux.models.base import BaseModel

__all__ = ["lookup", "model_registry", "model_types", "providers", "register", "register_model"]

_M = TypeVar("_M", bound=type[BaseModel])
_loaded = False


class _Registry(dict[str, dict[str, type[BaseModel]]]):
    """A dict that imports the built-in providers before its first read."""

    def _ready(self) -> None:
        if not _loaded:
            _load()

    def __getitem__(self, key: str) -> dict[str, type[BaseModel]]:
        self._ready()
        return super().__getitem__(key)

    def __contains__(self, key: object) -> bool:
        self._ready()
        return super().__contains__(key)

    def __iter__(self) -> Any:
        self._ready()
        return super().__iter__()

    def __len__(self) -> int:
        self._ready()
        return super().__len__()

    def get(self, key: str, default: Any = None) -> Any:
        self._ready()
        return super().get(key, default)

    def keys(self) -> Any:
        self._ready()
        return super().keys()

    def values(self) -> Any:
        self._ready()
        return super().values()

    def items(self) -> Any:
        self._ready()
        return super().items()


model_registry = _Registry()
_REGISTRY = model_registry


def register(model_type: str, provider: str) -> Callable[[_M], _M]:
    """Class decorator: make ``Model.<model_type>("<provider>/...")`` build this class."""

    def decorate(cls: _M) -> _M:
        dict.setdefault(_REGISTRY, model_type, {})[provider] = cls
        return cls

    return decorate


def register_model(cls: _M) -> _M:
    """msgflux's decorator: register a class under its own ``model_type`` and ``provider``.

    >>> @register_model
    ... class MyChat(BaseModel, ChatCompletionModel):
    ...     provider = "mine"
    """
    model_type = getattr(cls, "model_type", None)
    provider = getattr(cls, "provider", None)
    if not model_type or not provider:
        raise ValueError(f"{cls.__name__} must define `model_type` and `provider`.")
    return register(model_type, provider)(cls)


def _load() -> None:
    global _loaded
    if not _loaded:
        _loaded = True  # before importing: a provider module may read the registry
        try:
            importlib.import_module("msgflux.models.providers")
        except BaseException:
            _loaded = False
            raise


def lookup(model_type: str, provider: str) -> type[BaseModel]:
    _load()
    by_provider: dict[str, type[BaseModel]] | None = _REGISTRY.get(model_type)
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
