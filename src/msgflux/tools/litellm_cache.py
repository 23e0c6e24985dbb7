"""LiteLLM's response caching as the chat gateways' ``cache:``.

LiteLLM caches when ``litellm_settings.cache`` (or ``router_settings.cache_responses``) is
true, with ``litellm_settings.cache_params``: ``type`` ``local`` (the default: process memory)
becomes ``store: memory``; ``redis`` becomes ``store: redis`` (``server.state``, from
``router_settings.redis_*``) or its own ``redis://`` URL (``cache_params`` ``host``/``port``/
``password`` or ``url``; without them, LiteLLM's ``REDIS_HOST``/``REDIS_PORT`` variables);
``ttl`` (or ``default_in_memory_ttl``/``default_in_redis_ttl``) the ttl. LiteLLM caches every
request whatever its temperature, so the import sets ``cache_sampled: true``.

Not carried over, each reported: semantic and object-store caches (msgflux caches exact
matches in memory or Redis), ``mode: default_off`` (caching only the requests that opt in: no
cache is set), ``namespace`` and ``supported_call_types`` (msgflux caches chat calls).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from msgflux.tools.litellm_result import Conversion

__all__ = ["cache_option"]

_TTLS = ("ttl", "default_in_memory_ttl", "default_in_redis_ttl")
_CONNECTION = ("type", "host", "port", "password", "username", "url", "redis_url", "db")


def _part(conv: Conversion, value: Any) -> str:
    converted = conv.value(value)
    if isinstance(converted, str) and converted.startswith("${"):
        return converted
    return quote(str(converted), safe="")


def _redis(conv: Conversion, params: dict[str, Any], state: str | None) -> str:
    """The Redis of a ``type: redis`` cache: its own URL, else the server's state."""
    url = params.get("url") or params.get("redis_url")
    if url is not None:
        return str(conv.value(url))
    host = params.get("host")
    if host is None:
        if state is not None:
            return "redis"
        conv.approximated(
            "litellm_settings.cache_params.type",
            "redis without host: LiteLLM's REDIS_HOST/REDIS_PORT variables name it "
            "(a REDIS_PASSWORD is not carried over: put it in the URL)",
        )
        return "redis://${REDIS_HOST}:${REDIS_PORT:-6379}"
    auth = ""
    if params.get("password") is not None:
        user = _part(conv, params["username"]) if params.get("username") is not None else ""
        auth = f"{user}:{_part(conv, params['password'])}@"
    port = conv.value(params.get("port", 6379))
    db = f"/{conv.value(params['db'])}" if params.get("db") is not None else ""
    return f"redis://{auth}{conv.value(host)}:{port}{db}"


def cache_option(conv: Conversion, state: str | None) -> tuple[dict[str, Any] | None, list[str]]:
    """The ``cache:`` every chat gateway gets, and the header lines saying where it came from
    (None: LiteLLM does not cache, or caches in a way msgflux does not)."""
    enabled, where = conv.setting("cache")
    if enabled is not True:
        enabled, where = conv.setting("cache_responses")
    params = conv.litellm.get("cache_params")
    if not isinstance(params, dict):
        if params is not None:
            conv.unmapped("litellm_settings.cache_params", "expected a mapping; ignored")
        params = {}
    if enabled is not True:
        if params:
            conv.unmapped("litellm_settings.cache_params", "caching is off (cache: false)")
        return None, []
    kind = params.get("type", "local")
    if kind not in ("local", "redis"):
        conv.unmapped(
            where,
            f"a {kind!r} cache: msgflux caches exact matches in memory or Redis; no cache set",
        )
        return None, []
    if params.get("mode") == "default_off":
        conv.unmapped(
            where,
            "mode: default_off (only requests that opt in are cached) cannot be expressed; "
            "no cache set",
        )
        return None, []
    cache: dict[str, Any] = {"store": "memory" if kind == "local" else _redis(conv, params, state)}
    for key in _TTLS:
        if params.get(key) is not None:
            cache["ttl"] = conv.value(params[key])
            break
    else:
        conv.approximated(where, "LiteLLM keeps entries without a ttl; msgflux's default is 1 h")
    cache["cache_sampled"] = True
    for key in params:
        if key in (*_TTLS, *_CONNECTION, "mode"):
            continue
        why = "msgflux caches chat calls" if key == "supported_call_types" else "ignored"
        conv.unmapped(f"litellm_settings.cache_params.{key}", why)
    header = [
        f"{where}: true -> cache: {cache['store']!r} store on every chat gateway "
        "(cache_sampled: LiteLLM caches sampled requests too; clients opt out per request "
        "with Cache-Control: no-cache or no-store)"
    ]
    return cache, header
