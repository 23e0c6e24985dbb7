"""The scriptable upstream behaves as documented (other suites build on it)."""

from __future__ import annotations

import socket

import aiohttp
import orjson
import pytest
import urllib3

from tests.upstream import Reply, Upstream, closed_port_url

CHAT = {"messages": [{"role": "user", "content": "hi there"}]}


def post(up: Upstream, path: str = "/chat/completions", **body: object) -> urllib3.BaseHTTPResponse:
    return urllib3.request(
        "POST", up.base_url + path, body=orjson.dumps({**CHAT, **body}), retries=False
    )


def test_replies_come_from_the_most_specific_queue_then_the_default(upstream: Upstream) -> None:
    upstream.script([Reply(status=500), Reply(status=502)])
    upstream.script(Reply(status=429), model="b")
    upstream.script(Reply(status=404), route="embeddings")
    upstream.script(Reply(status=409), route="chat", model="b")
    assert post(upstream, model="b").status == 409
    assert post(upstream, model="b").status == 429
    assert post(upstream, model="a").status == 500
    assert post(upstream, "/embeddings", model="a", input="x").status == 404
    assert post(upstream, model="b").status == 502
    assert post(upstream, model="b").status == 200
    assert upstream.pending() == 0


def test_set_default_changes_what_follows_the_queue(upstream: Upstream) -> None:
    upstream.set_default(Reply(status=503))
    upstream.set_default(Reply(text="ok"), model="good")
    assert post(upstream, model="x").status == 503
    answer = orjson.loads(post(upstream, model="good").data)
    assert answer["choices"][0]["message"]["content"] == "ok"
    upstream.set_default(None)
    assert post(upstream, model="x").status == 200


def test_requests_are_counted_and_recorded(upstream: Upstream) -> None:
    post(upstream, model="a")
    post(upstream, "/embeddings", model="b", input=["x"])
    assert upstream.count() == 2
    assert upstream.count("chat") == 1
    assert upstream.count(model="b") == 1
    first = upstream.requests[0]
    assert (first.route, first.model, first.stream, first.finished) == ("chat", "a", False, True)
    assert first.json["messages"] == CHAT["messages"]
    assert upstream.last.route == "embeddings"
    upstream.reset()
    assert upstream.count() == 0


def test_error_replies_carry_openai_error_bodies_and_headers(upstream: Upstream) -> None:
    upstream.script(
        Reply(
            status=429, error="slow down", retry_after=2, retry_after_ms=2000, headers={"x-a": "1"}
        )
    )
    resp = post(upstream)
    assert resp.status == 429
    assert orjson.loads(resp.data)["error"]["message"] == "slow down"
    assert resp.headers["retry-after"] == "2"
    assert resp.headers["retry-after-ms"] == "2000"
    assert resp.headers["x-a"] == "1"
    assert resp.headers["x-request-id"] == "req_1"


def test_unknown_route_is_404_and_unknown_route_names_are_rejected(upstream: Upstream) -> None:
    assert urllib3.request("GET", upstream.url + "/nope", retries=False).status == 404
    with pytest.raises(ValueError, match="routes"):
        upstream.script(Reply(), route="chat_completions")
    with pytest.raises(TypeError):
        upstream.script([{"status": 500}])  # type: ignore[list-item]


def test_models_route_lists_a_model(upstream: Upstream) -> None:
    resp = urllib3.request("GET", upstream.base_url + "/models", retries=False)
    assert orjson.loads(resp.data)["data"][0]["id"] == "test-model"


async def test_server_notices_a_client_that_hangs_up_early(upstream: Upstream) -> None:
    upstream.script(Reply(delay=2.0))
    async with aiohttp.ClientSession() as session:
        with pytest.raises(TimeoutError):
            await session.post(
                upstream.base_url + "/chat/completions",
                data=orjson.dumps(CHAT),
                timeout=aiohttp.ClientTimeout(total=0.05),
            )
    assert await upstream.await_for(lambda up: len(up.closed_early()) == 1)
    record = upstream.closed_early("chat")[0]
    assert record.client_closed and not record.finished and not record.server_dropped


def test_server_drops_are_not_reported_as_client_hang_ups(upstream: Upstream) -> None:
    upstream.script(Reply(drop="before_headers"))
    with pytest.raises(urllib3.exceptions.ProtocolError):
        post(upstream)
    assert upstream.wait_for(lambda up: up.requests[0].server_dropped)
    assert upstream.closed_early() == []


def test_stream_sends_role_content_finish_usage_and_done(upstream: Upstream) -> None:
    resp = post(upstream, stream=True, stream_options={"include_usage": True}, model="m")
    lines = [line for line in resp.data.decode().split("\n\n") if line]
    assert lines[-1] == "data: [DONE]"
    events = [orjson.loads(line[len("data: ") :]) for line in lines[:-1]]
    assert events[0]["choices"][0]["delta"]["role"] == "assistant"
    assert "".join(e["choices"][0]["delta"].get("content", "") for e in events[:-1]) == (
        "Hello from m"
    )
    assert events[-2]["choices"][0]["finish_reason"] == "stop"
    assert events[-1]["usage"]["completion_tokens"] == 3


def test_closed_port_url_refuses_connections() -> None:
    url = closed_port_url()
    port = int(url.rsplit(":", 1)[1].split("/")[0])
    with pytest.raises(ConnectionRefusedError), socket.create_connection(("127.0.0.1", port)):
        pass


def test_upstream_can_be_started_and_stopped_as_a_context_manager() -> None:
    with Upstream() as up:
        assert post(up).status == 200
        base = up.base_url
    assert base.startswith("http://127.0.0.1:")
