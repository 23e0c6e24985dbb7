"""The sync and async clients against the scriptable upstream: answers, errors, timeouts, streams,
connection reuse, sessions per loop."""

from __future__ import annotations

import asyncio

import orjson
import pytest

from msgflux import _transport
from msgflux._transport import Endpoint, StreamTimeouts, wire
from msgflux._transport.errors import error_class_for_status
from msgflux.exceptions import (
    APIConnectionError,
    APIResponseValidationError,
    APIStatusError,
    APITimeoutError,
    InternalServerError,
    RateLimitError,
)
from tests.transport.test_errors import EXPECTED_STATUS, SECRET
from tests.upstream import Reply, Upstream


def endpoint(upstream: Upstream | str, path: str = "/chat/completions") -> Endpoint:
    base = upstream if isinstance(upstream, str) else upstream.base_url
    return Endpoint(
        base + path,
        {"Content-Type": "application/json", "Authorization": f"Bearer {SECRET}"},
        provider="openai",
        model_id="m",
        secret=SECRET,
    )


BODY = orjson.dumps({"model": "m", "messages": [{"role": "user", "content": "hi"}]})
STREAM_BODY = orjson.dumps(
    {"model": "m", "messages": [], "stream": True, "stream_options": {"include_usage": True}}
)
QUICK = StreamTimeouts.of(0.1)
ANY = StreamTimeouts.of(None)


def events_of(raw: list[tuple[str | None, bytes]]) -> list[object]:
    return [orjson.loads(data) for _, data in raw if data != b"[DONE]"]


# -- requests against the upstream -------------------------------------------------------------
def test_post_returns_decoded_json_and_headers(upstream: Upstream) -> None:
    resp = _transport.post(endpoint(upstream), BODY)
    payload = orjson.loads(resp.content)
    assert payload["choices"][0]["message"]["content"] == "Hello from m"
    assert resp.headers.get("x-request-id") == "req_1"
    assert upstream.last.headers["authorization"] == f"Bearer {SECRET}"


async def test_apost_returns_decoded_json_and_headers(upstream: Upstream) -> None:
    resp = await _transport.apost(endpoint(upstream), BODY)
    payload = orjson.loads(resp.content)
    assert payload["choices"][0]["message"]["content"] == "Hello from m"
    assert resp.headers.get("x-request-id") == "req_1"


@pytest.mark.parametrize("status", [400, 401, 403, 404, 408, 409, 418, 422, 429, 500, 503])
def test_error_status_raises_typed_error_with_details(upstream: Upstream, status: int) -> None:
    upstream.script(Reply(status=status, error="nope", retry_after=4))
    with pytest.raises(APIStatusError) as info:
        _transport.post(endpoint(upstream), BODY)
    err = info.value
    assert type(err) is error_class_for_status(status)
    assert (err.status_code, err.request_id, err.retry_after) == (status, "req_1", 4.0)
    assert (err.provider, err.model_id) == ("openai", "m")
    assert err.body["error"]["message"] == "nope"


@pytest.mark.parametrize("status", [400, 401, 429, 500, 503])
async def test_error_status_raises_typed_error_async(upstream: Upstream, status: int) -> None:
    upstream.script(Reply(status=status, retry_after_ms=1500))
    with pytest.raises(APIStatusError) as info:
        await _transport.apost(endpoint(upstream), BODY)
    assert type(info.value) is EXPECTED_STATUS.get(status, InternalServerError)
    assert info.value.retry_after == 1.5


def test_a_non_sse_answer_to_a_stream_request_is_a_validation_error(upstream: Upstream) -> None:
    upstream.script(Reply(body=b'{"choices": []}', content_type="application/json"))
    with pytest.raises(APIResponseValidationError, match="text/event-stream"):
        _transport.post_stream(endpoint(upstream), STREAM_BODY, ANY)


def test_connection_refused_is_api_connection_error(closed_port: str) -> None:
    with pytest.raises(APIConnectionError) as info:
        _transport.post(endpoint(closed_port), BODY, timeout=2)
    assert not isinstance(info.value, APITimeoutError)
    assert SECRET not in str(info.value)


async def test_connection_refused_is_api_connection_error_async(closed_port: str) -> None:
    with pytest.raises(APIConnectionError) as info:
        await _transport.apost(endpoint(closed_port), BODY, timeout=2)
    assert not isinstance(info.value, APITimeoutError)


