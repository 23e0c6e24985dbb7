"""Bedrock ``converse-stream`` events as canonical (OpenAI) chunks, event by event.

:class:`ConverseEvents` is the :class:`~msgflux.models.chat.Translator` of a Converse stream
(AWS event-stream messages, decoded by :mod:`msgflux._transport.eventstream` into
``(event type, JSON payload)`` pairs): ``messageStart`` opens the answer, ``contentBlockStart``
starts a tool call, ``contentBlockDelta`` carries text, tool-call arguments or reasoning (its
signature closes a thinking block), ``messageStop`` the stop reason and ``metadata`` the usage
(and the guardrail's trace): the stream's logical end. An exception message raises its typed
error (:func:`~msgflux.formats.bedrock.errors.stream_exception`); a guardrail that intervened
raises :class:`~msgflux.exceptions.ContentPolicyError` with its trace once the ``metadata``
event has brought it.
"""

from __future__ import annotations

from typing import Any

import orjson

from msgflux._transport.eventstream import EXCEPTION
from msgflux.formats.bedrock.answer import FINISH_REASONS, converse_usage, finish_of
from msgflux.formats.bedrock.errors import stream_exception
from msgflux.formats.common import Who, bad, chunk, loads, now, usage_chunk

__all__ = ["ConverseEvents"]

Out = tuple[dict[str, Any], Any]


class ConverseEvents:
    """The canonical chunks of one Converse stream (a ``Translator``; module docstring)."""

    __slots__ = (
        "blocked",
        "created",
        "done",
        "ident",
        "include_usage",
        "model",
        "thinking",
        "tools",
        "usage",
        "who",
    )

    def __init__(self, who: Who, include_usage: bool, ident: str | None = None) -> None:
        self.who = who
        self.include_usage = include_usage
        self.ident = ident or "bedrock"
        self.model = who[1]
        self.created = now()
        self.usage: dict[str, Any] | None = None
        self.tools: dict[Any, int] = {}
        self.thinking: dict[Any, list[str]] = {}
        self.blocked: dict[str, Any] | None = None
        """The stop of an answer a guardrail stopped, raised with the trace at the end."""
        self.done = False

    def _chunk(self, delta: dict[str, Any], finish: str | None = None) -> Out:
        return chunk(self.ident, self.created, self.model, delta, finish), None

    def feed(self, event: str | None, data: bytes) -> list[Out]:
        who = self.who
        if event is not None and event.startswith(EXCEPTION):
            raise stream_exception(event[len(EXCEPTION) :], data, who)
        try:
            payload = orjson.loads(data)
        except orjson.JSONDecodeError:
            payload = loads(data, who)  # raises the validation error
        if type(payload) is not dict:
            raise bad(who, "a stream event must be an object", payload)
        if event == "contentBlockDelta":
            delta = payload.get("delta")
            if type(delta) is not dict:
                raise bad(who, "contentBlockDelta.delta must be an object", payload)
            text = delta.get("text")
            if type(text) is str:
                if not text:
                    return []
                out = chunk(self.ident, self.created, self.model, {"content": text})
                return [(out, text)]
            return self._delta(delta, payload.get("contentBlockIndex"), payload)
        if event == "contentBlockStart":
            return self._start(payload)
        if event == "messageStart":
            return [self._chunk({"role": "assistant", "content": ""})]
        if event == "messageStop":
            stop = payload.get("stopReason")
            if isinstance(stop, str) and FINISH_REASONS.get(stop) == "content_filter":
                self.blocked = {"stopReason": stop}
                return []
            finish = finish_of(stop, who, payload)
            if finish == "stop" and self.tools:
                finish = "tool_calls"
            return [self._chunk({}, finish)]
        if event == "metadata":
            self.done = True
            if payload.get("usage") is not None:
                self.usage = converse_usage(payload["usage"], who)
            if self.blocked is not None:
                trace = payload.get("trace")
                body = self.blocked if trace is None else {**self.blocked, "trace": trace}
                finish_of(self.blocked["stopReason"], who, body)  # raises
            return []
        return []  # contentBlockStop, and event types newer than this adapter

    def _start(self, payload: dict[str, Any]) -> list[Out]:
        who = self.who
        start = payload.get("start")
        use = start.get("toolUse") if type(start) is dict else None
        if type(use) is not dict:
            return []
        name = use.get("name")
        if not isinstance(name, str) or not name:
            raise bad(who, "a toolUse start needs a name", payload)
        index = payload.get("contentBlockIndex")
        position = self.tools[index] = len(self.tools)
        call = {
            "index": position,
            "id": use.get("toolUseId") or f"tooluse_{position}",
            "type": "function",
            "function": {"name": name, "arguments": ""},
        }
        return [self._chunk({"tool_calls": [call]})]

    def _delta(self, delta: dict[str, Any], index: Any, payload: Any) -> list[Out]:
        who = self.who
        use = delta.get("toolUse")
        if type(use) is dict:
            part = use.get("input")
            if not isinstance(part, str):
                raise bad(who, "a toolUse delta needs a str input", payload)
            position = self.tools.get(index)
            if position is None:
                raise bad(who, "a toolUse delta for a block that is not a tool use", payload)
            if not part:
                return []
            call = {"index": position, "function": {"arguments": part}}
            return [self._chunk({"tool_calls": [call]})]
        reasoning = delta.get("reasoningContent")
        if type(reasoning) is dict:
            text = reasoning.get("text")
            if isinstance(text, str) and text:
                self.thinking.setdefault(index, []).append(text)
                return [self._chunk({"reasoning_content": text})]
            signature = reasoning.get("signature")
            if isinstance(signature, str) and signature:
                thought = "".join(self.thinking.get(index, ()))
                block = {"type": "thinking", "thinking": thought, "signature": signature}
                return [self._chunk({"thinking_blocks": [block]})]
            redacted = reasoning.get("redactedContent")
            if isinstance(redacted, str) and redacted:
                block = {"type": "redacted_thinking", "data": redacted}
                return [self._chunk({"thinking_blocks": [block]})]
        return []  # citations, images and newer delta types

    def end(self) -> list[dict[str, Any]]:
        if self.blocked is not None:
            finish_of(self.blocked["stopReason"], self.who, self.blocked)  # raises
        if not self.include_usage or not self.usage:
            return []
        return [usage_chunk(self.ident, self.created, self.model, self.usage)]
