"""The server's config file: YAML, strict, environment-expanded, validated before anything runs.

A config mirrors the library: one entry per gateway name under ``gateways:`` holding
``ModelGateway``'s options and, under ``models:``, its deployment dicts (plus ``base_url``,
``api_key`` and the model's own parameters such as ``temperature``). A ``server:`` section holds
the process settings and the client keys::

    gateways:
      fake:                       # the name clients send as "model"
        models:
          - model_name: up
            model: openai_compatible/fake
            base_url: http://127.0.0.1:8000/v1

Strict means an unknown key is an error naming its path and the closest valid key
(``gateways.chat.models[1].timout: unknown key; did you mean 'timeout'?``), a duplicated key is
an error, and every value is checked. ``${VAR}`` and ``${VAR:-default}`` in a value read the
environment (``$${`` is a literal ``${``); a missing variable fails naming it. A value that is a
single reference takes the type YAML would give the variable's text (``port: ${PORT}`` is an
int) except where the key is text (keys, URLs, names), where it stays text.

:func:`load_config` returns a frozen :class:`ServerConfig`; :mod:`msgflux.server.runtime` turns
it into gateways. Nothing here opens a connection or reads a key file beyond the config itself.
"""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import importlib
import inspect
import ipaddress
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import MappingProxyType
from typing import Any

from msgflux import _secrets
from msgflux.models.gateway.deployment import DEPLOYMENT_KEYS
from msgflux.models.gateway.gateway import ModelGateway
from msgflux.models.registry import lookup
from msgflux.server.key_limits import LIMIT_KEYS, NO_LIMITS, KeyLimits, parse_key_limits

__all__ = [
    "DEFAULT_HOST",
    "DEFAULT_MAX_BODY_BYTES",
    "DEFAULT_PORT",
    "DEFAULT_SHUTDOWN_GRACE",
    "GATEWAY_TYPES",
    "ConfigError",
    "DeploymentSpec",
    "GatewaySpec",
    "KeySpec",
    "ServerConfig",
    "ServerSettings",
    "is_loopback",
    "load_config",
    "parse_config",
    "plan",
]

yaml: Any = importlib.import_module("yaml")

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 4000
DEFAULT_SHUTDOWN_GRACE = 600.0
DEFAULT_MAX_BODY_BYTES = 32 * 1024 * 1024
"""32 MiB: above OpenAI's 25 MB audio upload limit, far above any chat request."""

GATEWAY_TYPES = (
    "chat_completion",
    "text_embedder",
    "moderation",
    "text_to_speech",
    "speech_to_text",
    "text_to_image",
)

SERVER_KEYS = (
    "host",
    "port",
    "workers",
    "state",
    "max_body_bytes",
    "shutdown_grace",
    "drain_delay",
    "keys",
    "metrics",
    "access_log",
)
CLIENT_KEY_KEYS = ("name", "key", "key_sha256", "models", "admin", *LIMIT_KEYS)
GATEWAY_EXTRA_KEYS = ("type", "models")

_NOT_YAML_OPTIONS = ("models", "clock")
"""``ModelGateway`` arguments a config cannot give (the deployments come from ``models:``)."""
GATEWAY_OPTIONS = tuple(
    name
    for name in inspect.signature(ModelGateway.__init__).parameters
    if name != "self" and name not in _NOT_YAML_OPTIONS
)
"""Read from ``ModelGateway`` itself, so a new gateway option is a config key at once."""

_IMPORTED_OPTIONS = (
    "retry",
    "wait",
    "stop",
    "on_attempt",
    "on_fallback",
    "on_success",
    "on_failure",
)
"""Options whose value is code: given as an import path ``"package.module:name"``."""
_MATCHER_OPTIONS = ("fallback_on", "raise_on")
"""Exception names from ``msgflux.exceptions`` (``RateLimitError``) or import paths."""

_TEXT_KEYS = frozenset(
    {
        "host",
        "state",
        "name",
        "key",
        "key_sha256",
        "model_name",
        "model",
        "base_url",
        "api_key",
        "description",
        "timezone",
        "type",
        "organization",
        "project",
        "strategy",
        "mid_stream",
        "when_all_open",
        *_IMPORTED_OPTIONS,
    }
)
"""Keys whose ``${VAR}`` value stays text whatever it looks like."""

_MODEL_ROUTED_TO_DEPLOYMENT = (
    "max_retries",
    "timeout",
    "first_chunk_timeout",
    "idle_timeout",
    "max_response_bytes",
    "max_event_bytes",
)
"""Names that are both deployment keys and model arguments: the deployment (gateway) uses them."""


