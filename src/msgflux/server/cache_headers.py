"""The response cache over HTTP: a client's ``Cache-Control`` header in, the cache's verdict
out.

For a gateway with a cache (``gateways.<name>.cache`` in the config), a request may say
``Cache-Control: no-cache`` (answer from upstream, replace the entry), ``no-store`` (do not
keep this answer), ``max-age=N`` (only an entry at most N seconds old) or ``only-if-cached``
(a cached answer or a 504); other directives are ignored, a malformed ``max-age`` is a 400
naming the header (:mod:`msgflux.models.gateway.cache.control`). Every answer of such a
gateway says ``x-msgflux-cache: hit``, ``miss`` or ``bypass``, a hit also its ``age`` (whole
seconds since a deployment gave the answer, as HTTP caches say it).

A cached answer spends nothing, so a key past its ``tpm`` or its budget may still have one
(:func:`.exchange.admit`): its request goes to the cache only, and the key's 429 is the answer
when the cache has none.
"""

from __future__ import annotations

from typing import Any

from msgflux.models.gateway.raw import RawAnswer, RawStream
from msgflux.server import exchange
from msgflux.server.asgi import Headers, Scope
from msgflux.server.errors import HTTPError
from msgflux.server.runtime import Route

__all__ = ["cache_headers", "cache_options", "not_cached", "only_cached"]


def cache_options(route: Route, scope: Scope) -> dict[str, Any]:
    """The per-call cache options of a request to ``route`` (none when it has no cache)."""
    if route.gateway.cache is None:
        return {}
    values = [v.decode("latin-1") for k, v in scope["headers"] if k == b"cache-control"]
    return {"cache_control": ", ".join(values)} if values else {}


def cache_headers(answer: RawAnswer | RawStream) -> Headers:
    """``x-msgflux-cache`` (and ``age`` on a hit) of an answer, if its gateway has a cache."""
    verdict = answer.cache
    if verdict is None:
        return []
    out: Headers = [(b"x-msgflux-cache", verdict.encode())]
    age = answer.cache_age
    if age is not None:
        out.append((b"age", str(int(age)).encode()))
    return out


def only_cached(options: dict[str, Any]) -> dict[str, Any]:
    """``options`` with ``only-if-cached`` added when the request's key was admitted for a
    cached answer only (past its tpm or budget)."""
    current = exchange.current()
    if current is None or current.cached_only is None:
        return options
    header = options.get("cache_control")
    directive = f"{header}, only-if-cached" if header else "only-if-cached"
    return {**options, "cache_control": directive}


def not_cached() -> HTTPError:
    """The answer to an ``only-if-cached`` request the cache could not answer: the key's own
    429 when its limits asked for it, else a 504 (HTTP's answer to the client's directive)."""
    current = exchange.current()
    refusal = current.cached_only if current is not None else None
    if refusal is not None:
        assert current is not None
        current.rejected = refusal.reason
        error: HTTPError = refusal.error()
        return error
    return HTTPError(
        504, "only-if-cached: the cache has no answer for this request", code="not_cached"
    )
