"""The transport: status and transport-exception mapping, Retry-After, SSE, sessions, timeouts."""

from __future__ import annotations

import asyncio
import http.client
import inspect
import socket
import ssl
from datetime import datetime, timedelta, timezone
from email.utils import format_datetime

import aiohttp
import orjson
import pytest
import urllib3.exceptions

from msgflux import _http
from msgflux.exceptions import (
    APIConnectionError,
    APIResponseValidationError,
    APIStatusError,
    APITimeoutError,
    AuthenticationError,
    BadRequestError,
    ConflictError,
    ContentPolicyError,
    ContextWindowExceededError,
    InternalServerError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitError,
    RequestTimeoutError,
)
from tests.upstream import Reply, Upstream

SECRET = "sk-very-secret-key-123"

EXPECTED_STATUS = {
    400: BadRequestError,
    401: AuthenticationError,
    403: PermissionDeniedError,
    404: NotFoundError,
    408: RequestTimeoutError,
    409: ConflictError,
    422: BadRequestError,
    429: RateLimitError,
}


def endpoint(upstream: Upstream | str, path: str = "/chat/completions") -> _http.Endpoint:
    base = upstream if isinstance(upstream, str) else upstream.base_url
    return _http.Endpoint(
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


# -- status codes ------------------------------------------------------------------------------
@pytest.mark.parametrize("status", range(400, 600))
def test_every_error_status_maps_to_a_typed_error(status: int) -> None:
    cls = _http.error_class_for_status(status)
    if status in EXPECTED_STATUS:
        assert cls is EXPECTED_STATUS[status]
    elif status >= 500:
        assert cls is InternalServerError
    else:
        assert cls is APIStatusError
    err = _http.status_error(status, b"{}", {}, provider="p", model_id="m")
    assert type(err) is cls
    assert err.status_code == status


@pytest.mark.parametrize(
    "body",
    [
        {"error": {"message": "too long", "code": "context_length_exceeded"}},
        {"error": {"message": "This model's maximum context length is 4096 tokens."}},
        {"object": "error", "message": "Input is too long for requested model."},
        {"error": {"type": "invalid_request_error", "message": "prompt is too long: 9000 > 8192"}},
    ],
)
def test_400_saying_context_window_is_context_window_exceeded(body: object) -> None:
    err = _http.status_error(400, orjson.dumps(body), {})
    assert isinstance(err, ContextWindowExceededError)
    assert isinstance(err, BadRequestError)


@pytest.mark.parametrize(
    "body",
    [
        {"error": {"message": "Your request was rejected", "code": "content_policy_violation"}},
        {"error": {"message": "The response was filtered", "code": "content_filter"}},
        b"Request blocked by our safety system",
    ],
)
def test_400_saying_content_was_filtered_is_content_policy_error(body: object) -> None:
    raw = body if isinstance(body, bytes) else orjson.dumps(body)
    assert isinstance(_http.status_error(400, raw, {}), ContentPolicyError)


def test_plain_400_is_bad_request_with_the_provider_message() -> None:
    err = _http.status_error(
        400,
        orjson.dumps({"error": {"message": "temperature must be <= 2"}}),
        {"x-request-id": "req_9"},
        provider="openai",
        model_id="gpt",
    )
    assert type(err) is BadRequestError
    assert "temperature must be <= 2" in str(err)
    assert err.body == {"error": {"message": "temperature must be <= 2"}}
    assert (err.provider, err.model_id, err.request_id) == ("openai", "gpt", "req_9")


def test_non_json_error_body_is_kept_as_text() -> None:
    err = _http.status_error(502, b"<html>Bad Gateway</html>", {})
    assert isinstance(err, InternalServerError)
    assert err.body == "<html>Bad Gateway</html>"
    assert "Bad Gateway" in str(err)


def test_status_error_scrubs_the_api_key_from_message_and_body() -> None:
    raw = orjson.dumps({"error": {"message": f"Incorrect API key provided: {SECRET}"}})
    err = _http.status_error(401, raw, {}, secret=SECRET)
    assert SECRET not in str(err)
    assert SECRET not in repr(err)
    assert SECRET not in orjson.dumps(err.body).decode()


# -- transport exceptions ----------------------------------------------------------------------
def _library_exception_types() -> set[type[BaseException]]:
    found: set[type[BaseException]] = set()
    for module, base in (
        (aiohttp, aiohttp.ClientError),
        (urllib3.exceptions, urllib3.exceptions.HTTPError),
        (http.client, http.client.HTTPException),
    ):
        for obj in vars(module).values():
            if inspect.isclass(obj) and issubclass(obj, base) and not issubclass(obj, Warning):
                found.add(obj)
    found |= {
        OSError,
        ConnectionError,
        ConnectionRefusedError,
        ConnectionResetError,
        ConnectionAbortedError,
        BrokenPipeError,
        TimeoutError,
        socket.timeout,
        socket.gaierror,
        ssl.SSLError,
        asyncio.TimeoutError,
    }
    return found


@pytest.mark.parametrize("exc_type", sorted(_library_exception_types(), key=lambda t: t.__name__))
def test_every_transport_exception_type_is_mapped(exc_type: type[BaseException]) -> None:
    cls = _http.transport_error_class(exc_type)
    assert cls is not None, f"{exc_type.__module__}.{exc_type.__name__} is not mapped"
    assert issubclass(cls, APIConnectionError)


@pytest.mark.parametrize(
    ("exc_type", "expected"),
    [
        (asyncio.TimeoutError, APITimeoutError),
        (TimeoutError, APITimeoutError),
        (aiohttp.ServerTimeoutError, APITimeoutError),
        (aiohttp.ConnectionTimeoutError, APITimeoutError),
        (aiohttp.SocketTimeoutError, APITimeoutError),
        (urllib3.exceptions.ReadTimeoutError, APITimeoutError),
        (urllib3.exceptions.ConnectTimeoutError, APITimeoutError),
        (urllib3.exceptions.NewConnectionError, APIConnectionError),
        (urllib3.exceptions.NameResolutionError, APIConnectionError),
        (urllib3.exceptions.ProtocolError, APIConnectionError),
        (aiohttp.ServerDisconnectedError, APIConnectionError),
        (aiohttp.ClientPayloadError, APIConnectionError),
        (aiohttp.ClientConnectorError, APIConnectionError),
        (ConnectionRefusedError, APIConnectionError),
        (http.client.RemoteDisconnected, APIConnectionError),
    ],
)
def test_timeouts_and_connection_failures_are_told_apart(
    exc_type: type[BaseException], expected: type[APIConnectionError]
) -> None:
    assert _http.transport_error_class(exc_type) is expected


@pytest.mark.parametrize("exc_type", [ValueError, KeyError, asyncio.CancelledError, RuntimeError])
def test_non_transport_exceptions_are_not_mapped(exc_type: type[BaseException]) -> None:
    assert _http.transport_error_class(exc_type) is None
    assert _http.transport_error(exc_type()) is None


def test_max_retry_error_maps_by_its_reason() -> None:
    reason = urllib3.exceptions.ReadTimeoutError(None, "/x", "read timed out")  # type: ignore[arg-type]
    wrapped = urllib3.exceptions.MaxRetryError(None, "/x", reason)  # type: ignore[arg-type]
    err = _http.transport_error(wrapped, provider="p", model_id="m", timeout=2.0)
    assert isinstance(err, APITimeoutError)
    assert "2s" in str(err)


def test_transport_error_scrubs_the_api_key() -> None:
    err = _http.transport_error(OSError(f"boom {SECRET}"), secret=SECRET)
    assert err is not None
    assert SECRET not in str(err)


# -- Retry-After -------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"Retry-After": "2"}, 2.0),
        ({"retry-after": "1.5"}, 1.5),
        ({"retry-after-ms": "250"}, 0.25),
        ({"retry-after-ms": "100", "Retry-After": "9"}, 0.1),
        ({"retry-after-ms": "junk", "Retry-After": "3"}, 3.0),
        ({"Retry-After": "-1"}, None),
        ({"Retry-After": "soon"}, None),
        ({"Retry-After": "nan"}, None),
        ({}, None),
    ],
)
def test_retry_after_is_parsed_from_seconds_and_milliseconds(
    headers: dict[str, str], expected: float | None
) -> None:
    assert _http.parse_retry_after(headers) == expected