@pytest.mark.parametrize("drop", ["before_headers", "after_headers"])
def test_dropped_connection_is_api_connection_error(upstream: Upstream, drop: str) -> None:
    upstream.script(Reply(drop=drop))  # type: ignore[arg-type]
    with pytest.raises(APIConnectionError) as info:
        _transport.post(endpoint(upstream), BODY)
    assert not isinstance(info.value, APITimeoutError)


@pytest.mark.parametrize("drop", ["before_headers", "after_headers"])
async def test_dropped_connection_is_api_connection_error_async(
    upstream: Upstream, drop: str
) -> None:
    upstream.script(Reply(drop=drop))  # type: ignore[arg-type]
    with pytest.raises(APIConnectionError):
        await _transport.apost(endpoint(upstream), BODY)
    assert upstream.count("chat") == 1


def test_slow_answer_past_timeout_is_api_timeout_error(upstream: Upstream) -> None:
    upstream.script(Reply(delay=1.0))
    with pytest.raises(APITimeoutError, match=r"0\.1s"):
        _transport.post(endpoint(upstream), BODY, timeout=0.1)
    assert upstream.wait_for(lambda up: len(up.closed_early()) == 1)


async def test_slow_answer_past_timeout_is_api_timeout_error_async(upstream: Upstream) -> None:
    upstream.script(Reply(delay=1.0))
    with pytest.raises(APITimeoutError):
        await _transport.apost(endpoint(upstream), BODY, timeout=0.1)
    assert await upstream.await_for(lambda up: len(up.closed_early()) == 1)


def test_connection_is_reused_across_calls(upstream: Upstream) -> None:
    ep = endpoint(upstream)
    for _ in range(3):
        _transport.post(ep, BODY)
    assert upstream.count() == 3
    assert ep._pool is not None and ep._pool.num_connections == 1


def test_stream_yields_events_and_returns_connection_to_pool(upstream: Upstream) -> None:
    ep = endpoint(upstream)
    events = _transport.post_stream(ep, STREAM_BODY, ANY)
    items = events_of(list(events))
    assert events.headers.get("x-request-id") == "req_1"
    assert items[-1]["usage"]["total_tokens"] >= 1  # type: ignore[index]
    _transport.post(ep, BODY)
    assert ep._pool is not None and ep._pool.num_connections == 1


async def test_async_stream_yields_events(upstream: Upstream) -> None:
    events = await _transport.apost_stream(endpoint(upstream), STREAM_BODY, ANY)
    items = events_of([e async for e in events])
    assert "usage" in items[-1]  # type: ignore[operator]
    assert items[1]["choices"][0]["delta"]["content"] == "Hello"  # type: ignore[index]


def test_stream_error_status_raises_before_returning(upstream: Upstream) -> None:
    upstream.script(Reply(status=503))
    with pytest.raises(InternalServerError):
        _transport.post_stream(endpoint(upstream), STREAM_BODY, ANY)


async def test_stream_error_status_raises_before_returning_async(upstream: Upstream) -> None:
    upstream.script(Reply(status=429))
    with pytest.raises(RateLimitError):
        await _transport.apost_stream(endpoint(upstream), STREAM_BODY, ANY)


def test_stream_cut_mid_way_raises_api_connection_error_from_iterator(upstream: Upstream) -> None:
    upstream.script(Reply(text="one two three four", cut_after=2))
    events = _transport.post_stream(endpoint(upstream), STREAM_BODY, ANY)
    got = []
    with pytest.raises(APIConnectionError):
        for event in events:
            got.append(event)
    assert len(got) == 3  # the role chunk and two content chunks


async def test_stream_cut_mid_way_raises_api_connection_error_async(upstream: Upstream) -> None:
    upstream.script(Reply(text="one two three four", cut_after=1))
    events = await _transport.apost_stream(endpoint(upstream), STREAM_BODY, ANY)
    got = []
    with pytest.raises(APIConnectionError):
        async for event in events:
            got.append(event)
    assert len(got) == 2


def test_stream_read_timeout_is_api_timeout_error(upstream: Upstream) -> None:
    upstream.script(Reply(text="a b c", chunk_delay=1.0))
    events = _transport.post_stream(endpoint(upstream), STREAM_BODY, QUICK)
    with pytest.raises(APITimeoutError):
        list(events)


