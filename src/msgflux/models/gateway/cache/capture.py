"""What the cache keeps of an answer: its canonical completion, whatever the path, the lane
or the family it came in.

A whole answer is made canonical at once: a translated lane's already is, a native lane's goes
through its family (:meth:`msgflux.formats.Family.completion`). A stream is kept as it is
read (:meth:`NativeStream.tap <msgflux.models.native.NativeStream.tap>`,
:meth:`ModelStreamResponse.tap <msgflux.models.response.ModelStreamResponse.tap>`): a native
stream's events (decoded by its family once it finished), a translated one's canonical
chunks. Only a stream that finished cleanly becomes an answer to keep; a broken one, one
closed early, one over the size limit never does. Collecting is bounded: past ``limit``
bytes of content a capture drops what it held and keeps nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from msgflux.formats import Family
from msgflux.formats.common import Who
from msgflux.models.chat import completion_of
from msgflux.models.gateway.raw import RawAnswer
from msgflux.models.native import NativeAnswer
from msgflux.models.response import ModelResponse, ModelStreamResponse, Pair
from msgflux.models.tool_call import ToolCall

__all__ = ["Assembler", "EventCapture", "PairCapture", "whole"]

logger = logging.getLogger("msgflux.gateway")

Done = Callable[[dict[str, Any]], None]
"""Takes the completion of a stream that finished cleanly."""


def _finished(completion: Any) -> bool:
    choices = completion.get("choices") if type(completion) is dict else None
    if type(choices) is not list or not choices or type(choices[0]) is not dict:
        return False
    return isinstance(choices[0].get("finish_reason"), str)


def whole(result: Any) -> tuple[dict[str, Any], str] | None:
    """``(canonical completion, deployment)`` of a whole answer, or None when it is not one
    the cache can keep (not a chat answer, not finished)."""
    if isinstance(result, RawAnswer):
        response = result.response
        if isinstance(response, NativeAnswer):
            who = (result.provider, result.model_id)
            completion = response.family.completion(response.payload, who)
        elif isinstance(response, ModelResponse):
            completion = completion_of(response, result.model_id)
        else:
            return None
        deployment = result.deployment
    elif isinstance(result, ModelResponse):
        gateway = (result.metadata or {}).get("gateway")
        if not isinstance(gateway, dict):
            return None
        deployment = gateway["model_name"]
        completion = completion_of(result, deployment)
    else:
        return None
    return (completion, deployment) if _finished(completion) else None


_DELTA_KEPT = frozenset(
    ("role", "content", "reasoning_content", "reasoning", "refusal", "tool_calls")
)
_CALL_KEPT = frozenset(("index", "id", "type", "function"))


def _carries_more(part: dict[str, Any], kept: frozenset[str]) -> bool:
    """Whether ``part`` holds a value (not null or empty) under a key outside ``kept``."""
    return any(value for key, value in part.items() if key not in kept)


class Assembler:
    """Canonical chunks back into the completion they stream (the first choice). A stream
    carrying what it does not keep (thinking signatures, a tool call's ``extra_content``,
    logprobs...) gives no completion: a replay without them could break the client's next
    turn, so such an answer is not cached."""

    __slots__ = (
        "calls",
        "created",
        "finish",
        "ident",
        "model",
        "opaque",
        "reasoning",
        "refusal",
        "size",
        "text",
        "usage",
    )

    def __init__(self) -> None:
        self.ident: Any = None
        self.created: Any = None
        self.model: Any = None
        self.text: list[str] = []
        self.reasoning: list[str] = []
        self.refusal: list[str] = []
        self.calls: dict[int, list[str]] = {}
        self.finish: str | None = None
        self.usage: dict[str, Any] | None = None
        self.opaque = False
        self.size = 0
        """Characters of content held (what bounds a capture)."""

    def _add(self, into: list[str], piece: Any) -> None:
        if type(piece) is list:
            piece = "".join(p.get("text") or "" for p in piece if type(p) is dict)
        if type(piece) is str and piece:
            into.append(piece)
            self.size += len(piece)

    def add_text(self, text: str) -> None:
        """A user-written model's text (its stream gives no chunks)."""
        self._add(self.text, text)

    def chunk(self, chunk: dict[str, Any]) -> None:
        if self.ident is None:
            self.ident, self.created, self.model = (
                chunk.get("id"),
                chunk.get("created"),
                chunk.get("model"),
            )
        usage = chunk.get("usage")
        if type(usage) is dict:
            self.usage = usage
        choices = chunk.get("choices")
        if type(choices) is not list or not choices:
            return
        choice = choices[0]
        if type(choice) is not dict or choice.get("index", 0) != 0:
            return
        finish = choice.get("finish_reason")
        if isinstance(finish, str):
            self.finish = finish
        if choice.get("logprobs") is not None:
            self.opaque = True
        delta = choice.get("delta")
        if type(delta) is not dict:
            return
        if _carries_more(delta, _DELTA_KEPT):
            self.opaque = True
        self._add(self.text, delta.get("content"))
        self._add(self.reasoning, delta.get("reasoning_content") or delta.get("reasoning"))
        self._add(self.refusal, delta.get("refusal"))
        calls = delta.get("tool_calls")
        if type(calls) is list:
            for call in calls:
                if type(call) is dict:
                    self._call(call)

    def _call(self, delta: dict[str, Any]) -> None:
        if _carries_more(delta, _CALL_KEPT):
            self.opaque = True
        index = delta.get("index", 0)
        if type(index) is not int:
            return
        parts = self.calls.setdefault(index, ["", "", ""])
        if isinstance(delta.get("id"), str) and delta["id"]:
            parts[0] = delta["id"]
        function = delta.get("function")
        if type(function) is not dict:
            return
        name = function.get("name")
        if isinstance(name, str) and name:
            current = parts[1]  # sent once, repeated, growing or in pieces (see ChatStream)
            if not current or name == current or name.startswith(current):
                parts[1] = name
            elif not current.endswith(name):
                parts[1] = current + name
        arguments = function.get("arguments")
        if isinstance(arguments, str):
            parts[2] += arguments
            self.size += len(arguments)

    def tool_calls(self, calls: list[ToolCall]) -> None:
        """A user-written model's final tool calls (its stream's last item)."""
        for i, call in enumerate(calls):
            entry = call.to_openai()
            function = entry["function"]
            self.calls[i] = [entry["id"], function["name"], function["arguments"]]

    def completion(self) -> dict[str, Any] | None:
        """The completion the chunks streamed; None when the stream never finished or
        carried what a completion rebuilt here would lose."""
        if self.finish is None or self.opaque:
            return None
        message: dict[str, Any] = {
            "role": "assistant",
            "content": "".join(self.text) if self.text else None,
        }
        if self.reasoning:
            message["reasoning_content"] = "".join(self.reasoning)
        if self.refusal:
            message["refusal"] = "".join(self.refusal)
        if self.calls:
            message["tool_calls"] = [
                {
                    "id": parts[0] or f"call_{index}",
                    "type": "function",
                    "function": {"name": parts[1], "arguments": parts[2]},
                }
                for index, parts in sorted(self.calls.items())
            ]
        return {
            "id": self.ident if isinstance(self.ident, str) else "chatcmpl-cache",
            "object": "chat.completion",
            "created": self.created if type(self.created) is int else 0,
            "model": self.model if isinstance(self.model, str) else "",
            "choices": [
                {"index": 0, "message": message, "finish_reason": self.finish, "logprobs": None}
            ],
            "usage": self.usage,
        }