def test_retry_after_http_date_is_seconds_from_now() -> None:
    now = datetime(2026, 1, 1, 12, 0, tzinfo=timezone.utc)
    later = format_datetime(now + timedelta(seconds=30), usegmt=True)
    assert _http.parse_retry_after({"Retry-After": later}, now=now.timestamp()) == 30.0
    earlier = format_datetime(now - timedelta(seconds=30), usegmt=True)
    assert _http.parse_retry_after({"Retry-After": earlier}, now=now.timestamp()) == 0.0


# -- SSE ---------------------------------------------------------------------------------------
SSE = (
    b": keep-alive comment\n\n"
    b'data: {"a": 1}\n\n'
    b"event: message\r\n"
    b'data: {"b":\r\n'
    b"data: 2}\r\n\r\n"
    b"id: 7\nretry: 100\n"
    b'data:{"c": 3}\n\n'
    b"data: [DONE]\n\n"
    b'data: {"after": "done"}\n\n'
)


def test_sse_decoder_handles_comments_multiline_crlf_and_done() -> None:
    decoder = _http.SSEDecoder()
    assert decoder.feed(SSE) == [{"a": 1}, {"b": 2}, {"c": 3}]
    assert decoder.done
    assert decoder.feed(b'data: {"x": 1}\n\n') == []


