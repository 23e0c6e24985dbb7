"""Stored responses (``msgflux.server.responses_store``): per key, expiring, bounded, the same on
process memory and on a real Redis; a conversation rebuilt from its chain."""

from __future__ import annotations

import zlib
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest

from msgflux.server.responses_store import (
    MemoryResponses,
    RedisResponses,
    ResponseStore,
    StoreUnavailable,
    history,
)
from tests.redis_server import RedisServer


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def record(text: str, previous: str | None = None) -> dict[str, Any]:
    return {
        "input": [{"type": "message", "role": "user", "content": text}],
        "response": {"id": "x", "output": [{"type": "message", "content": f"re: {text}"}]},
        "previous": previous,
    }


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.redis)])
async def store(request: pytest.FixtureRequest) -> AsyncIterator[ResponseStore]:
    if request.param == "memory":
        yield MemoryResponses()
        return
    server: RedisServer = request.getfixturevalue("redis_server")
    redis = RedisResponses(server.url)
    yield redis
    await redis.aclose()


async def test_a_key_reads_its_own_responses_only(store: ResponseStore) -> None:
    await store.put("team-a", "resp_1", record("hi"))
    assert (await store.get("team-a", "resp_1")) == record("hi")
    assert await store.get("team-b", "resp_1") is None
    assert await store.delete("team-b", "resp_1") is False
    assert await store.delete("team-a", "resp_1") is True
    assert await store.get("team-a", "resp_1") is None


async def test_a_conversation_is_its_chain_oldest_first(store: ResponseStore) -> None:
    await store.put("k", "r1", record("one"))
    await store.put("k", "r2", record("two", "r1"))
    await store.put("k", "r3", record("three", "r2"))
    items, last = await history(store, "k", "r3")  # type: ignore[misc]
    assert [i["content"] for i in items] == [
        "one",
        "re: one",
        "two",
        "re: two",
        "three",
        "re: three",
    ]
    assert last["previous"] == "r2"
    assert await history(store, "other-key", "r3") is None
    await store.delete("k", "r1")
    assert await history(store, "k", "r3") is None  # a broken chain is no conversation


async def test_records_expire_after_the_ttl() -> None:
    clock = Clock()
    store = MemoryResponses(ttl=60, clock=clock)
    await store.put("k", "r", record("hi"))
    clock.now = 59.9
    assert await store.get("k", "r") is not None
    clock.now = 60.0
    assert await store.get("k", "r") is None


@pytest.mark.parametrize("kind", ["memory", pytest.param("redis", marks=pytest.mark.redis)])
async def test_a_ttl_of_0_keeps_nothing(kind: str, request: pytest.FixtureRequest) -> None:
    if kind == "memory":
        store: ResponseStore = MemoryResponses(ttl=0)
    else:
        store = RedisResponses(request.getfixturevalue("redis_server").url, ttl=0)
    await store.put("k", "r", record("hi"))
    assert await store.get("k", "r") is None
    await store.aclose()


def test_the_ttl_comes_from_server_responses_ttl() -> None:
    from msgflux.server.config import parse_config

    gateways = "gateways: {chat: {models: [{model_name: a, model: openai/gpt-4.1-nano}]}}\n"
    config = parse_config("server: {responses_ttl: 3600}\n" + gateways, {"OPENAI_API_KEY": "x"})
    assert config.server.responses_ttl == 3600.0
    assert parse_config(gateways, {"OPENAI_API_KEY": "x"}).server.responses_ttl == 30 * 86400.0
    with pytest.raises(ValueError, match=r"server\.responses_ttl"):
        parse_config("server: {responses_ttl: -1}\n" + gateways, {"OPENAI_API_KEY": "x"})


@pytest.mark.redis
async def test_redis_expires_records_itself(redis_server: RedisServer) -> None:
    import asyncio

    store = RedisResponses(redis_server.url, ttl=0.2)
    await store.put("k", "r", record("hi"))
    assert await store.get("k", "r") is not None
    await asyncio.sleep(0.35)
    assert await store.get("k", "r") is None
    await store.aclose()


async def test_memory_is_bounded_the_oldest_dropped_first() -> None:
    big = {"input": [{"text": f"{i}" * 200} for i in range(50)]}
    one = len(zlib.compress(orjson.dumps(big), 1))
    store = MemoryResponses(max_bytes=one * 3)
    for i in range(5):
        await store.put("k", f"r{i}", big)
    assert [await store.get("k", f"r{i}") is not None for i in range(5)] == [
        False,
        False,
        True,
        True,
        True,
    ]


@pytest.mark.redis
async def test_a_corrupted_record_is_no_record_and_is_deleted(redis_server: RedisServer) -> None:
    store = RedisResponses(redis_server.url)
    await store._pipe.call("SET", RedisResponses._key("k", "r"), b"not zlib")
    assert await store.get("k", "r") is None
    assert await store._pipe.call("EXISTS", RedisResponses._key("k", "r")) == 0
    await store.aclose()


@pytest.mark.redis
async def test_redis_down_fails_reads_loudly_and_writes_quietly(
    redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    store = RedisResponses(redis_server.url, timeout=0.2)
    redis_server.kill()
    await store.put("k", "r", record("hi"))  # the answer already went out: only logged
    assert "storing response r failed" in caplog.text
    with pytest.raises(StoreUnavailable):
        await store.get("k", "r")
    await store.aclose()
