"""Virtual keys shared through Redis: two server instances on one real Redis, the first with two
workers. A key made on either works on every worker of both at once; a revoked key is refused
everywhere within a second; a rotation's grace period holds on both; the audit is one record.

Every request opens a new connection, so each lands on whichever worker accepts it.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx2 as httpx
import pytest

from msgflux.server.config import load_config
from msgflux.server.usage import read_usage
from tests.redis_server import RedisServer, running_redis
from tests.server.harness import SERVER_KEY, Served, chat_gateway, run_cli, server_env, start
from tests.upstream import Upstream

pytestmark = [pytest.mark.redis, pytest.mark.slow]

CHAT: Any = [{"role": "user", "content": "hi"}]


class Env:
    def __init__(self, a: Served, b: Served, redis: RedisServer, config: Path) -> None:
        self.a = a
        self.b = b
        self.redis = redis
        self.config = config

    @staticmethod
    def admin(server: Served, method: str, path: str, **kw: Any) -> Any:
        with httpx.Client(timeout=10) as client:
            return client.request(
                method, server.url + path, headers={"Authorization": f"Bearer {SERVER_KEY}"}, **kw
            )

    @staticmethod
    def chat(server: Served, key: str) -> int:
        with httpx.Client(timeout=10) as client:  # a new connection: any worker
            resp = client.post(
                server.base_url + "/chat/completions",
                json={"model": "chat", "messages": CHAT},
                headers={"Authorization": f"Bearer {key}"},
            )
        return int(resp.status_code)

    def everywhere(self, key: str, n: int = 6) -> set[int]:
        """The statuses of ``n`` calls to each instance."""
        return {self.chat(s, key) for s in (self.a, self.b) for _ in range(n)}

    def create(self, server: Served, name: str, **fields: Any) -> str:
        resp = self.admin(
            server, "POST", "/admin/keys", json={"name": name, "models": "*", **fields}
        )
        assert resp.status_code == 201, resp.text
        return str(resp.json()["secret"])


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    with running_redis() as redis, Upstream() as up:
        config = {
            "server": {
                "state": redis.url,
                "keys": [{"name": "ops", "key": SERVER_KEY, "models": "*", "admin": True}],
            },
            "gateways": {"chat": chat_gateway(up.base_url)},
        }
        first = tmp_path_factory.mktemp("instance-a")
        a = start(first, config, "--workers", "2")
        b = start(tmp_path_factory.mktemp("instance-b"), config)
        try:
            yield Env(a, b, redis, first / "config.yaml")
        finally:
            a.stop()
            b.stop()


def test_a_key_made_on_one_instance_works_on_every_worker_of_both_at_once(env: Env) -> None:
    secret = env.create(env.a, "made-on-a")
    assert env.chat(env.b, secret) == 200  # at once: no wait
    assert env.everywhere(secret) == {200}
    other = env.create(env.b, "made-on-b")
    assert env.chat(env.a, other) == 200
    listed = [k["name"] for k in env.admin(env.a, "GET", "/admin/keys").json()["keys"]]
    assert {"made-on-a", "made-on-b"} <= set(listed)
    assert env.admin(env.a, "GET", "/admin/keys").json()["storage"]["durable"] is True


def test_a_revoked_key_is_refused_everywhere_within_a_second(env: Env) -> None:
    secret = env.create(env.a, "to-revoke")
    assert env.everywhere(secret) == {200}
    resp = env.admin(env.b, "POST", "/admin/keys/to-revoke/revoke")
    revoked_at = time.monotonic()
    assert resp.status_code == 200
    last_ok = revoked_at
    while time.monotonic() - revoked_at < 1.5:
        if 200 in env.everywhere(secret, 2):
            last_ok = time.monotonic()
    assert last_ok - revoked_at < 1.0
    assert env.everywhere(secret) == {401}


def test_rotation_grace_holds_on_both_instances(env: Env) -> None:
    old = env.create(env.a, "rotating")
    resp = env.admin(env.b, "POST", "/admin/keys/rotating/rotate", json={"grace_seconds": 2})
    new = resp.json()["secret"]
    assert env.everywhere(new, 3) == {200}
    assert env.everywhere(old, 3) == {200}  # within the grace period
    time.sleep(max(0.0, resp.json()["previous_valid_until"] - time.time()) + 0.1)
    assert env.everywhere(old, 3) == {401}
    assert env.everywhere(new, 3) == {200}


def test_a_virtual_keys_limits_are_shared_by_workers_and_instances(env: Env) -> None:
    secret = env.create(env.a, "rpm4", rpm=4)
    statuses = [env.chat(server, secret) for server in (env.a, env.b, env.a, env.b, env.a, env.b)]
    assert sorted(statuses) == [200] * 4 + [429] * 2
    usage = env.admin(env.b, "GET", "/admin/keys/rpm4").json()["usage"]
    assert usage["requests_last_minute"] == 4


def test_one_audit_record_for_both_instances(env: Env) -> None:
    env.create(env.a, "audited-a")
    env.admin(env.b, "PATCH", "/admin/keys/audited-a", json={"metadata": {"owner": "bo"}})
    entries = env.admin(env.a, "GET", "/admin/audit?limit=5").json()["entries"]
    mine = [(e["action"], e["key"]) for e in entries if e["key"] == "audited-a"]
    assert mine == [("update", "audited-a"), ("create", "audited-a")]
    assert all(e["actor"] == "ops" and e["at_utc"].endswith("Z") for e in entries)


def test_the_cli_writes_the_same_store(env: Env) -> None:
    made = run_cli("keys", "create", "cli-store", "--budget-usd", "5", "--config", str(env.config))
    assert made.returncode == 0, made.stderr
    secret = made.stdout.strip().splitlines()[-1]
    assert env.everywhere(secret, 2) == {200}
    rows = {r.name: r for r in read_usage(load_config(env.config, server_env()))}
    assert rows["cli-store"].budget_usd == 5.0 and rows["cli-store"].spent_usd == 0.0
    usage = run_cli("keys", "usage", "--config", str(env.config), "--json")
    assert usage.returncode == 0 and '"cli-store"' in usage.stdout, usage.stderr
    listed = run_cli("keys", "list", "--config", str(env.config), "--json")
    assert '"cli-store"' in listed.stdout and secret not in listed.stdout
    run_cli("keys", "revoke", "cli-store", "--config", str(env.config))
    time.sleep(0.5)
    assert env.everywhere(secret, 2) == {401}
    entries = env.admin(env.b, "GET", "/admin/audit?limit=3").json()["entries"]
    assert ("cli", "revoke", "cli-store") in [(e["actor"], e["action"], e["key"]) for e in entries]


def test_keys_survive_a_restart_of_an_instance(env: Env, tmp_path: Path) -> None:
    secret = env.create(env.a, "durable")
    config = load_config(env.config, server_env())
    fresh = start(tmp_path, env.config.read_text())
    try:
        assert env.chat(fresh, secret) == 200
    finally:
        fresh.stop()
    assert config.server.state == env.redis.url


def test_the_dashboard_counts_every_worker_and_instance(env: Env) -> None:
    secret = env.create(env.b, "counted")
    made = [env.chat(s, secret) for s in (env.a, env.b, env.a, env.b, env.a)]
    assert made == [200] * 5
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:  # each process adds its counts every 2 s
        activity = env.admin(env.a, "GET", "/admin/dashboard").json()["activity"]
        counted = activity["keys"].get("counted")
        if counted and sum(counted["requests"]) == 5:
            break
        time.sleep(0.2)
    assert activity["shared"] is True
    assert counted is not None and sum(counted["requests"]) == 5
    assert (
        sum(
            env.admin(env.b, "GET", "/admin/dashboard").json()["activity"]["keys"]["counted"][
                "requests"
            ]
        )
        == 5
    )