def test_sse_decoder_gives_the_same_events_for_any_split_of_the_bytes() -> None:
    for size in (1, 2, 3, 7, 64):
        decoder = _http.SSEDecoder()
        events = []
        for i in range(0, len(SSE), size):
            events += decoder.feed(SSE[i : i + size])
        assert events == [{"a": 1}, {"b": 2}, {"c": 3}], size


def test_sse_decoder_end_flushes_an_event_without_final_blank_line() -> None:
    decoder = _http.SSEDecoder()
    assert decoder.feed(b'data: {"a": 1}') == []
    assert decoder.end() == [{"a": 1}]
    assert not decoder.done


def test_sse_decoder_raises_on_invalid_json() -> None:
    with pytest.raises(orjson.JSONDecodeError):
        _http.SSEDecoder().feed(b"data: {nope\n\n")


# -- requests against the upstream -------------------------------------------------------------
def test_post_returns_decoded_json_and_headers(upstream: Upstream) -> None:
    payload, headers = _http.post(endpoint(upstream), BODY)
    assert payload["choices"][0]["message"]["content"] == "Hello from m"
    assert headers.get("x-request-id") == "req_1"
    assert upstream.last.headers["authorization"] == f"Bearer {SECRET}"


async def test_apost_returns_decoded_json_and_headers(upstream: Upstream) -> None:
    payload, headers = await _http.apost(endpoint(upstream), BODY)
    assert payload["choices"][0]["message"]["content"] == "Hello from m"
    assert headers.get("x-request-id") == "req_1"


@pytest.mark.parametrize("status", [400, 401, 403, 404, 408, 409, 418, 422, 429, 500, 503])
def test_error_status_raises_typed_error_with_details(upstream: Upstream, status: int) -> None:
    upstream.script(Reply(status=status, error="nope", retry_after=4))
    with pytest.raises(APIStatusError) as info:
        _http.post(endpoint(upstream), BODY)
    err = info.value
    assert type(err) is _http.error_class_for_status(status, err.body)
    assert (err.status_code, err.request_id, err.retry_after) == (status, "req_1", 4.0)
    assert (err.provider, err.model_id) == ("openai", "m")
    assert err.body["error"]["message"] == "nope"


@pytest.mark.parametrize("status", [400, 401, 429, 500, 503])
async def test_error_status_raises_typed_error_async(upstream: Upstream, status: int) -> None:
    upstream.script(Reply(status=status, retry_after_ms=1500))
    with pytest.raises(APIStatusError) as info:
        await _http.apost(endpoint(upstream), BODY)
    assert type(info.value) is EXPECTED_STATUS.get(status, InternalServerError)
    assert info.value.retry_after == 1.5


