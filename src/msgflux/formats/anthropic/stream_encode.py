"""Canonical (OpenAI) stream chunks as Anthropic Messages API events, chunk by chunk.

:class:`MessageEvents` is what a Messages API client reads when a deployment of another
family answers its stream: named SSE events, each well-formed, holding only the open block's
state (bounded memory whatever the stream's length).
"""

from __future__ import annotations

from typing import Any

import orjson

from msgflux.formats.anthropic.answer import STOP_REASONS, message_usage
from msgflux.formats.anthropic.errors import interrupted_event

__all__ = ["MessageEvents", "event"]


def event(name: bytes, data: Any) -> bytes:
    return b"event: " + name + b"\ndata: " + orjson.dumps(data) + b"\n\n"


_PING = event(b"ping", {"type": "ping"})
_STOP = event(b"message_stop", {"type": "message_stop"})


class MessageEvents:
    """Anthropic's SSE events for one canonical stream: :meth:`feed` each chunk, then
    :meth:`end` (or :meth:`error` when the stream broke). Each returns the bytes to write.

    Order: ``message_start`` and a ``ping``; per block ``content_block_start``, its deltas
    (``thinking_delta``/``signature_delta``, ``text_delta``, ``input_json_delta``) and
    ``content_block_stop``; then ``message_delta`` (stop reason and usage: OpenAI sends the
    usage after the finish, so this waits for the end) and ``message_stop``. Only the open
    block is tracked; parallel tool calls must arrive one after the other (as every OpenAI-
    wire upstream sends them), an interleaved one raises ``ValueError``.
    """

    __slots__ = ("calls", "index", "model", "open", "started", "stop", "text_head", "usage")

    def __init__(self, model: str) -> None:
        self.model = model
        self.started = False
        self.index = -1
        """The index of the last block started."""
        self.open: str | int | None = None
        """The open block: ``"text"``, ``"thinking"``, a tool call's index, or None."""
        self.calls: set[int] = set()
        self.stop: str | None = None
        self.usage: Any = None
        self.text_head = b""
        """The bytes of a text delta event of the open block, up to the text itself."""

    def _start(self, ident: Any) -> bytes:
        self.started = True
        message: dict[str, Any] = {
            "id": ident if type(ident) is str and ident else "msg",
            "type": "message",
            "role": "assistant",
            "model": self.model,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": {"input_tokens": 0, "output_tokens": 0},
        }
        return event(b"message_start", {"type": "message_start", "message": message}) + _PING

    def _close(self) -> bytes:
        if self.open is None:
            return b""
        self.open = None
        return event(b"content_block_stop", {"type": "content_block_stop", "index": self.index})

    def _open(self, which: str | int, block: dict[str, Any]) -> bytes:
        head = self._close()
        self.index += 1
        self.open = which
        if which == "text":
            self.text_head = (
                b'event: content_block_delta\ndata: {"type":"content_block_delta","index":%d,'
                b'"delta":{"type":"text_delta","text":' % self.index
            )
        start = {"type": "content_block_start", "index": self.index, "content_block": block}
        return head + event(b"content_block_start", start)

    def _delta(self, delta: dict[str, Any]) -> bytes:
        data = {"type": "content_block_delta", "index": self.index, "delta": delta}
        return event(b"content_block_delta", data)

    def feed(self, chunk: dict[str, Any]) -> bytes:
        out = b"" if self.started else self._start(chunk.get("id"))
        choices = chunk.get("choices")
        if chunk.get("usage"):
            self.usage = chunk["usage"]
        if not choices:
            return out
        choice = choices[0]
        delta = choice.get("delta") or {}
        text = delta.get("content")
        if (
            self.open == "text"
            and len(delta) == 1
            and type(text) is str
            and choice.get("finish_reason") is None
        ):
            # The common chunk, in line: one more piece of the open text block.
            return out + self.text_head + orjson.dumps(text) + b"}}\n\n" if text else out
        parts = [out]
        if delta:
            self._pieces(delta, text, parts)
        finish = choice.get("finish_reason")
        if finish:
            self.stop = STOP_REASONS.get(finish, "end_turn")
            parts.append(self._close())
        return b"".join(parts)

    def _pieces(self, delta: dict[str, Any], text: Any, parts: list[bytes]) -> None:
        reasoning = delta.get("reasoning_content") or delta.get("reasoning")
        if reasoning:
            if self.open != "thinking":
                parts.append(
                    self._open("thinking", {"type": "thinking", "thinking": "", "signature": ""})
                )
            parts.append(self._delta({"type": "thinking_delta", "thinking": reasoning}))
        for block in delta.get("thinking_blocks") or ():
            signature = block.get("signature") or ""
            if block.get("type") == "thinking" and signature:
                # A signed block ends its thinking block: one whose text was not streamed
                # (empty, as with ``display: omitted``) is a block of its own, and the
                # thinking after it another block, with its own signature.
                if self.open != "thinking":
                    empty = {"type": "thinking", "thinking": "", "signature": ""}
                    parts.append(self._open("thinking", empty))
                    if block.get("thinking"):
                        thought = {"type": "thinking_delta", "thinking": block["thinking"]}
                        parts.append(self._delta(thought))
                parts.append(self._delta({"type": "signature_delta", "signature": signature}))
                parts.append(self._close())
            elif block.get("type") == "thinking" and self.open == "thinking":
                parts.append(self._delta({"type": "signature_delta", "signature": signature}))
            elif block.get("type") == "redacted_thinking":
                parts.append(self._open("redacted", block))
                parts.append(self._close())
        if text:
            if self.open != "text":
                parts.append(self._open("text", {"type": "text", "text": ""}))
            parts.append(self._delta({"type": "text_delta", "text": text}))
        refusal = delta.get("refusal")
        if refusal:
            if self.open != "text":
                parts.append(self._open("text", {"type": "text", "text": ""}))
            parts.append(self._delta({"type": "text_delta", "text": refusal}))
            self.stop = "refusal"
        for call in delta.get("tool_calls") or ():
            self._call(call, parts)

    def _call(self, call: dict[str, Any], parts: list[bytes]) -> None:
        position = call.get("index", 0)
        function = call.get("function") or {}
        if position not in self.calls:
            self.calls.add(position)
            block: dict[str, Any] = {
                "type": "tool_use",
                "id": call.get("id") or f"toolu_{position}",
                "name": function.get("name") or "",
                "input": {},
            }
            parts.append(self._open(position, block))
        elif self.open != position:
            raise ValueError(
                f"the deployment interleaved tool call {position}'s arguments with another "
                "call's; Anthropic's stream sends one block at a time"
            )
        arguments = function.get("arguments")
        if arguments:
            parts.append(self._delta({"type": "input_json_delta", "partial_json": arguments}))

    def end(self) -> bytes:
        """The events that end a complete stream."""
        head = b"" if self.started else self._start(None)
        delta = {"stop_reason": self.stop or "end_turn", "stop_sequence": None}
        usage = message_usage(self.usage)
        tail = event(b"message_delta", {"type": "message_delta", "delta": delta, "usage": usage})
        return head + self._close() + tail + _STOP

    def error(self, exc: BaseException) -> bytes:
        """The event that ends a stream broken mid-way (Anthropic's ``error`` event)."""
        return interrupted_event(exc)
