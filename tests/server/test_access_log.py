"""The access log (one JSON line per request, no content, no key) and ``/metrics`` of one
worker, in a real ``msgflux serve`` behind the scriptable upstream."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import httpx2 as httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.server.harness import SERVER_KEY, UPSTREAM_KEY, Served, chat_gateway, start
from tests.upstream import Reply, Upstream

SECRET_TEXT = "the-password-of-alice-is-swordfish"
ADMIN_KEY = "sk-admin-key-for-logs-5555"
FIELDS = {
    "time",
    "worker",
    "method",
    "path",
    "key",
    "gateway",
    "deployment",
    "attempts",
    "fallbacks",
    "stream",
    "status",
    "latency_ms",
    "ttft_ms",
    "input_tokens",
    "output_tokens",
    "cost",
    "error",
    "upstream_request_id",
    "cache",
}


class Env:
    def __init__(self, server: Served, a: Upstream, b: Upstream) -> None:
        self.server = server
        self.a = a
        self.b = b

    def chat(
        self, key: str | None = SERVER_KEY, model: str = "chat", **body: Any
    ) -> httpx.Response:
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        return httpx.post(
            self.server.base_url + "/chat/completions",
            json={"model": model, "messages": [{"role": "user", "content": SECRET_TEXT}], **body},
            headers=headers,
            timeout=30,
        )

    def lines(self) -> list[dict[str, Any]]:
        return [json.loads(x) for x in self.server.log().splitlines() if x.startswith("{")]

    def last_line(self, count: int) -> dict[str, Any]:
        deadline = time.monotonic() + 5
        while len(lines := self.lines()) < count and time.monotonic() < deadline:
            time.sleep(0.01)
        assert len(lines) == count, lines
        return lines[-1]


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    a, b = Upstream().start(), Upstream().start()
    gateway = chat_gateway(a.base_url, b.base_url, breaker=False)
    gateway["models"][1]["price"] = {"input_per_mtok": 2.0, "output_per_mtok": 8.0}
    config = {
        "server": {
            "keys": [
                {"name": "team-a", "key": "${CLIENT_KEY}", "models": "*"},
                {"name": "ops", "key": ADMIN_KEY, "models": [], "admin": True},
            ]
        },
        "gateways": {"chat": gateway},
    }
    server = start(tmp_path_factory.mktemp("access"), config)
    try:
        yield Env(server, a, b)
    finally:
        server.stop()
        a.stop()
        b.stop()


@pytest.fixture(autouse=True)
def fresh(env: Env) -> Iterator[None]:
    env.a.reset()
    env.b.reset()
    yield


def test_each_request_writes_one_json_line_with_who_what_and_how_long(env: Env) -> None:
    count = len(env.lines())
    env.a.script(Reply(status=500))  # the primary fails: the fallback answers
    env.b.script(
        Reply(usage={"prompt_tokens": 1000, "completion_tokens": 500, "total_tokens": 1500})
    )
    assert env.chat().status_code == 200
    line = env.last_line(count + 1)
    assert set(line) == FIELDS
    assert line["key"] == "team-a" and line["gateway"] == "chat"
    assert line["deployment"] == "d1" and line["attempts"] == 2 and line["fallbacks"] == 1
    assert line["status"] == 200 and line["stream"] is False and line["error"] is None
    assert line["input_tokens"] == 1000 and line["output_tokens"] == 500
    assert line["cost"] == pytest.approx(1000 * 2e-6 + 500 * 8e-6)
    assert line["latency_ms"] > 0 and line["ttft_ms"] is None
    assert line["method"] == "POST" and line["path"] == "/v1/chat/completions"
    assert line["time"].endswith("Z") and isinstance(line["worker"], int)


def test_a_stream_line_has_its_time_to_first_token(env: Env) -> None:
    count = len(env.lines())
    env.a.script(Reply(chunks=["a", "b"], chunk_delay=0.05))
    assert env.chat(stream=True).status_code == 200
    line = env.last_line(count + 1)
    assert line["stream"] is True and line["deployment"] == "d0"
    assert 0 < line["ttft_ms"] <= line["latency_ms"]


def test_failures_are_logged_with_their_status_and_error(env: Env) -> None:
    count = len(env.lines())
    assert env.chat(key="sk-not-a-configured-key-1").status_code == 401
    line = env.last_line(count + 1)
    assert line["status"] == 401 and line["key"] is None and line["gateway"] is None
    assert env.chat(model="no-such-gateway").status_code == 404
    assert env.last_line(count + 2)["gateway"] is None
    env.a.script(Reply(status=500))
    env.b.script(Reply(status=503))
    assert env.chat().status_code == 502
    line = env.last_line(count + 3)
    assert line["status"] == 502 and line["attempts"] == 2 and line["error"] == "ModelRouterError"


def test_no_line_holds_message_content_or_a_key(env: Env) -> None:
    env.chat()
    env.chat(stream=True)
    env.chat(key="sk-wrong-key-that-should-not-show")
    log = env.server.log()
    for secret in (SECRET_TEXT, SERVER_KEY, UPSTREAM_KEY, ADMIN_KEY, "sk-wrong-key"):
        assert secret not in log
    assert "Hello from" not in log  # nor the answer


def test_one_worker_serves_metrics_counting_each_request(env: Env) -> None:
    def scrape() -> dict[str, Any]:
        resp = httpx.get(
            env.server.url + "/metrics", headers={"Authorization": f"Bearer {ADMIN_KEY}"}
        )
        assert resp.status_code == 200
        assert resp.headers["content-type"].startswith("text/plain; version=0.0.4")
        return {f.name: f for f in text_string_to_metric_families(resp.text)}

    def requests(families: dict[str, Any]) -> float:
        return sum(
            s.value
            for s in families["msgflux_server_requests"].samples
            if s.name.endswith("_total")
            and s.labels == {"gateway": "chat", "status": "200", "key": "team-a"}
        )

    before = requests(scrape())
    for _ in range(3):
        assert env.chat().status_code == 200
    families = scrape()
    assert requests(families) == before + 3
    attempts = [
        s
        for s in families["msgflux_gateway_attempts"].samples
        if s.name.endswith("_total") and s.labels["deployment"] == "d0"
    ]
    assert {s.labels["outcome"] for s in attempts} <= {"success", "error", "skipped", "cancelled"}
    breaker = families["msgflux_gateway_breaker_state"].samples
    assert {s.labels["deployment"] for s in breaker} == {"d0", "d1"}
    assert [s.value for s in families["msgflux_server_in_flight"].samples] == [1.0]  # the scrape
    assert (
        "msgflux_server_state_healthy" not in families
        or not families["msgflux_server_state_healthy"].samples
    )  # no server.state: no such series
