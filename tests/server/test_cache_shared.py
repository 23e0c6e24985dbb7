"""The response cache on Redis (``cache: {store: redis}`` = ``server.state``), served by two
workers: an answer one worker stored is a hit on the other; Redis killed mid-run sends every
request upstream and fails none, and the cache works again once Redis is back."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx2 as httpx
import orjson
import pytest

from tests.redis_server import RedisServer, running_redis
from tests.server.harness import SERVER_KEY, Served, start
from tests.upstream import Upstream

pytestmark = [pytest.mark.redis, pytest.mark.slow]


class Env:
    def __init__(self, server: Served, up: Upstream, redis: RedisServer) -> None:
        self.server = server
        self.up = up
        self.redis = redis

    def chat(self, text: str, stream: bool = False) -> httpx.Response:
        body = {
            "model": "chat",
            "temperature": 0,
            "stream": stream,
            "messages": [{"role": "user", "content": text}],
        }
        with httpx.Client(timeout=30) as client:  # a new connection: either worker
            return client.post(
                self.server.base_url + "/chat/completions",
                content=orjson.dumps(body),
                headers={"authorization": f"Bearer {SERVER_KEY}"},
            )

    def served(self) -> list[dict[str, Any]]:
        """The access log's lines of chat requests, once every request so far is in it."""
        lines = [x for x in self.server.log().splitlines() if x.startswith("{")]
        return [e for e in map(orjson.loads, lines) if e["path"] == "/v1/chat/completions"]


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    with running_redis() as redis, Upstream() as up:
        dep = {
            "model_name": "oa",
            "model": "openai/up-model",
            "base_url": up.base_url,
            "api_key": "${UPSTREAM_KEY}",
        }
        config = {
            "server": {
                "state": redis.url,
                "keys": [{"name": "k", "key": "${CLIENT_KEY}", "models": "*"}],
            },
            "gateways": {"chat": {"breaker": False, "cache": {"store": "redis"}, "models": [dep]}},
        }
        server = start(tmp_path_factory.mktemp("cache-shared"), config, "--workers", "2")
        try:
            yield Env(server, up, redis)
        finally:
            server.stop()


def _lines(env: Env, count: int) -> list[dict[str, Any]]:
    deadline = time.monotonic() + 5
    while len(lines := env.served()) < count and time.monotonic() < deadline:
        time.sleep(0.02)
    return lines


def test_a_worker_hits_what_the_other_worker_stored(env: Env) -> None:
    before = len(env.served())
    for i in range(4):
        text = f"shared {i}"
        verdicts = [env.chat(text, stream=(i % 2 == 1)).headers["x-msgflux-cache"]]
        for _ in range(12):
            verdicts.append(env.chat(text).headers["x-msgflux-cache"])
        assert verdicts[0] == "miss" and set(verdicts[1:]) == {"hit"}
    lines = _lines(env, before + 52)[before:]
    workers = {e["worker"] for e in lines}
    assert len(workers) == 2, "both workers served"
    crossed = 0
    for i in range(4):
        fill, *hits = lines[i * 13 : (i + 1) * 13]
        assert fill["cache"] == "miss" and all(h["cache"] == "hit" for h in hits)
        crossed += sum(1 for h in hits if h["worker"] != fill["worker"])
    assert crossed > 0, "a hit came from the other worker's fill"
    assert all(h["attempts"] == 0 and h["cost"] == 0.0 for h in lines if h["cache"] == "hit")


def test_redis_killed_mid_run_fails_no_request(env: Env) -> None:
    assert env.chat("outage").headers["x-msgflux-cache"] == "miss"
    env.redis.kill()
    try:
        for i in range(6):
            resp = env.chat("outage", stream=(i % 2 == 1))
            assert resp.status_code == 200, resp.text
            assert resp.headers["x-msgflux-cache"] == "miss"
            assert b"Hello from up-model" in resp.content or "Hello" in resp.text
    finally:
        env.redis.start()
    deadline = time.monotonic() + 10
    verdict = ""
    while time.monotonic() < deadline and verdict != "hit":
        verdict = env.chat("after the outage").headers["x-msgflux-cache"]
        time.sleep(0.1)
    assert verdict == "hit"
