"""The response cache across API families and lanes (``gateway.complete(body, api=...)``): a
stream that missed fills the cache once it finished, and a hit replays the answer as the
client's family's own events, each well-formed, the usage included; the same request's whole
answer hits the same entry. Each client family against a deployment of each family (native
when they match, translated otherwise), and a Responses request on a native Responses lane.
"""

from __future__ import annotations

from typing import Any

import pytest

from msgflux import Model, ModelGateway
from msgflux.models.gateway import RawStream
from tests.gateway.test_lanes import (
    CLIENTS,
    FAMILIES,
    KEY,
    MODEL_IDS,
    body,
    events,
    gateway,
    streamed_text,
    text_of,
)
from tests.upstream import Reply, ToolCallSpec, Upstream

USAGE = {
    "chat": {"prompt_tokens": 7, "completion_tokens": 3, "total_tokens": 10},
    "messages": {"input_tokens": 7, "output_tokens": 3},
    "gemini": {"promptTokenCount": 7, "candidatesTokenCount": 3, "totalTokenCount": 10},
}


def asked(client: str, stream: bool) -> dict[str, Any]:
    out = body(client, stream)
    if client == "gemini":
        out["generationConfig"] = {"temperature": 0}
    else:
        out["temperature"] = 0
    if client == "chat" and stream:
        out["stream_options"] = {"include_usage": True}
    return out


def output_tokens(client: str, raw: bytes) -> int:
    """The output tokens the stream's last usage says."""
    found = 0
    for _, data in events(raw):
        if not isinstance(data, dict):
            continue
        usage = data.get("usage") or data.get("usageMetadata")
        if client == "responses" and isinstance(data.get("response"), dict):
            usage = data["response"].get("usage") or usage
        if isinstance(usage, dict):
            found = usage.get("output_tokens") or usage.get("completion_tokens") or found
            found = usage.get("candidatesTokenCount") or found
    return int(found)


async def fill_then_replay(gw: ModelGateway, up: Upstream, client: str) -> str:
    first = await gw.acomplete(asked(client, True), api=client)
    assert isinstance(first, RawStream) and first.cache == "miss"
    missed = b"".join([part async for part in first.sse("gw")])
    hit = await gw.acomplete(asked(client, True), api=client)
    assert isinstance(hit, RawStream) and hit.cache == "hit"
    replayed = b"".join([part async for part in hit.sse("gw")])
    text = streamed_text(client, replayed)  # checks the family's events are well-formed
    assert text == streamed_text(client, missed)
    assert output_tokens(client, replayed) == 3
    whole = await gw.acomplete(asked(client, False), api=client)
    assert whole.cache == "hit" and text_of(client, whole.body) == text
    assert up.count() == 1
    return text


@pytest.mark.parametrize("target", FAMILIES)
@pytest.mark.parametrize("client", CLIENTS)
async def test_a_stream_is_replayed_in_the_clients_family(
    upstream: Upstream, client: str, target: str
) -> None:
    upstream.set_default(Reply(usage=USAGE[target]))
    gw = gateway(upstream, target, cache=True)
    assert await fill_then_replay(gw, upstream, client) == f"Hello from {MODEL_IDS[target]}"


async def test_a_native_responses_stream_is_replayed(upstream: Upstream) -> None:
    model = Model.chat_completion("openai/m-resp", base_url=upstream.base_url, api_key=KEY)
    gw = ModelGateway([{"model_name": "oa", "model": model}], cache=True)
    text = await fill_then_replay(gw, upstream, "responses")
    assert text == "Hello from m-resp"
    assert upstream.requests[0].route == "responses"  # the native lane filled it


async def test_a_stream_carrying_what_a_replay_would_lose_is_not_cached(upstream: Upstream) -> None:
    # Gemini's thought signature rides on the function call; a replay without it could make
    # Gemini refuse the client's next turn, so such a stream is answered but never kept.
    call = ToolCallSpec("get_weather", {"city": "Paris"})
    upstream.set_default(Reply(tool_calls=[call], thought_signature="c2lnbmVk"))
    gw = gateway(upstream, "gemini", cache=True)
    for _ in range(2):
        stream = await gw.acomplete(asked("chat", True), api="chat")
        assert isinstance(stream, RawStream) and stream.cache == "miss"
        relayed = b"".join([part async for part in stream.sse("gw")])
        assert b"c2lnbmVk" in relayed
    assert upstream.count() == 2
