"""The transport's error mapping: every status and every transport exception becomes a typed
error, Retry-After is parsed, and no known secret survives in what an error reports."""

from __future__ import annotations

import asyncio
import http.client
import inspect
import socket
import ssl
from datetime import datetime, timedelta, timezone
from email.utils import format_datetime

import orjson
import pytest
import urllib3.exceptions

from msgflux import _secrets
from msgflux._transport import errors, wire
from msgflux.exceptions import (
    APIConnectionError,
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
from msgflux.models.providers.openai import classify_openai_error

SECRET = "sk-very-secret-key-123"
_secrets.register(SECRET)

EXPECTED_STATUS = {
    400: BadRequestError,
    401: AuthenticationError,
    403: PermissionDeniedError,
    404: NotFoundError,
    408: RequestTimeoutError,
    409: ConflictError,
    413: BadRequestError,
    422: BadRequestError,
    429: RateLimitError,
}


# -- status codes ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("status", "expected"),
    [
        (400, BadRequestError),
        (401, AuthenticationError),
        (403, PermissionDeniedError),
        (404, NotFoundError),
        (408, RequestTimeoutError),
        (409, ConflictError),
        (413, BadRequestError),
        (418, APIStatusError),
        (422, BadRequestError),
        (429, RateLimitError),
        (451, APIStatusError),
        (499, APIStatusError),
        (500, InternalServerError),
        (502, InternalServerError),
        (503, InternalServerError),
        (529, InternalServerError),
        (599, InternalServerError),
    ],
)
def test_each_error_status_maps_to_its_typed_error(status: int, expected: type) -> None:
    err = errors.status_error(status, b"{}", {}, provider="p", model_id="m")
    assert type(err) is expected
    assert err.status_code == status


@pytest.mark.parametrize("status", range(400, 600))
def test_no_error_status_is_left_unmapped(status: int) -> None:
    err = errors.status_error(status, b"{}", {}, provider="p", model_id="m")
    assert isinstance(err, APIStatusError) and err.status_code == status
    assert err.transient == (status in (408, 409, 429) or status >= 500)


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
    err = errors.status_error(400, orjson.dumps(body), {}, classify=classify_openai_error)
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
    err = errors.status_error(400, raw, {}, classify=classify_openai_error)
    assert isinstance(err, ContentPolicyError)


def test_plain_400_is_bad_request_with_the_provider_message() -> None:
    err = errors.status_error(
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
    err = errors.status_error(502, b"<html>Bad Gateway</html>", {})
    assert isinstance(err, InternalServerError)
    assert err.body == "<html>Bad Gateway</html>"
    assert "Bad Gateway" in str(err)


def test_status_error_scrubs_the_api_key_from_message_and_body() -> None:
    raw = orjson.dumps({"error": {"message": f"Incorrect API key provided: {SECRET}"}})
    err = errors.status_error(401, raw, {"x-request-id": f"req-{SECRET}"})
    assert SECRET not in str(err)
    assert SECRET not in repr(err)
    assert SECRET not in orjson.dumps(err.body).decode()
    assert SECRET not in str(err.request_id)


def test_a_json_escaped_or_url_encoded_key_is_scrubbed_too() -> None:
    escaped = "".join(f"\\u{ord(c):04x}" for c in SECRET)
    encoded = SECRET.replace("-", "%2D")
    raw = '{"error": {"message": "key ' + escaped + " at https://x/?k=" + encoded + '"}}'
    err = errors.status_error(401, raw.encode(), {})
    text = str(err) + repr(err.body) + err.message
    assert SECRET not in text
    assert encoded not in text
    assert "***" in text


# -- transport exceptions ----------------------------------------------------------------------
def _library_exception_types() -> set[type[BaseException]]:
    found: set[type[BaseException]] = set()
    for module, base in (
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
        wire.ProtocolError,
    }
    return found


@pytest.mark.parametrize("exc_type", sorted(_library_exception_types(), key=lambda t: t.__name__))
def test_every_transport_exception_type_is_mapped(exc_type: type[BaseException]) -> None:
    cls = errors.transport_error_class(exc_type)
    assert cls is not None, f"{exc_type.__module__}.{exc_type.__name__} is not mapped"
    assert issubclass(cls, APIConnectionError)


@pytest.mark.parametrize(
    ("exc_type", "expected"),
    [
        (asyncio.TimeoutError, APITimeoutError),
        (TimeoutError, APITimeoutError),
        (urllib3.exceptions.ReadTimeoutError, APITimeoutError),
        (urllib3.exceptions.ConnectTimeoutError, APITimeoutError),
        (urllib3.exceptions.NewConnectionError, APIConnectionError),
        (urllib3.exceptions.NameResolutionError, APIConnectionError),
        (urllib3.exceptions.ProtocolError, APIConnectionError),
        (wire.ProtocolError, APIConnectionError),
        (ConnectionRefusedError, APIConnectionError),
        (http.client.RemoteDisconnected, APIConnectionError),
    ],
)
def test_timeouts_and_connection_failures_are_told_apart(
    exc_type: type[BaseException], expected: type[APIConnectionError]
) -> None:
    assert errors.transport_error_class(exc_type) is expected


@pytest.mark.parametrize("exc_type", [ValueError, KeyError, asyncio.CancelledError, RuntimeError])
def test_non_transport_exceptions_are_not_mapped(exc_type: type[BaseException]) -> None:
    assert errors.transport_error_class(exc_type) is None
    assert errors.transport_error(exc_type()) is None


def test_max_retry_error_maps_by_its_reason() -> None:
    reason = urllib3.exceptions.ReadTimeoutError(None, "/x", "read timed out")  # type: ignore[arg-type]
    wrapped = urllib3.exceptions.MaxRetryError(None, "/x", reason)  # type: ignore[arg-type]
    err = errors.transport_error(wrapped, provider="p", model_id="m", timeout=2.0)
    assert isinstance(err, APITimeoutError)
    assert "2s" in str(err)


def test_transport_error_scrubs_the_api_key() -> None:
    err = errors.transport_error(OSError(f"boom {SECRET}"))
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
    assert errors.parse_retry_after(headers) == expected


def test_retry_after_http_date_is_seconds_from_now() -> None:
    now = datetime(2026, 1, 1, 12, 0, tzinfo=timezone.utc)
    later = format_datetime(now + timedelta(seconds=30), usegmt=True)
    assert errors.parse_retry_after({"Retry-After": later}, now=now.timestamp()) == 30.0
    earlier = format_datetime(now - timedelta(seconds=30), usegmt=True)
    assert errors.parse_retry_after({"Retry-After": earlier}, now=now.timestamp()) == 0.0