def test_invalid_json_answer_is_a_response_validation_error(upstream: Upstream) -> None:
    upstream.script(Reply(body=b"{not json", content_type="application/json"))
    with pytest.raises(APIResponseValidationError):
        _http.post(endpoint(upstream), BODY)


def test_connection_refused_is_api_connection_error(closed_port: str) -> None:
    with pytest.raises(APIConnectionError) as info:
        _http.post(endpoint(closed_port), BODY, timeout=2)
    assert not isinstance(info.value, APITimeoutError)
    assert SECRET not in str(info.value)


async def test_connection_refused_is_api_connection_error_async(closed_port: str) -> None:
    with pytest.raises(APIConnectionError) as info:
        await _http.apost(endpoint(closed_port), BODY, timeout=2)
    assert not isinstance(info.value, APITimeoutError)


@pytest.mark.parametrize("drop", ["before_headers", "after_headers"])
def test_dropped_connection_is_api_connection_error(upstream: Upstream, drop: str) -> None:
    upstream.script(Reply(drop=drop))  # type: ignore[arg-type]
    with pytest.raises(APIConnectionError) as info:
        _http.post(endpoint(upstream), BODY)
    assert not isinstance(info.value, APITimeoutError)


@pytest.mark.parametrize("drop", ["before_headers", "after_headers"])
async def test_dropped_connection_is_api_connection_error_async(
    upstream: Upstream, drop: str
) -> None:
    upstream.script(Reply(drop=drop))  # type: ignore[arg-type]
    with pytest.raises(APIConnectionError):
        await _http.apost(endpoint(upstream), BODY)
    assert upstream.count("chat") == 1


def test_slow_answer_past_timeout_is_api_timeout_error(upstream: Upstream) -> None:
    upstream.script(Reply(delay=1.0))
    with pytest.raises(APITimeoutError, match=r"0\.1s"):
        _http.post(endpoint(upstream), BODY, timeout=0.1)
    assert upstream.wait_for(lambda up: len(up.closed_early()) == 1)


async def test_slow_answer_past_timeout_is_api_timeout_error_async(upstream: Upstream) -> None:
    upstream.script(Reply(delay=1.0))
    with pytest.raises(APITimeoutError):
        await _http.apost(endpoint(upstream), BODY, timeout=0.1)
    assert await upstream.await_for(lambda up: len(up.closed_early()) == 1)


def test_connection_is_reused_across_calls(upstream: Upstream) -> None:
    ep = endpoint(upstream)
    for _ in range(3):
        _http.post(ep, BODY)
    assert upstream.count() == 3
    assert ep._pool.num_connections == 1


def test_stream_yields_events_and_returns_connection_to_pool(upstream: Upstream) -> None:
    ep = endpoint(upstream)
    events, headers = _http.post_stream(ep, STREAM_BODY)
    items = list(events)
    assert headers.get("x-request-id") == "req_1"
    assert items[-1]["usage"]["total_tokens"] >= 1
    _http.post(ep, BODY)
    assert ep._pool.num_connections == 1


async def test_async_stream_yields_events(upstream: Upstream) -> None:
    events, _ = await _http.apost_stream(endpoint(upstream), STREAM_BODY)
    items = [e async for e in events]
    assert "usage" in items[-1]
    assert items[1]["choices"][0]["delta"]["content"] == "Hello"


def test_stream_error_status_raises_before_returning(upstream: Upstream) -> None:
    upstream.script(Reply(status=503))
    with pytest.raises(InternalServerError):
        _http.post_stream(endpoint(upstream), STREAM_BODY)


async def test_stream_error_status_raises_before_returning_async(upstream: Upstream) -> None:
    upstream.script(Reply(status=429))
    with pytest.raises(RateLimitError):
        await _http.apost_stream(endpoint(upstream), STREAM_BODY)


def test_stream_cut_mid_way_raises_api_connection_error_from_iterator(upstream: Upstream) -> None:
    upstream.script(Reply(text="one two three four", cut_after=2))
    events, _ = _http.post_stream(endpoint(upstream), STREAM_BODY)
    got = []
    with pytest.raises(APIConnectionError):
        for event in events:
            got.append(event)
    assert len(got) == 3  # the role chunk and two content chunks


