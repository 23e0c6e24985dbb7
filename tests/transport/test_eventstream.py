"""AWS event streams (what Bedrock streams in): our encoder checked by botocore's parser, our
decoder by any split of the bytes, and every way a frame can be wrong bounded and typed, in
the codec and through both clients against a real socket.

Also the per-request signing hook of :class:`~msgflux._transport.Endpoint` (SigV4 signs each
request's date and body): both clients call it with the bytes they send and send what it
returns.
"""

from __future__ import annotations

import asyncio
import struct
import threading
import time
import uuid
import zlib
from collections.abc import Iterator, Mapping

import orjson
import pytest
from botocore.eventstream import EventStreamBuffer
from hypothesis import given, settings
from hypothesis import strategies as st

from msgflux import _transport
from msgflux._transport import EVENT_STREAM, Endpoint, StreamTimeouts
from msgflux._transport.eventstream import (
    EXCEPTION,
    MEDIA_TYPE,
    EventStreamDecoder,
    FrameError,
    encode_message,
)
from msgflux._transport.sse import EventTooLarge
from msgflux.exceptions import (
    APIResponseValidationError,
    APITimeoutError,
    ResponseTooLargeError,
)


def event(kind: str, payload: dict[str, object]) -> bytes:
    headers = {":event-type": kind, ":content-type": "application/json", ":message-type": "event"}
    return encode_message(headers, orjson.dumps(payload))


STREAM = [
    ("messageStart", {"role": "assistant"}),
    ("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": "Hel"}, "p": "abc"}),
    ("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": "lo"}}),
    ("messageStop", {"stopReason": "end_turn"}),
    ("metadata", {"usage": {"inputTokens": 3, "outputTokens": 2, "totalTokens": 5}}),
]
RAW = b"".join(event(kind, payload) for kind, payload in STREAM)
EVENTS = [(kind, orjson.dumps(payload)) for kind, payload in STREAM]


# -- the codec -----------------------------------------------------------------------------------
def test_botocore_parses_what_we_encode() -> None:
    buffer = EventStreamBuffer()
    buffer.add_data(RAW)
    messages = list(buffer)
    assert [m.headers[":event-type"] for m in messages] == [k for k, _ in STREAM]
    assert [orjson.loads(m.payload) for m in messages] == [p for _, p in STREAM]
    typed = encode_message({"s": "x", "b": b"\x00\x01", "t": True, "f": False, "i": -7}, b"p")
    buffer = EventStreamBuffer()
    buffer.add_data(typed)
    (message,) = list(buffer)
    assert message.headers == {"s": "x", "b": b"\x00\x01", "t": True, "f": False, "i": -7}
    assert message.payload == b"p"


def test_decoder_reads_every_header_type() -> None:
    stamp = 1_700_000_000_000
    ident = uuid.UUID(int=7).bytes
    headers = (
        b"\x01a\x02\xff"  # byte -1
        + b"\x01b\x03"
        + struct.pack(">h", -300)
        + b"\x01c\x05"
        + struct.pack(">q", 2**40)
        + b"\x01d\x08"
        + struct.pack(">q", stamp)
        + b"\x01e\x09"
        + ident
        + b"\x0b:event-type\x07\x00\x04ping"
    )
    prelude = struct.pack(">II", 16 + len(headers) + 2, len(headers))
    prelude += struct.pack(">I", zlib.crc32(prelude))
    message = prelude + headers + b"{}"
    message += struct.pack(">I", zlib.crc32(message))
    assert EventStreamDecoder().feed(message) == [("ping", b"{}")]
    buffer = EventStreamBuffer()
    buffer.add_data(message)
    assert next(iter(buffer)).headers["b"] == -300


def test_exception_and_error_messages_are_named_so() -> None:
    exception = encode_message(
        {":message-type": "exception", ":exception-type": "throttlingException"},
        b'{"message":"slow down"}',
    )
    error = encode_message(
        {":message-type": "error", ":error-code": "InternalFailure", ":error-message": "boom"}, b""
    )
    assert EventStreamDecoder().feed(exception + error) == [
        (EXCEPTION + "throttlingException", b'{"message":"slow down"}'),
        (EXCEPTION + "InternalFailure", b'{"message":"boom"}'),
    ]


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(min_value=1, max_value=len(RAW)), max_size=12))
def test_any_split_gives_the_same_events(cuts: list[int]) -> None:
    decoder = EventStreamDecoder()
    events = []
    start = 0
    for cut in sorted(set(cuts)):
        events += decoder.feed(RAW[start:cut])
        start = cut
    events += decoder.feed(RAW[start:])
    assert events == EVENTS and decoder.end() == []


