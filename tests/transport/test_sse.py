"""The SSE codec: linear, bounded, keeps event names; any split of the bytes gives the same
events."""

from __future__ import annotations

import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from msgflux._transport.sse import EventTooLarge, SSEDecoder, encode_event

SSE = (
    b": keep-alive comment\n\n"
    b'data: {"a": 1}\n\n'
    b"event: message\r\n"
    b'data: {"b":\r\n'
    b"data: 2}\r\n\r\n"
    b"id: 7\nretry: 100\n"
    b'data:{"c": 3}\n\n'
    b"data: [DONE]\n\n"
)
EVENTS = [
    (None, b'{"a": 1}'),
    ("message", b'{"b":\n2}'),
    (None, b'{"c": 3}'),
    (None, b"[DONE]"),
]


def test_sse_decoder_handles_comments_multiline_crlf_event_names() -> None:
    assert SSEDecoder().feed(SSE) == EVENTS


def test_sse_decoder_gives_the_same_events_for_any_split_of_the_bytes() -> None:
    for size in (1, 2, 3, 7, 64):
        decoder = SSEDecoder()
        events = []
        for i in range(0, len(SSE), size):
            events += decoder.feed(SSE[i : i + size])
        assert events == EVENTS, size


def test_sse_decoder_end_flushes_an_event_without_final_blank_line() -> None:
    decoder = SSEDecoder()
    assert decoder.feed(b'data: {"a": 1}') == []
    assert decoder.end() == [(None, b'{"a": 1}')]


def test_anthropic_style_named_events_keep_their_names() -> None:
    raw = b'event: message_start\ndata: {"type":"message_start"}\n\nevent: ping\ndata: {}\n\n'
    assert SSEDecoder().feed(raw) == [
        ("message_start", b'{"type":"message_start"}'),
        ("ping", b"{}"),
    ]


def test_an_event_over_the_limit_raises_at_once() -> None:
    decoder = SSEDecoder(max_event_bytes=1000)
    with pytest.raises(EventTooLarge):
        decoder.feed(b"data: " + b"x" * 2000 + b"\n\n")


def test_an_endless_line_raises_once_it_passes_the_limit() -> None:
    decoder = SSEDecoder(max_event_bytes=100_000)
    decoder.feed(b"data: ")
    with pytest.raises(EventTooLarge):
        for _ in range(100):
            decoder.feed(b"y" * 4096)


def test_many_data_lines_count_toward_the_event_limit() -> None:
    decoder = SSEDecoder(max_event_bytes=1000)
    with pytest.raises(EventTooLarge):
        decoder.feed(b"data: abcdefghij\n" * 200)


def test_decoder_is_linear_in_its_input() -> None:
    """A 40 MB line fed in 64 KiB pieces is read once (the old decoder took 10 s)."""
    decoder = SSEDecoder(max_event_bytes=64 << 20)
    piece = b"z" * 65536
    started = time.perf_counter()
    decoder.feed(b"data: ")
    for _ in range(40 * 16):
        decoder.feed(piece)
    assert len(decoder.feed(b"\n\n")[0][1]) == 40 * 16 * 65536
    assert time.perf_counter() - started < 2.0


def test_encode_event_round_trips() -> None:
    raw = encode_event(b'{"x":1}') + encode_event(b"{}", "ping")
    assert SSEDecoder().feed(raw) == [(None, b'{"x":1}'), ("ping", b"{}")]


_FIELDS = [b"data: ", b"data:", b"event: x\n", b": c\n", b"id: 3\n", b"data: [DONE]"]


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(_FIELDS),
            st.binary(max_size=20).filter(lambda b: b"\n" not in b and b"\r" not in b),
            st.sampled_from([b"\n\n", b"\n", b"\n\n\n"]),
        ),
        max_size=12,
    ),
    st.integers(min_value=1, max_value=64),
)
def test_whole_chunks_decode_as_the_line_by_line_path_does(
    parts: list[tuple[bytes, bytes, bytes]], size: int
) -> None:
    """A chunk of whole events takes a split-at-once path: the same events as a byte-by-byte
    feed (which always takes the general path)."""
    raw = b"".join(field + value + end for field, value, end in parts) + b"\n\n"
    whole = SSEDecoder()
    at_once = whole.feed(raw) + whole.end()
    pieces = SSEDecoder()
    split: list[tuple[str | None, bytes]] = []
    for i in range(0, len(raw), size):
        split += pieces.feed(raw[i : i + size])
    assert at_once == split + pieces.end()
