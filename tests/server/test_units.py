"""The server's pure parts: error mapping, key checks, batched stream reads."""

from __future__ import annotations

import asyncio
import hashlib
import sys
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest

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
from msgflux.server.batch import batches
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
    unsupported = router(attempt("a", skipped="unsupported: n > 1"))
    assert from_gateway(unsupported).status == 400
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


# -- batched reads ------------------------------------------------------------------------------
async def bursts(*groups: list[Any], pause: float = 0.005) -> AsyncIterator[Any]:
    for group in groups:
        await asyncio.sleep(pause)
        for item in group:
            yield item


async def collect(source: AsyncIterator[Any]) -> list[list[Any]]:
    out: list[list[Any]] = []

    async def flush(batch: list[Any]) -> None:
        out.append(list(batch))

    rest = await batches(source, flush)
    if rest:
        out.append(rest)
    return out


async def test_items_ready_together_are_flushed_together() -> None:
    assert await collect(bursts([1, 2, 3], [4], [5, 6])) == [[1, 2, 3], [4], [5, 6]]


async def test_a_source_that_ends_after_a_wait_ends_cleanly() -> None:
    async def source() -> AsyncIterator[int]:
        yield 1
        yield 2
        await asyncio.sleep(0.005)  # like reading the final [DONE] in a read of its own

    assert await collect(source()) == [[1, 2]]


async def test_an_error_comes_after_the_items_before_it() -> None:
    async def source() -> AsyncIterator[int]:
        yield 1
        yield 2
        await asyncio.sleep(0.005)
        raise ValueError("broke")

    out: list[list[int]] = []

    async def flush(batch: list[int]) -> None:
        out.append(batch)

    with pytest.raises(ValueError, match="broke"):
        await batches(source(), flush)
    assert out == [[1, 2]]


async def test_a_cancellation_during_a_flush_reaches_the_pending_read() -> None:
    cleaned: list[bool] = []

    async def source() -> AsyncIterator[int]:
        try:
            yield 1
            await asyncio.sleep(10)
            yield 2
        finally:
            cleaned.append(True)

    async def slow_flush(batch: list[int]) -> None:
        await asyncio.sleep(10)

    task = asyncio.ensure_future(batches(source(), slow_flush))
    await asyncio.sleep(0.02)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert cleaned == [True]


@pytest.mark.skipif(sys.version_info < (3, 11), reason="asyncio.timeout is Python 3.11+")
async def test_a_timeout_inside_the_read_fires_correctly_during_a_flush() -> None:
    async def source() -> AsyncIterator[str]:
        yield "first"
        try:
            async with asyncio.timeout(0.02):
                await asyncio.sleep(10)
        except TimeoutError:
            yield "timed out"

    out: list[list[str]] = []

    async def slow_flush(batch: list[str]) -> None:
        out.append(batch)
        await asyncio.sleep(0.1)

    rest = await batches(source(), slow_flush)
    assert out == [["first"]] and rest == ["timed out"]
    task = asyncio.current_task()
    assert task is not None and task.cancelling() == 0