class PairCapture:
    """Keeps a translated stream (or a msgflux one) as it is read: its canonical chunks, or a
    user-written model's text and tool calls. Its ``stream``'s metadata fills what the chunks
    lacked (usage, finish reason) once it finished."""

    __slots__ = ("_assembler", "_done", "_limit", "_stream")

    def __init__(self, stream: ModelStreamResponse, limit: int, done: Done) -> None:
        self._stream = stream
        self._limit = limit
        self._done = done
        self._assembler: Assembler | None = Assembler()

    def pair(self, pair: Pair) -> None:
        assembler = self._assembler
        if assembler is None:
            return
        chunk, item = pair
        if type(chunk) is dict:
            assembler.chunk(chunk)
        elif type(item) is str:
            assembler.add_text(item)
        elif type(item) is list and all(isinstance(c, ToolCall) for c in item):
            assembler.tool_calls(item)
        if assembler.size > self._limit:
            self._assembler = None

    def end(self, error: BaseException | None) -> None:
        assembler, self._assembler = self._assembler, None
        if error is not None or assembler is None:
            return
        meta = self._stream.metadata or {}
        if assembler.usage is None and isinstance(meta.get("usage"), dict):
            assembler.usage = meta["usage"]
        if assembler.finish is None and isinstance(meta.get("finish_reason"), str):
            assembler.finish = meta["finish_reason"]
        completion = assembler.completion()
        if completion is not None:
            _hand(self._done, completion)


class EventCapture:
    """Keeps a native stream's events as they are relayed; once it finished, its family
    decodes them into the canonical completion."""

    __slots__ = ("_done", "_events", "_family", "_limit", "_size", "_who")

    def __init__(self, family: Family, who: Who, limit: int, done: Done) -> None:
        self._family = family
        self._who = who
        self._limit = limit
        self._done = done
        self._events: list[tuple[str | None, bytes]] | None = []
        self._size = 0

    def event(self, name: str | None, data: bytes) -> None:
        events = self._events
        if events is None:
            return
        self._size += len(data)
        if self._size > self._limit:
            self._events = None
            return
        events.append((name, data))

    def end(self, error: BaseException | None) -> None:
        events, self._events = self._events, None
        if error is not None or not events:
            return
        try:
            decoder = self._family.decoder(self._who)
            assembler = Assembler()
            for name, data in events:
                for chunk, _ in decoder.feed(name, data):
                    assembler.chunk(chunk)
                if decoder.done:
                    break
            for chunk in decoder.end():
                assembler.chunk(chunk)
        except Exception as exc:  # a family without a decoder, an event it cannot read
            logger.debug("response cache: a %s stream not kept: %r", self._family.name, exc)
            return
        completion = assembler.completion()
        if completion is not None:
            _hand(self._done, completion)


def _hand(done: Done, completion: dict[str, Any]) -> None:
    """Give ``completion`` to ``done``; a stream's end must never fail because of it."""
    try:
        done(completion)
    except Exception:
        logger.exception("response cache: keeping a stream's answer failed")
