"""Per-key limits and metrics in a real ``msgflux serve --workers 4`` sharing a real Redis.

One server for the module (4 worker processes, ``server.state`` on a redis-server the module
starts); each test uses its own client key, so the keys' windows never mix.
"""

from __future__ import annotations

import asyncio
import json
import math
import time
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import httpx2 as httpx
import openai
import pytest
from prometheus_client.parser import text_string_to_metric_families

from msgflux.server.config import load_config
from msgflux.server.usage import read_usage
from tests.redis_server import RedisServer, running_redis
from tests.server.harness import Served, chat_gateway, run_cli, server_env, start
from tests.upstream import Reply, Upstream

pytestmark = [pytest.mark.redis, pytest.mark.slow]

CHAT: Any = [{"role": "user", "content": "hello"}]
KEYS = {
    "rpm10": {"rpm": 10},
    "conc3": {"max_concurrency": 3},
    "hangup": {"max_concurrency": 1},
    "budget": {"budget": {"usd": 1, "period": "day"}},
    "sdk": {"rpm": 1},
    "metered": {},
    "ops": {"admin": True},
}
USAGE = {"prompt_tokens": 1000, "completion_tokens": 0, "total_tokens": 1000}
"""Every answer's usage: at 250 USD per million input tokens, each call costs exactly $0.25."""


def key_of(name: str) -> str:
    return f"sk-test-{name}-0123456789"


class Env:
    def __init__(self, server: Served, up: Upstream, redis: RedisServer, config: Path) -> None:
        self.server = server
        self.up = up
        self.redis = redis
        self.config = config

    def post(self, name: str, model: str = "chat", **body: Any) -> httpx.Response:
        with httpx.Client(timeout=30) as client:  # a new connection: any of the workers
            return client.post(
                self.server.base_url + "/chat/completions",
                json={"model": model, "messages": CHAT, **body},
                headers={"Authorization": f"Bearer {key_of(name)}"},
            )

    async def apost(self, name: str, model: str = "chat", timeout: float = 30) -> int:
        async with httpx.AsyncClient(timeout=timeout) as client:
            resp = await client.post(
                self.server.base_url + "/chat/completions",
                json={"model": model, "messages": CHAT},
                headers={"Authorization": f"Bearer {key_of(name)}"},
            )
            return resp.status_code

    def metrics(self) -> dict[str, Any]:
        resp = httpx.get(
            self.server.url + "/metrics", headers={"Authorization": f"Bearer {key_of('ops')}"}
        )
        assert resp.status_code == 200, resp.text
        return {f.name: f for f in text_string_to_metric_families(resp.text)}

    def access_lines(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.server.log().splitlines() if line.startswith("{")]


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    directory = tmp_path_factory.mktemp("served-limits")
    with running_redis() as redis, Upstream() as up:
        up.set_default(Reply(usage=USAGE))
        up.set_default(Reply(delay=1.0, usage=USAGE), model="slow")
        chat = chat_gateway(up.base_url, breaker=False)
        chat["models"][0]["price"] = {"input_per_mtok": 250.0, "output_per_mtok": 250.0}
        slow = {
            "breaker": False,
            "models": [
                {"model_name": "s0", "model": "openai_compatible/slow", "base_url": up.base_url}
            ],
        }
        config = {
            "server": {
                "state": redis.url,
                "keys": [
                    {"name": name, "key": key_of(name), "models": "*", **extra}
                    for name, extra in KEYS.items()
                ],
            },
            "gateways": {"chat": chat, "slow": slow},
        }
        server = start(directory, config, "--workers", "4")
        try:
            yield Env(server, up, redis, directory / "config.yaml")
        finally:
            assert server.stop() == 0


def test_rpm_10_with_40_concurrent_requests_over_4_workers_lets_exactly_10_through(
    env: Env,
) -> None:
    before = env.up.count(model="m0")

    async def burst() -> list[int]:
        return await asyncio.gather(*(env.apost("rpm10") for _ in range(40)))

    statuses = asyncio.run(burst())
    assert statuses.count(200) == 10 and statuses.count(429) == 30
    assert env.up.count(model="m0") - before == 10  # a refused request reaches no upstream
    lines = [line for line in env.access_lines() if line["key"] == "rpm10"]
    assert len({line["worker"] for line in lines}) >= 2  # served by several processes
    refused = env.post("rpm10")
    assert refused.status_code == 429
    assert 1 <= int(refused.headers["retry-after"]) <= 60
    assert refused.json()["error"]["code"] == "rate_limit_exceeded"


def test_max_concurrency_3_admits_exactly_3_of_12_concurrent_requests(env: Env) -> None:
    async def burst() -> list[int]:
        return await asyncio.gather(*(env.apost("conc3", "slow") for _ in range(12)))

    statuses = asyncio.run(burst())
    assert statuses.count(200) == 3 and statuses.count(429) == 9
    assert env.post("conc3", "slow").status_code == 200  # every lease was given back


def test_a_client_hang_up_gives_its_concurrency_lease_back(env: Env) -> None:
    async def hang_up() -> None:
        with pytest.raises(httpx.TimeoutException):
            await env.apost("hangup", "slow", timeout=0.3)

    asyncio.run(hang_up())
    deadline = time.monotonic() + 5
    while (status := env.post("hangup").status_code) == 429 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert status == 200


def wait_for_spend(env: Env, expected: float) -> None:
    config = load_config(env.config, server_env())
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        spent = next(u for u in read_usage(config) if u.name == "budget").spent_usd
        if spent is not None and math.isclose(spent, expected):
            return
        time.sleep(0.02)
    raise AssertionError(f"spend never reached {expected}")


