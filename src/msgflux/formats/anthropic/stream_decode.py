"""Anthropic Messages API stream events as canonical (OpenAI) chunks, event by event.

:class:`AnthropicEvents` is the :class:`~msgflux.models.chat.Translator` of a Claude stream
answered to a caller of another family: ``message_start``, ``content_block_*`` (text,
``input_json_delta``, thinking and its signature), ``message_delta`` (stop reason, usage),
``ping`` and ``error`` events become OpenAI chunks; an ``error`` event raises the typed error
of its ``error.type`` (``overloaded_error`` is a 529
:class:`~msgflux.exceptions.InternalServerError`). It keeps only what spans events (the tool
call positions, the thinking text until its signature, the usage).
"""

from __future__ import annotations

from typing import Any

import orjson

from msgflux._transport import status_error
from msgflux.formats.anthropic.answer import FINISH_REASONS, anthropic_usage
from msgflux.formats.anthropic.errors import ERROR_STATUS, classify_anthropic_error
from msgflux.formats.anthropic.request_encode import JSON_TOOL
from msgflux.formats.common import Who, bad, chunk, loads, now, policy_error, usage_chunk

__all__ = ["AnthropicEvents"]


def _obj(value: Any, who: Who, what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise bad(who, f"{what} must be an object", value)
    return value


def _str(block: dict[str, Any], key: str, who: Who) -> str:
    value = block.get(key)
    if not isinstance(value, str):
        raise bad(who, f"a {block.get('type')} block needs a str {key!r}", block)
    return value


def _finish(stop: Any, who: Who, body: Any) -> str:
    if not isinstance(stop, str):
        raise bad(who, "stop_reason must be a str", stop)
    finish = FINISH_REASONS.get(stop, "stop")
    if finish == "content_filter":
        raise policy_error(who, f"the model stopped the answer: {stop}", body)
    return finish


Out = tuple[dict[str, Any], Any]
"""A canonical chunk and what the ChatStream needs of it (see ``Translator``)."""


class AnthropicEvents:
    """The canonical chunks of one Messages API stream, event by event (a ``Translator``)."""

    __slots__ = (
        "created",
        "done",
        "ident",
        "include_usage",
        "json_block",
        "json_tool",
        "model",
        "thinking",
        "tools",
        "usage",
        "who",
    )

    def __init__(self, who: Who, json_tool: bool, include_usage: bool) -> None:
        self.who = who
        self.json_tool = json_tool
        self.include_usage = include_usage
        self.ident = "msg"
        self.model = who[1]
        self.created = now()
        self.usage: dict[str, Any] = {}
        self.tools: dict[Any, int] = {}
        self.json_block: Any = None
        self.thinking: dict[Any, list[str]] = {}
        self.done = False

    def _chunk(self, delta: dict[str, Any], finish: str | None = None) -> Out:
        return chunk(self.ident, self.created, self.model, delta, finish), None

    def feed(self, event: str | None, data: bytes) -> list[Out]:
        if event == "ping":
            return []
        who = self.who
        try:
            payload = orjson.loads(data)
        except orjson.JSONDecodeError:
            payload = loads(data, who)  # raises the validation error
        if type(payload) is not dict:
            raise bad(who, "a stream event must be an object", payload)
        kind = payload.get("type") or event
        if kind == "content_block_delta":
            delta = payload.get("delta")
            if type(delta) is dict and delta.get("type") == "text_delta":
                # The common event, in line: one text piece.
                text = delta.get("text")
                if type(text) is str:
                    if not text:
                        return []
                    choice = {"index": 0, "delta": {"content": text}, "finish_reason": None}
                    out = {
                        "id": self.ident,
                        "object": "chat.completion.chunk",
                        "created": self.created,
                        "model": self.model,
                        "choices": [choice],
                    }
                    return [(out, text)]
            return self._delta(payload)
        if kind == "content_block_start":
            return self._start(payload)
        if kind == "message_start":
            message = _obj(payload.get("message"), who, "message_start.message")
            if isinstance(message.get("id"), str):
                self.ident = message["id"]
            if isinstance(message.get("model"), str):
                self.model = message["model"]
            self._add_usage(message.get("usage"))
            return [self._chunk({"role": "assistant", "content": ""})]
        if kind == "message_delta":
            delta = _obj(payload.get("delta"), who, "message_delta.delta")
            self._add_usage(payload.get("usage"))
            stop = delta.get("stop_reason")
            if stop is None:
                return []
            finish = _finish(stop, who, payload)
            if finish == "tool_calls" and not self.tools:
                finish = "stop"  # the forced JSON tool answered: that is the text
            return [self._chunk({}, finish)]
        if kind == "message_stop":
            self.done = True
            return []
        if kind == "error":
            error = payload.get("error")
            etype = error.get("type") if isinstance(error, dict) else None
            status = ERROR_STATUS.get(etype, 500) if isinstance(etype, str) else 500
            raise status_error(
                status,
                data,
                None,
                provider=who[0],
                model_id=who[1],
                classify=classify_anthropic_error,
            )
        return []  # content_block_stop, ping, and event types newer than this adapter

    def _start(self, payload: dict[str, Any]) -> list[Out]:
        who = self.who
        block = _obj(payload.get("content_block"), who, "content_block_start.content_block")
        index = payload.get("index")
        kind = block.get("type")
        if kind == "text":
            text = block.get("text")
            return [self._chunk({"content": text})] if isinstance(text, str) and text else []
        if kind == "tool_use":
            name = _str(block, "name", who)
            if self.json_tool and name == JSON_TOOL:
                self.json_block = index
                return []
            position = self.tools[index] = len(self.tools)
            call = {
                "index": position,
                "id": _str(block, "id", who),
                "type": "function",
                "function": {"name": name, "arguments": ""},
            }
            return [self._chunk({"tool_calls": [call]})]
        if kind == "thinking":
            text = block.get("thinking")
            self.thinking[index] = [text] if isinstance(text, str) and text else []
            return [self._chunk({"reasoning_content": text})] if self.thinking[index] else []
        if kind == "redacted_thinking":
            return [self._chunk({"thinking_blocks": [block]})]
        return []

    def _delta(self, payload: dict[str, Any]) -> list[Out]:
        who = self.who
        delta = _obj(payload.get("delta"), who, "content_block_delta.delta")
        kind = delta.get("type")
        if kind == "text_delta":
            text = _str(delta, "text", who)
            return [self._chunk({"content": text})] if text else []
        index = payload.get("index")
        if kind == "input_json_delta":
            part = _str(delta, "partial_json", who)
            if not part:
                return []
            if index == self.json_block and self.json_block is not None:
                return [self._chunk({"content": part})]
            position = self.tools.get(index)
            if position is None:
                raise bad(who, "input_json_delta for a block that is not a tool_use", payload)
            return [
                self._chunk({"tool_calls": [{"index": position, "function": {"arguments": part}}]})
            ]
        if kind == "thinking_delta":
            text = _str(delta, "thinking", who)
            if not text:
                return []
            self.thinking.setdefault(index, []).append(text)
            return [self._chunk({"reasoning_content": text})]
        if kind == "signature_delta":
            signature = _str(delta, "signature", who)
            thought = "".join(self.thinking.get(index, ()))
            block = {"type": "thinking", "thinking": thought, "signature": signature}
            return [self._chunk({"thinking_blocks": [block]})]
        return []  # citations_delta and newer delta types

    def _add_usage(self, usage: Any) -> None:
        if usage is None:
            return
        self.usage.update(_obj(usage, self.who, "usage"))  # message_delta counts are cumulative

    def end(self) -> list[dict[str, Any]]:
        if not self.include_usage or not self.usage:
            return []
        usage = anthropic_usage(self.usage, self.who)
        assert usage is not None
        return [usage_chunk(self.ident, self.created, self.model, usage)]
