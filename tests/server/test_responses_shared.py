"""Stored responses on Redis (``server.state``), served by two workers: a conversation begun
on one worker continues on the other; Redis down answers 503 to what needs the store and
never fails a request that only stores."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx2 as httpx
import orjson
import pytest

from tests.redis_server import RedisServer, running_redis
from tests.server.harness import Served, start
from tests.upstream import Upstream

pytestmark = [pytest.mark.redis, pytest.mark.slow]

KEY = "sk-test-shared-responses-012345"


class Env:
    def __init__(self, server: Served, up: Upstream, redis: RedisServer) -> None:
        self.server = server
        self.up = up
        self.redis = redis

    def post(self, body: dict[str, Any]) -> httpx.Response:
        with httpx.Client(timeout=30) as client:  # a new connection: either worker
            return client.post(
                self.server.base_url + "/responses",
                content=orjson.dumps(body),
                headers={"authorization": f"Bearer {KEY}"},
            )

    def get(self, path: str) -> httpx.Response:
        with httpx.Client(timeout=30) as client:
            return client.get(
                self.server.base_url + path, headers={"authorization": f"Bearer {KEY}"}
            )


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    with running_redis() as redis, Upstream() as up:
        dep = {
            "model_name": "chat",
            "model": "openai_compatible/up-model",
            "base_url": up.base_url,
            "api_key": "${UPSTREAM_KEY}",
        }
        config = {
            "server": {
                "state": redis.url,
                "keys": [{"name": "team", "key": KEY, "models": "*"}],
            },
            "gateways": {"chat": {"breaker": False, "models": [dep]}},
        }
        server = start(tmp_path_factory.mktemp("shared"), config, "--workers", "2")
        try:
            yield Env(server, up, redis)
        finally:
            server.stop()


def _workers(server: Served) -> set[int]:
    """The workers that served a /v1/responses request (from the access log)."""
    lines = [line for line in server.log().splitlines() if line.startswith("{")]
    return {e["worker"] for e in map(orjson.loads, lines) if e["path"] == "/v1/responses"}


def test_a_conversation_continues_on_whichever_worker_takes_the_next_turn(env: Env) -> None:
    previous = None
    for turn in range(12):
        body: dict[str, Any] = {"model": "chat", "input": f"turn {turn}"}
        if previous is not None:
            body["previous_response_id"] = previous
        resp = env.post(body)
        assert resp.status_code == 200, resp.text
        previous = resp.json()["id"]
    said = orjson.dumps(env.up.last.json["messages"]).decode()
    assert all(f"turn {turn}" in said for turn in range(12))
    assert len(env.up.last.json["messages"]) == 23  # 12 questions, 11 answers
    assert env.get(f"/responses/{previous}").json()["id"] == previous
    assert len(_workers(env.server)) == 2  # both workers took turns


def test_redis_down_is_a_503_for_a_continuation_and_never_fails_a_new_response(
    env: Env,
) -> None:
    first = env.post({"model": "chat", "input": "hello"}).json()["id"]
    env.redis.kill()
    try:
        fresh = env.post({"model": "chat", "input": "hi"})
        assert fresh.status_code == 200  # its record is lost, the answer is not
        continued = env.post({"model": "chat", "input": "go on", "previous_response_id": first})
        assert continued.status_code == 503
        error = continued.json()["error"]
        assert error["code"] == "store_unavailable"
        assert env.get(f"/responses/{first}").status_code == 503
    finally:
        env.redis.start()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        resp = env.post({"model": "chat", "input": "back", "previous_response_id": first})
        if resp.status_code != 503:
            break
        time.sleep(0.1)
    # Redis came back empty (no persistence): the conversation is gone, said so in OpenAI's way.
    assert resp.status_code == 404