class ConfigError(ValueError):
    """A mistake in the config file; ``path`` names where (``gateways.chat.models[1].timeout``)."""

    def __init__(self, path: str, message: str) -> None:
        self.path = path
        self.message = message
        super().__init__(f"{path}: {message}" if path else message)


# -- the loaded config ------------------------------------------------------------------------
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


# -- loading ----------------------------------------------------------------------------------
class _StrictLoader(yaml.SafeLoader):  # type: ignore[misc]
    """SafeLoader that refuses duplicate keys (YAML would keep the last one silently)."""


def _construct_mapping(loader: Any, node: Any, deep: bool = False) -> dict[Any, Any]:
    loader.flatten_mapping(node)
    out: dict[Any, Any] = {}
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in out:
            line = key_node.start_mark.line + 1
            raise ConfigError("", f"line {line}: duplicate key {key!r}")
        out[key] = loader.construct_object(value_node, deep=deep)
    return out


_StrictLoader.add_constructor(
    yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG,
    _construct_mapping,
)


def load_config(path: str | os.PathLike[str], env: Mapping[str, str] | None = None) -> ServerConfig:
    """Read, expand and validate the YAML file at ``path`` (raises :class:`ConfigError`)."""
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError("", f"cannot read {str(file)!r}: {exc.strerror or exc}") from None
    return parse_config(text, env, source=str(file))


def parse_config(
    text: str, env: Mapping[str, str] | None = None, *, source: str = "<config>"
) -> ServerConfig:
    """Validate a config given as YAML text (see :func:`load_config`)."""
    try:
        data = yaml.load(text, Loader=_StrictLoader)  # a SafeLoader subclass
    except yaml.YAMLError as exc:
        raise ConfigError("", f"not valid YAML: {exc}") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError("", f"the config must be a mapping, got {_kind(data)}")
    data = _expand(data, "", os.environ if env is None else env)
    _only(data, ("gateways", "server"), "")
    gateways_raw = data.get("gateways")
    if not isinstance(gateways_raw, dict) or not gateways_raw:
        raise ConfigError(
            "gateways", "required: a mapping of gateway name -> {models: [...], options}"
        )
    gateways: dict[str, GatewaySpec] = {}
    for name, raw in gateways_raw.items():
        if not isinstance(name, str) or not name.strip():
            raise ConfigError(
                "gateways", f"a gateway name must be a non-empty string, got {name!r}"
            )
        gateways[name] = _gateway(name, raw, f"gateways.{name}")
    server = _server(data.get("server"), gateways)
    return ServerConfig(MappingProxyType(gateways), server, source)


# -- ${VAR} expansion -------------------------------------------------------------------------
_REFERENCE = re.compile(r"\$\$\{|\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-(.*?))?\}")
_WHOLE = re.compile(r"\$\{[A-Za-z_][A-Za-z0-9_]*(?::-.*?)?\}")


class _FromEnv(str):
    """Text that came from a single ``${VAR}``: may still become a number for a numeric key."""

    __slots__ = ()


def _expand(value: Any, path: str, env: Mapping[str, str]) -> Any:
    if isinstance(value, str):
        return _expand_text(value, path, env)
    if isinstance(value, dict):
        return {k: _expand(v, _join(path, str(k)), env) for k, v in value.items()}
    if isinstance(value, list):
        return [_expand(v, f"{path}[{i}]", env) for i, v in enumerate(value)]
    return value


def _expand_text(text: str, path: str, env: Mapping[str, str]) -> Any:
    if "$" not in text:
        return text

    def sub(match: re.Match[str]) -> str:
        if match.group(0) == "$${":
            return "${"
        name, default = match.group(1), match.group(2)
        value = env.get(name)
        if value is None or (value == "" and default is not None):
            if default is None:
                raise ConfigError(
                    path,
                    f"environment variable {name} is not set "
                    f"(set it, or give a default: ${{{name}:-value}})",
                )
            return default
        return value

    expanded = _REFERENCE.sub(sub, text)
    if _WHOLE.fullmatch(text):
        return _FromEnv(expanded)
    return expanded


def _typed(value: Any, key: str) -> Any:
    """A whole-value ``${VAR}`` as YAML would type its text, unless ``key`` is a text key."""
    if not isinstance(value, _FromEnv):
        return value
    if key in _TEXT_KEYS:
        return str(value)
    try:
        resolved = yaml.safe_load(str(value))
    except yaml.YAMLError:
        return str(value)
    return resolved if isinstance(resolved, (int, float, bool)) or resolved is None else str(value)


