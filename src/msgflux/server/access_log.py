"""The access log: one JSON line per request on the ``msgflux.server.access`` logger.

::

    {"time":"2026-01-02T10:00:00.123Z","worker":4711,"method":"POST",
     "path":"/v1/chat/completions","key":"team-a","gateway":"chat","deployment":"primary",
     "attempts":1,"fallbacks":0,"stream":false,"status":200,"latency_ms":812.4,"ttft_ms":null,
     "input_tokens":31,"output_tokens":120,"cost":0.000112,"error":null,
     "upstream_request_id":"req_abc"}

``key`` is the key's *name* from the config (never the key), ``deployment`` the ``model_name``
that answered, ``attempts`` the calls made (skips not counted), ``ttft_ms`` a stream's time from
the request's arrival to its first body bytes, ``cost`` USD (null when the price is unknown).
``status`` 499 means the client went away before the answer was complete. ``error`` names what
went wrong: the gateway's exception type, ``key_limit:<reason>`` for a key refused by its
limits, the stream's error type when it broke after its first chunk. No line ever holds
message content, and each line passes through :func:`msgflux._secrets.scrub`, so no key the
process knows can appear. Health probes and ``/metrics`` scrapes are not logged.

By default (``msgflux serve``) the lines go to stderr, one per line, without any prefix;
``server.access_log: false`` turns them off; any logging config can send the logger elsewhere.
"""

from __future__ import annotations

import logging
import os
import time
from typing import TYPE_CHECKING, Any

import orjson

from msgflux._secrets import scrub

if TYPE_CHECKING:
    from msgflux.server.exchange import Exchange

__all__ = ["LOGGER", "configure", "line", "log"]

LOGGER = "msgflux.server.access"
logger = logging.getLogger(LOGGER)
_PATH_LIMIT = 200


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 3)


def _time(epoch: float) -> str:
    whole = int(epoch)
    return (
        time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole))
        + f".{int((epoch - whole) * 1000):03d}Z"
    )


def _error(exchange: Exchange, record: Any) -> str | None:
    if exchange.rejected is not None:
        return f"key_limit:{exchange.rejected}"
    if exchange.error is not None:
        return type(exchange.error).__name__
    if record is not None and record.error is not None:
        return str(record.error)
    return None


def line(exchange: Exchange) -> str:
    """The log line of a finished request (see the module docstring)."""
    principal = exchange.principal
    route = exchange.route
    answer = exchange.answer
    record = exchange.record
    if answer is not None:
        attempts: Any = answer.attempts
    else:
        attempts = getattr(exchange.error, "attempts", None) or ()
    ttft = None
    if exchange.streamed and exchange.first_body is not None:
        ttft = exchange.first_body - exchange.started
    entry = {
        "time": _time(exchange.began),
        "worker": os.getpid(),
        "method": exchange.method,
        "path": exchange.path[:_PATH_LIMIT],
        "key": principal.name if principal is not None else None,
        "gateway": route.name if route is not None else None,
        "deployment": answer.deployment if answer is not None else None,
        "attempts": sum(1 for a in attempts if a.skipped is None),
        "fallbacks": len(answer.fallbacks) if answer is not None else 0,
        "stream": exchange.streamed,
        "status": exchange.status or 499,
        "latency_ms": _ms(exchange.ended - exchange.started),
        "ttft_ms": _ms(ttft),
        "input_tokens": record.input_tokens if record is not None else None,
        "output_tokens": record.output_tokens if record is not None else None,
        "cost": record.cost if record is not None else None,
        "error": _error(exchange, record),
        "upstream_request_id": answer.request_id if answer is not None else None,
    }
    return scrub(orjson.dumps(entry).decode())


def log(exchange: Exchange) -> None:
    if logger.isEnabledFor(logging.INFO):
        # makeRecord + handle: logger.info would also walk the stack for the caller's line.
        record = logger.makeRecord(LOGGER, logging.INFO, __file__, 0, line(exchange), (), None)
        logger.handle(record)


def configure(enabled: bool = True) -> None:
    """Send the lines to stderr, bare (``msgflux serve`` calls this); ``enabled=False`` mutes."""
    import sys

    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    logger.handlers[:] = [handler]
    logger.setLevel(logging.INFO if enabled else logging.CRITICAL + 1)
    logger.propagate = False
