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
from msgflux.models.gateway import RawAnswer, RawStream
from tests.upstream import Upstream

FAMILIES = ("chat", "messages", "gemini")
PROVIDERS = {"chat": "openai_compatible", "messages": "anthropic", "gemini": "gemini"}
MODEL_IDS = {"chat": "m-chat", "messages": "m-claude", "gemini": "m-gemini"}
KEY = "sk-lanes-test-key-0042"


def body(family: str, stream: bool) -> dict[str, Any]:
    ask = "Who was Frank Rosenblatt?"
    if family == "chat":
        out: dict[str, Any] = {"model": "gw", "messages": [{"role": "user", "content": ask}]}
    elif family == "messages":
        out = {"model": "gw", "max_tokens": 64, "messages": [{"role": "user", "content": ask}]}
    else:
        out = {"model": "gw", "contents": [{"role": "user", "parts": [{"text": ask}]}]}
    if stream:
        out["stream"] = True
    return out


def gateway(up: Upstream, target: str) -> ModelGateway:
    base = up.base_url if target == "chat" else up.url
    model = Model.chat_completion(
        f"{PROVIDERS[target]}/{MODEL_IDS[target]}", base_url=base, api_key=KEY
    )
    return ModelGateway([{"model_name": target, "model": model}])


def text_of(family: str, answer: dict[str, Any]) -> str:
    if family == "chat":
        return str(answer["choices"][0]["message"]["content"])
    if family == "messages":
        assert answer["type"] == "message" and answer["role"] == "assistant"
        return "".join(b["text"] for b in answer["content"] if b["type"] == "text")
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
    assert parsed[-1][1]["candidates"][0]["finishReason"]
    return "".join(
        p.get("text", "")
        for _, d in parsed
        for c in d.get("candidates", ())
        for p in c.get("content", {}).get("parts", ())
    )


@pytest.mark.parametrize("target", FAMILIES)
@pytest.mark.parametrize("client", FAMILIES)
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
@pytest.mark.parametrize("client", FAMILIES)
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


@pytest.mark.parametrize("client", FAMILIES)
def test_a_sync_stream_comes_back_in_the_clients_family(upstream: Upstream, client: str) -> None:
    target = "messages" if client == "chat" else "chat"
    stream = gateway(upstream, target).complete(body(client, True), api=client)
    assert isinstance(stream, RawStream)
    raw = b"".join(stream.sse_sync("gw"))
    assert streamed_text(client, raw) == f"Hello from {MODEL_IDS[target]}"