def _plain(value: Any) -> Any:
    """``value`` with every ``${VAR}`` typed (for dicts passed on as they are)."""
    if isinstance(value, dict):
        return {k: _plain(_typed(v, str(k))) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(_typed(v, "")) for v in value]
    return _typed(value, "")


# -- shared checks ----------------------------------------------------------------------------
def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    return {dict: "a mapping", list: "a list", str: "a string", bool: "a boolean"}.get(
        type(value), type(value).__name__
    )


def _closest(key: str, accepted: Sequence[str]) -> str:
    match = difflib.get_close_matches(key, accepted, n=1, cutoff=0.6)
    if match:
        return f"did you mean {match[0]!r}?"
    return "accepted: " + ", ".join(accepted)


def _only(mapping: Mapping[Any, Any], accepted: Sequence[str], path: str) -> None:
    for key in mapping:
        if key not in accepted:
            raise ConfigError(_join(path, str(key)), f"unknown key; {_closest(str(key), accepted)}")


def _mapping(value: Any, path: str, what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ConfigError(path, f"must be {what}, got {_kind(value)}")
    return value


def _text(value: Any, path: str, *, optional: bool = False) -> str | None:
    if value is None and optional:
        return None
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(path, f"must be a non-empty string, got {_kind(value)}")
    return str(value)


def _int(value: Any, path: str, low: int, high: int) -> int:
    value = _typed(value, "")
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(path, f"must be an integer between {low} and {high}, got {value!r}")
    if not low <= value <= high:
        raise ConfigError(path, f"must be between {low} and {high}, got {value}")
    return value


def _seconds(value: Any, path: str) -> float:
    value = _typed(value, "")
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
        raise ConfigError(path, f"must be a number of seconds >= 0, got {value!r}")
    if value == float("inf"):
        raise ConfigError(path, "must be finite")
    return float(value)


# -- gateways ---------------------------------------------------------------------------------
def _gateway(name: str, raw: Any, path: str) -> GatewaySpec:
    spec = _mapping(raw, path, "a mapping with a `models:` list")
    accepted = (*GATEWAY_EXTRA_KEYS, *GATEWAY_OPTIONS)
    _only(spec, accepted, path)
    kind = _text(spec.get("type", "chat_completion"), _join(path, "type"))
    assert kind is not None
    if kind not in GATEWAY_TYPES:
        raise ConfigError(
            _join(path, "type"), f"unknown type {kind!r}; {_closest(kind, GATEWAY_TYPES)}"
        )
    models = spec.get("models")
    models_path = _join(path, "models")
    if not isinstance(models, list) or not models:
        raise ConfigError(
            models_path, "required: a non-empty list of deployments (model_name, model, ...)"
        )
    deployments = tuple(
        _deployment(kind, item, f"{models_path}[{i}]") for i, item in enumerate(models)
    )
    seen: set[str] = set()
    for i, dep in enumerate(deployments):
        if dep.model_name in seen:
            raise ConfigError(
                f"{models_path}[{i}].model_name", f"duplicate model_name {dep.model_name!r}"
            )
        seen.add(dep.model_name)
    raw_options = {k: _plain(_typed(v, k)) for k, v in spec.items() if k not in GATEWAY_EXTRA_KEYS}
    options = {k: _option(k, v, _join(path, k)) for k, v in raw_options.items()}
    return GatewaySpec(
        name,
        kind,
        MappingProxyType(options),
        deployments,
        MappingProxyType(raw_options),
    )


def _option(key: str, value: Any, path: str) -> Any:
    if key in _IMPORTED_OPTIONS and value is not None:
        if isinstance(value, list):
            return [_import(v, f"{path}[{i}]") for i, v in enumerate(value)]
        return _import(value, path)
    if key in _MATCHER_OPTIONS and value is not None:
        items = value if isinstance(value, list) else [value]
        return [
            _exception(v, f"{path}[{i}]" if isinstance(value, list) else path)
            for i, v in enumerate(items)
        ]
    if key == "strategy" and isinstance(value, str) and ":" in value:
        return _import(value, path)
    if key == "state":
        return _state_url(value, path)
    if key in ("breaker", "hedge") and isinstance(value, dict):
        _nested_keys(key, value, path)
    return value


def _nested_keys(key: str, value: dict[str, Any], path: str) -> None:
    from msgflux.models.gateway.breaker import Breaker
    from msgflux.models.gateway.hedge import Hedge

    cls = Breaker if key == "breaker" else Hedge
    fields = [f.name for f in dataclasses.fields(cls) if f.name != "failure_on"]
    _only(value, fields, path)


def _import(value: Any, path: str) -> Any:
    text = _text(value, path)
    assert text is not None
    module_name, sep, attr = text.partition(":")
    if not sep or not module_name or not attr:
        raise ConfigError(path, f"must be an import path like 'package.module:name', got {text!r}")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(path, f"cannot import {module_name!r}: {exc}") from None
    target: Any = module
    for part in attr.split("."):
        try:
            target = getattr(target, part)
        except AttributeError:
            raise ConfigError(path, f"{module_name!r} has no attribute {attr!r}") from None
    return target


def _exception(value: Any, path: str) -> Any:
    text = _text(value, path)
    assert text is not None
    if ":" in text:
        target = _import(text, path)
    else:
        from msgflux import exceptions

        target = getattr(exceptions, text, None)
        if not (isinstance(target, type) and issubclass(target, BaseException)):
            names = [n for n in exceptions.__all__ if n[0].isupper() and n != "Attempt"]
            raise ConfigError(path, f"unknown exception {text!r}; {_closest(text, names)}")
    return target


def _state_url(value: Any, path: str) -> str | None:
    url = _text(value, path, optional=True)
    if url is not None and not url.startswith(("redis://", "rediss://", "unix://")):
        raise ConfigError(path, f"must be a redis://, rediss:// or unix:// URL, got {url!r}")
    if url is not None:
        _register_url_password(url)
    return url


def _register_url_password(url: str) -> None:
    from urllib.parse import urlsplit

    try:
        password = urlsplit(url).password
    except ValueError:
        return
    _secrets.register(password)


def _model_class(kind: str, model: str, path: str) -> type[Any]:
    provider, sep, model_id = model.partition("/")
    if not sep or not provider or not model_id:
        raise ConfigError(
            path, f"must be 'provider/model_id' (e.g. 'openai/gpt-4.1-nano'), got {model!r}"
        )
    try:
        return lookup(kind, provider)
    except ValueError as exc:
        raise ConfigError(path, str(exc)) from None


def model_parameters(cls: type[Any]) -> dict[str, inspect.Parameter]:
    """The keyword arguments a model class's constructor takes (``model_id`` excluded)."""
    try:
        params = inspect.signature(cls.__init__).parameters
    except (TypeError, ValueError):
        return {}
    return {
        name: p
        for name, p in params.items()
        if name not in ("self", "model_id", "clock")
        and p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)
    }


