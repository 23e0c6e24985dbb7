"""``msgflux serve --workers 2`` on a real Redis Cluster (3 primaries, 3 replicas):
``server.state: redis+cluster://...`` shares the key limits, the virtual keys and the gateways'
breakers across workers; killing a primary under load loses no request.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import Any

import httpx2 as httpx
import pytest

from msgflux.server.config import load_config
from msgflux.server.usage import read_usage
from tests.redis_cluster import RedisCluster, running_cluster
from tests.server.harness import SERVER_KEY, Served, chat_gateway, server_env, start
from tests.upstream import Reply, Upstream

pytestmark = [pytest.mark.redis, pytest.mark.slow]

CHAT: Any = [{"role": "user", "content": "hi"}]
RPM_KEY = "sk-test-rpm6-key-0001"
LOAD_KEY = "sk-test-load-key-0001"


class Env:
    def __init__(self, server: Served, up: Upstream, cluster: RedisCluster, config: Any) -> None:
        self.server = server
        self.up = up
        self.cluster = cluster
        self.config = config

    async def burst(self, key: str, n: int, model: str = "chat") -> list[int]:
        async def one() -> int:
            async with httpx.AsyncClient(timeout=30) as client:  # its own connection
                resp = await client.post(
                    self.server.base_url + "/chat/completions",
                    json={"model": model, "messages": CHAT},
                    headers={"Authorization": f"Bearer {key}"},
                )
                return int(resp.status_code)

        return list(await asyncio.gather(*(one() for _ in range(n))))

    def admin(self, method: str, path: str, **kw: Any) -> Any:
        with httpx.Client(timeout=10) as client:
            return client.request(
                method,
                self.server.url + path,
                headers={"Authorization": f"Bearer {SERVER_KEY}"},
                **kw,
            )


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    directory = tmp_path_factory.mktemp("cluster-served")
    with running_cluster() as cluster, Upstream() as up:
        up.set_default(Reply(status=500), model="m0")
        config = {
            "server": {
                "state": cluster.url,
                "keys": [
                    {"name": "ops", "key": SERVER_KEY, "models": "*", "admin": True},
                    {"name": "rpm6", "key": RPM_KEY, "models": "*", "rpm": 6},
                    {"name": "load", "key": LOAD_KEY, "models": "*", "max_concurrency": 50},
                ],
            },
            "gateways": {
                "chat": {
                    "models": [
                        {
                            "model_name": "ok",
                            "model": "openai_compatible/fine",
                            "base_url": up.base_url,
                        }
                    ]
                },
                "flaky": chat_gateway(
                    up.base_url,
                    up.base_url,
                    breaker={"failure_threshold": 2, "failure_rate": None, "open_for": 60},
                ),
            },
        }
        server = start(directory, config, "--workers", "2")
        try:
            yield Env(server, up, cluster, directory / "config.yaml")
        finally:
            server.stop()


def test_readiness_checks_the_cluster(env: Env) -> None:
    resp = httpx.get(env.server.url + "/health/readiness")
    assert resp.status_code == 200, resp.text


def test_key_limits_hold_across_two_workers(env: Env) -> None:
    statuses = asyncio.run(env.burst(RPM_KEY, 18))
    assert sorted(statuses) == [200] * 6 + [429] * 12
    rows = {r.name: r for r in read_usage(load_config(env.config, server_env()))}
    assert rows["rpm6"].requests_last_minute == 6


def test_virtual_keys_live_on_the_cluster(env: Env) -> None:
    resp = env.admin("POST", "/admin/keys", json={"name": "on-cluster", "models": "*", "rpm": 3})
    assert resp.status_code == 201, resp.text
    secret = resp.json()["secret"]
    assert sorted(asyncio.run(env.burst(secret, 5))) == [200] * 3 + [429] * 2
    env.admin("POST", "/admin/keys/on-cluster/revoke")
    time.sleep(0.6)
    assert set(asyncio.run(env.burst(secret, 4))) == {401}


def test_breakers_are_shared_by_the_workers(env: Env) -> None:
    before = env.up.count(model="m0")
    statuses = [asyncio.run(env.burst(LOAD_KEY, 1, "flaky"))[0] for _ in range(8)]
    assert set(statuses) == {200}  # the second deployment answers
    assert env.up.count(model="m0") - before == 2  # open after two failures, for both workers
    data = env.admin("GET", "/admin/dashboard").json()
    (first, _) = data["gateways"]["flaky"]["deployments"]
    assert first["breaker"] == "open"


def test_a_primary_killed_under_load_loses_no_request(env: Env) -> None:
    """The key limiter's slot moves to a replica mid-load; every request still answers."""

    async def main() -> list[int]:
        statuses: list[int] = []
        stop = asyncio.Event()

        async def client_loop() -> None:
            while not stop.is_set():
                statuses.extend(await env.burst(LOAD_KEY, 1))

        loops = [asyncio.ensure_future(client_loop()) for _ in range(6)]
        await asyncio.sleep(0.3)
        key = "{msgflux:key:load}:rpm"
        old = await asyncio.to_thread(env.cluster.kill_primary_of, key)
        await asyncio.to_thread(env.cluster.wait_promoted, key, old)
        await asyncio.sleep(1.5)  # the limiter back on Redis (retried every second)
        stop.set()
        await asyncio.gather(*loops)
        return statuses

    statuses = asyncio.run(main())
    assert len(statuses) > 30 and set(statuses) == {200}
    assert set(asyncio.run(env.burst(LOAD_KEY, 4))) == {200}
    assert httpx.get(env.server.url + "/health/readiness").status_code in (200, 503)


