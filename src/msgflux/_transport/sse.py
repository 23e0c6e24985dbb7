"""Server-sent events: an incremental decoder that is linear and bounded, and the encoder.

The decoder takes bytes in any split and returns complete events as ``(event, data)`` pairs:
``event`` is the ``event:`` field (None when absent; Anthropic's stream names every event,
OpenAI's names none), ``data`` the ``data:`` lines joined with ``\\n``. Comments (``:``) and
other fields are skipped; ``\\n`` and ``\\r\\n`` line endings are accepted. What the data
means (JSON, OpenAI's ``[DONE]``) is the provider adapter's business.

It is linear in its input: the unfinished tail is kept in one ``bytearray`` and scanning for
the next newline resumes where the last scan stopped, so a 40 MB line fed in 64 KiB pieces is
read once. And it is bounded: an event (its data plus the unfinished line) larger than
``max_event_bytes`` raises :class:`EventTooLarge` at once, whatever the upstream sends.
"""

from __future__ import annotations

__all__ = ["DEFAULT_MAX_EVENT_BYTES", "Event", "EventTooLarge", "SSEDecoder", "encode_event"]

DEFAULT_MAX_EVENT_BYTES = 1 << 20
"""1 MiB: far above any real chunk (a chunk carries a few tokens)."""

Event = tuple["str | None", bytes]


class EventTooLarge(Exception):
    """An SSE event (or a line still being read) is over the decoder's limit."""

    def __init__(self, size: int, limit: int) -> None:
        super().__init__(f"an SSE event is over {limit} bytes (at least {size})")
        self.size = size
        self.limit = limit


class SSEDecoder:
    """Incremental SSE parser; see the module docstring."""

    __slots__ = ("_buf", "_data", "_event", "_scan", "_size", "limit")

    def __init__(self, max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES) -> None:
        self.limit = max_event_bytes
        self._buf = bytearray()
        self._scan = 0
        self._data: list[bytes] = []
        self._size = 0
        self._event: str | None = None

    def feed(self, chunk: bytes) -> list[Event]:
        """The events completed by ``chunk`` (raises :class:`EventTooLarge`)."""
        if (
            not self._buf
            and not self._data
            and self._event is None
            and chunk[-2:] == b"\n\n"
            and len(chunk) <= self.limit
            and b"\r" not in chunk
        ):
            return self._whole(chunk)
        buf = self._buf
        buf += chunk
        events: list[Event] = []
        start = 0
        find = buf.find
        pos = self._scan
        while True:
            nl = find(b"\n", pos)
            if nl < 0:
                break
            end = nl - 1 if nl > start and buf[nl - 1] == 13 else nl
            self._line(bytes(buf[start:end]), events)
            start = pos = nl + 1
        if start:
            del buf[:start]
        self._scan = len(buf)
        if self._size + len(buf) > self.limit:
            raise EventTooLarge(self._size + len(buf), self.limit)
        return events

    def _whole(self, chunk: bytes) -> list[Event]:
        """The events of a chunk that ends an event, starts with nothing pending and is within
        the limit (how a server writes them and a read gives them, nearly always): split at
        once instead of line by line, with the same result as the general path."""
        events: list[Event] = []
        for block in chunk.split(b"\n\n"):
            if not block:
                continue
            if block[:6] == b"data: " and b"\n" not in block:
                events.append((None, block[6:]))
                continue
            for line in block.split(b"\n"):
                self._line(line, events)
            self._line(b"", events)
        return events

    def end(self) -> list[Event]:
        """Flush what the stream left without a final blank line."""
        events: list[Event] = []
        if self._buf:
            self._line(bytes(self._buf), events)
            self._buf.clear()
            self._scan = 0
        self._line(b"", events)
        return events

    def _line(self, line: bytes, events: list[Event]) -> None:
        if not line:
            if self._data:
                data = self._data
                payload = data[0] if len(data) == 1 else b"\n".join(data)
                events.append((self._event, payload))
                data.clear()
                self._size = 0
            self._event = None
            return
        if line[:5] == b"data:":
            value = line[5:]
            if value[:1] == b" ":
                value = value[1:]
            self._data.append(value)
            self._size += len(value) + 1
            if self._size > self.limit:
                raise EventTooLarge(self._size, self.limit)
        elif line[:6] == b"event:":
            self._event = line[6:].strip().decode("utf-8", "replace") or None
        # comments (":...") and other fields (id, retry) are skipped


def encode_event(data: bytes, event: str | None = None) -> bytes:
    """One SSE event. ``data`` must not contain newlines (JSON from orjson never does)."""
    if event is None:
        return b"data: " + data + b"\n\n"
    return b"event: " + event.encode() + b"\ndata: " + data + b"\n\n"