def _deployment(kind: str, raw: Any, path: str) -> DeploymentSpec:
    spec = _mapping(raw, path, "a mapping with model_name and model")
    for key in ("model_name", "model"):
        if key not in spec:
            raise ConfigError(_join(path, key), "required")
    model_name = _text(_typed(spec["model_name"], "model_name"), _join(path, "model_name"))
    model = _text(_typed(spec["model"], "model"), _join(path, "model"))
    assert model_name is not None and model is not None
    cls = _model_class(kind, model, _join(path, "model"))
    params = model_parameters(cls)
    accepted = list(dict.fromkeys([*DEPLOYMENT_KEYS, *params]))
    _only(spec, accepted, path)
    keys: dict[str, Any] = {}
    model_args: dict[str, Any] = {}
    for key, value in spec.items():
        if key in ("model", "model_name"):
            continue
        typed = _plain(_typed(value, key))
        if key in DEPLOYMENT_KEYS:
            keys[key] = typed
        else:
            model_args[key] = (
                str(value)
                if _is_text_param(params.get(key)) and isinstance(value, _FromEnv)
                else typed
            )
    for secret in ("api_key",):
        if model_args.get(secret) is not None:
            _text(model_args[secret], _join(path, secret))
            _secrets.register(str(model_args[secret]))
    return DeploymentSpec(model_name, model, MappingProxyType(keys), MappingProxyType(model_args))


def _is_text_param(param: inspect.Parameter | None) -> bool:
    if param is None:
        return False
    annotation = str(param.annotation)
    return "str" in annotation and not any(t in annotation for t in ("int", "float", "bool"))


