"""Call wrappers: behaviour around a whole gateway call (``msgflux.models.gateway.wrappers``).

A wrapper may answer without calling the next handler (no deployment is then attempted), change
the call, or look at what comes back; wrappers compose outermost first; their per-call options
never reach a deployment. Each on both paths (msgflux's and the raw one), sync and async.
"""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from msgflux import Model, ModelGateway
from msgflux.models.gateway import RawAnswer, RawStream
from msgflux.models.gateway.wrappers import RAW, AsyncHandler, Call, Handler, Wrapper
from msgflux.models.response import ModelResponse, ModelStreamResponse
from tests.upstream import Upstream

ASK: Any = [{"role": "user", "content": "Who was Frank Rosenblatt?"}]
CANNED = {
    "id": "chatcmpl-canned",
    "object": "chat.completion",
    "created": 1,
    "model": "canned",
    "choices": [
        {
            "index": 0,
            "message": {"role": "assistant", "content": "From the wrapper."},
            "finish_reason": "stop",
        }
    ],
    "usage": {"prompt_tokens": 3, "completion_tokens": 3, "total_tokens": 6},
}


class Canned(Wrapper):
    """Answers every call itself, unless the call says ``canned=False``."""

    options = frozenset({"canned"})

    def __init__(self) -> None:
        self.seen: list[Call] = []

    def wrap(self, call: Call, next: Handler) -> Any:
        self.seen.append(call)
        if call.options.get("canned") is False:
            return next(call)
        return call.answer(CANNED, "a")

    async def awrap(self, call: Call, next: AsyncHandler) -> Any:
        self.seen.append(call)
        if call.options.get("canned") is False:
            return await next(call)
        return call.answer(CANNED, "a")


class Trace(Wrapper):
    """Notes the order it was entered and left in."""

    def __init__(self, name: str, log: list[str]) -> None:
        self.name = name
        self.log = log

    def wrap(self, call: Call, next: Handler) -> Any:
        self.log.append(f"{self.name}>")
        try:
            return next(call)
        finally:
            self.log.append(f"<{self.name}")

    async def awrap(self, call: Call, next: AsyncHandler) -> Any:
        self.log.append(f"{self.name}>")
        try:
            return await next(call)
        finally:
            self.log.append(f"<{self.name}")


class Rewrite(Wrapper):
    """Sets temperature 0 on every call (raw: the request's body; msgflux: the arguments)."""

    def wrap(self, call: Call, next: Handler) -> Any:
        if call.path == RAW:
            assert call.request is not None
            call.request = call.request.with_fields(temperature=0)
        else:
            call.kwargs["temperature"] = 0
        return next(call)


def gateway(up: Upstream, *wrappers: Wrapper) -> ModelGateway:
    model = Model.chat_completion("openai_compatible/m", base_url=up.base_url)
    return ModelGateway([{"model_name": "a", "model": model}], wrappers=list(wrappers))


def test_a_wrapper_answers_the_raw_path_without_a_deployment(upstream: Upstream) -> None:
    gw = gateway(upstream, Canned())
    answer = gw.complete({"model": "x", "messages": ASK})
    assert isinstance(answer, RawAnswer)
    assert answer.body["choices"][0]["message"]["content"] == "From the wrapper."
    assert answer.deployment == "a" and answer.attempts == []
    assert upstream.count() == 0


def test_a_wrapper_answers_in_the_requests_family(upstream: Upstream) -> None:
    gw = gateway(upstream, Canned())
    answer = gw.complete({"model": "x", "max_tokens": 9, "messages": ASK}, api="messages")
    assert isinstance(answer, RawAnswer)
    assert answer.body["type"] == "message"
    assert answer.body["content"] == [{"type": "text", "text": "From the wrapper."}]
    assert orjson.loads(answer.json("gw"))["model"] == "gw"
    assert upstream.count() == 0


async def test_a_wrapper_answers_a_stream_with_well_formed_events(upstream: Upstream) -> None:
    gw = gateway(upstream, Canned())
    stream = await gw.acomplete({"model": "x", "messages": ASK, "stream": True})
    assert isinstance(stream, RawStream)
    body = b"".join([part async for part in stream.sse("gw")])
    events = [e for e in body.split(b"\n\n") if e]
    assert events[-1] == b"data: [DONE]"
    texts = [
        c["choices"][0]["delta"].get("content")
        for c in (orjson.loads(e[6:]) for e in events[:-1])
        if c["choices"]
    ]
    assert "".join(t for t in texts if t) == "From the wrapper."
    messages = await gw.acomplete(
        {"model": "x", "max_tokens": 9, "messages": ASK, "stream": True}, api="messages"
    )
    names = [
        line[7:]
        for line in b"".join([p async for p in messages.sse("gw")]).decode().splitlines()
        if line.startswith("event: ")
    ]
    assert names[0] == "message_start" and names[-1] == "message_stop"
    assert upstream.count() == 0


def test_a_wrapper_answers_msgflux_calls(upstream: Upstream) -> None:
    gw = gateway(upstream, Canned())
    answer = gw(messages="hi")
    assert isinstance(answer, ModelResponse) and answer.consume() == "From the wrapper."
    assert answer.metadata.gateway["model_name"] == "a"
    stream = gw(messages="hi", stream=True)
    assert isinstance(stream, ModelStreamResponse)
    assert "".join(stream) == "From the wrapper."
    assert upstream.count() == 0


async def test_a_wrapper_answers_async_msgflux_calls(upstream: Upstream) -> None:
    gw = gateway(upstream, Canned())
    answer = await gw.acall(messages="hi")
    assert answer.consume() == "From the wrapper."
    stream = await gw.acall(messages="hi", stream=True)
    assert "".join([c async for c in stream.consume()]) == "From the wrapper."
    assert upstream.count() == 0


def test_per_call_options_go_to_the_wrappers_only(upstream: Upstream) -> None:
    canned = Canned()
    gw = gateway(upstream, canned)
    answer = gw.complete({"model": "x", "messages": ASK}, canned=False)
    assert answer.body["choices"][0]["message"]["content"] == "Hello from m"
    assert "canned" not in upstream.last.json
    gw(messages="hi", canned=False)
    assert "canned" not in upstream.last.json
    assert [c.options for c in canned.seen] == [{"canned": False}, {"canned": False}]
    with pytest.raises(TypeError, match="no wrapper of this gateway takes them"):
        gateway(upstream).complete({"model": "x", "messages": ASK}, canned=False)


async def test_wrappers_compose_outermost_first(upstream: Upstream) -> None:
    log: list[str] = []
    gw = gateway(upstream, Trace("outer", log), Trace("inner", log))
    gw.complete({"model": "x", "messages": ASK})
    await gw.acomplete({"model": "x", "messages": ASK})
    assert log == ["outer>", "inner>", "<inner", "<outer"] * 2
    assert upstream.count() == 2


def test_a_wrapper_rewrites_the_call(upstream: Upstream) -> None:
    gw = gateway(upstream, Rewrite())
    gw.complete({"model": "x", "messages": ASK, "temperature": 1})
    assert upstream.last.json["temperature"] == 0
    gw(messages="hi", temperature=1)
    assert upstream.last.json["temperature"] == 0
    gw.complete({"model": "x", "max_tokens": 9, "messages": ASK}, api="messages")
    assert upstream.last.json["temperature"] == 0  # translated from the rewritten body


def test_wrappers_must_be_wrappers(upstream: Upstream) -> None:
    with pytest.raises(TypeError, match="wrappers must hold Wrapper instances"):
        gateway(upstream, object())  # type: ignore[arg-type]
