"""How a streamed answer's body is cut into events: its media type and its decoder.

Both clients read a stream the same way whatever its framing: raw bytes in (decompressed within
their budget), events out, each read bounded in time. What differs is the framing, so a stream
request names one: :data:`SSE` (``text/event-stream``, what OpenAI, Anthropic and Gemini send)
or :data:`msgflux._transport.eventstream.EVENT_STREAM` (AWS's binary
``application/vnd.amazon.eventstream``, what Bedrock sends). A provider with its own layer on
top of a framing (Bedrock's base64 chunks of another API's events) passes a :class:`Framing`
whose decoder adds it.

A decoder is bounded like the SSE one: an event over ``max_event_bytes`` raises at once
(:class:`~msgflux._transport.sse.EventTooLarge`), a malformed one raises its own error, and
:meth:`Decoder.end` says what the end of the body left.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Protocol

from msgflux._transport.sse import Event, SSEDecoder

__all__ = ["SSE", "Decoder", "Framing"]


class Decoder(Protocol):
    """Bytes in any split -> the events they complete."""

    def feed(self, chunk: bytes) -> list[Event]: ...

    def end(self) -> list[Event]:
        """The events the end of the body completes (or the error of a cut-off event)."""
        ...


@dataclasses.dataclass(frozen=True, slots=True)
class Framing:
    """A stream's framing: the media type a 2xx answer must have, and its decoder (built once
    per stream from the endpoint's ``max_event_bytes``)."""

    media_type: str
    decoder: Callable[[int], Decoder]


SSE = Framing("text/event-stream", SSEDecoder)
"""Server-sent events (:mod:`msgflux._transport.sse`)."""
