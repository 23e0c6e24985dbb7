"""Across clouds: a gateway of Bedrock, Vertex and OpenAI deployments falls back from a
throttled Bedrock to Vertex, and from there to OpenAI, sync and async, whole and streamed, each
request signed or authorized as its cloud requires."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from msgflux import Model, ModelGateway
from msgflux.models.response import ModelStreamResponse
from tests.upstream import Reply, Upstream
from tests.upstream_cloud import isolate

BEDROCK = "anthropic.claude-3-5-haiku-20241022-v1:0"
VERTEX = "gemini-2.5-flash"
OPENAI = "gpt-4.1-nano"
THROTTLED = Reply(status=429, error="Too many requests, please wait before trying again.")
DOWN = Reply(status=503, error="The service is currently unavailable.")


@pytest.fixture
def gateway(upstream: Upstream, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> ModelGateway:
    isolate(monkeypatch, tmp_path)
    upstream.cloud.add_aws_key("AKIDFALLBACK01", "fallback-secret-key-value")
    account = upstream.cloud.add_service_account(f"{upstream.url}/token")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-fallback-openai-key")
    common: dict[str, Any] = {"base_url": upstream.url, "max_retries": 0}
    deployments = [
        {
            "model_name": "bedrock",
            "model": Model.chat_completion(
                f"bedrock/{BEDROCK}",
                aws_region_name="us-west-2",
                aws_access_key_id="AKIDFALLBACK01",
                aws_secret_access_key="fallback-secret-key-value",
                **common,
            ),
        },
        {
            "model_name": "vertex",
            "model": Model.chat_completion(
                f"vertex/{VERTEX}", vertex_credentials=account.info, **common
            ),
        },
        {
            "model_name": "openai",
            "model": Model.chat_completion(
                f"openai/{OPENAI}", base_url=upstream.base_url, max_retries=0
            ),
        },
    ]
    return ModelGateway(deployments, breaker=None)


CASES = [
    pytest.param({BEDROCK: THROTTLED}, ["bedrock", "vertex"], VERTEX, id="bedrock-throttled"),
    pytest.param(
        {BEDROCK: THROTTLED, VERTEX: DOWN},
        ["bedrock", "vertex", "openai"],
        OPENAI,
        id="bedrock-throttled-vertex-down",
    ),
]


def script(up: Upstream, failures: dict[str, Reply]) -> None:
    for model, reply in failures.items():
        up.set_default(reply, model=model)


def check(up: Upstream, tried: list[str], stream: bool) -> None:
    routes = {
        "bedrock": "converse_stream" if stream else "converse",
        "vertex": "vertex_stream_generate_content" if stream else "vertex_generate_content",
        "openai": "chat",
    }
    assert [r.route for r in up.requests] == [routes[name] for name in tried]
    assert [r.invalid for r in up.requests] == [None] * len(tried)  # signed, authorized


@pytest.mark.parametrize(("failures", "tried", "winner"), CASES)
@pytest.mark.parametrize("stream", [False, True])
def test_bedrock_throttled_falls_back_to_vertex_then_openai_sync(
    gateway: ModelGateway,
    upstream: Upstream,
    failures: dict[str, Reply],
    tried: list[str],
    winner: str,
    stream: bool,
) -> None:
    script(upstream, failures)
    answer = gateway(messages="Who answers?", stream=stream)
    if stream:
        assert isinstance(answer, ModelStreamResponse)
        assert "".join(answer) == f"Hello from {winner}"
    else:
        assert answer.data == f"Hello from {winner}"
    check(upstream, tried, stream)


@pytest.mark.parametrize(("failures", "tried", "winner"), CASES)
@pytest.mark.parametrize("stream", [False, True])
async def test_bedrock_throttled_falls_back_to_vertex_then_openai_async(
    gateway: ModelGateway,
    upstream: Upstream,
    failures: dict[str, Reply],
    tried: list[str],
    winner: str,
    stream: bool,
) -> None:
    script(upstream, failures)
    answer = await gateway.acall(messages="Who answers?", stream=stream)
    if stream:
        assert "".join([piece async for piece in answer.consume()]) == f"Hello from {winner}"
    else:
        assert answer.data == f"Hello from {winner}"
    check(upstream, tried, stream)
