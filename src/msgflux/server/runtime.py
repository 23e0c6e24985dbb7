"""The live side of a config: its gateways built, its keys ready, all in one immutable object.

:class:`Runtime` is what a request reads, through one attribute read of the app's current
runtime; a reload (:mod:`.reload`) builds a new one and swaps the reference, so a request in
flight keeps the gateways it started with and nothing is ever half-configured.

A gateway on process memory (no ``state:``) gets a :class:`MemoryStore` of the server's, which a
reload hands to the gateway of the same name in the new runtime: breaker and limit state then
survive for every deployment whose identity (gateway name, ``model_name``, ``model``,
``base_url``) did not change, and is forgotten for the others. Gateways on Redis share their
state through Redis, which a reload does not touch.

Each deployment's model is built here (``Model.<type>("provider/model_id", base_url=...,
api_key=..., temperature=...)``), so every model type and every model parameter works; the
gateways get the model objects. A chat deployment over HTTP sends no ``max_tokens`` of its
own unless the config says so: the client's request reaches the upstream as the client sent it.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Mapping
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from msgflux.models.gateway.cache import DEFAULT_MAX_BYTES, MemoryCache
from msgflux.models.gateway.gateway import ModelGateway
from msgflux.models.gateway.record import Completion
from msgflux.models.gateway.state import MemoryStore, Policy
from msgflux.models.model import Model
from msgflux.models.request import KINDS
from msgflux.server.auth import KeyRing
from msgflux.server.config import ConfigError, DeploymentSpec, GatewaySpec, ServerConfig

if TYPE_CHECKING:
    from msgflux.server.directory import Directory

__all__ = ["Route", "Runtime", "build_model", "build_runtime"]


@dataclasses.dataclass(frozen=True, eq=False)
class Route:
    """One configured gateway as the server sees it."""

    name: str
    type: str
    kind: str
    """The request kind it serves (``chat``, ``embeddings``, ...)."""
    gateway: ModelGateway


@dataclasses.dataclass(frozen=True, eq=False)
class Runtime:
    """Everything a request needs, built from one config (see the module docstring)."""

    config: ServerConfig
    routes: Mapping[str, Route]
    keys: KeyRing
    loaded_at: int
    """Epoch seconds the config was loaded (``created`` of ``/v1/models``)."""
    stores: Mapping[str, MemoryStore] = dataclasses.field(
        default_factory=lambda: MappingProxyType({})
    )
    """The process-memory state of each gateway without ``state:`` (carried over by reloads)."""
    caches: Mapping[str, MemoryCache] = dataclasses.field(
        default_factory=lambda: MappingProxyType({})
    )
    """The memory response cache of each gateway with one (carried over by reloads: its keys
    cover the deployments, so a changed deployment never gets an old answer)."""

    def close(self) -> None:
        for route in self.routes.values():
            route.gateway.close()


def build_model(gateway_type: str, dep: DeploymentSpec) -> Any:
    """The model object of one deployment."""
    params = dict(dep.params)
    factory = getattr(Model, gateway_type)
    provider = dep.model.partition("/")[0]
    if gateway_type == "chat_completion" and provider != "local" and "max_tokens" not in params:
        params["max_tokens"] = None
    return factory(dep.model, **params)


def _gateway(
    config: ServerConfig,
    spec: GatewaySpec,
    state: Any,
    hooks: tuple[Completion, ...] = (),
    memory: MemoryCache | None = None,
) -> ModelGateway:
    path = f"gateways.{spec.name}"
    deployments = []
    for i, dep in enumerate(spec.deployments):
        try:
            model = build_model(spec.type, dep)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"{path}.models[{i}]", str(exc)) from None
        deployments.append({"model_name": dep.model_name, "model": model, **dep.keys})
    options = {k: v for k, v in spec.options.items() if k != "state"}
    options.setdefault("name", spec.name)
    cache = _cache_spec(spec)
    if cache is not None:
        if memory is not None:
            cache = {k: v for k, v in cache.items() if k != "max_bytes"}
        store = memory if memory is not None else cache.get("store")
        options["cache"] = {**cache, "store": config.server.state if store == "redis" else store}
    if hooks:
        own = options.get("on_complete")
        options["on_complete"] = [*_as_list(own), *hooks]
    try:
        return ModelGateway(deployments, state=state, **options)
    except (TypeError, ValueError, AttributeError) as exc:
        raise ConfigError(_option_path(path, str(exc), options), str(exc)) from None
    except ImportError as exc:
        raise ConfigError(f"{path}.state", str(exc)) from None


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return list(value) if isinstance(value, (list, tuple)) else [value]


def _cache_spec(spec: GatewaySpec) -> dict[str, Any] | None:
    """The gateway's ``cache:`` as a mapping (``true``: the defaults), or None."""
    cache = spec.options.get("cache")
    if cache is True:
        return {}
    return dict(cache) if isinstance(cache, Mapping) else None