def test_byte_by_byte() -> None:
    decoder = EventStreamDecoder()
    events = [e for i in range(len(RAW)) for e in decoder.feed(RAW[i : i + 1])]
    assert events == EVENTS


def corrupt(data: bytes, at: int) -> bytes:
    return data[:at] + bytes([data[at] ^ 0xFF]) + data[at + 1 :]


def test_a_bad_prelude_crc_is_a_frame_error() -> None:
    with pytest.raises(FrameError, match="prelude"):
        EventStreamDecoder().feed(corrupt(RAW, 9))


def test_a_bad_message_crc_is_a_frame_error() -> None:
    first = event("messageStart", {"role": "assistant"})
    with pytest.raises(FrameError, match="CRC"):
        EventStreamDecoder().feed(corrupt(first, len(first) - 6))  # a payload byte
    with pytest.raises(FrameError, match="CRC"):
        EventStreamDecoder().feed(corrupt(first, len(first) - 1))  # the CRC itself


def test_a_prelude_that_lies_is_a_frame_error() -> None:
    prelude = struct.pack(">II", 20, 30)  # more headers than the message holds
    prelude += struct.pack(">I", zlib.crc32(prelude))
    with pytest.raises(FrameError, match="announcing"):
        EventStreamDecoder().feed(prelude + b"\x00" * 8)


def test_a_malformed_header_is_a_frame_error() -> None:
    headers = b"\x01a\x07\x00\x09ab"  # a string announcing 9 bytes, holding 2
    prelude = struct.pack(">II", 16 + len(headers), len(headers))
    prelude += struct.pack(">I", zlib.crc32(prelude))
    message = prelude + headers
    message += struct.pack(">I", zlib.crc32(message))
    with pytest.raises(FrameError, match="header"):
        EventStreamDecoder().feed(message)


def test_a_truncated_stream_is_a_frame_error_at_the_end() -> None:
    decoder = EventStreamDecoder()
    assert decoder.feed(RAW[:-3]) == EVENTS[:-1]
    with pytest.raises(FrameError, match="ended inside"):
        decoder.end()


def test_a_message_over_the_limit_raises_from_its_prelude() -> None:
    prelude = struct.pack(">II", 50_000_000, 0)
    prelude += struct.pack(">I", zlib.crc32(prelude))
    decoder = EventStreamDecoder(max_event_bytes=1 << 20)
    with pytest.raises(EventTooLarge):
        decoder.feed(prelude)  # nothing of the 50 MB was buffered


# -- through the clients, against a real socket -------------------------------------------------
class RawServer:
    """Answers every request with a scripted head and body pieces, then closes or hangs."""

    def __init__(self) -> None:
        self.pieces: list[bytes] = []
        self.content_type = MEDIA_TYPE
        self.hang = False
        self.requests: list[tuple[bytes, bytes]] = []
        self._loop = asyncio.new_event_loop()
        self._server: asyncio.base_events.Server | None = None
        self._stop = asyncio.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._ready = threading.Event()
        self._thread.start()
        self._ready.wait(5)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._server = self._loop.run_until_complete(
            asyncio.start_server(self._serve, "127.0.0.1", 0)
        )
        self.port = self._server.sockets[0].getsockname()[1]
        self._ready.set()
        self._loop.run_forever()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
            body = await reader.readexactly(length)
            self.requests.append((head, body))
            writer.write(
                b"HTTP/1.1 200 OK\r\nContent-Type: "
                + self.content_type.encode()
                + b"\r\nConnection: close\r\n\r\n"
            )
            for piece in self.pieces:
                writer.write(piece)
                await writer.drain()
            if self.hang:
                await asyncio.sleep(30)
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.CancelledError):
            pass
        finally:
            writer.close()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/model/m/converse-stream"

    def stop(self) -> None:
        async def shutdown() -> None:
            assert self._server is not None
            self._server.close()
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await self._server.wait_closed()

        asyncio.run_coroutine_threadsafe(shutdown(), self._loop).result(5)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
        self._loop.close()


@pytest.fixture
def raw() -> Iterator[RawServer]:
    server = RawServer()
    yield server
    server.stop()
    _transport.close_pools()


TIMEOUTS = StreamTimeouts(first_chunk=0.5, idle=0.5, total=5)


