"""The response cache on a real ``redis-server``: entries shared between gateways (processes,
in production), one expiring key each, corrupted entries dropped, Redis killed mid-run (calls
go on upstream, nothing fails) and back, and misses racing on the same key.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import redis

from msgflux import Model, ModelGateway
from msgflux.models.gateway.cache import RedisCache, ResponseCache
from msgflux.models.gateway.cache.redis_store import PREFIX
from tests.redis_server import RedisServer
from tests.upstream import Reply, Upstream

pytestmark = pytest.mark.redis

KEY = "sk-cache-redis-test-key-0042"
ASK: Any = [{"role": "user", "content": "Who was Frank Rosenblatt?"}]
BODY = {"model": "gw", "messages": ASK, "temperature": 0}


def gateway(up: Upstream, cache: Any) -> ModelGateway:
    model = Model.chat_completion("openai/m", base_url=up.base_url, api_key=KEY)
    return ModelGateway([{"model_name": "a", "model": model}], cache=cache, name="g")


def keys(url: str) -> list[bytes]:
    client = redis.Redis.from_url(url)
    try:
        return sorted(client.scan_iter(match=PREFIX + "*"))
    finally:
        client.close()


async def stored(url: str, count: int) -> list[bytes]:
    """The cache's keys once ``count`` are there (a stream's entry is written in a task)."""
    found = keys(url)
    for _ in range(500):
        if len(found) >= count:
            break
        await asyncio.sleep(0.01)
        found = keys(url)
    return found


async def test_a_gateway_hits_what_another_one_stored(upstream: Upstream, redis_url: str) -> None:
    one, other = gateway(upstream, redis_url), gateway(upstream, redis_url)
    assert (await one.acomplete(BODY)).cache == "miss"
    hit = await other.acomplete(BODY)
    assert hit.cache == "hit" and hit.body["choices"][0]["message"]["content"] == "Hello from m"
    assert other.complete(BODY).cache == "hit"  # the sync path too
    stream = await one.acomplete({**BODY, "max_tokens": 5, "stream": True})
    [_ async for _ in stream]
    await stored(redis_url, 2)
    assert other.complete({**BODY, "max_tokens": 5}).cache == "hit"
    assert upstream.count() == 2


async def test_each_entry_is_one_key_that_expires_by_itself(
    upstream: Upstream, redis_url: str
) -> None:
    gw = gateway(upstream, {"store": redis_url, "ttl": 120})
    await gw.acomplete(BODY)
    await gw.acomplete({**BODY, "max_tokens": 5}, cache_ttl=30)
    found = keys(redis_url)
    assert len(found) == 2
    client = redis.Redis.from_url(redis_url)
    try:
        ttls = sorted(client.pttl(k) for k in found)
        types = {client.type(k) for k in found}
    finally:
        client.close()
    assert 25_000 < ttls[0] <= 30_000 and 115_000 < ttls[1] <= 120_000
    assert types == {b"string"}  # plain values: any maxmemory policy may evict them


async def test_a_corrupted_entry_in_redis_is_a_miss_and_is_deleted(
    upstream: Upstream, redis_url: str
) -> None:
    gw = gateway(upstream, redis_url)
    await gw.acomplete(BODY)
    (key,) = keys(redis_url)
    client = redis.Redis.from_url(redis_url)
    try:
        client.set(key, b"\x01garbage")
        assert (await gw.acomplete(BODY)).cache == "miss"
        assert client.get(key) != b"\x01garbage"
    finally:
        client.close()
    assert (await gw.acomplete(BODY)).cache == "hit"


async def test_redis_killed_mid_run_sends_calls_upstream_and_nothing_fails(
    upstream: Upstream, redis_server: RedisServer
) -> None:
    cache = ResponseCache(RedisCache(redis_server.url, retry_after=0.2))
    gw = gateway(upstream, cache)
    assert (await gw.acomplete(BODY)).cache == "miss"
    assert gw.complete(BODY).cache == "hit"
    redis_server.kill()
    for _ in range(3):
        answer = await gw.acomplete(BODY)
        assert answer.cache == "miss" and answer.body["choices"][0]["message"]["content"]
        assert gw.complete(BODY).cache == "miss"
        stream = await gw.acomplete({**BODY, "stream": True})
        assert [e async for e in stream]
    stats = gw.stats()["cache"]
    assert stats["errors"] >= 3 and stats["healthy"] is False
    assert upstream.count() == 10
    redis_server.start()
    await asyncio.sleep(0.25)  # retry_after: the store tries Redis again
    assert (await gw.acomplete(BODY)).cache == "miss"
    assert (await gw.acomplete(BODY)).cache == "hit"
    assert gw.stats()["cache"]["healthy"] is True


async def test_misses_racing_on_the_same_key_all_answer(upstream: Upstream, redis_url: str) -> None:
    upstream.set_default(Reply(delay=0.05))
    gateways = [gateway(upstream, redis_url) for _ in range(3)]
    answers = await asyncio.gather(*(g.acomplete(BODY) for g in gateways for _ in range(2)))
    assert all(a.body["choices"][0]["message"]["content"] == "Hello from m" for a in answers)
    assert {a.cache for a in answers} == {"miss"}
    assert len(keys(redis_url)) == 1
    assert (await gateways[0].acomplete(BODY)).cache == "hit"


def test_a_cluster_url_is_refused_with_a_reason() -> None:
    with pytest.raises(ValueError, match="not a Redis Cluster"):
        RedisCache("redis+cluster://127.0.0.1:7000")