def _memory_cache(previous: Runtime | None, spec: GatewaySpec) -> MemoryCache | None:
    """The memory store of the gateway's response cache: the previous runtime's when its size
    is the same (a reload keeps the answers), else a new one; None for another store."""
    cache = _cache_spec(spec)
    if cache is None or cache.get("store", "memory") != "memory":
        return None
    size = cache.get("max_bytes") or DEFAULT_MAX_BYTES
    old = previous.caches.get(spec.name) if previous is not None else None
    return old if old is not None and old.max_bytes == size else MemoryCache(size)


def _policy(dep: DeploymentSpec) -> Policy:
    """The deployment's key in a state store (``model_name|provider/model_id``)."""
    provider, _, model_id = dep.model.partition("/")
    return Policy(dep.model_name, provider, model_id)


def _carried(previous: Runtime | None, spec: GatewaySpec) -> tuple[MemoryStore, list[Policy]]:
    """The memory store for ``spec`` (the previous runtime's for the same gateway name, else a
    new one) and the deployments whose state it must forget: those of the previous config
    whose identity is not in ``spec`` any more."""
    store = previous.stores.get(spec.name) if previous is not None else None
    if store is None or previous is None:
        return MemoryStore(), []
    old = previous.config.gateways.get(spec.name)
    if old is None:
        return store, []
    kept = {(d.model_name, d.model, d.params.get("base_url")) for d in spec.deployments}
    gone = [
        _policy(d)
        for d in old.deployments
        if (d.model_name, d.model, d.params.get("base_url")) not in kept
    ]
    return store, gone


def build_runtime(
    config: ServerConfig,
    *,
    shared_state: bool = True,
    previous: Runtime | None = None,
    hooks: tuple[Completion, ...] = (),
    directory: Directory | None = None,
) -> Runtime:
    """Build every gateway of ``config`` (raises :class:`ConfigError`, closing what it built).

    ``shared_state=False`` builds them on process memory whatever the config says (a dry run
    that validates without connecting to Redis). ``previous`` (a reload) hands its memory
    state over (see the module docstring); ``hooks`` go to every gateway's ``on_complete``.
    ``directory`` holds the process's virtual keys (default: the previous runtime's).
    """
    if directory is None and previous is not None:
        directory = previous.keys.directory
    routes: dict[str, Route] = {}
    stores: dict[str, MemoryStore] = {}
    caches: dict[str, MemoryCache] = {}
    forget: list[tuple[MemoryStore, list[Policy]]] = []
    try:
        for spec in config.gateways.values():
            state = config.state_for(spec) if shared_state else None
            if state is None:
                store, gone = _carried(previous, spec)
                state = stores[spec.name] = store
                forget.append((store, gone))
            memory = _memory_cache(previous, spec)
            if memory is not None:
                caches[spec.name] = memory
            gateway = _gateway(config, spec, state, hooks, memory)
            routes[spec.name] = Route(spec.name, spec.type, KINDS[spec.type], gateway)
    except BaseException:
        for route in routes.values():
            route.gateway.close()
        raise
    for store, gone in forget:  # only once the whole config built: a failed reload changes nothing
        if gone:
            store.reset(gone)
    return Runtime(
        config,
        MappingProxyType(routes),
        KeyRing(config.server.keys, directory),
        int(time.time()),
        MappingProxyType(stores),
        MappingProxyType(caches),
    )


def _option_path(path: str, message: str, options: dict[str, Any]) -> str:
    """``path.option`` when ``message`` (the gateway's own error) is about one option: the
    gateway's messages start with the option's name (``timeout must be ...``)."""
    first = message.split(" ", 1)[0].strip("`'\":")
    return f"{path}.{first}" if first in options else path
