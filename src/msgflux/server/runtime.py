"""The live side of a config: its gateways built, its keys ready, all in one immutable object.

:class:`Runtime` is what a request reads, through one attribute read of the app's current
runtime; a reload (issue 14) builds a new one and swaps the reference, so a request in flight
keeps the gateways it started with and nothing is ever half-configured.

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
from typing import Any

from msgflux.models.gateway.gateway import ModelGateway
from msgflux.models.model import Model
from msgflux.models.request import KINDS
from msgflux.server.auth import KeyRing
from msgflux.server.config import ConfigError, DeploymentSpec, GatewaySpec, ServerConfig

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


def _gateway(config: ServerConfig, spec: GatewaySpec, state: Any) -> ModelGateway:
    path = f"gateways.{spec.name}"
    deployments = []
    for i, dep in enumerate(spec.deployments):
        try:
            model = build_model(spec.type, dep)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"{path}.models[{i}]", str(exc)) from None
        deployments.append({"model_name": dep.model_name, "model": model, **dep.keys})
    options = {k: v for k, v in spec.options.items() if k != "state"}
    try:
        return ModelGateway(deployments, state=state, **options)
    except (TypeError, ValueError, AttributeError) as exc:
        raise ConfigError(path, str(exc)) from None
    except ImportError as exc:
        raise ConfigError(f"{path}.state", str(exc)) from None


def build_runtime(config: ServerConfig, *, shared_state: bool = True) -> Runtime:
    """Build every gateway of ``config`` (raises :class:`ConfigError`, closing what it built).

    ``shared_state=False`` builds them on process memory whatever the config says (a dry run
    that validates without connecting to Redis).
    """
    routes: dict[str, Route] = {}
    try:
        for spec in config.gateways.values():
            state = config.state_for(spec) if shared_state else None
            gateway = _gateway(config, spec, state)
            routes[spec.name] = Route(spec.name, spec.type, KINDS[spec.type], gateway)
    except BaseException:
        for route in routes.values():
            route.gateway.close()
        raise
    return Runtime(
        config,
        MappingProxyType(routes),
        KeyRing(config.server.keys),
        int(time.time()),
    )
