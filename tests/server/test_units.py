"""The server's pure parts: error mapping, key checks."""

from __future__ import annotations

import hashlib

import orjson

from msgflux.exceptions import (
    APIConnectionError,
    APITimeoutError,
    Attempt,
    BadRequestError,
    ContextWindowExceededError,
    InternalServerError,
    ModelRouterError,
    RateLimitError,
)
from msgflux.server.auth import ANONYMOUS, KeyRing, credential
from msgflux.server.config import KeySpec
from msgflux.server.errors import from_gateway, from_validation


# -- errors -------------------------------------------------------------------------------------
def attempt(name: str, exc: BaseException | None = None, skipped: str | None = None) -> Attempt:
    return Attempt(name, "openai", "m", 0 if skipped else 1, exc, 0.0, 0.01, skipped)


def router(
    *attempts: Attempt, message: str | None = None, retry_after: float | None = None
) -> ModelRouterError:
    failures = [(a.model_name, a.provider, a.exception) for a in attempts if a.exception]
    return ModelRouterError(
        [f[2] for f in failures], failures, message, attempts=attempts, retry_after=retry_after  # type: ignore[misc]
    )  # fmt: skip


def test_gateway_failures_map_to_meaningful_statuses() -> None:
    boom = InternalServerError("boom", status_code=500)
    assert (
        from_gateway(router(attempt("a", boom), attempt("b", APIConnectionError("x")))).status
        == 502
    )
    deadline = router(attempt("a", boom), message="Deadline of 5s exceeded after 1 attempt(s)")
    assert from_gateway(deadline).status == 504
    assert from_gateway(router(attempt("a", APITimeoutError("slow")))).status == 504
    limited = from_gateway(
        router(
            attempt("a", skipped="rpm limit"), attempt("b", skipped="circuit open"), retry_after=2.2
        )
    )
    assert limited.status == 429 and limited.headers == [(b"retry-after", b"3")]
    upstream_429 = from_gateway(router(attempt("a", RateLimitError("slow down", retry_after=4.0))))
    assert upstream_429.status == 429 and upstream_429.headers == [(b"retry-after", b"4")]
    rejected = from_gateway(
        router(attempt("a", ContextWindowExceededError("too long", status_code=400)))
    )
    assert rejected.status == 400 and rejected.code == "context_length_exceeded"
    mixed = router(attempt("a", BadRequestError("no")), attempt("b", boom))
    assert from_gateway(mixed).status == 502
    unsupported = from_gateway(router(attempt("a", skipped="unsupported: n > 1")))
    assert unsupported.status == 400 and unsupported.code == "unsupported_request"
    windows = ModelRouterError([], [], "No model available due to time constraints")
    assert from_gateway(windows).status == 503
    assert from_gateway(RateLimitError("raised as itself")).status == 429  # raise_on
    assert from_gateway(BadRequestError("raised as itself")).status == 400


def test_a_502_lists_the_attempts_in_openai_error_shape() -> None:
    error = from_gateway(router(attempt("a", InternalServerError("boom", status_code=500))))
    body = orjson.loads(error.body())
    assert set(body["error"]) == {"message", "type", "param", "code"}
    assert body["error"]["type"] == "api_error"
    assert "a (openai/m) attempt 1: InternalServerError" in body["error"]["message"]


def test_validation_errors_name_the_field() -> None:
    assert (
        from_validation(TypeError("temperature must be a number, got 'x'")).param == "temperature"
    )
    nested = from_validation(ValueError("messages[2]['role'] must be one of system, user"))
    assert nested.param == "messages[2].role" and nested.status == 400
    assert from_validation(TypeError("the request body must be a JSON object")).param is None


# -- keys ---------------------------------------------------------------------------------------
def spec(name: str, key: str, models: frozenset[str] | None = None) -> KeySpec:
    return KeySpec(name, hashlib.sha256(key.encode()).digest(), models)


def test_credentials_come_from_bearer_or_api_key() -> None:
    assert credential([(b"authorization", b"Bearer sk-1")]) == b"sk-1"
    assert credential([(b"authorization", b"bearer  sk-2 ")]) == b"sk-2"
    assert credential([(b"api-key", b"sk-3")]) == b"sk-3"
    assert credential([(b"authorization", b"Basic abc")]) is None
    assert credential([]) is None


def test_the_key_ring_finds_the_principal() -> None:
    ring = KeyRing([spec("alice", "sk-alice-1", frozenset({"chat"})), spec("bob", "sk-bob-1")])
    alice = ring.authenticate([(b"authorization", b"Bearer sk-alice-1")])
    assert alice is not None and alice.name == "alice"
    assert alice.allows("chat") and not alice.allows("embed")
    bob = ring.authenticate([(b"api-key", b"sk-bob-1")])
    assert bob is not None and bob.allows("anything")
    assert ring.authenticate([(b"authorization", b"Bearer sk-alice-")]) is None
    assert ring.authenticate([]) is None
    assert KeyRing([]).authenticate([]) is ANONYMOUS


def test_a_request_no_deployment_can_serve_is_a_400_never_a_429() -> None:
    """Every deployment unsupported: another try cannot help, so no Retry-After invites one."""
    both = from_gateway(
        router(
            attempt("local", skipped="unsupported: tool_choice='required'"),
            attempt("other", skipped="unsupported: n > 1"),
        )
    )
    assert both.status == 400 and both.code == "unsupported_request" and not both.headers
    assert "local" in both.message and "tool_choice='required'" in both.message


def test_open_breakers_are_a_503_with_retry_after_and_limits_a_429() -> None:
    opened = from_gateway(
        router(
            attempt("a", skipped="circuit open"),
            attempt("local", skipped="unsupported: tool_choice='required'"),
            retry_after=26.2,
        )
    )
    assert opened.status == 503 and opened.code == "no_deployment_available"
    assert opened.headers == [(b"retry-after", b"27")]
    limited = from_gateway(router(attempt("a", skipped="tpm limit"), retry_after=0.4))
    assert limited.status == 429 and limited.headers == [(b"retry-after", b"1")]


def test_a_skip_says_how_long_until_the_deployment_is_usable_not_when() -> None:
    skip = Attempt(
        "a", "openai", "m", 0, None, 1_796_000_000.0, 0.0, "circuit open", 1_796_000_027.4
    )
    text = skip.describe()
    assert "usable again in 27.4s" in text and "1796" not in text
