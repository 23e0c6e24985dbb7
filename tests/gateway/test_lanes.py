"""Every pair of API families, both ways, streamed and not, through the library's raw path
(``gateway.complete(body, api=...)``) against a real upstream of the deployment's family.

A request in family A answered by a deployment of family B comes back in family A: natively
when A is B (the upstream's own answer), translated otherwise. The test upstream checks each
vendor request the way the vendor would, so a translation that produced something the vendor
refuses fails here.
"""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from msgflux import Model, ModelGateway
from msgflux.exceptions import ModelRouterError
from msgflux.models.gateway import RawAnswer, RawStream
from tests.upstream import Upstream

FAMILIES = ("chat", "messages", "gemini")
"""The families deployments speak (each is a client family too)."""
CLIENTS = (*FAMILIES, "responses")
"""The families requests come in: a Responses request is answered by a deployment of another
family (no deployment speaks it natively yet), translated both ways."""
PROVIDERS = {"chat": "openai_compatible", "messages": "anthropic", "gemini": "gemini"}
MODEL_IDS = {"chat": "m-chat", "messages": "m-claude", "gemini": "m-gemini"}
KEY = "sk-lanes-test-key-0042"


def body(family: str, stream: bool) -> dict[str, Any]:
    ask = "Who was Frank Rosenblatt?"
    if family == "chat":
        out: dict[str, Any] = {"model": "gw", "messages": [{"role": "user", "content": ask}]}
    elif family == "messages":
        out = {"model": "gw", "max_tokens": 64, "messages": [{"role": "user", "content": ask}]}
    elif family == "responses":
        out = {"model": "gw", "input": ask, "max_output_tokens": 64}
    else:
        out = {"model": "gw", "contents": [{"role": "user", "parts": [{"text": ask}]}]}
    if stream:
        out["stream"] = True
    return out


def gateway(up: Upstream, target: str, **options: Any) -> ModelGateway:
    base = up.base_url if target == "chat" else up.url
    model = Model.chat_completion(
        f"{PROVIDERS[target]}/{MODEL_IDS[target]}", base_url=base, api_key=KEY
    )
    return ModelGateway([{"model_name": target, "model": model}], **options)


def text_of(family: str, answer: dict[str, Any]) -> str:
    if family == "chat":
        return str(answer["choices"][0]["message"]["content"])
    if family == "messages":
        assert answer["type"] == "message" and answer["role"] == "assistant"
        return "".join(b["text"] for b in answer["content"] if b["type"] == "text")
    if family == "responses":
        assert answer["object"] == "response" and answer["status"] == "completed"
        return "".join(
            part["text"]
            for item in answer["output"]
            if item["type"] == "message"
            for part in item["content"]
            if part["type"] == "output_text"
        )
    return "".join(p.get("text", "") for p in answer["candidates"][0]["content"]["parts"])


def events(raw: bytes) -> list[tuple[str | None, Any]]:
    out: list[tuple[str | None, Any]] = []
    for block in raw.replace(b"\r\n", b"\n").split(b"\n\n"):
        name, data = None, None
        for line in block.split(b"\n"):
            if line.startswith(b"event: "):
                name = line[7:].decode()
            elif line.startswith(b"data: "):
                data = line[6:]
        if data is not None:
            out.append((name, None if data == b"[DONE]" else orjson.loads(data)))
    return out


def streamed_text(family: str, raw: bytes) -> str:
    parsed = events(raw)
    if family == "chat":
        assert parsed[-1] == (None, None)  # data: [DONE]
        return "".join(
            c["choices"][0]["delta"].get("content") or "" for _, c in parsed[:-1] if c["choices"]
        )
    if family == "messages":
        names = [n for n, _ in parsed]
        assert names[0] == "message_start" and names[-1] == "message_stop"
        assert all(data["type"] == name for name, data in parsed)
        return "".join(
            d["delta"]["text"]
            for n, d in parsed
            if n == "content_block_delta" and d["delta"]["type"] == "text_delta"
        )
    if family == "responses":
        names = [n for n, _ in parsed]
        assert names[:2] == ["response.created", "response.in_progress"]
        assert names[-1] == "response.completed"
        assert [d["sequence_number"] for _, d in parsed] == list(range(len(parsed)))
        assert all(data["type"] == name for name, data in parsed)
        text = "".join(d["delta"] for n, d in parsed if n == "response.output_text.delta")
        assert text_of(family, parsed[-1][1]["response"]) == text
        return text
    assert parsed[-1][1]["candidates"][0]["finishReason"]
    return "".join(
        p.get("text", "")
        for _, d in parsed
        for c in d.get("candidates", ())
        for p in c.get("content", {}).get("parts", ())
    )


