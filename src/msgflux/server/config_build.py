"""Building a :class:`~msgflux.server.config_specs.ServerConfig` from a config's expanded data.

What each section may hold and how each value becomes part of a spec: ``gateways:`` (one
:class:`~msgflux.server.config_specs.GatewaySpec` per name; its options are
``ModelGateway``'s own, code options imported from ``"package.module:name"``), each
deployment under ``models:`` (deployment keys for the gateway, the rest for the model's
constructor, checked against its signature) and ``server:`` (process settings, client keys).

Separate from reading the file (:mod:`msgflux.server.config_yaml`), from the field checks
(:mod:`msgflux.server.config_checks`) and from the specs themselves
(:mod:`msgflux.server.config_specs`): this is the one place that knows the config's keys.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib
import inspect
import os
import re
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any
from urllib.parse import urlsplit

from msgflux import _secrets, exceptions
from msgflux.models.gateway.breaker import Breaker
from msgflux.models.gateway.deployment import DEPLOYMENT_KEYS
from msgflux.models.gateway.gateway import ModelGateway
from msgflux.models.gateway.hedge import Hedge
from msgflux.models.registry import lookup
from msgflux.server.config_checks import (
    IMPORTED_OPTIONS,
    ConfigError,
    FromEnv,
    as_bool,
    as_int,
    as_mapping,
    as_seconds,
    as_text,
    closest,
    join,
    kind_of,
    only_keys,
    plain,
    typed,
)
from msgflux.server.config_specs import (
    DeploymentSpec,
    GatewaySpec,
    KeySpec,
    ServerConfig,
    ServerSettings,
)
from msgflux.server.key_limits import LIMIT_KEYS, parse_key_limits

__all__ = [
    "CLIENT_KEY_KEYS",
    "GATEWAY_EXTRA_KEYS",
    "GATEWAY_OPTIONS",
    "GATEWAY_TYPES",
    "SERVER_KEYS",
    "build_config",
    "model_parameters",
]

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
    "header_timeout",
    "body_timeout",
    "send_timeout",
    "keep_alive",
    "max_connections",
    "responses_ttl",
)
_CLIENT_TIMEOUTS = ("header_timeout", "body_timeout", "send_timeout", "keep_alive")
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

_MATCHER_OPTIONS = ("fallback_on", "raise_on")
"""Exception names from ``msgflux.exceptions`` (``RateLimitError``) or import paths."""


def build_config(data: Mapping[Any, Any], source: str = "<config>") -> ServerConfig:
    """The validated config of ``data`` (YAML already read, ``${VAR}`` already expanded)."""
    only_keys(data, ("gateways", "server"), "")
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
    for spec in gateways.values():
        cache = spec.options.get("cache")
        if isinstance(cache, dict) and cache.get("store") == "redis" and server.state is None:
            raise ConfigError(
                f"gateways.{spec.name}.cache.store",
                "redis means server.state, which is not set: set server.state, or give the "
                "cache its own redis:// URL here",
            )
    return ServerConfig(MappingProxyType(gateways), server, source)


# -- gateways ---------------------------------------------------------------------------------
def _gateway(name: str, raw: Any, path: str) -> GatewaySpec:
    spec = as_mapping(raw, path, "a mapping with a `models:` list")
    accepted = (*GATEWAY_EXTRA_KEYS, *GATEWAY_OPTIONS)
    only_keys(spec, accepted, path)
    kind = as_text(spec.get("type", "chat_completion"), join(path, "type"))
    assert kind is not None
    if kind not in GATEWAY_TYPES:
        raise ConfigError(
            join(path, "type"), f"unknown type {kind!r}; {closest(kind, GATEWAY_TYPES)}"
        )
    models = spec.get("models")
    models_path = join(path, "models")
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
    raw_options = {k: plain(typed(v, k)) for k, v in spec.items() if k not in GATEWAY_EXTRA_KEYS}
    options = {k: _option(k, v, join(path, k)) for k, v in raw_options.items()}
    return GatewaySpec(
        name,
        kind,
        MappingProxyType(options),
        deployments,
        MappingProxyType(raw_options),
    )


def _option(key: str, value: Any, path: str) -> Any:
    if key in IMPORTED_OPTIONS and value is not None:
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
    if key == "cache":
        return _cache(value, path)
    if key in ("breaker", "hedge") and isinstance(value, dict):
        _nested_keys(key, value, path)
    return value


_CACHE_KEYS = ("ttl", "store", "max_bytes", "max_entry_bytes", "cache_sampled")


def _cache(value: Any, path: str) -> Any:
    """``cache:``: true, false, or ``{ttl, store, max_bytes, max_entry_bytes, cache_sampled}``
    where ``store`` is ``memory`` (the default), ``redis`` (``server.state``) or a URL."""
    if value is None or isinstance(value, bool):
        return value
    spec = as_mapping(value, path, "true, or a mapping {ttl, store: memory|redis, ...}")
    only_keys(spec, _CACHE_KEYS, path)
    out: dict[str, Any] = {}
    if spec.get("ttl") is not None:
        out["ttl"] = as_seconds(spec["ttl"], join(path, "ttl"))
        if out["ttl"] <= 0:
            raise ConfigError(join(path, "ttl"), "must be a number of seconds > 0, got 0")
    store = as_text(spec.get("store", "memory"), join(path, "store"))
    if store not in ("memory", "redis"):
        store = _state_url(store, join(path, "store"))
    out["store"] = store
    for key in ("max_bytes", "max_entry_bytes"):
        if spec.get(key) is not None:
            out[key] = as_int(spec[key], join(path, key), 1, 1 << 40)
    if out.get("max_bytes") is not None and store != "memory":
        raise ConfigError(
            join(path, "max_bytes"), "bounds a memory store; Redis has its own maxmemory"
        )
    if spec.get("cache_sampled") is not None:
        out["cache_sampled"] = as_bool(spec["cache_sampled"], join(path, "cache_sampled"))
    return out


def _nested_keys(key: str, value: dict[str, Any], path: str) -> None:
    cls = Breaker if key == "breaker" else Hedge
    fields = [f.name for f in dataclasses.fields(cls) if f.name != "failure_on"]
    only_keys(value, fields, path)


def _import(value: Any, path: str) -> Any:
    text = as_text(value, path)
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
    text = as_text(value, path)
    assert text is not None
    if ":" in text:
        target = _import(text, path)
    else:
        target = getattr(exceptions, text, None)
        if not (isinstance(target, type) and issubclass(target, BaseException)):
            names = [n for n in exceptions.__all__ if n[0].isupper() and n != "Attempt"]
            raise ConfigError(path, f"unknown exception {text!r}; {closest(text, names)}")
    return target


STATE_SCHEMES = ("redis://", "rediss://", "unix://", "redis+cluster://", "rediss+cluster://")


def _state_url(value: Any, path: str) -> str | None:
    url = as_text(value, path, optional=True)
    if url is not None and not url.startswith(STATE_SCHEMES):
        raise ConfigError(
            path,
            "must be a redis://, rediss://, unix://, redis+cluster:// or rediss+cluster:// URL, "
            f"got {url!r}",
        )
    if url is not None:
        _register_url_password(url)
    return url


def _register_url_password(url: str) -> None:
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
    spec = as_mapping(raw, path, "a mapping with model_name and model")
    if "api_base" in spec:  # LiteLLM's (and older OpenAI SDKs') name for base_url
        if "base_url" in spec:
            raise ConfigError(join(path, "api_base"), "an alias of base_url, which is set too")
        spec = {("base_url" if k == "api_base" else k): v for k, v in spec.items()}
    for key in ("model_name", "model"):
        if key not in spec:
            raise ConfigError(join(path, key), "required")
    model_name = as_text(typed(spec["model_name"], "model_name"), join(path, "model_name"))
    model = as_text(typed(spec["model"], "model"), join(path, "model"))
    assert model_name is not None and model is not None
    cls = _model_class(kind, model, join(path, "model"))
    params = model_parameters(cls)
    accepted = list(dict.fromkeys([*DEPLOYMENT_KEYS, *params]))
    only_keys(spec, accepted, path)
    keys: dict[str, Any] = {}
    model_args: dict[str, Any] = {}
    for key, value in spec.items():
        if key in ("model", "model_name"):
            continue
        resolved = plain(typed(value, key))
        if key in DEPLOYMENT_KEYS:
            keys[key] = resolved
        else:
            model_args[key] = (
                str(value)
                if _is_text_param(params.get(key)) and isinstance(value, FromEnv)
                else resolved
            )
    for secret in getattr(cls, "secret_params", ("api_key",)):
        value = model_args.get(secret)
        if value is None or isinstance(value, Mapping):
            continue  # a mapping (a service account's JSON): its model registers its secrets
        as_text(value, join(path, secret))
        if not os.path.isfile(str(value)):  # a credentials file's path is not the secret
            _secrets.register(str(value))
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
    spec = as_mapping(raw, "server", "a mapping")
    only_keys(spec, SERVER_KEYS, "server")
    out: dict[str, Any] = {}
    if spec.get("host") is not None:
        out["host"] = as_text(typed(spec["host"], "host"), "server.host")
    if spec.get("port") is not None:
        out["port"] = as_int(spec["port"], "server.port", 0, 65535)
    if spec.get("workers") is not None:
        out["workers"] = as_int(spec["workers"], "server.workers", 1, 512)
    if spec.get("state") is not None:
        out["state"] = _state_url(typed(spec["state"], "state"), "server.state")
    if spec.get("max_body_bytes") is not None:
        out["max_body_bytes"] = as_int(spec["max_body_bytes"], "server.max_body_bytes", 1, 1 << 34)
    for key in ("shutdown_grace", "drain_delay", "responses_ttl", *_CLIENT_TIMEOUTS):
        if spec.get(key) is not None:
            out[key] = as_seconds(spec[key], f"server.{key}")
            if key in _CLIENT_TIMEOUTS and out[key] <= 0:
                raise ConfigError(f"server.{key}", "must be a number of seconds > 0, got 0")
    if spec.get("max_connections") is not None:
        out["max_connections"] = as_int(
            spec["max_connections"], "server.max_connections", 1, 1 << 20
        )
    for key in ("metrics", "access_log"):
        if spec.get(key) is not None:
            out[key] = as_bool(spec[key], f"server.{key}")
    if spec.get("keys") is not None:
        out["keys"] = _keys(spec["keys"], gateways)
    return ServerSettings(**out)


def _keys(raw: Any, gateways: Mapping[str, GatewaySpec]) -> tuple[KeySpec, ...]:
    if not isinstance(raw, list):
        raise ConfigError(
            "server.keys", f"must be a list of {{name, key, models}}, got {kind_of(raw)}"
        )
    out: list[KeySpec] = []
    names: set[str] = set()
    digests: set[bytes] = set()
    for i, item in enumerate(raw):
        path = f"server.keys[{i}]"
        spec = as_mapping(item, path, "a mapping {name, key (or key_sha256), models}")
        only_keys(spec, CLIENT_KEY_KEYS, path)
        name = as_text(typed(spec.get("name"), "name"), join(path, "name"))
        assert name is not None
        if name in names:
            raise ConfigError(join(path, "name"), f"duplicate key name {name!r}")
        names.add(name)
        has_key, has_digest = spec.get("key") is not None, spec.get("key_sha256") is not None
        if has_key == has_digest:
            raise ConfigError(path, "give exactly one of `key` (e.g. ${MY_KEY}) or `key_sha256`")
        if has_key:
            value = as_text(
                str(spec["key"]) if isinstance(spec["key"], FromEnv) else spec["key"],
                join(path, "key"),
            )
            assert value is not None
            if len(value) < 8:
                raise ConfigError(join(path, "key"), "a client key must be at least 8 characters")
            _secrets.register(value)
            digest = hashlib.sha256(value.encode()).digest()
        else:
            hex_value = as_text(typed(spec["key_sha256"], "key_sha256"), join(path, "key_sha256"))
            assert hex_value is not None
            if not re.fullmatch(r"[0-9a-fA-F]{64}", hex_value):
                raise ConfigError(
                    join(path, "key_sha256"), "must be 64 hex digits (sha256sum of the key)"
                )
            digest = bytes.fromhex(hex_value)
        if digest in digests:
            raise ConfigError(path, "the same key is listed twice")
        digests.add(digest)
        allowed = _allowed(spec.get("models"), path, gateways)
        admin = spec.get("admin") is not None and as_bool(spec["admin"], join(path, "admin"))
        limits = parse_key_limits(spec, path)
        out.append(KeySpec(name, digest, allowed, has_key, limits, admin))
    return tuple(out)


def _allowed(value: Any, path: str, gateways: Mapping[str, GatewaySpec]) -> frozenset[str] | None:
    path = join(path, "models")
    if value == "*":
        return None
    if value is None:
        raise ConfigError(path, 'required: the gateways this key may use, a list or "*"')
    items = value if isinstance(value, list) else None
    if items is None or not all(isinstance(v, str) for v in items):
        raise ConfigError(path, f'must be a list of gateway names or "*", got {kind_of(value)}')
    for j, name in enumerate(items):
        if name not in gateways:
            raise ConfigError(
                f"{path}[{j}]", f"unknown gateway {name!r}; {closest(name, list(gateways))}"
            )
    return frozenset(items)
