"""Canonical (OpenAI) stream chunks as Gemini ``streamGenerateContent?alt=sse`` events.

:class:`GeminiStream` is what a Gemini client reads when a deployment of another family
answers its stream: one ``data: {GenerateContentResponse}`` event per chunk that carries
something, each holding only the new parts, as Gemini sends them.
"""

from __future__ import annotations

from typing import Any

import orjson

from msgflux.formats.gemini.answer import GEMINI_REASONS, function_call, usage_metadata
from msgflux.formats.gemini.errors import interrupted_event

__all__ = ["GeminiStream"]

_HEAD = b'data: {"candidates":[{"content":{"role":"model","parts":[{"text":'
_EMPTY = [{"text": ""}]
"""The parts of a final event with nothing left to say (Gemini's own form of it)."""


class GeminiStream:
    """Gemini's SSE events for one canonical stream (a :class:`~msgflux.formats.StreamOut`):
    :meth:`feed` each chunk, then :meth:`end` (or :meth:`error` when the stream broke); each
    returns the bytes to write.

    Text and reasoning (``thought`` parts) go out as they come. A ``functionCall`` part is
    whole in Gemini (parsed ``args``), while OpenAI streams a call's arguments in pieces: the
    pieces of each call are kept until its choice finishes (or other content follows), then
    sent as one part. The finish reasons wait for the usage (OpenAI sends it after the
    finish; Gemini ends with one event holding both), so the last event holds every
    candidate's ``finishReason`` and the ``usageMetadata``. Memory: the open calls' arguments.
    """

    __slots__ = ("calls", "finishes", "ident", "model", "over", "seen", "tail", "usage")

    def __init__(self, model: str) -> None:
        self.model = model
        self.ident: str | None = None
        self.calls: dict[int, dict[int, dict[str, Any]]] = {}
        """Choice index -> call position -> the call so far (arguments as pieces)."""
        self.finishes: dict[int, str] = {}
        self.seen: set[int] = set()
        self.usage: Any = None
        self.over = False
        self.tail = b""
        """The bytes of a text event after the text (once the response id is known)."""

    def _event(self, candidates: list[dict[str, Any]], usage: Any = None) -> bytes:
        payload: dict[str, Any] = {"candidates": candidates}
        if usage is not None:
            payload["usageMetadata"] = usage
        payload["modelVersion"] = self.model
        payload["responseId"] = self.ident
        return b"data: " + orjson.dumps(payload) + b"\r\n\r\n"

    def feed(self, chunk: dict[str, Any]) -> bytes:
        if self.ident is None:
            ident = chunk.get("id")
            self.ident = ident if type(ident) is str and ident else "gemini"
            self.tail = (
                b'}]},"index":0}],"modelVersion":'
                + orjson.dumps(self.model)
                + b',"responseId":'
                + orjson.dumps(self.ident)
                + b"}\r\n\r\n"
            )
        if self.over:
            return b""
        usage = chunk.get("usage")
        if usage:
            self.usage = usage
        choices = chunk.get("choices")
        if not choices:
            return self._final() if usage and self.finishes else b""
        if len(choices) == 1:
            choice = choices[0]
            delta = choice.get("delta")
            if (
                type(delta) is dict
                and len(delta) == 1
                and choice.get("index", 0) == 0
                and choice.get("finish_reason") is None
                and 0 not in self.calls
            ):
                text = delta.get("content")
                if type(text) is str:
                    # The common chunk, in line: one more piece of the answer's text.
                    self.seen.add(0)
                    return _HEAD + orjson.dumps(text) + self.tail if text else b""
        candidates = []
        for choice in choices:
            index = choice.get("index", 0)
            self.seen.add(index)
            parts = self._parts(index, choice.get("delta") or {})
            finish = choice.get("finish_reason")
            if finish:
                parts += self._flush(index)
                self.finishes[index] = GEMINI_REASONS.get(finish, "STOP")
            if parts:
                content = {"role": "model", "parts": parts}
                candidates.append({"content": content, "index": index})
        return self._event(candidates) if candidates else b""

    def _parts(self, index: int, delta: dict[str, Any]) -> list[dict[str, Any]]:
        parts: list[dict[str, Any]] = []
        reasoning = delta.get("reasoning_content") or delta.get("reasoning")
        if type(reasoning) is str and reasoning:
            parts += self._flush(index)
            parts.append({"text": reasoning, "thought": True})
        for key in ("content", "refusal"):
            text = delta.get(key)
            if type(text) is str and text:
                parts += self._flush(index)
                parts.append({"text": text})
        for call in delta.get("tool_calls") or ():
            self._call(index, call)
        return parts

    def _call(self, index: int, call: dict[str, Any]) -> None:
        position = call.get("index", 0)
        calls = self.calls.setdefault(index, {})
        function = call.get("function") or {}
        known = calls.get(position)
        if known is None:
            known = calls[position] = {"id": None, "function": {"name": None}, "pieces": []}
        if call.get("id"):
            known["id"] = call["id"]
        if function.get("name"):
            known["function"]["name"] = function["name"]
        if call.get("extra_content") is not None:
            known["extra_content"] = call["extra_content"]
        arguments = function.get("arguments")
        if arguments:
            known["pieces"].append(arguments)

    def _flush(self, index: int) -> list[dict[str, Any]]:
        """The ``functionCall`` parts of the choice's calls so far (then forgotten)."""
        calls = self.calls.pop(index, None)
        if not calls:
            return []
        parts = []
        for position in sorted(calls):
            known = calls[position]
            known["function"]["arguments"] = "".join(known.pop("pieces"))
            parts.append(function_call(known, position, f"tool_calls[{position}]"))
        return parts

    def _final(self) -> bytes:
        self.over = True
        candidates = []
        for index in sorted(self.seen | set(self.finishes) | set(self.calls) or {0}):
            parts = self._flush(index) or _EMPTY
            candidates.append(
                {
                    "content": {"role": "model", "parts": parts},
                    "finishReason": self.finishes.get(index, "STOP"),
                    "index": index,
                }
            )
        return self._event(candidates, usage_metadata(self.usage))

    def end(self) -> bytes:
        """The last event of a complete stream (every finish reason, the usage), unless the
        usage chunk already sent it."""
        if self.over:
            return b""
        if self.ident is None:
            self.ident = "gemini"
        return self._final()

    def error(self, exc: BaseException) -> bytes:
        """The event that ends a stream broken mid-way (Gemini's error body as data)."""
        return interrupted_event(exc)
