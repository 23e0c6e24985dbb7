"""Streaming through the gateway: commit on the first chunk, interruption, continuation."""

from __future__ import annotations

from typing import Any

import pytest

from msgflux.exceptions import APIConnectionError, ModelRouterError, StreamInterruptedError
from msgflux.models.gateway import ModelGateway
from msgflux.models.response import ModelStreamResponse
from tests.fakes import Scripted

CUT = APIConnectionError("connection reset mid-stream")


async def collect(gateway: ModelGateway, mode: str, **kwargs: Any) -> tuple[list[Any], Any]:
    if mode == "sync":
        resp = gateway(stream=True, **kwargs)
        return list(resp), resp
    resp = await gateway.acall(stream=True, **kwargs)
    return [c async for c in resp.consume()], resp


MODES = pytest.mark.parametrize("mode", ["sync", "async"])


def gw(*models: Scripted, **options: Any) -> ModelGateway:
    return ModelGateway([{"model_name": m.model_id, "model": m} for m in models], **options)


@MODES
async def test_stream_answers_from_the_first_deployment(mode: str) -> None:
    a = Scripted("a", chunks=["Hel", "lo"])
    chunks, resp = await collect(gw(a, Scripted("b", chunks=["no"])), mode, messages="hi")
    assert chunks == ["Hel", "lo"]
    assert isinstance(resp, ModelStreamResponse)
    assert resp.response_type == "text_generation"
    assert resp.metadata.gateway["model_name"] == "a"


@MODES
async def test_error_before_first_chunk_falls_back(mode: str) -> None:
    a = Scripted("a", chunks=[CUT])
    b = Scripted("b", chunks=["from ", "b"])
    chunks, resp = await collect(gw(a, b), mode, messages="hi")
    assert chunks == ["from ", "b"]
    assert resp.metadata.gateway["fallbacks"] == ["a"]


@MODES
async def test_error_raised_by_the_call_itself_falls_back(mode: str) -> None:
    a = Scripted("a", [CUT], chunks=["never"])
    chunks, _ = await collect(gw(a, Scripted("b", chunks=["ok"])), mode, messages="hi")
    assert chunks == ["ok"]


@MODES
async def test_error_after_first_chunk_raises_stream_interrupted_with_partial(mode: str) -> None:
    a = Scripted("a", chunks=["The answer ", "is ", CUT])
    b = Scripted("b", chunks=["unused"])
    got: list[str] = []
    with pytest.raises(StreamInterruptedError) as info:
        if mode == "sync":
            for chunk in gw(a, b)(messages="hi", stream=True):
                got.append(chunk)
        else:
            async for chunk in (await gw(a, b).acall(messages="hi", stream=True)).consume():
                got.append(chunk)
    assert got == ["The answer ", "is "]
    assert info.value.partial == "The answer is "
    assert info.value.model_name == "a"
    assert info.value.cause is CUT
    assert b.calls == []


@MODES
async def test_mid_stream_continue_asks_the_next_deployment_with_the_partial_as_prefill(
    mode: str,
) -> None:
    a = Scripted("a", chunks=["The answer ", CUT])
    b = Scripted("b", chunks=["is 42."])
    gateway = gw(a, b, mid_stream="continue")
    chunks, resp = await collect(gateway, mode, messages="hi", prefilling="Sure. ")
    assert chunks == ["The answer ", "is 42."]
    assert b.calls[0]["prefilling"] == "Sure. The answer "
    assert b.calls[0]["messages"] == "hi"
    record = resp.metadata.gateway
    assert record["model_name"] == "b" and record["fallbacks"] == ["a"]
    assert [h["error"] for h in record["history"]] == ["APIConnectionError", None]


@MODES
async def test_mid_stream_continue_with_nobody_left_raises_interrupted(mode: str) -> None:
    a = Scripted("a", chunks=["partial", CUT])
    b = Scripted("b", [CUT], chunks=["x"])
    with pytest.raises(StreamInterruptedError) as info:
        await collect(gw(a, b, mid_stream="continue"), mode, messages="hi")
    assert info.value.partial == "partial"
    assert isinstance(info.value.cause, ModelRouterError)


@MODES
async def test_empty_stream_is_a_successful_empty_answer(mode: str) -> None:
    chunks, resp = await collect(gw(Scripted("a", chunks=[]), Scripted("b")), mode, messages="x")
    assert chunks == []
    assert resp.metadata.gateway["model_name"] == "a"


async def test_sync_stream_consumed_with_async_consume() -> None:
    resp = gw(Scripted("a", chunks=["x", "y"]), Scripted("b"))(messages="hi", stream=True)
    assert [c async for c in resp.consume()] == ["x", "y"]


async def test_async_stream_cannot_be_iterated_synchronously() -> None:
    resp = await gw(Scripted("a", chunks=["x"]), Scripted("b")).acall(messages="hi", stream=True)
    with pytest.raises(TypeError, match="consume"):
        list(resp)
    await resp.aclose()