def test_virtual_keys_keep_working_while_their_primary_fails_over(env: Env) -> None:
    """The primary of ``{msgflux:vkeys}`` is killed under load: every worker serves the keys
    from its copy meanwhile (no request refused), and once a replica is promoted keys are
    created (the write script loaded on the new primary) and revoked again."""
    made = env.admin("POST", "/admin/keys", json={"name": "vk-failover", "models": "*"})
    assert made.status_code == 201, made.text
    secret = made.json()["secret"]
    assert set(asyncio.run(env.burst(secret, 4))) == {200}

    async def main() -> tuple[list[int], int]:
        statuses: list[int] = []
        stop = asyncio.Event()

        async def client_loop() -> None:
            while not stop.is_set():
                statuses.extend(await env.burst(secret, 1))

        loops = [asyncio.ensure_future(client_loop()) for _ in range(4)]
        await asyncio.sleep(0.3)
        key = "{msgflux:vkeys}:records"
        old = await asyncio.to_thread(env.cluster.kill_primary_of, key)
        body = {"name": "during-failover", "models": "*"}
        during = await asyncio.to_thread(env.admin, "POST", "/admin/keys", json=body)
        await asyncio.to_thread(env.cluster.wait_promoted, key, old)
        await asyncio.sleep(0.5)
        stop.set()
        await asyncio.gather(*loops)
        return statuses, int(during.status_code)

    statuses, during = asyncio.run(main())
    assert len(statuses) > 20 and set(statuses) == {200}
    assert during == 503  # a change waits for the promotion; the keys are served meanwhile
    deadline = time.monotonic() + 10
    while True:  # the first write after the promotion may still meet the old map
        again = env.admin("POST", "/admin/keys", json={"name": "after-failover", "models": "*"})
        if again.status_code != 503 or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert again.status_code == 201, again.text
    assert set(asyncio.run(env.burst(again.json()["secret"], 4))) == {200}
    assert env.admin("POST", "/admin/keys/vk-failover/revoke").status_code == 200
    time.sleep(0.6)
    assert set(asyncio.run(env.burst(secret, 4))) == {401}
