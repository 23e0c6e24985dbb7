"""What a validated config is: frozen specs a server is built from, and their printable plan.

:class:`ServerConfig` holds one :class:`GatewaySpec` per gateway (each with its
:class:`DeploymentSpec` list) and the :class:`ServerSettings` (client keys as
:class:`KeySpec`). They are immutable: a reload builds a new config and swaps it.
:func:`plan` turns one back into plain data with every secret masked (what
``msgflux config check`` prints).

Separate from building them (:mod:`msgflux.server.config_build`): the server's modules (auth,
runtime, workers, usage, ...) read these types and need none of the parsing.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import re
from collections.abc import Mapping
from typing import Any

from msgflux import _secrets
from msgflux.server.key_limits import NO_LIMITS, KeyLimits

__all__ = [
    "DEFAULT_HOST",
    "DEFAULT_MAX_BODY_BYTES",
    "DEFAULT_PORT",
    "DEFAULT_SHUTDOWN_GRACE",
    "DeploymentSpec",
    "GatewaySpec",
    "KeySpec",
    "ServerConfig",
    "ServerSettings",
    "is_loopback",
    "plan",
]

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 4000
DEFAULT_SHUTDOWN_GRACE = 600.0
DEFAULT_MAX_BODY_BYTES = 32 * 1024 * 1024
DEFAULT_RESPONSES_TTL = 30 * 86400.0
"""Seconds a stored response of the Responses API is kept (OpenAI keeps them 30 days)."""
"""32 MiB: above OpenAI's 25 MB audio upload limit, far above any chat request."""


@dataclasses.dataclass(frozen=True)
class KeySpec:
    """A client key: its name, the SHA-256 of its value, and the gateways it may use."""

    name: str
    digest: bytes
    models: frozenset[str] | None
    """Gateway names this key may use; None: every gateway (``"*"``)."""
    from_env: bool = True
    """Given as ``key:`` (its value is known) rather than ``key_sha256:``."""
    limits: KeyLimits = NO_LIMITS
    """rpm, tpm, max_concurrency and budget (see :mod:`msgflux.server.key_limits`)."""
    admin: bool = False
    """May call ``/admin/*`` and ``/metrics``."""

    def allows(self, gateway: str) -> bool:
        return self.models is None or gateway in self.models


@dataclasses.dataclass(frozen=True)
class DeploymentSpec:
    """One deployment: the gateway's dict (``keys``) and how to build its model."""

    model_name: str
    model: str
    """``provider/model_id``."""
    keys: Mapping[str, Any]
    """Deployment keys for ``ModelGateway`` (``timeout``, ``rpm``, ...), ``model`` excluded."""
    params: Mapping[str, Any]
    """Arguments of the model's constructor (``base_url``, ``api_key``, ``temperature``, ...)."""

    @property
    def limited(self) -> bool:
        """It has an rpm, tpm or concurrency limit (which N workers must share)."""
        return any(self.keys.get(k) is not None for k in ("rpm", "tpm", "max_concurrency"))


@dataclasses.dataclass(frozen=True)
class GatewaySpec:
    name: str
    type: str
    options: Mapping[str, Any]
    """``ModelGateway`` options, code options already imported."""
    deployments: tuple[DeploymentSpec, ...]
    raw_options: Mapping[str, Any]
    """The options as written (import paths as text), for ``msgflux config check``."""


@dataclasses.dataclass(frozen=True)
class ServerSettings:
    host: str | None = None
    port: int | None = None
    workers: int | None = None
    state: str | None = None
    """A ``redis://`` URL shared by every gateway, worker and instance."""
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    shutdown_grace: float = DEFAULT_SHUTDOWN_GRACE
    drain_delay: float = 0.0
    """Seconds between SIGTERM and closing the listener, readiness answering 503 meanwhile."""
    keys: tuple[KeySpec, ...] = ()
    metrics: bool = True
    """Serve ``GET /metrics`` (and count what it shows)."""
    access_log: bool = True
    """One JSON line per request on the ``msgflux.server.access`` logger."""
    header_timeout: float = 30.0
    """Seconds a client has to send a request's headers (from its first byte)."""
    body_timeout: float = 30.0
    """Seconds a request body may stall (no byte) before a 408."""
    send_timeout: float = 60.0
    """Seconds a client may read nothing of its answer before it is cut off."""
    keep_alive: float = 15.0
    """Seconds an idle connection is kept between requests."""
    max_connections: int = 4096
    """Open client connections per worker (capped at ``ulimit -n`` less 64)."""
    responses_ttl: float = DEFAULT_RESPONSES_TTL
    """Seconds a stored response (``POST /v1/responses`` with ``store``) is kept; 0 keeps
    none."""


