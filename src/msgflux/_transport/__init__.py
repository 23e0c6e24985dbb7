"""The transport: the only code that speaks HTTP to upstreams (urllib3 for the sync client, our
own HTTP/1.1 over asyncio, :mod:`.wire`, for the async one).

Providers use it through this surface:

* :class:`Endpoint` (URL, headers with the key, byte :class:`Limits`, the provider's error
  ``classify`` hook), built once per model and URL;
* :func:`post` / :func:`apost` for a whole answer (a :class:`Response`), and
  :func:`post_stream` / :func:`apost_stream` for a stream (an :class:`EventStream` /
  :class:`AsyncEventStream` of ``(event, data)`` pairs; SSE, or another :class:`Framing`
  such as AWS's :data:`EVENT_STREAM`), each bounded in time (:class:`StreamTimeouts`) and in
  bytes, whatever the upstream does;
* the error mapping (:mod:`.errors`), the SSE codec (:mod:`.sse`) and the AWS event-stream
  codec (:mod:`.eventstream`).

Every failure is a :mod:`msgflux.exceptions` error; every key an endpoint carries is
registered with :mod:`msgflux._secrets` and scrubbed from what errors report.
"""

from __future__ import annotations

from typing import Any

import urllib3

from msgflux._transport.aio import AsyncEventStream, aclose, apost, apost_stream
from msgflux._transport.endpoint import DEFAULT_TIMEOUT, Endpoint, Limits, Sign, StreamTimeouts
from msgflux._transport.errors import (
    error_class_for_status,
    parse_retry_after,
    status_error,
    transport_error,
    transport_error_class,
)
from msgflux._transport.eventstream import EVENT_STREAM, EventStreamDecoder
from msgflux._transport.framing import SSE, Framing
from msgflux._transport.sse import SSEDecoder, encode_event
from msgflux._transport.sync import EventStream, Response, close_pools, post, post_stream

__all__ = [
    "DEFAULT_TIMEOUT",
    "EVENT_STREAM",
    "SSE",
    "AsyncEventStream",
    "Endpoint",
    "EventStream",
    "EventStreamDecoder",
    "Framing",
    "Limits",
    "Response",
    "SSEDecoder",
    "Sign",
    "StreamTimeouts",
    "aclose",
    "apost",
    "apost_stream",
    "close_pools",
    "encode_event",
    "encode_multipart",
    "error_class_for_status",
    "parse_retry_after",
    "post",
    "post_stream",
    "status_error",
    "transport_error",
    "transport_error_class",
]


def encode_multipart(fields: list[tuple[str, Any]]) -> tuple[bytes, str]:
    """``multipart/form-data`` body and its Content-Type; file fields are
    ``(name, (filename, bytes, mime))``."""
    return urllib3.encode_multipart_formdata(fields)
