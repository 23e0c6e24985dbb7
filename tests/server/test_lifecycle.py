"""Process life: SIGTERM drains open streams and exits 0, readiness during the drain, client
hang-ups cancelling the upstream attempt, ``--workers N`` on one port, shared state."""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path
from typing import Any

import httpx2 as httpx
import pytest

from tests.redis_server import RedisServer
from tests.server.harness import chat_gateway, start
from tests.upstream import Reply, Upstream

CHAT = {"messages": [{"role": "user", "content": "tell me a story"}]}


def stream_body(model: str = "chat") -> dict[str, Any]:
    return {"model": model, **CHAT, "stream": True}


def read_stream(url: str, results: list[str], first: threading.Event | None = None) -> None:
    try:
        with httpx.stream("POST", url, json=stream_body(), timeout=30) as resp:
            text = ""
            for piece in resp.iter_text():
                text += piece
                if first is not None and "data: " in text:
                    first.set()
            results.append(text)
    except httpx.HTTPError as exc:
        results.append(f"ERROR {exc!r}")


def refused(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return False
    except OSError:
        return True


@pytest.mark.slow
def test_sigterm_during_20_open_streams_lets_all_of_them_complete(tmp_path: Path) -> None:
    with Upstream() as up:
        up.set_default(Reply(chunks=[f" w{i}" for i in range(10)], chunk_delay=0.1))
        server = start(tmp_path, {"gateways": {"chat": chat_gateway(up.base_url)}})
        url = server.base_url + "/chat/completions"
        results: list[str] = []
        threads = [threading.Thread(target=read_stream, args=(url, results)) for _ in range(20)]
        for t in threads:
            t.start()
        assert up.wait_for(lambda u: u.count("chat") == 20, timeout=10)
        time.sleep(0.15)  # every stream has sent its first chunks
        server.terminate()
        time.sleep(0.3)
        assert refused(server.port)  # no new connections while the streams finish
        for t in threads:
            t.join(30)
        assert server.wait(30) == 0
        assert len(results) == 20
        for text in results:
            assert text.rstrip().endswith("data: [DONE]"), text[-200:]
            assert " w9" in text


@pytest.mark.slow
def test_readiness_turns_503_while_draining(tmp_path: Path) -> None:
    with Upstream() as up:
        up.set_default(Reply(chunks=["a", "b", "c"], chunk_delay=0.5))
        config = {"server": {"drain_delay": 1.0}, "gateways": {"chat": chat_gateway(up.base_url)}}
        server = start(tmp_path, config)
        assert httpx.get(server.url + "/health/readiness").status_code == 200
        results: list[str] = []
        first = threading.Event()
        reader = threading.Thread(
            target=read_stream, args=(server.base_url + "/chat/completions", results, first)
        )
        reader.start()
        assert first.wait(10)
        server.terminate()
        time.sleep(0.3)
        ready = httpx.get(server.url + "/health/readiness")
        assert ready.status_code == 503 and ready.json()["status"] == "draining"
        reader.join(30)
        assert server.wait(30) == 0
        assert results[0].rstrip().endswith("data: [DONE]")


def test_a_client_disconnect_mid_stream_closes_the_upstream_connection(tmp_path: Path) -> None:
    with Upstream() as up:
        up.set_default(Reply(chunks=[f" w{i}" for i in range(50)], chunk_delay=0.1))
        server = start(tmp_path, {"gateways": {"chat": chat_gateway(up.base_url)}})
        try:
            with httpx.stream(
                "POST", server.base_url + "/chat/completions", json=stream_body(), timeout=10
            ) as resp:
                for piece in resp.iter_text():
                    if "w1" in piece:
                        break
                closed_at = time.monotonic()
            assert up.wait_for(lambda u: bool(u.closed_early()), timeout=2)
            seen = time.monotonic() - closed_at
            assert seen < 0.1, f"the upstream saw the close after {seen * 1000:.0f} ms"
            deployment = httpx.get(server.url + "/health/models").json()["gateways"]["chat"]
            entry = deployment["deployments"]["d0"]
            assert entry["status"] == "healthy" and "last_error" not in entry  # cancelled
            assert entry["in_flight"] == 0
        finally:
            server.stop()


def test_a_client_disconnect_before_the_answer_cancels_the_upstream_attempt(
    tmp_path: Path,
) -> None:
    with Upstream() as up:
        up.set_default(Reply(delay=3))
        server = start(tmp_path, {"gateways": {"chat": chat_gateway(up.base_url)}})
        try:
            with pytest.raises(httpx.TimeoutException):
                httpx.post(
                    server.base_url + "/chat/completions", json={"model": "chat", **CHAT},
                    timeout=0.3,
                )  # fmt: skip
            closed_at = time.monotonic()
            assert up.wait_for(lambda u: bool(u.closed_early()), timeout=2)
            assert time.monotonic() - closed_at < 0.1
            entry = httpx.get(server.url + "/health/models").json()["gateways"]["chat"]
            assert "last_error" not in entry["deployments"]["d0"]
        finally:
            server.stop()


@pytest.mark.slow
def test_workers_share_one_port_and_drain_on_sigterm(tmp_path: Path) -> None:
    with Upstream() as up:
        server = start(
            tmp_path, {"gateways": {"chat": chat_gateway(up.base_url)}}, "--workers", "2"
        )
        pids = set()
        deadline = time.monotonic() + 10
        while len(pids) < 2 and time.monotonic() < deadline:
            with httpx.Client() as client:  # a new connection each time
                pids.add(client.get(server.url + "/health/liveness").json()["pid"])
        assert len(pids) == 2 and server.proc.pid not in pids
        chat = httpx.post(server.base_url + "/chat/completions", json={"model": "chat", **CHAT})
        assert chat.status_code == 200
        assert server.stop() == 0
        assert refused(server.port)


@pytest.mark.slow
@pytest.mark.redis
def test_workers_share_rate_limits_through_server_state(tmp_path: Path) -> None:
    redis = RedisServer(tmp_path)
    redis.start()
    try:
        with Upstream() as up:
            gateway = chat_gateway(up.base_url)
            gateway["models"][0]["rpm"] = 3
            config = {"server": {"state": redis.url}, "gateways": {"chat": gateway}}
            server = start(tmp_path, config, "--workers", "2")
            try:
                statuses: list[int] = []
                pids: set[int] = set()
                while (len(pids) < 2 or len(statuses) < 6) and len(statuses) < 40:
                    with httpx.Client() as client:  # a new connection: any worker
                        pids.add(client.get(server.url + "/health/liveness").json()["pid"])
                        statuses.append(
                            client.post(
                                server.base_url + "/chat/completions",
                                json={"model": "chat", **CHAT},
                            ).status_code
                        )
                assert len(pids) == 2
                assert statuses[:3] == [200, 200, 200] and set(statuses[3:]) == {429}
                assert up.count() == 3
                assert httpx.get(server.url + "/health/readiness").status_code == 200
            finally:
                assert server.stop() == 0
    finally:
        redis.kill()


def test_readiness_is_503_when_the_shared_state_is_unreachable(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = f"redis://127.0.0.1:{s.getsockname()[1]}/0"
    with Upstream() as up:
        config = {"server": {"state": dead}, "gateways": {"chat": chat_gateway(up.base_url)}}
        server = start(tmp_path, config)
        try:
            ready = httpx.get(server.url + "/health/readiness", timeout=5)
            assert ready.status_code == 503 and ready.json()["status"] == "state unreachable"
            # calls still work on process-local state while Redis is away
            chat = httpx.post(
                server.base_url + "/chat/completions", json={"model": "chat", **CHAT}, timeout=10
            )
            assert chat.status_code == 200
        finally:
            server.stop()