async def test_stream_cut_mid_way_raises_api_connection_error_async(upstream: Upstream) -> None:
    upstream.script(Reply(text="one two three four", cut_after=1))
    events, _ = await _http.apost_stream(endpoint(upstream), STREAM_BODY)
    got = []
    with pytest.raises(APIConnectionError):
        async for event in events:
            got.append(event)
    assert len(got) == 2


def test_stream_read_timeout_is_api_timeout_error(upstream: Upstream) -> None:
    upstream.script(Reply(text="a b c", chunk_delay=1.0))
    events, _ = _http.post_stream(endpoint(upstream), STREAM_BODY, timeout=0.1)
    with pytest.raises(APITimeoutError):
        list(events)


async def test_stream_read_timeout_is_api_timeout_error_async(upstream: Upstream) -> None:
    upstream.script(Reply(text="a b c", chunk_delay=1.0))
    events, _ = await _http.apost_stream(endpoint(upstream), STREAM_BODY, timeout=0.1)
    with pytest.raises(APITimeoutError):
        async for _ in events:
            pass


def test_closing_a_stream_early_closes_the_connection(upstream: Upstream) -> None:
    upstream.script(Reply(chunks=["x"] * 50, chunk_delay=0.02))
    events, _ = _http.post_stream(endpoint(upstream), STREAM_BODY)
    next(events)
    events.close()  # type: ignore[attr-defined]
    assert upstream.wait_for(lambda up: len(up.closed_early("chat")) == 1)


async def test_closing_an_async_stream_early_closes_the_connection(upstream: Upstream) -> None:
    upstream.script(Reply(chunks=["x"] * 50, chunk_delay=0.02))
    events, _ = await _http.apost_stream(endpoint(upstream), STREAM_BODY)
    await events.__anext__()
    await events.aclose()  # type: ignore[attr-defined]
    assert await upstream.await_for(lambda up: len(up.closed_early("chat")) == 1)


# -- sessions ----------------------------------------------------------------------------------
def test_each_event_loop_gets_its_own_session_closed_with_the_loop(upstream: Upstream) -> None:
    seen: list[aiohttp.ClientSession] = []

    async def call() -> None:
        await _http.apost(endpoint(upstream), BODY)
        seen.append(_http._sessions[asyncio.get_running_loop()])

    asyncio.run(call())
    asyncio.run(call())
    assert len(seen) == 2
    assert seen[0] is not seen[1]
    assert all(session.closed for session in seen)


async def test_session_is_reused_within_a_loop_and_reopened_after_aclose(
    upstream: Upstream,
) -> None:
    await _http.apost(endpoint(upstream), BODY)
    first = _http._sessions[asyncio.get_running_loop()]
    await _http.apost(endpoint(upstream), BODY)
    assert _http._sessions[asyncio.get_running_loop()] is first
    await _http.aclose()
    assert first.closed
    await _http.apost(endpoint(upstream), BODY)
    assert _http._sessions[asyncio.get_running_loop()] is not first


def test_a_replaced_session_is_still_closed_when_its_loop_ends(upstream: Upstream) -> None:
    sessions: list[aiohttp.ClientSession] = []
    loops: list[asyncio.AbstractEventLoop] = []

    async def call() -> None:
        await _http.apost(endpoint(upstream), BODY)
        await _http.aclose()
        await _http.apost(endpoint(upstream), BODY)
        loops.append(asyncio.get_running_loop())
        sessions.append(_http._sessions[loops[0]])

    asyncio.run(call())
    assert sessions[0].closed
    assert loops[0] not in _http._sessions
    assert loops[0] not in _http._closers


def test_endpoint_repr_hides_headers_and_key() -> None:
    ep = endpoint("http://127.0.0.1:1/v1")
    assert SECRET not in repr(ep)
    assert "127.0.0.1" in repr(ep)


def test_endpoint_rejects_urls_that_are_not_http() -> None:
    with pytest.raises(ValueError, match="http"):
        _http.Endpoint("ftp://x/v1", {})
