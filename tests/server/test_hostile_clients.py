"""Hostile clients against a real ``msgflux serve``: the work a request can cause is
proportional to what its key may do, a caller's mistake is a 400 that blames no deployment,
and no secret an upstream echoes reaches a client. Slow and silent clients are in
``test_http1.py``."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx2 as httpx
import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.server.harness import SERVER_KEY, UPSTREAM_KEY, Served, chat_gateway, start
from tests.upstream import Reply, Upstream

CHAT_ONLY = "sk-test-chat-only-key-000001"
OPS = "sk-test-ops-key-000000000001"


class Env:
    def __init__(self, server: Served, up: Upstream) -> None:
        self.server = server
        self.up = up

    def post(self, path: str, key: str = SERVER_KEY, **kwargs: Any) -> httpx.Response:
        headers = {"authorization": f"Bearer {key}", **kwargs.pop("headers", {})}
        return httpx.post(self.server.base_url + path, headers=headers, timeout=30, **kwargs)

    def attempts(self) -> float:
        resp = httpx.get(self.server.url + "/metrics", headers={"authorization": f"Bearer {OPS}"})
        total = 0.0
        for family in text_string_to_metric_families(resp.text):
            if family.name == "msgflux_gateway_attempts":
                total += sum(s.value for s in family.samples if s.name.endswith("_total"))
        return total


def native(model: str, base_url: str) -> dict[str, Any]:
    return {"model_name": "up", "model": model, "base_url": base_url, "api_key": "${UPSTREAM_KEY}"}


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    with Upstream() as up:
        stt = {
            "type": "speech_to_text",
            "models": [
                {
                    "model_name": "whisper",
                    "model": "openai_compatible/whisper-1",
                    "base_url": up.base_url,
                    "api_key": "${UPSTREAM_KEY}",
                }
            ],
        }
        config = {
            "server": {
                "keys": [
                    {"name": "all", "key": "${CLIENT_KEY}", "models": "*"},
                    {"name": "chat-only", "key": CHAT_ONLY, "models": ["chat"]},
                    {"name": "ops", "key": OPS, "models": "*", "admin": True},
                ]
            },
            "gateways": {
                "chat": chat_gateway(up.base_url),
                "stt": stt,
                "claude": {"models": [native("anthropic/claude-x", up.url)]},
                "gpt": {"models": [native("openai/gpt-x", up.base_url)]},
            },
        }
        server = start(tmp_path_factory.mktemp("hostile"), config)
        try:
            yield Env(server, up)
        finally:
            server.stop()


@pytest.fixture(autouse=True)
def fresh(env: Env) -> None:
    env.up.reset()


def _form(fields: int) -> tuple[bytes, str]:
    boundary = "b0undary"
    parts = [
        f'--{boundary}\r\nContent-Disposition: form-data; name="f{i}"\r\n\r\nx\r\n'
        for i in range(fields)
    ]
    body = "".join(parts) + f"--{boundary}--\r\n"
    return body.encode(), f"multipart/form-data; boundary={boundary}"


def _good_client_latencies(env: Env, stop: threading.Event) -> list[float]:
    out: list[float] = []
    while not stop.is_set():
        started = time.perf_counter()
        resp = env.post(
            "/chat/completions",
            json={"model": "chat", "messages": [{"role": "user", "content": "hi"}]},
        )
        assert resp.status_code == 200
        out.append(time.perf_counter() - started)
    return out


# -- work proportional to what the key may do ---------------------------------------------------
def test_a_key_without_a_speech_gateway_is_refused_before_its_body_is_read(env: Env) -> None:
    body, ctype = _form(40_000)  # 2.7 MB of tiny fields
    started = time.monotonic()
    resp = env.post(
        "/audio/transcriptions", key=CHAT_ONLY, content=body, headers={"content-type": ctype}
    )
    assert resp.status_code == 403 and "speech_to_text" in resp.json()["error"]["message"]
    assert time.monotonic() - started < 1.0


def test_a_flood_of_form_fields_is_a_413_at_once_and_never_stalls_anyone(env: Env) -> None:
    body, ctype = _form(200_000)
    stop = threading.Event()
    latencies: list[float] = []
    good = threading.Thread(target=lambda: latencies.extend(_good_client_latencies(env, stop)))
    good.start()
    try:
        started = time.monotonic()
        resp = env.post("/audio/transcriptions", content=body, headers={"content-type": ctype})
        took = time.monotonic() - started
    finally:
        stop.set()
        good.join()
    assert resp.status_code == 413 and resp.json()["error"]["code"] == "too_many_parts"
    assert took < 2.0
    assert latencies and max(latencies) < 0.5  # the old parser stalled everyone 5-26 s
    assert env.up.count("transcriptions") == 0


def test_a_proper_transcription_form_still_works(env: Env) -> None:
    boundary = "xyz"
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="model"\r\n\r\nstt\r\n'
            f"--{boundary}\r\nContent-Disposition: form-data; "
            f'name="file"; filename="a \\"b\\".wav"\r\n'
            f"Content-Type: audio/wav\r\n\r\n"
        ).encode()
        + b"RIFF\x00\x01\r\n--not-the-boundary"
        + f"\r\n--{boundary}--\r\n".encode()
    )
    resp = env.post(
        "/audio/transcriptions",
        content=body,
        headers={"content-type": f"multipart/form-data; boundary={boundary}"},
    )
    assert resp.status_code == 200, resp.text
    assert env.up.last.route == "transcriptions"


@pytest.mark.parametrize(
    "body",
    [
        b'--b\r\nContent-Disposition: form-data; name="file"\r\n\r\nunterminated',
        b"--b\r\nno-blank-line-after-headers",
        b"no boundary at all",
    ],
)
def test_a_malformed_form_is_a_400(env: Env, body: bytes) -> None:
    resp = env.post(
        "/audio/transcriptions",
        content=body,
        headers={"content-type": "multipart/form-data; boundary=b"},
    )
    assert resp.status_code == 400 and resp.json()["error"]["code"] == "invalid_multipart"


def test_no_gateway_of_the_endpoints_kind_is_a_404_before_the_body(env: Env) -> None:
    resp = env.post("/images/generations", content=b"x" * 1_000_000)
    assert resp.status_code == 404 and "text_to_image" in resp.json()["error"]["message"]


# -- caller errors stay caller errors -----------------------------------------------------------
@pytest.mark.parametrize("depth", [300, 1000])
def test_deep_json_is_a_400_that_blames_no_deployment(env: Env, depth: int) -> None:
    before = env.attempts()
    nested = "[" * depth + "]" * depth
    head = '{"model":"chat","messages":[{"role":"user","content":"hi"}],"metadata":{"x":'
    body = head + nested + "}}"
    started = time.monotonic()
    resp = env.post("/chat/completions", content=body.encode())
    assert resp.status_code == 400, resp.text
    assert "nest" in resp.json()["error"]["message"]
    assert time.monotonic() - started < 1.0
    assert env.up.count() == 0 and env.attempts() == before
    env.post(
        "/chat/completions", json={"model": "chat", "messages": [{"role": "user", "content": "hi"}]}
    )
    assert env.attempts() == before + 1  # what the metric counts when a deployment is called


# -- secrets an upstream echoes ------------------------------------------------------------------
HI = [{"role": "user", "content": "hi"}]
LANES = {  # path, body, the family's request-id header
    "chat": ("/chat/completions", {"model": "chat", "messages": HI}, "x-request-id"),
    "messages": ("/messages", {"model": "claude", "max_tokens": 9, "messages": HI}, "request-id"),
    "responses": ("/responses", {"model": "gpt", "input": "hi"}, "x-request-id"),
}


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("lane", sorted(LANES))
def test_an_upstream_echoing_its_key_in_a_header_never_shows_it(
    env: Env, lane: str, stream: bool
) -> None:
    path, body, id_header = LANES[lane]
    echo = {
        id_header: f"req-{UPSTREAM_KEY}",
        "x-ratelimit-remaining": "9",
        "x-secret-thing": UPSTREAM_KEY,
    }
    env.up.script(Reply(headers=echo))
    resp = env.post(path, json={**body, "stream": stream})
    assert resp.status_code == 200
    text = "\n".join(f"{k}: {v}" for k, v in resp.headers.items()) + resp.text
    assert UPSTREAM_KEY not in text
    assert resp.headers[id_header] == "req-***"
    assert resp.headers["x-msgflux-upstream-request-id"] == "req-***"
    assert "x-secret-thing" not in resp.headers and "x-ratelimit-remaining" not in resp.headers


def test_an_upstream_header_with_a_line_break_never_splits_the_answer(env: Env) -> None:
    env.up.script(Reply(headers={"x-request-id": "abc\nset-cookie: stolen=1"}))
    resp = env.post(
        "/chat/completions", json={"model": "chat", "messages": [{"role": "user", "content": "hi"}]}
    )
    assert resp.status_code in (200, 502)
    assert "set-cookie" not in resp.headers
    assert orjson.loads(resp.content)