async def test_stream_read_timeout_is_api_timeout_error_async(upstream: Upstream) -> None:
    upstream.script(Reply(text="a b c", chunk_delay=1.0))
    events = await _transport.apost_stream(endpoint(upstream), STREAM_BODY, QUICK)
    with pytest.raises(APITimeoutError):
        async for _ in events:
            events.content()


def test_closing_a_stream_early_closes_the_connection(upstream: Upstream) -> None:
    upstream.script(Reply(chunks=["x"] * 50, chunk_delay=0.02))
    events = _transport.post_stream(endpoint(upstream), STREAM_BODY, ANY)
    next(iter(events))
    events.close()
    assert upstream.wait_for(lambda up: len(up.closed_early("chat")) == 1)


async def test_closing_an_async_stream_early_closes_the_connection(upstream: Upstream) -> None:
    upstream.script(Reply(chunks=["x"] * 50, chunk_delay=0.02))
    events = await _transport.apost_stream(endpoint(upstream), STREAM_BODY, ANY)
    iterator = aiter(events)
    await anext(iterator)
    await iterator.aclose()  # type: ignore[attr-defined]
    assert await upstream.await_for(lambda up: len(up.closed_early("chat")) == 1)


# -- connections per loop ----------------------------------------------------------------------
def _idle(loop: asyncio.AbstractEventLoop) -> list[wire.Connection]:
    pool = wire._pools[loop][0]
    return [conn for stack in pool.idle.values() for conn in stack]


async def test_an_async_connection_is_reused_across_calls(upstream: Upstream) -> None:
    ep = endpoint(upstream)
    await _transport.apost(ep, BODY)
    (first,) = _idle(asyncio.get_running_loop())
    for _ in range(3):
        await _transport.apost(ep, BODY)
        events = await _transport.apost_stream(ep, STREAM_BODY, ANY)
        assert [e async for e in events]
    assert _idle(asyncio.get_running_loop()) == [first] and not first.closed
    assert upstream.count() == 7


def test_each_event_loop_gets_its_own_connections_closed_with_the_loop(
    upstream: Upstream,
) -> None:
    seen: list[list[wire.Connection]] = []

    async def call() -> None:
        await _transport.apost(endpoint(upstream), BODY)
        seen.append(_idle(asyncio.get_running_loop()))

    asyncio.run(call())
    asyncio.run(call())
    assert len(seen) == 2 and seen[0] and seen[1] and seen[0][0] is not seen[1][0]
    assert all(conn.closed for conns in seen for conn in conns)
    assert not wire._pools


async def test_aclose_closes_the_loops_connections_and_new_ones_open_after(
    upstream: Upstream,
) -> None:
    await _transport.apost(endpoint(upstream), BODY)
    (first,) = _idle(asyncio.get_running_loop())
    await _transport.aclose()
    assert first.closed
    await _transport.apost(endpoint(upstream), BODY)
    (second,) = _idle(asyncio.get_running_loop())
    assert second is not first


async def test_a_reused_connection_the_server_closed_unanswered_is_replaced_once() -> None:
    """The keep-alive race: the server closes an idle connection as the next request goes
    out on it. That request never reached the application, so it goes once more on a new
    connection; a new connection closed unanswered is a failure, not retried."""
    answer = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"
    connections = 0

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        served = 0
        try:
            while await reader.readuntil(b"\r\n\r\n"):
                await reader.readexactly(len(BODY))
                if served == 1 or connections == 3:  # closes as the next request comes
                    break
                writer.write(answer)
                served += 1
        except (asyncio.IncompleteReadError, ConnectionError):
            pass  # the client closed it
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    ep = endpoint(f"http://127.0.0.1:{port}/v1")
    try:
        await _transport.apost(ep, BODY)
        assert (await _transport.apost(ep, BODY)).content == b"{}"  # replaced on connection 2
        assert connections == 2
        await _transport.aclose()
        with pytest.raises(APIConnectionError):
            await _transport.apost(ep, BODY)  # connection 3, new: closed unanswered
    finally:
        await _transport.aclose()
        server.close()
        await server.wait_closed()


def test_endpoint_repr_hides_headers_and_key() -> None:
    ep = endpoint("http://127.0.0.1:1/v1")
    assert SECRET not in repr(ep)
    assert "127.0.0.1" in repr(ep)


def test_endpoint_rejects_urls_that_are_not_http() -> None:
    with pytest.raises(ValueError, match="http"):
        Endpoint("ftp://x/v1", {})