def read_sync(ep: Endpoint) -> list[tuple[str | None, bytes]]:
    events = _transport.post_stream(ep, b"{}", TIMEOUTS, EVENT_STREAM)
    out = []
    for name, data in events:
        events.content()
        out.append((name, data))
    return out


async def read_async(ep: Endpoint) -> list[tuple[str | None, bytes]]:
    events = await _transport.apost_stream(ep, b"{}", TIMEOUTS, EVENT_STREAM)
    out = []
    async for name, data in events:
        events.content()
        out.append((name, data))
    return out


def both(ep: Endpoint) -> list[list[tuple[str | None, bytes]]]:
    return [read_sync(ep), asyncio.run(read_async(ep))]


def test_a_good_stream_in_pieces_through_both_clients(raw: RawServer) -> None:
    raw.pieces = [RAW[i : i + 17] for i in range(0, len(RAW), 17)]
    ep = Endpoint(raw.url, {}, provider="bedrock", model_id="m")
    assert both(ep) == [EVENTS, EVENTS]


@pytest.mark.parametrize("client", ["sync", "async"])
def test_a_bad_crc_is_a_validation_error(raw: RawServer, client: str) -> None:
    raw.pieces = [RAW[:40], corrupt(RAW[40:], 30)]
    ep = Endpoint(raw.url, {}, provider="bedrock", model_id="m")
    with pytest.raises(APIResponseValidationError, match="CRC"):
        read_sync(ep) if client == "sync" else asyncio.run(read_async(ep))


@pytest.mark.parametrize("client", ["sync", "async"])
def test_a_truncated_frame_is_a_validation_error(raw: RawServer, client: str) -> None:
    raw.pieces = [RAW[:-5]]
    ep = Endpoint(raw.url, {}, provider="bedrock", model_id="m")
    with pytest.raises(APIResponseValidationError, match="ended inside"):
        read_sync(ep) if client == "sync" else asyncio.run(read_async(ep))


@pytest.mark.parametrize("client", ["sync", "async"])
def test_an_endless_frame_ends_by_the_time_bound(raw: RawServer, client: str) -> None:
    """A prelude announcing a message that never comes: no content, so the first-chunk bound
    ends it, whatever the upstream keeps doing."""
    prelude = struct.pack(">II", 500_000, 0)
    raw.pieces = [prelude + struct.pack(">I", zlib.crc32(prelude)) + b"\x00" * 1000]
    raw.hang = True
    ep = Endpoint(raw.url, {}, provider="bedrock", model_id="m")
    started = time.monotonic()
    with pytest.raises(APITimeoutError):
        read_sync(ep) if client == "sync" else asyncio.run(read_async(ep))
    assert time.monotonic() - started < 3


@pytest.mark.parametrize("client", ["sync", "async"])
def test_a_frame_over_max_event_bytes_is_too_large(raw: RawServer, client: str) -> None:
    prelude = struct.pack(">II", 5_000_000, 0)
    raw.pieces = [prelude + struct.pack(">I", zlib.crc32(prelude))]
    raw.hang = True
    ep = Endpoint(raw.url, {}, provider="bedrock", model_id="m")
    with pytest.raises(ResponseTooLargeError):
        read_sync(ep) if client == "sync" else asyncio.run(read_async(ep))


def test_an_sse_answer_to_an_event_stream_request_is_a_validation_error(raw: RawServer) -> None:
    raw.content_type = "text/event-stream"
    raw.pieces = [b"data: {}\n\n"]
    ep = Endpoint(raw.url, {}, provider="bedrock", model_id="m")
    with pytest.raises(APIResponseValidationError, match=MEDIA_TYPE):
        read_sync(ep)


# -- the per-request signing hook --------------------------------------------------------------
def test_both_clients_sign_each_request_with_the_body_they_send(raw: RawServer) -> None:
    raw.pieces = [RAW]
    seen: list[bytes] = []

    def sign(ep: Endpoint, body: bytes) -> Mapping[str, str]:
        seen.append(body)
        return {"X-Signed": f"n{len(seen)}", "Content-Type": "application/x-signed"}

    ep = Endpoint(raw.url, {"Content-Type": "application/json"}, sign=sign)
    assert both(ep) == [EVENTS, EVENTS]
    assert seen == [b"{}", b"{}"]
    heads = [head.decode().lower() for head, _ in raw.requests]
    assert "x-signed: n1" in heads[0] and "x-signed: n2" in heads[1]
    for head in heads:  # the signer's header replaces the endpoint's of the same name
        assert head.count("content-type:") == 1 and "application/x-signed" in head
    assert ep.with_headers({"X-Other": "1"}).sign is sign
