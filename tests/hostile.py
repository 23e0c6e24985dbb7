"""A hostile OpenAI-compatible upstream: the server that misbehaves on purpose.

It runs on 127.0.0.1 (a free port) in a background thread with its own event loop, like
:class:`tests.upstream.Upstream`, but speaks HTTP/1.1 itself over raw asyncio streams, so it
can do what no well-behaved server framework lets you do: trickle headers, send bodies that
never end, reset the connection mid-body, lie about the encoding::

    with Hostile() as hostile:              # in tests, use the ``hostile`` fixture
        hostile.configure("trickle_body", interval=0.1)
        model = Model.chat_completion("openai_compatible/trickle_body", base_url=hostile.base_url)
        ...
        assert hostile.count("trickle_body") == 1

**Choosing a behaviour.** Routes are ``POST /v1/chat/completions`` (JSON, or SSE when the body
says ``"stream": true``) and ``POST /v1/audio/speech`` (binary). The request's JSON ``"model"``
field names the behaviour, so a test names the behaviour as the model id
(``"openai_compatible/<behaviour>"``). An unknown name gets a 404 listing the names.

**Behaviours** (``python tests/hostile.py --list`` prints each with its parameters):

* slow: ``trickle_body``, ``trickle_headers``, ``trickle_sse_first``, ``sse_comments_only``,
  ``sse_empty_deltas``, ``sse_idle_after_first``, ``sse_drip`` (content forever);
* big: ``big_body``, ``endless_body``, ``endless_sse_line``, ``huge_sse_event``, ``gzip_bomb``,
  ``gzip_bomb_sse``;
* broken: ``reset_mid_body``, ``unknown_encoding``, ``not_sse``, ``not_json``,
  ``bad_<shape>`` (a wrong-shaped 200 answer, :data:`MALFORMED`) and ``sse_bad_<shape>`` (a
  wrong first stream event, :data:`MALFORMED_SSE`);
* the key: ``echo_key``, ``echo_key_body``, ``echo_key_sse``; and ``good``, a normal answer.

**Parameters.** Each behaviour is one ``async def name(conn, **params)`` function; its keyword
defaults are its parameters (e.g. ``interval=0.2``). :meth:`Hostile.configure` overrides them
for every later request naming that behaviour (the values are checked against the function's
signature at once). :data:`BEHAVIOURS` maps names to functions.

**Connections.** Every response says ``Connection: close`` and the server closes the connection
after it (one request per connection). "Forever" behaviours run until the client hangs up or
the server stops; stopping aborts every open connection, which also unblocks a client stuck
reading from it.

**Recording.** :attr:`Hostile.requests` lists every request (:class:`HostileRequest`: route,
behaviour, headers, parsed JSON, bytes sent, whether the client closed the connection before
the behaviour was done, whether the server reset it on purpose). ``count()``,
``closed_early()`` and ``wait_for()``/``await_for()`` answer the usual questions.

**The key.** ``echo_key*`` behaviours echo the caller's key (from ``Authorization: Bearer``)
in every form :func:`key_forms` lists: literal, JSON ``\\uXXXX``-escaped, and percent-encoded
inside a URL.

**Memory limits.** :func:`run_in_child` runs one model or gateway call in a child Python whose
address space is capped (``RLIMIT_AS``) about 1 GiB above its baseline, and returns what the
child reported (``python -m tests.hostile --child`` is that child).
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import functools
import inspect
import itertools
import json
import os
import socket
import struct
import subprocess
import sys
import threading
import time
import zlib
from collections.abc import Awaitable, Callable
from http import HTTPStatus
from pathlib import Path
from typing import Any

__all__ = [
    "BEHAVIOURS",
    "ChildResult",
    "Hostile",
    "HostileRequest",
    "gzip_bomb_parts",
    "key_forms",
    "run_in_child",
]

ROUTES = {"/v1/chat/completions": "chat", "/v1/audio/speech": "speech"}
SSE = "text/event-stream"
JSON = "application/json"
AUDIO = "audio/mpeg"
PIECE = 64 * 1024
"""Bytes per write for the endless and huge behaviours."""
ROOT = Path(__file__).resolve().parent.parent


# -- recording ---------------------------------------------------------------------------------
@dataclasses.dataclass
class HostileRequest:
    """One request the hostile server received, and what became of it."""

    index: int
    route: str
    behaviour: str | None
    stream: bool
    headers: dict[str, str]
    """Header names lower-cased."""
    json: Any
    params: dict[str, Any]
    started: float
    """``time.monotonic()`` when the request arrived."""
    bytes_sent: int = 0
    finished: bool = False
    """The behaviour ran to its end (a "forever" behaviour never does)."""
    client_closed: bool = False
    """The client closed the connection before the behaviour was done."""
    server_reset: bool = False
    """The server reset the connection on purpose (``reset_mid_body``)."""
    server_error: str | None = None
    """The behaviour itself failed (a bug in this module, never the client's doing)."""

    @property
    def key(self) -> str:
        """The key the caller sent as ``Authorization: Bearer <key>`` ("" without one)."""
        auth = self.headers.get("authorization", "")
        return auth[7:] if auth[:7].lower() == "bearer " else ""


# -- one connection ----------------------------------------------------------------------------
class Conn:
    """What a behaviour function gets: the request, and byte-level ways to answer it."""

    def __init__(
        self, rec: HostileRequest, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        self.rec = rec
        self.reader = reader
        self.writer = writer

    @property
    def model(self) -> str:
        return str(self.rec.behaviour)

    @property
    def speech(self) -> bool:
        return self.rec.route == "speech"

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()
        self.rec.bytes_sent += len(data)

    def head_bytes(
        self,
        status: int = 200,
        content_type: str = JSON,
        length: int | None = None,
        extra: tuple[tuple[str, str], ...] = (),
    ) -> bytes:
        """The status line and headers (with the blank line that ends them)."""
        headers = [("Content-Type", content_type)]
        if length is not None:
            headers.append(("Content-Length", str(length)))
        headers.append(("Connection", "close"))
        if not any(k.lower() == "x-request-id" for k, _ in extra):
            headers.append(("x-request-id", f"hostile-{self.rec.index}"))
        headers.extend(extra)
        lines = [f"HTTP/1.1 {status} {_reason(status)}", *(f"{k}: {v}" for k, v in headers)]
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")

    async def head(
        self,
        status: int = 200,
        content_type: str = JSON,
        length: int | None = None,
        extra: tuple[tuple[str, str], ...] = (),
    ) -> None:
        await self.send(self.head_bytes(status, content_type, length, extra))

    async def respond(
        self,
        status: int,
        body: bytes,
        content_type: str = JSON,
        extra: tuple[tuple[str, str], ...] = (),
    ) -> None:
        await self.send(self.head_bytes(status, content_type, len(body), extra) + body)

    async def trickle(self, data: bytes, interval: float) -> None:
        """Send ``data`` one byte every ``interval`` seconds."""
        for i in range(len(data)):
            await self.send(data[i : i + 1])
            await asyncio.sleep(interval)

    async def forever(self) -> None:
        """Keep the connection open, silent, until the client hangs up or the server stops."""
        await asyncio.get_running_loop().create_future()

    def reset(self) -> None:
        """Abortive close: RST instead of FIN (SO_LINGER 0), unsent data discarded."""
        self.rec.server_reset = True
        sock = self.writer.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.writer.transport.abort()


def _reason(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Unknown"


# -- well-formed pieces ------------------------------------------------------------------------
TEXT = "Hello from the hostile upstream"
"""What a normal answer says (``good``, ``trickle_body``, ...)."""


def _dumps(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


def completion(model: str, message: Any = None, **fields: Any) -> dict[str, Any]:
    """A chat completion; ``message`` replaces the assistant message, ``fields`` the top level."""
    if message is None:
        message = {"role": "assistant", "content": TEXT}
    body: dict[str, Any] = {
        "id": "chatcmpl-hostile",
        "object": "chat.completion",
        "created": 0,
        "model": model,
        "choices": [{"index": 0, "message": message, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 1, "completion_tokens": 5, "total_tokens": 6},
    }
    body.update(fields)
    return body


def event(data: Any) -> bytes:
    """One SSE event (``data: <json>``, or the bytes as they are)."""
    payload = data if isinstance(data, bytes) else _dumps(data)
    return b"data: " + payload + b"\n\n"


def delta(model: str, d: Any, finish: str | None = None) -> bytes:
    """A chat.completion.chunk event with delta ``d``."""
    chunk = {"id": "chatcmpl-hostile", "object": "chat.completion.chunk", "model": model}
    return event({**chunk, "choices": [{"index": 0, "delta": d, "finish_reason": finish}]})


def words(text: str) -> list[str]:
    parts = text.split(" ")
    return [p if i == 0 else " " + p for i, p in enumerate(parts)]


def sse_answer(model: str, text: str = TEXT, *, role: bool = True) -> bytes:
    """A complete, well-formed chat stream (role chunk, one chunk per word, finish, [DONE])."""
    out = [delta(model, {"role": "assistant", "content": ""})] if role else []
    out += [delta(model, {"content": w}) for w in words(text)]
    out += [delta(model, {}, "stop"), b"data: [DONE]\n\n"]
    return b"".join(out)


def normal_answer(conn: Conn) -> tuple[bytes, str]:
    """The body and Content-Type a healthy server would send for this request."""
    if conn.speech:
        return b"ID3FAKEAUDIO" + bytes(range(256)), AUDIO
    if conn.rec.stream:
        return sse_answer(conn.model), SSE
    return _dumps(completion(conn.model)), JSON


# -- behaviours: a healthy answer --------------------------------------------------------------
async def good(conn: Conn) -> None:
    """A normal answer (for self-tests and the CLI)."""
    body, ctype = normal_answer(conn)
    await conn.respond(200, body, ctype)


async def big_body(conn: Conn, size: int = 100_000) -> None:
    """A valid 200 chat completion whose content is ``size`` characters."""
    message = {"role": "assistant", "content": "A" * size}
    await conn.respond(200, _dumps(completion(conn.model, message)))


# -- behaviours: slow ---------------------------------------------------------------------------
async def trickle_body(conn: Conn, interval: float = 0.2) -> None:
    """200 with Content-Length (JSON, SSE for a stream, audio for speech), one byte per interval."""
    body, ctype = normal_answer(conn)
    await conn.head(200, ctype, len(body))
    await conn.trickle(body, interval)


async def trickle_headers(conn: Conn, interval: float = 0.2, pad: int = 2000) -> None:
    """The status line at once, then the header bytes one at a time (an ``X-Pad`` of ``pad``)."""
    body, ctype = normal_answer(conn)
    head = conn.head_bytes(200, ctype, len(body), (("X-Pad", "a" * pad),))
    status_line, _, rest = head.partition(b"\r\n")
    await conn.send(status_line + b"\r\n")
    await conn.trickle(rest, interval)
    await conn.send(body)


async def trickle_sse_first(conn: Conn, interval: float = 0.2) -> None:
    """An SSE stream whose role chunk comes at once and whose first content chunk trickles."""
    await conn.head(200, SSE)
    await conn.send(delta(conn.model, {"role": "assistant", "content": ""}))
    await conn.trickle(delta(conn.model, {"content": "Hello"}), interval)
    await conn.send(sse_answer(conn.model, " from the hostile upstream", role=False))


async def sse_comments_only(conn: Conn, interval: float = 0.2) -> None:
    """200 text/event-stream sending only ``: ping`` comments, forever."""
    await conn.head(200, SSE)
    while True:
        await conn.send(b": ping\n\n")
        await asyncio.sleep(interval)


async def sse_empty_deltas(conn: Conn, interval: float = 0.2) -> None:
    """SSE with only role-only and empty-content deltas, forever."""
    await conn.head(200, SSE)
    for d in itertools.cycle(({"role": "assistant"}, {"content": ""})):
        await conn.send(delta(conn.model, d))
        await asyncio.sleep(interval)


async def sse_idle_after_first(conn: Conn, text: str = "Hello", ping: float = 0.0) -> None:
    """One real content chunk (``text``), then no content with the connection open: silence,
    or with ``ping`` > 0 a ``: ping`` comment every ``ping`` seconds."""
    await conn.head(200, SSE)
    await conn.send(delta(conn.model, {"role": "assistant", "content": ""}))
    await conn.send(delta(conn.model, {"content": text}))
    if ping <= 0:
        await conn.forever()
    while True:
        await asyncio.sleep(ping)
        await conn.send(b": ping\n\n")


async def sse_drip(conn: Conn, interval: float = 0.2, text: str = " drip") -> None:
    """A real content chunk every ``interval`` seconds, forever (only a deadline ends it)."""
    await conn.head(200, SSE)
    await conn.send(delta(conn.model, {"role": "assistant", "content": ""}))
    while True:
        await conn.send(delta(conn.model, {"content": text}))
        await asyncio.sleep(interval)


# -- behaviours: big ---------------------------------------------------------------------------
async def endless_body(conn: Conn, chunked: bool = False) -> None:
    """200 without Content-Length (close-delimited, or chunked), a valid prefix then bytes
    forever, as fast as the socket takes them. JSON for chat, audio/mpeg for speech."""
    ctype = AUDIO if conn.speech else JSON
    extra = (("Transfer-Encoding", "chunked"),) if chunked else ()
    await conn.head(200, ctype, None, extra)
    prefix = (
        b"ID3"
        if conn.speech
        else b'{"id":"chatcmpl-endless","object":"chat.completion","choices":[{"index":0,'
        b'"message":{"role":"assistant","content":"'
    )
    filler = b"A" * PIECE

    def frame(data: bytes) -> bytes:
        return b"%x\r\n%s\r\n" % (len(data), data) if chunked else data

    await conn.send(frame(prefix))
    framed = frame(filler)
    while True:
        await conn.send(framed)


async def endless_sse_line(conn: Conn) -> None:
    """SSE: ``data: `` and a JSON prefix, then one line that never ends (no newline, ever)."""
    await conn.head(200, SSE)
    await conn.send(b'data: {"choices":[{"index":0,"delta":{"content":"')
    filler = b"A" * PIECE
    while True:
        await conn.send(filler)


async def huge_sse_event(conn: Conn, size: int = 50_000_000) -> None:
    """SSE: a role chunk, one content event whose data line is ``size`` bytes, a normal end."""
    await conn.head(200, SSE)
    await conn.send(delta(conn.model, {"role": "assistant", "content": ""}))
    await conn.send(b'data: {"choices":[{"index":0,"delta":{"content":"')
    filler = b"A" * PIECE
    left = size
    while left > 0:
        await conn.send(filler[:left])
        left -= PIECE
    await conn.send(b'"},"finish_reason":null}]}\n\n')
    await conn.send(delta(conn.model, {}, "stop") + b"data: [DONE]\n\n")


BOMB_BLOCK = 1 << 20
"""Uncompressed bytes per repeated gzip segment."""
_BOMB_PATTERNS = {
    "zeros": bytes(BOMB_BLOCK),
    # 16 KiB SSE comment lines: a stream that inflates to nothing but comments.
    "sse_comments": (b": " + b"0" * 16380 + b"\n\n") * (BOMB_BLOCK // 16384),
}


@functools.cache
def _bomb_segments(pattern: str) -> tuple[bytes, bytes]:
    """(gzip header + first block, one repeatable block), compressed at level 9.

    After a full flush the compressor starts from scratch, so every further block of the same
    bytes compresses to the same segment: the body is ``head + seg * (n - 1) + trailer``.
    """
    block = _BOMB_PATTERNS[pattern]
    c = zlib.compressobj(9, zlib.DEFLATED, 31)
    head = c.compress(block) + c.flush(zlib.Z_FULL_FLUSH)
    seg = c.compress(block) + c.flush(zlib.Z_FULL_FLUSH)
    again = c.compress(block) + c.flush(zlib.Z_FULL_FLUSH)
    assert seg == again, "zlib did not repeat its output after a full flush"
    return head, seg


def _gf2_times(matrix: list[int], vector: int) -> int:
    out, i = 0, 0
    while vector:
        if vector & 1:
            out ^= matrix[i]
        vector >>= 1
        i += 1
    return out


def crc32_combine(crc1: int, crc2: int, len2: int) -> int:
    """CRC32 of ``A + B`` from ``crc32(A)``, ``crc32(B)`` and ``len(B)`` (zlib's algorithm:
    apply ``len2`` zero bytes to ``crc1`` by repeated squaring of the CRC operator)."""
    if len2 <= 0:
        return crc1
    odd = [0xEDB88320] + [1 << n for n in range(31)]  # the operator for one zero bit
    even = [_gf2_times(odd, odd[n]) for n in range(32)]  # two zero bits
    odd = [_gf2_times(even, even[n]) for n in range(32)]  # four zero bits
    while True:
        even = [_gf2_times(odd, odd[n]) for n in range(32)]
        if len2 & 1:
            crc1 = _gf2_times(even, crc1)
        len2 >>= 1
        if not len2:
            break
        odd = [_gf2_times(even, even[n]) for n in range(32)]
        if len2 & 1:
            crc1 = _gf2_times(odd, crc1)
        len2 >>= 1
        if not len2:
            break
    return crc1 ^ crc2


def crc32_repeated(block: bytes, count: int) -> int:
    """``zlib.crc32(block * count)`` in O(log count), without building the bytes."""
    unit, unit_len = zlib.crc32(block), len(block)
    crc = 0
    while count:
        if count & 1:
            crc = crc32_combine(crc, unit, unit_len)
        unit = crc32_combine(unit, unit, unit_len)
        unit_len *= 2
        count >>= 1
    return crc


def _bomb_trailer(pattern: str, blocks: int) -> bytes:
    """The final (empty) deflate block, then CRC32 and ISIZE of ``blocks`` blocks."""
    crc = crc32_repeated(_BOMB_PATTERNS[pattern], blocks)
    return b"\x03\x00" + struct.pack("<II", crc, (blocks * BOMB_BLOCK) & 0xFFFFFFFF)


def gzip_bomb_parts(pattern: str = "zeros", inflated_mib: int = 4096) -> tuple[bytes, bytes, int]:
    """(head, segment, segment count) of a gzip body inflating to ``inflated_mib`` MiB.

    The body is ``head + segment * count + trailer`` (trailer: 10 bytes, see
    :func:`_bomb_trailer`); the default is about 4 MB (zeros) or 8 MB (SSE comments)
    inflating to 4 GiB.
    """
    if inflated_mib < 2:
        raise ValueError("inflated_mib must be >= 2")
    head, seg = _bomb_segments(pattern)
    return head, seg, inflated_mib - 1


async def _send_bomb(conn: Conn, pattern: str, content_type: str, inflated_mib: int) -> None:
    head, seg, count = gzip_bomb_parts(pattern, inflated_mib)
    length = len(head) + len(seg) * count + 10
    await conn.head(200, content_type, length, (("Content-Encoding", "gzip"),))
    await conn.send(head)
    batch = 64
    for start in range(0, count, batch):
        await conn.send(seg * min(batch, count - start))
    await conn.send(_bomb_trailer(pattern, count + 1))


async def gzip_bomb(conn: Conn, inflated_mib: int = 4096) -> None:
    """200 application/json, Content-Encoding: gzip, ~4 MB inflating to 4 GiB of zeros."""
    await _send_bomb(conn, "zeros", AUDIO if conn.speech else JSON, inflated_mib)


async def gzip_bomb_sse(conn: Conn, inflated_mib: int = 4096) -> None:
    """200 text/event-stream, Content-Encoding: gzip, inflating to 4 GiB of SSE comment lines."""
    await _send_bomb(conn, "sse_comments", SSE, inflated_mib)


# -- behaviours: broken ------------------------------------------------------------------------
async def reset_mid_body(conn: Conn, after_first: bool = False) -> None:
    """Content-Length of the whole answer, part of it, then a TCP reset. A plain answer is cut
    in half; a stream in the middle of its first content event (before any content), or with
    ``after_first`` in the middle of its second (after the first content chunk)."""
    body, ctype = normal_answer(conn)
    cut = len(body) // 2
    if conn.rec.stream:
        events = body.split(b"\n\n")
        first = len(events[0]) + 2  # the role chunk: no content yet
        if after_first:
            first += len(events[1]) + 2
        cut = first + len(events[2 if after_first else 1]) // 2
    await conn.head(200, ctype, len(body))
    await conn.send(body[:cut])
    await asyncio.sleep(0.05)  # let the part reach the client before the RST
    conn.reset()


async def unknown_encoding(conn: Conn) -> None:
    """A normal answer labelled ``Content-Encoding: x-hostile`` (no client can decode it)."""
    body, ctype = normal_answer(conn)
    await conn.respond(200, body, ctype, (("Content-Encoding", "x-hostile"),))


async def not_sse(conn: Conn) -> None:
    """A complete application/json chat completion, even to a stream request."""
    await conn.respond(200, _dumps(completion(conn.model)))


async def not_json(conn: Conn) -> None:
    """200 application/json whose body is an HTML error page."""
    await conn.respond(200, b"<html><body><h1>502 Bad Gateway</h1></body></html>")


async def malformed(conn: Conn, body: Any = None) -> None:
    """200 application/json with valid JSON of the wrong shape (the table below)."""
    await conn.respond(200, _dumps(body))


async def sse_bad_event(conn: Conn, data: bytes = b"") -> None:
    """A stream whose first event carries ``data`` (wrong shape, or not JSON), then a normal end."""
    await conn.head(200, SSE)
    await conn.send(event(data))
    await conn.send(sse_answer(conn.model))


_TOOL = {"id": "call_0", "type": "function", "function": {"name": "f", "arguments": "{}"}}

MALFORMED: dict[str, Any] = {
    "choices_dict": {"choices": {"index": 0, "message": {"role": "assistant", "content": "x"}}},
    "choices_str": {"choices": "x"},
    "choices_empty": {"choices": []},
    "message_str": completion("m", "hello"),
    "content_int": completion("m", {"role": "assistant", "content": 123}),
    "tool_calls_int": completion("m", {"role": "assistant", "content": None, "tool_calls": 5}),
    "tool_calls_function_str": completion(
        "m", {"role": "assistant", "content": None, "tool_calls": [{"function": "x"}]}
    ),
    "function_name_missing": completion(
        "m",
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [{"id": "call_0", "type": "function", "function": {"arguments": "{}"}}],
        },
    ),
    "audio_not_base64": completion(
        "m", {"role": "assistant", "content": None, "audio": {"id": "a1", "data": "!!notbase64!!"}}
    ),
}
"""Non-stream answers: behaviour ``bad_<name>`` sends the body. ``not_json`` is separate."""


def _chunk(choices: Any) -> bytes:
    return _dumps({"id": "chatcmpl-hostile", "object": "chat.completion.chunk", "choices": choices})


MALFORMED_SSE: dict[str, bytes] = {
    "choices_dict": _chunk({"index": 0, "delta": {"content": "x"}}),
    "choices_str": _chunk("x"),
    "delta_str": _chunk([{"index": 0, "delta": "hello"}]),
    "tool_calls_int": _chunk([{"index": 0, "delta": {"tool_calls": 5}}]),
    "function_str": _chunk(
        [{"index": 0, "delta": {"tool_calls": [{"index": 0, "function": "x"}]}}]
    ),
    "not_json": b'{"choices": [{"index": 0, "delta": {"content": "x"',
}
"""First stream events: behaviour ``sse_bad_<name>`` sends the event, then a normal stream."""


# -- behaviours: the key -----------------------------------------------------------------------
def key_forms(key: str) -> list[str]:
    """Every form in which ``echo_key*`` echoes ``key``, and tests must never find it."""
    return [
        key,
        "".join(f"\\u{ord(c):04x}" for c in key),
        "".join(f"\\u{ord(c):04X}" for c in key),
        "".join(f"%{b:02X}" for b in key.encode()),
        "".join(f"%{b:02x}" for b in key.encode()),
    ]


def _escaped(key: str) -> str:
    return "".join(f"\\u{ord(c):04x}" for c in key)


def _pct(key: str) -> str:
    return "".join(f"%{b:02X}" for b in key.encode())


def _key_text(key: str) -> str:
    return (
        f"Incorrect API key provided: {key}. You can find your API key at "
        f"https://platform.example/account/api-keys?key={_pct(key)}&hint=Bearer%20{_pct(key)}"
    )


async def echo_key(conn: Conn, status: int = 401) -> None:
    """An error status (401/500/429, ...) echoing the key: in ``x-request-id``, literally in
    the message, percent-encoded in a URL in the message, JSON-escaped in ``param``."""
    key = conn.rec.key
    body = (
        '{"error": {"message": ' + json.dumps(_key_text(key)) + ", "
        '"type": "invalid_request_error", "code": "invalid_api_key", '
        '"param": "' + _escaped(key) + '", "detail": "Bearer ' + _escaped(key) + '"}}'
    ).encode()
    await conn.respond(status, body, JSON, (("x-request-id", f"req_{key}"),))


async def echo_key_body(conn: Conn) -> None:
    """200 application/json whose body is not JSON and holds the key in every form."""
    key = conn.rec.key
    text = f"upstream proxy error ({_escaped(key)}): {_key_text(key)}"
    await conn.respond(200, text.encode(), JSON, (("x-request-id", f"req_{key}"),))


async def echo_key_sse(conn: Conn, kind: str = "not_json") -> None:
    """A stream whose first event holds the key in every form: ``kind="not_json"`` (a broken
    event) or ``"error_event"`` (an OpenAI-style ``{"error": ...}`` event)."""
    key = conn.rec.key
    await conn.head(200, SSE, None, (("x-request-id", f"req_{key}"),))
    if kind == "error_event":
        data = (
            '{"error": {"message": ' + json.dumps(_key_text(key)) + ', "code": 401, '
            '"param": "' + _escaped(key) + '"}}'
        ).encode()
    else:
        data = ("{upstream proxy error (" + _escaped(key) + "): " + _key_text(key)).encode()
    await conn.send(event(data) + b"data: [DONE]\n\n")


# -- the table -----------------------------------------------------------------------------------
Behaviour = Callable[..., Awaitable[None]]

BEHAVIOURS: dict[str, Behaviour] = {
    "good": good,
    "big_body": big_body,
    "trickle_body": trickle_body,
    "trickle_headers": trickle_headers,
    "trickle_sse_first": trickle_sse_first,
    "sse_comments_only": sse_comments_only,
    "sse_empty_deltas": sse_empty_deltas,
    "sse_idle_after_first": sse_idle_after_first,
    "sse_drip": sse_drip,
    "endless_body": endless_body,
    "endless_sse_line": endless_sse_line,
    "huge_sse_event": huge_sse_event,
    "gzip_bomb": gzip_bomb,
    "gzip_bomb_sse": gzip_bomb_sse,
    "reset_mid_body": reset_mid_body,
    "unknown_encoding": unknown_encoding,
    "not_sse": not_sse,
    "not_json": not_json,
    **{f"bad_{name}": functools.partial(malformed, body=body) for name, body in MALFORMED.items()},
    **{f"sse_bad_{n}": functools.partial(sse_bad_event, data=d) for n, d in MALFORMED_SSE.items()},
    "echo_key": echo_key,
    "echo_key_body": echo_key_body,
    "echo_key_sse": echo_key_sse,
}
"""Behaviour name (the request's ``"model"``) -> the function that answers."""


# -- the server ----------------------------------------------------------------------------------
class Hostile:
    """The hostile server. See the module docstring."""

    def __init__(self, *, host: str = "127.0.0.1", port: int = 0) -> None:
        self.host = host
        self._port = port
        self._lock = threading.Lock()
        self._params: dict[str, dict[str, Any]] = {}
        self._requests: list[HostileRequest] = []
        self._counter = itertools.count(1)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: asyncio.AbstractServer | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._writers: set[asyncio.StreamWriter] = set()
        self._ready = threading.Event()
        self._startup_error: BaseException | None = None

    # -- lifecycle ----------------------------------------------------------------------------
    def start(self) -> Hostile:
        if self._thread is not None:
            return self
        self._thread = threading.Thread(target=self._serve, name="hostile", daemon=True)
        self._thread.start()
        self._ready.wait(10)
        if self._startup_error is not None:
            raise RuntimeError("hostile server failed to start") from self._startup_error
        return self

    def stop(self) -> None:
        """Abort every open connection, stop serving, join the thread. Idempotent."""
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        self._thread = None
        asyncio.run_coroutine_threadsafe(self._shutdown(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)

    def __enter__(self) -> Hostile:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def _serve(self) -> None:
        loop = self._loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        try:
            self._server = loop.run_until_complete(
                asyncio.start_server(self._client, self.host, self._port)
            )
            self._port = self._server.sockets[0].getsockname()[1]
        except BaseException as exc:
            self._startup_error = exc
            self._ready.set()
            loop.close()
            return
        self._ready.set()
        try:
            loop.run_forever()
        finally:
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.run_until_complete(loop.shutdown_default_executor())
            loop.close()

    async def _shutdown(self) -> None:
        if self._server is not None:
            self._server.close()
        for writer in list(self._writers):
            writer.transport.abort()
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=5)
        if self._server is not None:
            await self._server.wait_closed()

    # -- addresses ----------------------------------------------------------------------------
    @property
    def port(self) -> int:
        return self._port

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self._port}"

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:PORT/v1``: what ``base_url=`` takes."""
        return f"{self.url}/v1"

    # -- configuring --------------------------------------------------------------------------
    def configure(self, behaviour: str, **params: Any) -> None:
        """Set parameters of ``behaviour`` for every later request naming it."""
        fn = BEHAVIOURS.get(behaviour)
        if fn is None:
            raise ValueError(f"unknown behaviour {behaviour!r}; known: {sorted(BEHAVIOURS)}")
        with self._lock:
            merged = {**self._params.get(behaviour, {}), **params}
            inspect.signature(fn).bind(None, **merged)  # TypeError for a wrong name, at once
            self._params[behaviour] = merged

    # -- inspection ---------------------------------------------------------------------------
    @property
    def requests(self) -> list[HostileRequest]:
        with self._lock:
            return list(self._requests)

    def count(self, behaviour: str | None = None) -> int:
        return len([r for r in self.requests if behaviour is None or r.behaviour == behaviour])

    def closed_early(self, behaviour: str | None = None) -> list[HostileRequest]:
        """Requests whose client hung up before the behaviour was done."""
        return [
            r
            for r in self.requests
            if r.client_closed and (behaviour is None or r.behaviour == behaviour)
        ]

    def wait_for(self, predicate: Callable[[Hostile], bool], timeout: float = 2.0) -> bool:
        deadline = time.monotonic() + timeout
        while not predicate(self):
            if time.monotonic() > deadline:
                return False
            time.sleep(0.005)
        return True

    async def await_for(self, predicate: Callable[[Hostile], bool], timeout: float = 2.0) -> bool:
        """Async form of :meth:`wait_for` (lets the caller's loop close its connections)."""
        deadline = time.monotonic() + timeout
        while not predicate(self):
            if time.monotonic() > deadline:
                return False
            await asyncio.sleep(0.005)
        return True

    # -- serving ------------------------------------------------------------------------------
    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self._writers.add(writer)
        rec: HostileRequest | None = None
        try:
            parsed = await _read_request(reader)
            if parsed is None:
                return
            path, headers, body = parsed
            rec, fn = self._record(path, headers, body)
            conn = Conn(rec, reader, writer)
            if fn is None:
                await _not_found(conn, path)
                rec.finished = True
                return
            work = asyncio.ensure_future(fn(conn, **rec.params))
            hangup = asyncio.ensure_future(_client_hangup(reader))
            try:
                await asyncio.wait({work, hangup}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for t in (work, hangup):
                    t.cancel()
                await asyncio.gather(work, hangup, return_exceptions=True)
            failure = None if work.cancelled() else work.exception()
            if work.done() and not work.cancelled() and failure is None:
                rec.finished = True
            elif isinstance(failure, ConnectionError):
                rec.client_closed = not rec.server_reset  # a write failed: the client left
            elif failure is not None:
                rec.server_error = f"{type(failure).__name__}: {failure}"  # a bug in here
            if hangup.done() and not hangup.cancelled() and not rec.finished:
                rec.client_closed = not rec.server_reset
        except (ConnectionError, asyncio.IncompleteReadError):
            if rec is not None and not rec.server_reset:
                rec.client_closed = True
        except asyncio.CancelledError:
            pass  # the server is stopping
        finally:
            self._writers.discard(writer)
            self._tasks.discard(task)
            if rec is not None and not rec.finished and not rec.server_reset:
                writer.transport.abort()  # a behaviour cut short: nothing more to flush
            else:
                writer.close()

    def _record(
        self, path: str, headers: dict[str, str], body: bytes
    ) -> tuple[HostileRequest, Behaviour | None]:
        try:
            payload = json.loads(body) if body else None
        except ValueError:
            payload = None
        model = payload.get("model") if isinstance(payload, dict) else None
        route = ROUTES.get(path, "unknown")
        fn = BEHAVIOURS.get(model) if isinstance(model, str) and route != "unknown" else None
        with self._lock:
            params = dict(self._params.get(model, {})) if isinstance(model, str) else {}
            rec = HostileRequest(
                index=next(self._counter),
                route=route,
                behaviour=model if isinstance(model, str) else None,
                stream=isinstance(payload, dict) and payload.get("stream") is True,
                headers=headers,
                json=payload,
                params=params,
                started=time.monotonic(),
            )
            self._requests.append(rec)
        return rec, fn


async def _read_request(reader: asyncio.StreamReader) -> tuple[str, dict[str, str], bytes] | None:
    """(path, lower-cased headers, body) of one request, or None if the client sent none."""
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except (asyncio.IncompleteReadError, asyncio.LimitOverrunError):
        return None
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ")
    path = parts[1].split("?")[0] if len(parts) > 1 else "/"
    headers: dict[str, str] = {}
    for line in lines[1:]:
        if line:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
    length = int(headers.get("content-length") or 0)
    body = await reader.readexactly(length) if length else b""
    return path, headers, body


async def _client_hangup(reader: asyncio.StreamReader) -> None:
    """Returns when the client closes its side (EOF) or resets the connection."""
    try:
        while await reader.read(65536):
            pass
    except ConnectionError:
        pass


async def _not_found(conn: Conn, path: str) -> None:
    message = (
        f"no hostile behaviour for route {path!r} and model {conn.rec.behaviour!r}; routes: "
        f"{sorted(ROUTES)}; behaviours: {sorted(BEHAVIOURS)}"
    )
    body = _dumps({"error": {"message": message, "type": "invalid_request_error"}})
    await conn.respond(404, body)


# -- memory-capped child -------------------------------------------------------------------------
REPORT = "HOSTILE-CHILD-REPORT "


@dataclasses.dataclass
class ChildResult:
    """What :func:`run_in_child` saw: the child's report, or why there is none."""

    returncode: int | None
    report: dict[str, Any] | None
    stderr: str
    timed_out: bool
    elapsed: float

    def describe(self) -> str:
        if self.timed_out:
            had = f" (it had reported {self.report})" if self.report is not None else ""
            return f"the child was still running after {self.elapsed:.1f}s and was killed{had}"
        if self.returncode != 0:
            how = (
                f"killed by signal {-self.returncode}"
                if self.returncode is not None and self.returncode < 0
                else f"exit code {self.returncode}"
            )
            return f"the child died ({how}); stderr tail: {self.stderr[-1500:]}"
        return f"report: {self.report}"


def run_in_child(
    spec: dict[str, Any], *, headroom: int = 1 << 30, timeout: float = 30.0
) -> ChildResult:
    """Run one call in a child Python with ``RLIMIT_AS`` = its baseline + ``headroom`` bytes.

    ``spec`` (JSON-able) says what to call::

        {"mode": "sync" | "async",
         "kind": "chat" | "speech",                         # Model.chat_completion / text_to_speech
         "model": {"path": "openai_compatible/endless_body", "options": {...}},
         "good": None | {"path": ..., "options": {...}},    # set: a gateway [bad, good]
         "gateway": {...},                                  # ModelGateway options
         "args": [...], "kwargs": {...}}                    # the call

    The child builds everything and imports everything first, measures its address space,
    caps it, makes the call (reading a stream to its end without keeping it), and prints one
    JSON report: ``error`` (type, mro names, message) or the answer's length, ``elapsed``,
    peak RSS, and for a gateway who answered and the failures of "bad". A child still running
    after ``timeout`` seconds is killed.
    """
    env = {**os.environ, "MALLOC_ARENA_MAX": "2", "PYTHONDONTWRITEBYTECODE": "1"}
    cmd = [sys.executable, "-m", "tests.hostile", "--child", str(headroom)]
    started = time.monotonic()
    proc = subprocess.Popen(
        cmd,
        cwd=ROOT,
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        out, err = proc.communicate(json.dumps(spec), timeout=timeout)
        timed_out = False
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        timed_out = True
    report = None
    for line in out.splitlines():
        if line.startswith(REPORT):
            report = json.loads(line[len(REPORT) :])
    return ChildResult(proc.returncode, report, err, timed_out, time.monotonic() - started)


def _vm_kib(field: str) -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def _child(headroom: int) -> None:
    import resource

    from msgflux import Model, ModelGateway  # imported before the baseline is measured
    from msgflux.models.response import ModelStreamResponse

    spec = json.loads(sys.stdin.read())
    factory = Model.text_to_speech if spec.get("kind") == "speech" else Model.chat_completion
    report: dict[str, Any] = {"error": None}
    target: Any = None
    try:
        bad = factory(spec["model"]["path"], **spec["model"].get("options", {}))
        target = bad
        if spec.get("good"):
            good = factory(spec["good"]["path"], **spec["good"].get("options", {}))
            models = [{"model_name": "bad", "model": bad}, {"model_name": "good", "model": good}]
            target = ModelGateway(models, **spec.get("gateway", {}))
    except BaseException as exc:  # a TypeError for an option the code does not know yet
        report["error"] = _describe(exc)
        report["phase"] = "construction"
        print(REPORT + json.dumps(report), flush=True)
        return

    baseline = _vm_kib("VmSize")
    limit = baseline * 1024 + headroom
    resource.setrlimit(resource.RLIMIT_AS, (limit, resource.getrlimit(resource.RLIMIT_AS)[1]))
    report.update(baseline_vm_kib=baseline, limit_kib=limit // 1024)
    report["baseline_rss_kib"] = _vm_kib("VmRSS")
    args, kwargs = spec.get("args", []), spec.get("kwargs", {})
    size = 0
    head: Any = None
    metadata: Any = None

    def take(value: Any) -> None:
        nonlocal size, head
        size += len(value) if isinstance(value, (str, bytes)) else 1
        if head is None:
            head = repr(value)[:200]

    async def acall() -> None:
        nonlocal metadata
        resp = await target.acall(*args, **kwargs)
        if isinstance(resp, ModelStreamResponse):
            async for chunk in resp.consume():
                take(chunk)
        else:
            take(resp.consume())
        metadata = resp.metadata

    started = time.monotonic()
    try:
        if spec.get("mode") == "async":
            asyncio.run(acall())
        else:
            resp = target(*args, **kwargs)
            if isinstance(resp, ModelStreamResponse):
                for chunk in resp:
                    take(chunk)
            else:
                take(resp.consume())
            metadata = resp.metadata
    except BaseException as exc:
        report["error"] = _describe(exc)
    report["elapsed"] = time.monotonic() - started
    report["answer_size"] = size
    report["answer_head"] = head
    report["peak_rss_kib"] = _vm_kib("VmHWM")
    if isinstance(target, ModelGateway):
        gateway_meta = (metadata or {}).get("gateway") or {}
        report["answered_by"] = gateway_meta.get("model_name")
        report["bad_failures"] = target.stats()["deployments"]["bad"]["failures"]
    print(REPORT + json.dumps(report), flush=True)


def _describe(exc: BaseException) -> dict[str, Any]:
    return {
        "type": type(exc).__name__,
        "module": type(exc).__module__,
        "mro": [c.__name__ for c in type(exc).__mro__],
        "message": str(exc)[:500],
        "cause": None if exc.__cause__ is None else type(exc.__cause__).__name__,
    }


def _main() -> None:
    parser = argparse.ArgumentParser(description="Serve the hostile upstream.")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--list", action="store_true", help="list the behaviours and exit")
    parser.add_argument("--child", type=int, metavar="HEADROOM", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        _child(args.child)
        return
    if args.list:
        for name, fn in BEHAVIOURS.items():
            params = [p for p in inspect.signature(fn).parameters.values() if p.name != "conn"]
            target = fn.func if isinstance(fn, functools.partial) else fn
            doc = (inspect.getdoc(target) or "").split("\n")[0]
            shown = ", ".join(f"{p.name}={p.default!r}" for p in params if len(repr(p.default)) < 9)
            print(f"{name:28} {shown:32} {doc}")
        return
    server = Hostile(port=args.port).start()
    print(server.base_url, flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        server.stop()


if __name__ == "__main__":
    _main()
