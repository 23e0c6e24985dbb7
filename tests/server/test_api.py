"""``msgflux serve`` over HTTP: endpoints, fidelity, headers, errors, health.

One real server (a subprocess on a free port) for the module, in front of two scriptable
upstreams; each test resets the upstreams' scripts and records.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx2 as httpx
import orjson
import pytest

from tests.server.harness import UPSTREAM_KEY, Served, chat_gateway, start, typed_gateway
from tests.upstream import Reply, Upstream

CHAT = {"messages": [{"role": "user", "content": "Who was Frank Rosenblatt?"}]}


class Env:
    def __init__(self, server: Served, a: Upstream, b: Upstream) -> None:
        self.server = server
        self.a = a
        self.b = b
        self.http = server.client()

    def post(self, path: str, body: Any, **kwargs: Any) -> httpx.Response:
        return self.http.post(path, json=body, **kwargs)

    def health(self) -> dict[str, Any]:
        return self.http.get("/health/models").json()  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    a, b = Upstream().start(), Upstream().start()
    config = {
        "server": {"max_body_bytes": 200_000},
        "gateways": {
            "chat": chat_gateway(a.base_url, b.base_url, breaker=False),
            "solo": chat_gateway(a.base_url, breaker=False),
            "slow": chat_gateway(a.base_url, breaker=False, deadline=0.3),
            "limited": {
                "models": [
                    {
                        "model_name": "one-a-minute",
                        "model": "openai_compatible/m0",
                        "base_url": a.base_url,
                        "rpm": 1,
                    }
                ]
            },
            "embed": typed_gateway("text_embedder", a.base_url),
            "moderate": typed_gateway("moderation", a.base_url),
            "speak": typed_gateway("text_to_speech", a.base_url),
            "transcribe": typed_gateway("speech_to_text", a.base_url),
            "draw": typed_gateway("text_to_image", a.base_url),
        },
    }
    server = start(tmp_path_factory.mktemp("api"), config)
    environment = Env(server, a, b)
    try:
        yield environment
    finally:
        environment.http.close()
        server.stop()
        a.stop()
        b.stop()


@pytest.fixture(autouse=True)
def fresh(env: Env) -> Iterator[None]:
    env.a.reset()
    env.b.reset()
    yield


# -- chat: fidelity and headers -----------------------------------------------------------------
def test_chat_fields_reach_the_upstream_unchanged_except_model(env: Env) -> None:
    body = {
        "model": "chat",
        **CHAT,
        "temperature": 0.3,
        "top_p": 0.9,
        "seed": 7,
        "user": "u-1",
        "logit_bias": {"50256": -100},
        "vendor_extension": {"nested": [1, 2, 3]},
        "tools": [{"type": "function", "function": {"name": "f", "parameters": {}}}],
    }
    resp = env.post("/v1/chat/completions", body)
    assert resp.status_code == 200, resp.text
    sent = env.a.last.json
    assert sent.pop("model") == "m0"
    assert sent == {k: v for k, v in body.items() if k != "model"}
    assert env.a.last.headers["authorization"] == f"Bearer {UPSTREAM_KEY}"


def test_chat_answer_comes_back_unchanged_except_model(env: Env) -> None:
    answer = {
        "id": "chatcmpl-xyz",
        "object": "chat.completion",
        "created": 1700000000,
        "model": "m0-2025-01-01",
        "system_fingerprint": "fp_123",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "hi", "refusal": None},
                "logprobs": None,
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 5, "completion_tokens": 1, "total_tokens": 6},
        "service_tier": "default",
    }
    env.a.script(Reply(json=answer))
    resp = env.post("/v1/chat/completions", {"model": "chat", **CHAT})
    assert resp.json() == {**answer, "model": "chat"}


def test_every_answer_carries_the_msgflux_headers_and_the_upstream_request_id(env: Env) -> None:
    resp = env.post("/v1/chat/completions", {"model": "chat", **CHAT})
    assert resp.headers["x-msgflux-deployment"] == "d0"
    assert resp.headers["x-msgflux-attempts"] == "1"
    assert resp.headers["x-msgflux-fallbacks"] == ""
    assert 0 <= float(resp.headers["x-msgflux-overhead-ms"]) < 1000
    assert resp.headers["x-request-id"] == f"req_{env.a.last.index}"


def test_a_failing_primary_falls_back_and_the_headers_say_so(env: Env) -> None:
    env.a.script(Reply(status=503))
    resp = env.post("/v1/chat/completions", {"model": "chat", **CHAT})
    assert resp.status_code == 200
    assert resp.json()["choices"][0]["message"]["content"] == "Hello from m1"
    assert resp.json()["model"] == "chat"
    assert resp.headers["x-msgflux-deployment"] == "d1"
    assert resp.headers["x-msgflux-attempts"] == "2"
    assert resp.headers["x-msgflux-fallbacks"] == "d0"


# -- chat: streams ------------------------------------------------------------------------------
def events(resp: httpx.Response) -> list[Any]:
    out: list[Any] = []
    for block in resp.text.split("\n\n"):
        if block.startswith("data: "):
            data = block[len("data: ") :]
            out.append(data if data == "[DONE]" else orjson.loads(data))
    return out


def test_a_stream_relays_every_chunk_and_ends_with_done(env: Env) -> None:
    env.a.script(Reply(chunks=["Frank", " was", " a", " psychologist"]))
    resp = env.post("/v1/chat/completions", {"model": "chat", **CHAT, "stream": True})
    assert resp.status_code == 200
    assert resp.headers["content-type"] == "text/event-stream"
    assert resp.headers["x-msgflux-deployment"] == "d0"
    got = events(resp)
    assert got[-1] == "[DONE]"
    chunks = got[:-1]
    assert all(c["model"] == "chat" and c["object"] == "chat.completion.chunk" for c in chunks)
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    assert text == "Frank was a psychologist"
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"
    assert all("usage" not in c for c in chunks)  # not asked for: not sent


def test_stream_options_include_usage_passes_through(env: Env) -> None:
    body = {"model": "chat", **CHAT, "stream": True, "stream_options": {"include_usage": True}}
    resp = env.post("/v1/chat/completions", body)
    assert env.a.last.json["stream_options"] == {"include_usage": True}
    chunks = events(resp)[:-1]
    assert chunks[-1]["choices"] == []
    assert chunks[-1]["usage"]["total_tokens"] > 0


def test_a_stream_fails_over_before_its_first_chunk(env: Env) -> None:
    env.a.script(Reply(drop="after_headers"))
    resp = env.post("/v1/chat/completions", {"model": "chat", **CHAT, "stream": True})
    assert resp.headers["x-msgflux-deployment"] == "d1"
    assert resp.headers["x-msgflux-fallbacks"] == "d0"
    assert events(resp)[-1] == "[DONE]"


def test_a_stream_broken_after_its_first_chunk_ends_with_an_error_event(env: Env) -> None:
    env.a.script(Reply(chunks=["one", " two", " three"], cut_after=1))
    with env.http.stream(
        "POST", "/v1/chat/completions", json={"model": "solo", **CHAT, "stream": True}, timeout=10
    ) as resp:
        body = resp.read().decode()
    blocks = [b for b in body.split("\n\n") if b]
    assert "one" in blocks[1]
    last = orjson.loads(blocks[-1][len("data: ") :])
    assert last["error"]["code"] == "stream_interrupted"
    assert "[DONE]" not in body


# -- the other endpoints ------------------------------------------------------------------------
def test_embeddings_moderations_and_images(env: Env) -> None:
    resp = env.post("/v1/embeddings", {"model": "embed", "input": ["a", "b"], "dimensions": 4})
    assert resp.status_code == 200, resp.text
    data = resp.json()
    assert data["model"] == "embed" and len(data["data"]) == 2
    assert len(data["data"][0]["embedding"]) == 4
    assert env.a.last.json == {"model": "m0", "input": ["a", "b"], "dimensions": 4}
    mod = env.post("/v1/moderations", {"model": "moderate", "input": "hello"})
    assert mod.json()["model"] == "moderate" and mod.json()["results"][0]["flagged"] is False
    img = env.post("/v1/images/generations", {"model": "draw", "prompt": "a cat", "n": 2})
    assert [d["url"] for d in img.json()["data"]] == [
        "https://images.example/0.png",
        "https://images.example/1.png",
    ]
    assert "model" not in img.json()


def test_speech_returns_the_audio_bytes(env: Env) -> None:
    resp = env.post("/v1/audio/speech", {"model": "speak", "input": "hi", "voice": "nova"})
    assert resp.status_code == 200, resp.text
    assert resp.content == b"FAKEAUDIO:hi"
    assert resp.headers["content-type"] == "audio/mpeg"
    assert resp.headers["x-msgflux-deployment"] == "d0"
    assert env.a.last.json["voice"] == "nova"


def test_transcriptions_take_multipart_audio(env: Env) -> None:
    audio = bytes(range(256)) * 4
    resp = env.http.post(
        "/v1/audio/transcriptions",
        data={"model": "transcribe", "response_format": "verbose_json", "language": "en"},
        files={"file": ("clip.wav", audio, "audio/wav")},
    )
    assert resp.status_code == 200, resp.text
    assert resp.json()["text"] == "transcribed text"
    assert resp.json()["language"] == "english"
    sent = env.a.last.json
    assert sent["file"] == audio and sent["language"] == "en" and sent["model"] == "m0"
    text = env.http.post(
        "/v1/audio/transcriptions",
        data={"model": "transcribe", "response_format": "text"},
        files={"file": ("clip.wav", audio, "audio/wav")},
    )
    assert text.text == "transcribed text"
    assert text.headers["content-type"].startswith("text/plain")


def test_every_route_also_answers_without_the_v1_prefix(env: Env) -> None:
    assert env.post("/chat/completions", {"model": "chat", **CHAT}).status_code == 200
    assert env.post("/embeddings", {"model": "embed", "input": "x"}).status_code == 200
    assert env.http.get("/models").json()["object"] == "list"
    assert env.http.get("/models/chat").json()["id"] == "chat"


def test_models_lists_the_gateways(env: Env) -> None:
    listed = env.http.get("/v1/models").json()
    ids = [m["id"] for m in listed["data"]]
    assert ids[:2] == ["chat", "solo"] and "embed" in ids
    one = env.http.get("/v1/models/embed").json()
    assert one == {**one, "id": "embed", "object": "model", "owned_by": "msgflux"}
    missing = env.http.get("/v1/models/nope")
    assert missing.status_code == 404 and "chat" in missing.json()["error"]["message"]


def test_health_endpoints(env: Env) -> None:
    assert env.http.get("/health/liveness").json()["status"] == "alive"
    assert env.http.get("/health/readiness").json() == {"status": "ready"}
    env.a.script(Reply(status=500))
    env.post("/v1/chat/completions", {"model": "solo", **CHAT})
    report = env.health()
    solo = report["gateways"]["solo"]["deployments"]["d0"]
    assert solo["status"] == "degraded" and solo["last_error"]["type"] == "InternalServerError"
    limited = report["gateways"]["limited"]["deployments"]["one-a-minute"]
    assert limited["limits"]["rpm"] == 1 and "rpm_used" in limited
    before = env.a.count()
    env.health()
    assert env.a.count() == before  # never calls a model


# -- errors -------------------------------------------------------------------------------------
HUGE = {"model": "chat", "messages": [{"role": "user", "content": "x" * 300_000}]}
BAD_REQUESTS = [
    ("invalid json", b"{not json", 400, None),
    ("not an object", b"[1, 2]", 400, None),
    ("missing model", orjson.dumps(CHAT), 400, "model"),
    ("missing messages", orjson.dumps({"model": "chat"}), 400, "messages"),
    ("wrong type", orjson.dumps({"model": "chat", **CHAT, "temperature": "hot"}), 400,
     "temperature"),
    ("bad role", orjson.dumps({"model": "chat", "messages": [{"role": "x"}]}), 400,
     "messages[0].role"),
    ("stream not bool", orjson.dumps({"model": "chat", **CHAT, "stream": "yes"}), 400, "stream"),
    ("unknown model", orjson.dumps({"model": "nope", **CHAT}), 404, "model"),
    ("wrong endpoint", orjson.dumps({"model": "embed", **CHAT}), 400, "model"),
    ("huge body", orjson.dumps(HUGE), 413, None),
]  # fmt: skip


@pytest.mark.parametrize(
    ("why", "body", "status", "param"), BAD_REQUESTS, ids=[b[0] for b in BAD_REQUESTS]
)
def test_a_malformed_request_gets_its_4xx_and_touches_no_upstream(
    env: Env, why: str, body: bytes, status: int, param: str | None
) -> None:  # fmt: skip
    before = env.health()["gateways"]["chat"]
    resp = env.http.post(
        "/v1/chat/completions", content=body, headers={"content-type": "application/json"}
    )
    assert resp.status_code == status, resp.text
    error = resp.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["type"] == "invalid_request_error" and error["message"]
    if param is not None:
        assert error["param"] == param
    assert env.a.count() == 0 and env.b.count() == 0
    assert env.health()["gateways"]["chat"] == before  # nothing counted against a deployment


def test_an_unknown_model_lists_the_configured_names(env: Env) -> None:
    resp = env.post("/v1/chat/completions", {"model": "gpt-5", **CHAT})
    assert resp.status_code == 404
    assert resp.json()["error"]["code"] == "model_not_found"
    assert "chat, solo, slow, limited, embed" in resp.json()["error"]["message"]


def test_a_huge_body_without_content_length_is_refused_while_reading(env: Env) -> None:
    def chunks() -> Iterator[bytes]:
        yield b'{"model": "chat", "messages": [{"role": "user", "content": "'
        for _ in range(50):
            yield b"x" * 10_000
        yield b'"}]}'

    resp = env.http.post("/v1/chat/completions", content=chunks())
    assert resp.status_code == 413
    assert resp.json()["error"]["code"] == "request_too_large"
    assert env.a.count() == 0


def test_wrong_method_and_unknown_path(env: Env) -> None:
    assert env.http.get("/v1/chat/completions").status_code == 405
    resp = env.http.post("/v1/completions", json={})
    assert resp.status_code == 404 and resp.json()["error"]["code"] == "unknown_url"


def test_every_deployment_failing_is_a_502_listing_the_attempts_and_never_a_key(env: Env) -> None:
    env.a.script(Reply(status=500, error=f"internal error, your key {UPSTREAM_KEY} is fine"))
    env.b.script(Reply(status=503))
    resp = env.post("/v1/chat/completions", {"model": "chat", **CHAT})
    assert resp.status_code == 502
    message = resp.json()["error"]["message"]
    assert "d0 (openai_compatible/m0) attempt 1: InternalServerError" in message
    assert "d1 (openai_compatible/m1) attempt 1: InternalServerError" in message
    assert UPSTREAM_KEY not in resp.text and "***" in message
    assert resp.headers["x-msgflux-attempts"] == "2"
    assert UPSTREAM_KEY not in env.server.log()


def test_every_deployment_rate_limited_is_a_429_with_retry_after(env: Env) -> None:
    assert env.post("/v1/chat/completions", {"model": "limited", **CHAT}).status_code == 200
    resp = env.post("/v1/chat/completions", {"model": "limited", **CHAT})
    assert resp.status_code == 429
    assert resp.json()["error"]["type"] == "rate_limit_error"
    assert 1 <= int(resp.headers["retry-after"]) <= 60
    assert env.a.count() == 1


def test_upstream_429s_everywhere_are_a_429(env: Env) -> None:
    env.a.script(Reply(status=429, retry_after=7))
    env.b.script(Reply(status=429, retry_after=3))
    resp = env.post("/v1/chat/completions", {"model": "chat", **CHAT})
    assert resp.status_code == 429
    assert resp.headers["retry-after"] == "3"


def test_an_upstream_rejecting_the_request_is_a_400_with_its_code(env: Env) -> None:
    for up in (env.a, env.b):
        up.script(
            Reply(status=400, error="maximum context is 8k", error_code="context_length_exceeded")
        )
    resp = env.post("/v1/chat/completions", {"model": "chat", **CHAT})
    assert resp.status_code == 400
    assert resp.json()["error"]["code"] == "context_length_exceeded"


def test_the_deadline_is_a_504(env: Env) -> None:
    env.a.script(Reply(delay=2))
    resp = env.post("/v1/chat/completions", {"model": "slow", **CHAT})
    assert resp.status_code == 504
    assert resp.json()["error"]["type"] == "timeout_error"
    assert "APITimeoutError" in resp.json()["error"]["message"]
