"""The access log: one JSON line per request on the ``msgflux.server.access`` logger.

::

    {"time":"2026-01-02T10:00:00.123Z","worker":4711,"method":"POST",
     "path":"/v1/chat/completions","key":"team-a","gateway":"chat","deployment":"primary",
     "attempts":1,"fallbacks":0,"stream":false,"status":200,"latency_ms":812.4,"ttft_ms":null,
     "input_tokens":31,"output_tokens":120,"cost":0.000112,"error":null,
     "upstream_request_id":"req_abc","cache":null}

``key`` is the key's *name* from the config (never the key), ``deployment`` the ``model_name``
that answered, ``attempts`` the calls made (skips not counted), ``ttft_ms`` a stream's time from
the request's arrival to its first body bytes, ``cost`` USD (null when the price is unknown),
``cache`` the response cache's verdict (``hit``: no attempt, cost 0; ``miss``; ``bypass``;
null for a gateway without a cache).
``status`` 499 means the client went away before the answer was complete. ``error`` names what
went wrong: the gateway's exception type, ``key_limit:<reason>`` for a key refused by its
limits, the stream's error type when it broke after its first chunk. No line ever holds
message content, and each line passes through :func:`msgflux._secrets.scrub`, so no key the
process knows can appear. Health probes and ``/metrics`` scrapes are not logged.

The lines go to stderr (``msgflux serve``), one per line, without any prefix, written
straight to the file descriptor: no ``logging`` record, handler or lock per request (the
access log is on every request's path; measured in BENCHMARKS.md). ``server.access_log:
false`` turns them off; :func:`configure` takes another binary stream (a file) to send them
elsewhere.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from collections.abc import Callable
from typing import IO, TYPE_CHECKING, Any

import orjson

from msgflux._secrets import scrub

if TYPE_CHECKING:
    from msgflux.server.exchange import Exchange

__all__ = ["configure", "flush", "line", "log"]

_PATH_LIMIT = 200
_write: Callable[[bytes], Any] | None = None
"""Where the lines go (None: nowhere)."""
_second: list[Any] = [-1, ""]
"""The last whole second formatted, and its text (a line's time changes once a second)."""


_pids = [os.getpid()]
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=lambda: _pids.__setitem__(0, os.getpid()))


def _pid() -> int:
    return _pids[0]


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 3)


def _time(epoch: float) -> str:
    whole = int(epoch)
    cached = _second
    if cached[0] != whole:
        cached[0], cached[1] = whole, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole))
    return f"{cached[1]}.{int((epoch - whole) * 1000):03d}Z"


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
    return _line(exchange).decode()


def _line(exchange: Exchange) -> bytes:
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
        "worker": _pid(),
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
        "cache": answer.cache if answer is not None else None,
    }
    text = orjson.dumps(entry).decode()
    clean = scrub(text)
    return text.encode() if clean is text else clean.encode()


_BATCH = 3584
"""Bytes of lines written at once at most: under PIPE_BUF (4096), so a write of several
lines is still whole when workers share the descriptor."""
_pending: list[bytes] = []
_pending_bytes = [0]


def log(exchange: Exchange) -> None:
    """Log ``exchange``: its line is written at the end of the event loop's current pass, with
    the other lines of that pass (one write for many requests under load), or at once outside
    an event loop or past :data:`_BATCH` bytes."""
    if _write is None:
        return
    data = _line(exchange) + b"\n"
    if not _pending:
        try:
            asyncio.get_running_loop().call_soon(flush)
        except RuntimeError:
            _write(data)
            return
    _pending.append(data)
    _pending_bytes[0] += len(data)
    if _pending_bytes[0] >= _BATCH:
        flush()


def flush() -> None:
    """Write the lines waiting for the end of the loop's pass."""
    if not _pending:
        return
    data = b"".join(_pending)
    _pending.clear()
    _pending_bytes[0] = 0
    if _write is not None:
        _write(data)


def configure(enabled: bool = True, stream: IO[bytes] | None = None) -> None:
    """Write the lines to ``stream`` (default: stderr's file descriptor, unbuffered: a line is
    whole even when several workers share the descriptor); ``enabled=False`` mutes them."""
    global _write
    if not enabled:
        _write = None
        return
    if stream is not None:
        target = stream

        def write(data: bytes) -> None:
            target.write(data)
            target.flush()

        _write = write
        return
    fd = sys.stderr.fileno()
    _write = lambda data: os.write(fd, data)  # noqa: E731