@dataclasses.dataclass(frozen=True)
class ServerConfig:
    """A whole validated config (immutable: a reload builds a new one and swaps it)."""

    gateways: Mapping[str, GatewaySpec]
    server: ServerSettings
    source: str = "<config>"

    def state_for(self, gateway: GatewaySpec) -> Any:
        """The gateway's ``state=``: its own option, else ``server.state``."""
        return gateway.options.get("state", self.server.state)

    def unshared_limits(self) -> list[str]:
        """``gateway/deployment`` names with limits but no shared state (N workers refuse)."""
        out = []
        for gw in self.gateways.values():
            if self.state_for(gw) is not None:
                continue
            out += [f"{gw.name}/{d.model_name}" for d in gw.deployments if d.limited]
        return out

    def unshared_key_limits(self) -> list[str]:
        """Names of client keys with limits or a budget and no ``server.state`` to share them."""
        if self.server.state is not None:
            return []
        return [k.name for k in self.server.keys if k.limits.active]

    def local_deployments(self) -> list[str]:
        return [
            f"{gw.name}/{d.model_name}"
            for gw in self.gateways.values()
            for d in gw.deployments
            if d.model.startswith("local/")
        ]


def is_loopback(host: str) -> bool:
    """True for addresses only this machine can reach (127.0.0.0/8, ::1, localhost)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def plan(config: ServerConfig, resolve_credentials: bool = False) -> dict[str, Any]:
    """The resolved config as plain data, secrets masked (what ``msgflux config check`` prints).

    Cloud deployments (Bedrock, Vertex) name their credential source; with
    ``resolve_credentials`` it is resolved (botocore's chain, ADC: possibly a metadata
    service call, so not on a server's event loop), never shown."""
    server = config.server
    keys = [
        {
            "name": k.name,
            **(
                {"key": _secrets.MASK} if k.from_env else {"key_sha256": k.digest.hex()[:8] + "..."}
            ),
            "models": "*" if k.models is None else sorted(k.models),
            **({"admin": True} if k.admin else {}),
            **_limits_plan(k.limits),
        }
        for k in server.keys
    ]
    out: dict[str, Any] = {
        "source": config.source,
        "server": {
            "host": server.host or DEFAULT_HOST,
            "port": DEFAULT_PORT if server.port is None else server.port,
            "workers": server.workers or 1,
            "state": _redacted(server.state),
            "max_body_bytes": server.max_body_bytes,
            "shutdown_grace": server.shutdown_grace,
            "drain_delay": server.drain_delay,
            "metrics": server.metrics,
            "access_log": server.access_log,
            "header_timeout": server.header_timeout,
            "body_timeout": server.body_timeout,
            "send_timeout": server.send_timeout,
            "keep_alive": server.keep_alive,
            "max_connections": server.max_connections,
            "responses_ttl": server.responses_ttl,
            "keys": keys or "none (loopback only)",
        },
        "gateways": {},
    }
    for gw in config.gateways.values():
        options = dict(gw.raw_options)
        if "state" in options:
            options["state"] = _redacted(options["state"])
        models = []
        for dep in gw.deployments:
            params = dict(dep.params)
            cls = _model_class(gw.type, dep.model)
            for name in getattr(cls, "secret_params", ("api_key",)):
                if params.get(name) is not None:
                    params[name] = _secrets.MASK
            entry = {"model_name": dep.model_name, "model": dep.model, **dep.keys, **params}
            describe = getattr(cls, "describe_credentials", None)
            if describe is not None:  # cloud providers: which credentials calls will use
                entry["credentials"] = describe(dep.params, resolve_credentials)
            models.append(entry)
        out["gateways"][gw.name] = {"type": gw.type, **options, "models": models}
    return _secrets.scrub_value(out)  # type: ignore[no-any-return]


def _model_class(kind: str, model: str) -> Any:
    """The class a deployment's ``provider/model_id`` builds (None when unknown)."""
    from msgflux.models.registry import lookup

    try:
        return lookup(kind, model.partition("/")[0])
    except ValueError:
        return None


def _limits_plan(limits: KeyLimits) -> dict[str, Any]:
    out: dict[str, Any] = {
        k: getattr(limits, k) for k in ("rpm", "tpm", "max_concurrency") if getattr(limits, k)
    }
    if limits.budget is not None:
        out["budget"] = {"usd": limits.budget.usd, "period": limits.budget.period}
    return out


def _redacted(url: str | None) -> str | None:
    if url is None:
        return None
    return re.sub(r"//([^@/]*):([^@/]*)@", lambda m: f"//{m.group(1)}:{_secrets.MASK}@", url)