def test_a_budget_of_1_usd_lets_exactly_4_calls_of_25_cents_through(env: Env) -> None:
    for i in range(4):
        stream = i == 3  # a stream's cost counts once it ended
        answer = env.post("budget", stream=stream)
        assert answer.status_code == 200 and ("[DONE]" in answer.text) == stream
        wait_for_spend(env, 0.25 * (i + 1))
    refused = env.post("budget")
    assert refused.status_code == 429
    error = refused.json()["error"]
    tomorrow = (datetime.now(timezone.utc) + timedelta(days=1)).strftime("%Y-%m-%d")
    assert "spent its budget of $1.00 per day" in error["message"]
    assert f"resets at {tomorrow}T00:00:00Z" in error["message"]
    assert error["code"] == "budget_exceeded"
    midnight = datetime.fromisoformat(f"{tomorrow}T00:00:00+00:00").timestamp()
    assert abs(int(refused.headers["retry-after"]) - (midnight - time.time())) < 5
    result = run_cli("keys", "usage", "--config", str(env.config))
    assert result.returncode == 0, result.stderr
    row = next(line for line in result.stdout.splitlines() if line.startswith("budget "))
    assert "$1.0000/day" in row and "$1.0000" in row and "$0.0000" in row
    assert f"{tomorrow}T00:00:00Z" in row


def test_the_openai_sdk_sees_a_key_limit_as_rate_limit_error_with_retry_after(env: Env) -> None:
    client = openai.OpenAI(base_url=env.server.base_url, api_key=key_of("sdk"), max_retries=0)
    assert client.chat.completions.create(model="chat", messages=CHAT).model == "chat"
    with pytest.raises(openai.RateLimitError) as info:
        client.chat.completions.create(model="chat", messages=CHAT)
    assert info.value.status_code == 429
    assert int(info.value.response.headers["retry-after"]) >= 1
    assert "1 requests per minute" in info.value.message


def samples(families: dict[str, Any], family: str, name: str) -> list[Any]:
    return [s for s in families[family].samples if s.name == name]


def test_metrics_from_all_workers_count_the_requests_made_with_bounded_labels(env: Env) -> None:
    for _ in range(5):
        assert env.post("metered").status_code == 200
    for _ in range(2):
        assert env.post("metered", "gpt-made-up-by-a-client").status_code == 404
    assert env.post("metered", stream=True).status_code == 200
    families = env.metrics()
    requests = {
        (s.labels["gateway"], s.labels["status"]): s.value
        for s in samples(families, "msgflux_server_requests", "msgflux_server_requests_total")
        if s.labels["key"] == "metered"
    }
    assert requests == {("chat", "200"): 6.0, ("unknown", "404"): 2.0}
    texts = {v for f in families.values() for s in f.samples for v in s.labels.values()}
    assert not any("made-up" in t for t in texts)
    assert not any("sk-test" in t for t in texts)
    calls = samples(families, "msgflux_gateway_calls", "msgflux_gateway_calls_total")
    assert sum(s.value for s in calls if s.labels["gateway"] == "chat") >= 6
    ttft = samples(
        families,
        "msgflux_server_time_to_first_token_seconds",
        "msgflux_server_time_to_first_token_seconds_count",
    )
    assert sum(s.value for s in ttft if s.labels["gateway"] == "chat") >= 1
    cost = samples(families, "msgflux_gateway_cost_usd", "msgflux_gateway_cost_usd_total")
    assert sum(s.value for s in cost if s.labels["deployment"] == "d0") >= 6 * 0.25
    rejections = samples(
        families, "msgflux_server_key_rejections", "msgflux_server_key_rejections_total"
    )
    assert {s.labels["reason"] for s in rejections} <= {
        "rpm",
        "tpm",
        "max_concurrency",
        "budget",
    }
    healthy = samples(families, "msgflux_server_state_healthy", "msgflux_server_state_healthy")
    assert [s.value for s in healthy] == [1.0]


def test_metrics_and_admin_endpoints_need_the_admin_key(env: Env) -> None:
    assert httpx.get(env.server.url + "/metrics").status_code == 401
    other = httpx.get(
        env.server.url + "/metrics", headers={"Authorization": f"Bearer {key_of('metered')}"}
    )
    assert other.status_code == 403 and "admin" in other.json()["error"]["message"]
    assert httpx.get(env.server.url + "/admin/config").status_code == 401


def test_n_workers_without_shared_state_refuse_keys_with_limits(tmp_path: Path) -> None:
    config = {
        "server": {
            "keys": [{"name": "team-a", "key": key_of("a"), "models": "*", "rpm": 5}],
        },
        "gateways": {"chat": chat_gateway("http://127.0.0.1:9/v1")},
    }
    path = tmp_path / "config.yaml"
    path.write_text(json.dumps(config))
    result = run_cli("serve", "--config", str(path), "--workers", "2", "--port", "0", timeout=30)
    assert result.returncode == 1
    assert "'team-a'" in result.stderr and "server.state" in result.stderr
    assert "2 times the limit" in result.stderr


def test_keys_usage_says_when_there_is_no_shared_state(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(
        json.dumps(
            {
                "server": {"keys": [{"name": "k", "key": key_of("k"), "models": "*"}]},
                "gateways": {"chat": chat_gateway("http://127.0.0.1:9/v1")},
            }
        )
    )
    result = run_cli("keys", "usage", "--config", str(path))
    assert result.returncode == 1 and "no shared state" in result.stderr