@pytest.mark.parametrize("target", FAMILIES)
@pytest.mark.parametrize("client", CLIENTS)
def test_a_whole_answer_comes_back_in_the_clients_family(
    upstream: Upstream, client: str, target: str
) -> None:
    gw = gateway(upstream, target)
    answer = gw.complete(body(client, False), api=client)
    assert isinstance(answer, RawAnswer)
    assert answer.native is (client == target)
    assert text_of(client, answer.body) == f"Hello from {MODEL_IDS[target]}"
    assert text_of(client, orjson.loads(answer.json("gw"))) == f"Hello from {MODEL_IDS[target]}"
    [rec] = upstream.requests
    assert rec.invalid is None, rec.invalid
    assert answer.record is not None and answer.record.output_tokens


@pytest.mark.parametrize("target", FAMILIES)
@pytest.mark.parametrize("client", CLIENTS)
async def test_a_stream_comes_back_in_the_clients_family(
    upstream: Upstream, client: str, target: str
) -> None:
    gw = gateway(upstream, target)
    stream = await gw.acomplete(body(client, True), api=client)
    assert isinstance(stream, RawStream)
    assert stream.native is (client == target)
    raw = b"".join([part async for part in stream.sse("gw")])
    assert streamed_text(client, raw) == f"Hello from {MODEL_IDS[target]}"
    [rec] = upstream.requests
    assert rec.invalid is None, rec.invalid and rec.stream
    assert stream.record is not None and stream.record.output_tokens


@pytest.mark.parametrize("client", CLIENTS)
def test_a_sync_stream_comes_back_in_the_clients_family(upstream: Upstream, client: str) -> None:
    target = "messages" if client == "chat" else "chat"
    stream = gateway(upstream, target).complete(body(client, True), api=client)
    assert isinstance(stream, RawStream)
    raw = b"".join(stream.sse_sync("gw"))
    assert streamed_text(client, raw) == f"Hello from {MODEL_IDS[target]}"


CODEX = {
    "model": "gw",
    "instructions": "You are Codex.",
    "input": [
        {
            "type": "message",
            "role": "developer",
            "content": [{"type": "input_text", "text": "<permissions>read-only</permissions>"}],
        },
        {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "ls?"}]},
        {
            "type": "reasoning",
            "id": "rs_1",
            "summary": [{"type": "summary_text", "text": "Run ls."}],
            "encrypted_content": "gAAAA",
        },
        {"type": "function_call", "call_id": "c1", "name": "shell", "arguments": '{"cmd":"ls"}'},
        {"type": "function_call_output", "call_id": "c1", "output": "a.txt"},
        {
            "type": "message",
            "role": "assistant",
            "phase": "final_answer",
            "content": [{"type": "output_text", "text": "One file."}],
        },
        {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "Thanks"}]},
    ],
    "tools": [
        {
            "type": "function",
            "name": "shell",
            "description": "Runs a command.",
            "strict": False,
            "parameters": {"type": "object", "properties": {"cmd": {"type": "string"}}},
        },
        {
            "type": "namespace",
            "name": "mcp__github",
            "description": "GitHub.",
            "tools": [
                {
                    "type": "function",
                    "name": "create_issue",
                    "parameters": {"type": "object", "properties": {}},
                }
            ],
        },
        {"type": "web_search"},
    ],
    "tool_choice": "auto",
    "parallel_tool_calls": False,
    "reasoning": {"effort": "medium", "summary": "auto"},
    "store": False,
    "include": ["reasoning.encrypted_content"],
    "prompt_cache_key": "conversation-1",
}


@pytest.mark.parametrize("target", FAMILIES)
def test_a_codex_request_is_answered_by_every_family(upstream: Upstream, target: str) -> None:
    """Codex CLI's request (developer messages, a namespace of MCP functions, web search,
    encrypted reasoning, summaries asked for) answered by a deployment of each family: the
    upstream accepts the translation, and the hints are dropped and named. Codex promises
    one tool call at most (``parallel_tool_calls: false``), which Gemini cannot keep: the
    policy refuses it unless the gateway says otherwise."""
    gw = gateway(upstream, target)
    if target == "gemini":
        with pytest.raises(ModelRouterError, match="parallel_tool_calls"):
            gw.complete(CODEX, api="responses")
        gw = gateway(upstream, target, translation={"parallel_tool_calls": "drop"})
    answer = gw.complete(CODEX, api="responses")
    assert isinstance(answer, RawAnswer) and not answer.native
    assert text_of("responses", answer.body) == f"Hello from {MODEL_IDS[target]}"
    [rec] = upstream.requests
    assert rec.invalid is None, rec.invalid
    assert {"web_search", "encrypted_content", "reasoning.summary", "include"} <= set(
        answer.dropped
    )
    assert answer.body["tools"] == CODEX["tools"] and answer.body["store"] is False
