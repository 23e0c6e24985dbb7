"""Official clients against ``msgflux serve``: the ``openai`` Python SDK (sync and async) and
the ``openai`` npm package, with client keys, behind a primary upstream that always fails
(every answer comes from the fallback deployment).
"""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx2 as httpx
import openai
import pytest
from pydantic import BaseModel

from tests.server.harness import SERVER_KEY, Served, chat_gateway, start, typed_gateway
from tests.upstream import Reply, ToolCallSpec, Upstream

NODE_DIR = Path(__file__).parent / "node"
CHAT_ONLY_KEY = "sk-chat-only-key-0002"
MESSAGES: Any = [{"role": "user", "content": "Who was Frank Rosenblatt?"}]


class Env:
    def __init__(self, server: Served, primary: Upstream, fallback: Upstream) -> None:
        self.server = server
        self.primary = primary
        self.fallback = fallback


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    primary, fallback = Upstream().start(), Upstream().start()
    config = {
        "server": {
            "keys": [
                {"name": "sdk", "key": "${CLIENT_KEY}", "models": "*"},
                {"name": "chat-only", "key": "${CHAT_ONLY_KEY}", "models": ["chat"]},
            ]
        },
        "gateways": {
            "chat": chat_gateway(primary.base_url, fallback.base_url, breaker=False),
            "embed": typed_gateway("text_embedder", fallback.base_url, "m1"),
            "limited": {
                "models": [
                    {
                        "model_name": "d1",
                        "model": "openai_compatible/m1",
                        "base_url": fallback.base_url,
                        "rpm": 1,
                    }
                ]
            },
        },
    }
    server = start(tmp_path_factory.mktemp("clients"), config, env={"CHAT_ONLY_KEY": CHAT_ONLY_KEY})
    try:
        yield Env(server, primary, fallback)
    finally:
        server.stop()
        primary.stop()
        fallback.stop()


@pytest.fixture(autouse=True)
def failing_primary(env: Env) -> Iterator[None]:
    env.primary.reset()
    env.fallback.reset()
    env.primary.set_default(Reply(status=500))
    yield


def sync_client(env: Env, key: str = SERVER_KEY) -> openai.OpenAI:
    return openai.OpenAI(base_url=env.server.base_url, api_key=key, max_retries=0)


def async_client(env: Env, key: str = SERVER_KEY) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=env.server.base_url, api_key=key, max_retries=0)


# -- Python SDK ---------------------------------------------------------------------------------
def test_sdk_chat_fails_over_and_reports_the_deployment(env: Env) -> None:
    with sync_client(env) as client:
        raw = client.chat.completions.with_raw_response.create(model="chat", messages=MESSAGES)
        completion = raw.parse()
    assert completion.choices[0].message.content == "Hello from m1"
    assert completion.model == "chat"
    assert raw.headers["x-msgflux-deployment"] == "d1"
    assert raw.headers["x-msgflux-fallbacks"] == "d0"
    assert env.primary.count() == 1 and env.fallback.count() == 1


def test_sdk_streaming_sync(env: Env) -> None:
    env.fallback.script(Reply(chunks=["Frank", " built", " the", " perceptron"]))
    with sync_client(env) as client:
        stream = client.chat.completions.create(
            model="chat", messages=MESSAGES, stream=True, stream_options={"include_usage": True}
        )
        chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "Frank built the perceptron"
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 4
    assert {c.model for c in chunks} == {"chat"}


def test_sdk_tool_calls(env: Env) -> None:
    env.fallback.script(Reply(tool_calls=[ToolCallSpec("get_weather", {"city": "Paris"})]))
    tools: Any = [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
            },
        }
    ]
    with sync_client(env) as client:
        completion = client.chat.completions.create(model="chat", messages=MESSAGES, tools=tools)
    call = completion.choices[0].message.tool_calls[0]  # type: ignore[index]
    assert call.function.name == "get_weather"  # type: ignore[union-attr]
    assert json.loads(call.function.arguments) == {"city": "Paris"}  # type: ignore[union-attr]
    assert completion.choices[0].finish_reason == "tool_calls"
    assert env.fallback.last.json["tools"] == tools


class Person(BaseModel):
    name: str
    year: int


def test_sdk_structured_output(env: Env) -> None:
    env.fallback.script(Reply(structured={"name": "Frank Rosenblatt", "year": 1928}))
    with sync_client(env) as client:
        completion = client.chat.completions.parse(
            model="chat", messages=MESSAGES, response_format=Person
        )
    assert completion.choices[0].message.parsed == Person(name="Frank Rosenblatt", year=1928)
    sent = env.fallback.last.json["response_format"]
    assert sent["type"] == "json_schema" and sent["json_schema"]["name"] == "Person"


async def test_sdk_async_chat_stream_and_embeddings(env: Env) -> None:
    async with async_client(env) as client:
        completion = await client.chat.completions.create(model="chat", messages=MESSAGES)
        assert completion.choices[0].message.content == "Hello from m1"
        stream = await client.chat.completions.create(model="chat", messages=MESSAGES, stream=True)
        text = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
        assert text == "Hello from m1"
        embeddings = await client.embeddings.create(model="embed", input=["a", "b", "c"])
        assert [d.index for d in embeddings.data] == [0, 1, 2]
        assert embeddings.model == "embed"


