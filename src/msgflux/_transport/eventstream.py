"""AWS event streams (``application/vnd.amazon.eventstream``): a bounded decoder, and the
encoder.

Bedrock streams its answers in AWS's binary framing rather than SSE. Each message is::

    total length (u32) | headers length (u32) | prelude CRC32 (u32)
    headers | payload | message CRC32 (u32)

all big-endian, both CRCs over the bytes before them. A header is its name's length (u8), the
name, a type byte and the value (a string or byte array with a u16 length, a bool, an int of
1, 2, 4 or 8 bytes, a timestamp or a UUID).

:class:`EventStreamDecoder` takes bytes in any split and returns ``(name, payload)`` events,
like :class:`~msgflux._transport.sse.SSEDecoder`: an ``event`` message is named by its
``:event-type`` header; an ``exception`` message by :data:`EXCEPTION` plus its
``:exception-type`` (AWS spells them ``throttlingException``...), an ``error`` message by
:data:`EXCEPTION` plus its ``:error-code`` with ``{"message": ...}`` as payload. What the
payload means is the provider's business.

Bounded whatever the upstream sends: a message announcing more than ``max_event_bytes`` raises
:class:`~msgflux._transport.sse.EventTooLarge` as soon as its prelude is read (never buffered);
a prelude or message whose CRC does not match, or a malformed header, raises
:class:`FrameError`; a body that ends inside a message raises :class:`FrameError` from
:meth:`EventStreamDecoder.end`. A message that never completes is the stream's time bounds'
business (it carries no content).
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Mapping
from typing import Any

import orjson

from msgflux._transport.framing import Framing
from msgflux._transport.sse import DEFAULT_MAX_EVENT_BYTES, Event, EventTooLarge

__all__ = [
    "EVENT_STREAM",
    "EXCEPTION",
    "MEDIA_TYPE",
    "EventStreamDecoder",
    "FrameError",
    "encode_message",
]

MEDIA_TYPE = "application/vnd.amazon.eventstream"
EXCEPTION = "exception:"
"""The prefix of the name of an ``exception`` or ``error`` message's event."""

_PRELUDE = 12
_OVERHEAD = 16  # prelude and message CRC
_U32 = struct.Struct(">I")
_PRELUDE_FIELDS = struct.Struct(">III")
_INTS = {2: (1, ">b"), 3: (2, ">h"), 4: (4, ">i"), 5: (8, ">q"), 8: (8, ">q")}
"""Header type -> (size, struct format): byte, short, integer, long, timestamp (ms)."""


class FrameError(Exception):
    """An event-stream message that is corrupt (a CRC mismatch, a malformed prelude or header)
    or cut off by the end of the body."""


def _headers(data: bytes) -> dict[str, Any]:
    out: dict[str, Any] = {}
    pos = 0
    end = len(data)
    try:
        while pos < end:
            size = data[pos]
            name = data[pos + 1 : pos + 1 + size].decode("utf-8")
            pos += 1 + size
            kind = data[pos]
            pos += 1
            value: Any
            if kind in (0, 1):
                value = kind == 0
            elif kind in _INTS:
                width, fmt = _INTS[kind]
                (value,) = struct.unpack_from(fmt, data, pos)
                pos += width
            elif kind in (6, 7):
                (length,) = struct.unpack_from(">H", data, pos)
                raw = data[pos + 2 : pos + 2 + length]
                if len(raw) != length:
                    raise FrameError("a header value runs past the headers")
                value = raw.decode("utf-8") if kind == 7 else raw
                pos += 2 + length
            elif kind == 9:
                value = data[pos : pos + 16]
                pos += 16
            else:
                raise FrameError(f"a header of unknown type {kind}")
            if pos > end:
                raise FrameError("a header runs past the headers")
            out[name] = value
    except (IndexError, struct.error, UnicodeDecodeError) as exc:
        raise FrameError(f"a malformed header: {exc}") from None
    return out


