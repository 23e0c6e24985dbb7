"""Config reload in a real ``msgflux serve``: ``POST /admin/reload`` and SIGHUP load the file,
validate it completely and swap the runtime; a bad file keeps the old config serving; requests
in flight finish on the config they started with; breaker state survives for deployments whose
identity did not change; ``GET /admin/config`` masks every secret.
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx2 as httpx
import pytest

from tests.server.harness import (
    SERVER_KEY,
    UPSTREAM_KEY,
    Served,
    chat_gateway,
    start,
    write_config,
)
from tests.upstream import Reply, Upstream

pytestmark = pytest.mark.slow

ADMIN_KEY = "sk-admin-key-for-reload-7777"
CHAT: Any = [{"role": "user", "content": "hello"}]


def keys() -> list[dict[str, Any]]:
    return [
        {"name": "app", "key": "${CLIENT_KEY}", "models": "*"},
        {"name": "ops", "key": ADMIN_KEY, "models": [], "admin": True},
    ]


class Env:
    def __init__(self, server: Served, a: Upstream, b: Upstream, directory: Path) -> None:
        self.server = server
        self.a = a
        self.b = b
        self.directory = directory

    def config(self, gateways: dict[str, Any]) -> dict[str, Any]:
        return {"server": {"keys": keys()}, "gateways": gateways}

    def write(self, config: dict[str, Any] | str) -> None:
        write_config(self.directory, config)

    def reload(self, key: str | None = ADMIN_KEY) -> httpx.Response:
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        return httpx.post(self.server.url + "/admin/reload", headers=headers, timeout=30)

    def chat(self, model: str = "chat", **body: Any) -> httpx.Response:
        return httpx.post(
            self.server.base_url + "/chat/completions",
            json={"model": model, "messages": CHAT, **body},
            headers={"Authorization": f"Bearer {SERVER_KEY}"},
            timeout=30,
        )

    def health(self) -> dict[str, Any]:
        resp = httpx.get(
            self.server.url + "/health/models", headers={"Authorization": f"Bearer {SERVER_KEY}"}
        )
        return resp.json()["gateways"]  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    directory = tmp_path_factory.mktemp("reload")
    a, b = Upstream().start(), Upstream().start()
    config = {"server": {"keys": keys()}, "gateways": {"chat": chat_gateway(a.base_url)}}
    server = start(directory, config)
    try:
        yield Env(server, a, b, directory)
    finally:
        server.stop()
        a.stop()
        b.stop()


@pytest.fixture(autouse=True)
def fresh(env: Env) -> Iterator[None]:
    env.a.reset()
    env.b.reset()
    env.write(env.config({"chat": chat_gateway(env.a.base_url)}))
    assert env.reload().status_code == 200
    yield


def test_reload_under_load_fails_no_request(env: Env) -> None:
    env.a.set_default(Reply(chunks=["a", "b", "c"], chunk_delay=0.01))
    env.b.set_default(Reply(chunks=["x", "y", "z"], chunk_delay=0.01))
    results: list[int] = []
    stop = threading.Event()

    def load() -> None:
        with httpx.Client(timeout=30) as client:
            while not stop.is_set():
                resp = client.post(
                    env.server.base_url + "/chat/completions",
                    json={"model": "chat", "messages": CHAT, "stream": len(results) % 2 == 0},
                    headers={"Authorization": f"Bearer {SERVER_KEY}"},
                )
                ok = resp.status_code == 200 and ("[DONE]" in resp.text or '"choices"' in resp.text)
                results.append(200 if ok else resp.status_code)

    threads = [threading.Thread(target=load) for _ in range(4)]
    for t in threads:
        t.start()
    try:
        for i in range(6):
            upstream = env.b if i % 2 == 0 else env.a
            env.write(
                env.config(
                    {
                        "chat": chat_gateway(upstream.base_url),
                        f"extra{i}": chat_gateway(upstream.base_url),
                    }
                )
            )
            assert env.reload().status_code == 200
            time.sleep(0.15)
    finally:
        stop.set()
        for t in threads:
            t.join(30)
    assert len(results) > 20
    assert set(results) == {200}
    assert env.a.count() > 0 and env.b.count() > 0  # both configs served


def test_a_bad_config_is_rejected_with_400_and_the_old_one_keeps_serving(env: Env) -> None:
    bad = env.config({"chat": chat_gateway(env.b.base_url)})
    bad["gateways"]["chat"]["models"][0]["timout"] = 3
    env.write(bad)
    resp = env.reload()
    assert resp.status_code == 400
    error = resp.json()["error"]
    assert error["code"] == "invalid_config"
    assert error["param"] == "gateways.chat.models[0].timout"
    assert "did you mean 'timeout'" in error["message"]
    env.write("gateways: [unclosed")
    assert env.reload().status_code == 400
    assert env.chat().status_code == 200
    assert env.a.count() == 1 and env.b.count() == 0  # still the old config's upstream
    assert "reload rejected, keeping the previous config" in env.server.log()


def test_a_request_in_flight_finishes_on_the_config_it_started_with(env: Env) -> None:
    env.a.set_default(Reply(chunks=[f" w{i}" for i in range(8)], chunk_delay=0.1))
    texts: list[str] = []
    first = threading.Event()

    def read() -> None:
        with httpx.stream(
            "POST",
            env.server.base_url + "/chat/completions",
            json={"model": "chat", "messages": CHAT, "stream": True},
            headers={"Authorization": f"Bearer {SERVER_KEY}"},
            timeout=30,
        ) as resp:
            text = ""
            for piece in resp.iter_text():
                text += piece
                first.set()
            texts.append(text)

    reader = threading.Thread(target=read)
    reader.start()
    assert first.wait(10)
    env.write(env.config({"renamed": chat_gateway(env.b.base_url)}))
    assert env.reload().json()["gateways"] == ["renamed"]
    assert env.chat().status_code == 404  # new requests see the new config at once
    reader.join(30)
    assert texts and texts[0].rstrip().endswith("data: [DONE]") and " w7" in texts[0]


def test_breaker_state_survives_a_reload_unless_the_deployment_changed(env: Env) -> None:
    def fragile(url: str) -> dict[str, Any]:
        return chat_gateway(url, breaker={"failure_threshold": 1, "open_for": 300})

    env.write(
        env.config({"chat": chat_gateway(env.a.base_url), "fragile": fragile(env.a.base_url)})
    )
    assert env.reload().status_code == 200
    env.a.script(Reply(status=500))
    assert env.chat("fragile").status_code == 502
    assert env.health()["fragile"]["deployments"]["d0"]["breaker"] == "open"
    env.write(
        env.config(
            {
                "chat": chat_gateway(env.a.base_url),
                "fragile": fragile(env.a.base_url),
                "another": chat_gateway(env.b.base_url),
            }
        )
    )
    assert env.reload().status_code == 200
    assert env.health()["fragile"]["deployments"]["d0"]["breaker"] == "open"  # same identity
    env.write(
        env.config({"chat": chat_gateway(env.a.base_url), "fragile": fragile(env.b.base_url)})
    )
    assert env.reload().status_code == 200
    assert env.health()["fragile"]["deployments"]["d0"]["breaker"] == "closed"  # new base_url


def test_admin_config_shows_the_active_config_with_secrets_masked(env: Env) -> None:
    resp = httpx.get(
        env.server.url + "/admin/config", headers={"Authorization": f"Bearer {ADMIN_KEY}"}
    )
    assert resp.status_code == 200
    text = resp.text
    assert UPSTREAM_KEY not in text and SERVER_KEY not in text and ADMIN_KEY not in text
    body = resp.json()
    model = body["config"]["gateways"]["chat"]["models"][0]
    assert model["api_key"] == "***" and model["base_url"] == env.a.base_url
    assert {k["name"]: k["key"] for k in body["config"]["server"]["keys"]} == {
        "app": "***",
        "ops": "***",
    }


def test_reload_and_config_need_the_admin_key(env: Env) -> None:
    assert env.reload(key=None).status_code == 401
    forbidden = env.reload(key=SERVER_KEY)
    assert forbidden.status_code == 403 and "admin" in forbidden.json()["error"]["message"]
    wrong = httpx.get(
        env.server.url + "/admin/reload", headers={"Authorization": f"Bearer {ADMIN_KEY}"}
    )
    assert wrong.status_code == 405


# -- several workers ----------------------------------------------------------------------------
def gateways_by_worker(server: Served, want: str, timeout: float = 10) -> set[int]:
    """Pids of the workers that list gateway ``want`` (new connections: any worker)."""
    seen: set[int] = set()
    deadline = time.monotonic() + timeout
    while len(seen) < 2 and time.monotonic() < deadline:
        with httpx.Client() as client:
            config = client.get(server.url + "/admin/config").json()
            if want in config["config"]["gateways"]:
                seen.add(config["pid"])
        time.sleep(0.01)
    return seen


def test_sighup_and_admin_reload_reload_every_worker(tmp_path: Path) -> None:
    with Upstream() as up:
        config: dict[str, Any] = {"gateways": {"chat": chat_gateway(up.base_url)}}
        server = start(tmp_path, config, "--workers", "2")
        try:
            pids: set[int] = set()
            while len(pids) < 2:  # both workers are up
                with httpx.Client() as client:
                    pids.add(client.get(server.url + "/health/liveness").json()["pid"])
            config["gateways"]["by_signal"] = chat_gateway(up.base_url)
            write_config(tmp_path, config)
            server.proc.send_signal(signal.SIGHUP)  # to the supervisor
            assert len(gateways_by_worker(server, "by_signal")) == 2
            config["gateways"]["by_admin"] = chat_gateway(up.base_url)
            write_config(tmp_path, config)
            # no keys configured: a loopback client may reload
            assert httpx.post(server.url + "/admin/reload").status_code == 200
            assert len(gateways_by_worker(server, "by_admin")) == 2
            limited = {
                **config,
                "server": {"keys": [{"name": "k", "key": SERVER_KEY, "models": "*", "rpm": 5}]},
            }
            write_config(tmp_path, limited)
            refused = httpx.post(server.url + "/admin/reload")
            assert (
                refused.status_code == 400 and "server.state" in refused.json()["error"]["message"]
            )
            assert server.proc.poll() is None
        finally:
            assert server.stop() == 0