def test_sdk_errors_are_the_sdks_own_status_classes(env: Env) -> None:
    with sync_client(env) as client:
        cases: list[tuple[type[openai.APIStatusError], int, Any]] = [
            (openai.NotFoundError, 404, lambda: client.models.retrieve("nope")),
            (
                openai.BadRequestError,
                400,
                lambda: client.chat.completions.create(model="chat", messages=[]),
            ),
            (
                openai.AuthenticationError,
                401,
                lambda: sync_client(env, "sk-wrong-key-000").models.list(),
            ),
            (
                openai.PermissionDeniedError,
                403,
                lambda: sync_client(env, CHAT_ONLY_KEY).embeddings.create(model="embed", input="x"),
            ),
        ]
        client.chat.completions.create(model="limited", messages=MESSAGES)
        cases.append(
            (
                openai.RateLimitError,
                429,
                lambda: client.chat.completions.create(model="limited", messages=MESSAGES),
            )
        )
        for cls, status, call in cases:
            with pytest.raises(cls) as info:
                call()
            assert info.value.status_code == status
        env.fallback.set_default(Reply(status=503))
        with pytest.raises(openai.InternalServerError) as failed:
            client.chat.completions.create(model="chat", messages=MESSAGES)
        assert failed.value.status_code == 502


async def test_sdk_async_errors(env: Env) -> None:
    async with async_client(env) as client:
        with pytest.raises(openai.NotFoundError):
            await client.chat.completions.create(model="gpt-5", messages=MESSAGES)
    async with async_client(env, "sk-wrong-key-000") as bad:
        with pytest.raises(openai.AuthenticationError):
            await bad.chat.completions.create(model="chat", messages=MESSAGES)


# -- keys ---------------------------------------------------------------------------------------
def test_a_missing_or_wrong_key_is_a_401_and_touches_no_upstream(env: Env) -> None:
    url = env.server.url + "/v1/chat/completions"
    body = {"model": "chat", "messages": MESSAGES}
    assert httpx.post(url, json=body).status_code == 401
    wrong = httpx.post(url, json=body, headers={"authorization": "Bearer sk-nope-nope"})
    assert wrong.status_code == 401 and wrong.json()["error"]["code"] == "invalid_api_key"
    assert "sk-nope-nope" not in wrong.text
    assert env.primary.count() == 0 and env.fallback.count() == 0


def test_the_api_key_header_works_too(env: Env) -> None:
    resp = httpx.get(env.server.url + "/v1/models", headers={"api-key": SERVER_KEY})
    assert resp.status_code == 200


def test_a_key_lists_and_uses_only_its_gateways(env: Env) -> None:
    with sync_client(env, CHAT_ONLY_KEY) as client:
        assert [m.id for m in client.models.list()] == ["chat"]
        assert client.chat.completions.create(model="chat", messages=MESSAGES).model == "chat"
        with pytest.raises(openai.PermissionDeniedError):
            client.models.retrieve("embed")
    with sync_client(env) as everything:
        assert [m.id for m in everything.models.list()] == ["chat", "embed", "limited"]


def test_keys_never_reach_the_log(env: Env) -> None:
    with sync_client(env) as client:
        client.chat.completions.create(model="chat", messages=MESSAGES)
    log = env.server.log()
    assert SERVER_KEY not in log and CHAT_ONLY_KEY not in log


def test_health_models_needs_a_key_when_keys_are_configured(env: Env) -> None:
    assert httpx.get(env.server.url + "/health/models").status_code == 401
    limited = httpx.get(
        env.server.url + "/health/models", headers={"authorization": f"Bearer {CHAT_ONLY_KEY}"}
    )
    assert list(limited.json()["gateways"]) == ["chat"]
    assert httpx.get(env.server.url + "/health/readiness").status_code == 200  # no key needed


# -- the npm package ----------------------------------------------------------------------------
@pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed")
def test_the_openai_npm_package(env: Env) -> None:
    if not (NODE_DIR / "node_modules" / "openai").is_dir():
        pytest.fail("run `make node-deps` (npm ci --prefix tests/server/node) first")
    result = subprocess.run(
        ["node", str(NODE_DIR / "client.mjs"), env.server.base_url, SERVER_KEY],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    assert out["text"] == "Hello from m1" and out["model"] == "chat"
    assert out["deployment"] == "d1" and out["fallbacks"] == "d0"
    assert out["streamed"] == "Hello from m1" and out["streamUsage"]["total_tokens"] > 0
    assert out["embeddings"] == 2
    assert out["notFound"]["status"] == 404 and out["notFound"]["class"] == "NotFoundError"
    assert out["badRequest"]["status"] == 400 and out["badRequest"]["class"] == "BadRequestError"
    assert out["unauthorized"]["class"] == "AuthenticationError"