def _event(headers: dict[str, Any], payload: bytes) -> Event:
    kind = headers.get(":message-type", "event")
    if kind == "exception":
        return EXCEPTION + str(headers.get(":exception-type") or "unknown"), payload
    if kind == "error":
        message = headers.get(":error-message") or ""
        body = orjson.dumps({"message": str(message)})
        return EXCEPTION + str(headers.get(":error-code") or "unknown"), body
    name = headers.get(":event-type")
    return (name if isinstance(name, str) else None), payload


_SEEN = 32
"""Distinct header blocks a decoder remembers parsed (a stream repeats a handful)."""


class EventStreamDecoder:
    """Incremental, bounded decoder of AWS event-stream messages; see the module docstring.

    A stream's messages carry the same few header blocks over and over (``:event-type``
    ``contentBlockDelta``, ``:content-type``, ``:message-type``): each distinct block is parsed
    once and remembered (at most :data:`_SEEN` of them)."""

    __slots__ = ("_buf", "_seen", "limit")

    def __init__(self, max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES) -> None:
        self.limit = max_event_bytes
        self._buf = bytearray()
        self._seen: dict[bytes, dict[str, Any]] = {}

    def feed(self, chunk: bytes) -> list[Event]:
        """The events completed by ``chunk`` (raises :class:`FrameError`, ``EventTooLarge``)."""
        buf = self._buf
        buf += chunk
        events: list[Event] = []
        pos = 0
        have = len(buf)
        while have - pos >= _PRELUDE:
            total, header_length, prelude_crc = _PRELUDE_FIELDS.unpack_from(buf, pos)
            if zlib.crc32(buf[pos : pos + 8]) != prelude_crc:
                raise FrameError("an event-stream prelude whose CRC does not match")
            if total > self.limit:
                raise EventTooLarge(total, self.limit)
            if total < _OVERHEAD or header_length > total - _OVERHEAD:
                raise FrameError(
                    f"an event-stream prelude announcing {total} bytes with {header_length} "
                    "bytes of headers"
                )
            end = pos + total
            if have < end:
                break
            with memoryview(buf) as view:
                crc = zlib.crc32(view[pos : end - 4])
            if crc != _U32.unpack_from(buf, end - 4)[0]:
                raise FrameError("an event-stream message whose CRC does not match")
            start = pos + _PRELUDE
            raw = bytes(buf[start : start + header_length])
            headers = self._seen.get(raw)
            if headers is None:
                headers = _headers(raw)
                if len(self._seen) >= _SEEN:
                    self._seen.clear()
                self._seen[raw] = headers
            events.append(_event(headers, bytes(buf[start + header_length : end - 4])))
            pos = end
        if pos:
            del buf[:pos]
        return events

    def end(self) -> list[Event]:
        """Nothing, or :class:`FrameError` when the body ended inside a message."""
        left = len(self._buf)
        if left:
            self._buf.clear()
            raise FrameError(f"the stream ended inside an event-stream message ({left} bytes)")
        return []


def _header(name: str, value: str | bytes | bool | int) -> bytes:
    raw = name.encode()
    head = bytes((len(raw),)) + raw
    if isinstance(value, bool):
        return head + (b"\x00" if value else b"\x01")
    if isinstance(value, int):
        return head + b"\x04" + struct.pack(">i", value)
    data = value.encode() if isinstance(value, str) else value
    return (
        head
        + (b"\x07" if isinstance(value, str) else b"\x06")
        + struct.pack(">H", len(data))
        + data
    )


def encode_message(headers: Mapping[str, str | bytes | bool | int], payload: bytes) -> bytes:
    """One event-stream message (strings, byte arrays, bools and 32-bit ints as headers)."""
    encoded = b"".join(_header(name, value) for name, value in headers.items())
    total = _OVERHEAD + len(encoded) + len(payload)
    prelude = struct.pack(">II", total, len(encoded))
    prelude += _U32.pack(zlib.crc32(prelude))
    message = prelude + encoded + payload
    return message + _U32.pack(zlib.crc32(message))


EVENT_STREAM = Framing(MEDIA_TYPE, EventStreamDecoder)
"""AWS event streams, as ``(name, payload)`` events."""