# -- the server section -----------------------------------------------------------------------
def _server(raw: Any, gateways: Mapping[str, GatewaySpec]) -> ServerSettings:
    if raw is None:
        return ServerSettings()
    spec = _mapping(raw, "server", "a mapping")
    _only(spec, SERVER_KEYS, "server")
    out: dict[str, Any] = {}
    if spec.get("host") is not None:
        out["host"] = _text(_typed(spec["host"], "host"), "server.host")
    if spec.get("port") is not None:
        out["port"] = _int(spec["port"], "server.port", 0, 65535)
    if spec.get("workers") is not None:
        out["workers"] = _int(spec["workers"], "server.workers", 1, 512)
    if spec.get("state") is not None:
        out["state"] = _state_url(_typed(spec["state"], "state"), "server.state")
    if spec.get("max_body_bytes") is not None:
        out["max_body_bytes"] = _int(spec["max_body_bytes"], "server.max_body_bytes", 1, 1 << 34)
    for key in ("shutdown_grace", "drain_delay"):
        if spec.get(key) is not None:
            out[key] = _seconds(spec[key], f"server.{key}")
    for key in ("metrics", "access_log"):
        if spec.get(key) is not None:
            out[key] = _bool(spec[key], f"server.{key}")
    if spec.get("keys") is not None:
        out["keys"] = _keys(spec["keys"], gateways)
    return ServerSettings(**out)


def _keys(raw: Any, gateways: Mapping[str, GatewaySpec]) -> tuple[KeySpec, ...]:
    if not isinstance(raw, list):
        raise ConfigError(
            "server.keys", f"must be a list of {{name, key, models}}, got {_kind(raw)}"
        )
    out: list[KeySpec] = []
    names: set[str] = set()
    digests: set[bytes] = set()
    for i, item in enumerate(raw):
        path = f"server.keys[{i}]"
        spec = _mapping(item, path, "a mapping {name, key (or key_sha256), models}")
        _only(spec, CLIENT_KEY_KEYS, path)
        name = _text(_typed(spec.get("name"), "name"), _join(path, "name"))
        assert name is not None
        if name in names:
            raise ConfigError(_join(path, "name"), f"duplicate key name {name!r}")
        names.add(name)
        has_key, has_digest = spec.get("key") is not None, spec.get("key_sha256") is not None
        if has_key == has_digest:
            raise ConfigError(path, "give exactly one of `key` (e.g. ${MY_KEY}) or `key_sha256`")
        if has_key:
            value = _text(
                str(spec["key"]) if isinstance(spec["key"], _FromEnv) else spec["key"],
                _join(path, "key"),
            )
            assert value is not None
            if len(value) < 8:
                raise ConfigError(_join(path, "key"), "a client key must be at least 8 characters")
            _secrets.register(value)
            digest = hashlib.sha256(value.encode()).digest()
        else:
            hex_value = _text(_typed(spec["key_sha256"], "key_sha256"), _join(path, "key_sha256"))
            assert hex_value is not None
            if not re.fullmatch(r"[0-9a-fA-F]{64}", hex_value):
                raise ConfigError(
                    _join(path, "key_sha256"), "must be 64 hex digits (sha256sum of the key)"
                )
            digest = bytes.fromhex(hex_value)
        if digest in digests:
            raise ConfigError(path, "the same key is listed twice")
        digests.add(digest)
        allowed = _allowed(spec.get("models"), path, gateways)
        admin = spec.get("admin") is not None and _bool(spec["admin"], _join(path, "admin"))
        limits = parse_key_limits(spec, path)
        out.append(KeySpec(name, digest, allowed, has_key, limits, admin))
    return tuple(out)


def _bool(value: Any, path: str) -> bool:
    value = _typed(value, "")
    if not isinstance(value, bool):
        raise ConfigError(path, f"must be true or false, got {value!r}")
    return value


def _allowed(value: Any, path: str, gateways: Mapping[str, GatewaySpec]) -> frozenset[str] | None:
    path = _join(path, "models")
    if value == "*":
        return None
    if value is None:
        raise ConfigError(path, 'required: the gateways this key may use, a list or "*"')
    items = value if isinstance(value, list) else None
    if items is None or not all(isinstance(v, str) for v in items):
        raise ConfigError(path, f'must be a list of gateway names or "*", got {_kind(value)}')
    for j, name in enumerate(items):
        if name not in gateways:
            raise ConfigError(
                f"{path}[{j}]", f"unknown gateway {name!r}; {_closest(name, list(gateways))}"
            )
    return frozenset(items)


def is_loopback(host: str) -> bool:
    """True for addresses only this machine can reach (127.0.0.0/8, ::1, localhost)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def plan(config: ServerConfig) -> dict[str, Any]:
    """The resolved config as plain data, secrets masked (what ``msgflux config check`` prints)."""
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
            if params.get("api_key") is not None:
                params["api_key"] = _secrets.MASK
            models.append({"model_name": dep.model_name, "model": dep.model, **dep.keys, **params})
        out["gateways"][gw.name] = {"type": gw.type, **options, "models": models}
    return _secrets.scrub_value(out)  # type: ignore[no-any-return]


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
