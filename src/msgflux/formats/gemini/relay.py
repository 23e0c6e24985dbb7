"""The native lane of Gemini's ``streamGenerateContent?alt=sse``: a Gemini stream relayed as
it arrives.

:class:`GeminiRelay` reads each event for what the gateway needs and hands it back as the
upstream wrote it: the usage (every event may carry ``usageMetadata``, the last one has the
totals), the finish reason (``tool_calls`` when the answer called a function; a blocked
prompt is ``content_filter``), content (a non-empty text or a part that is not text: what
moves the stream's time bounds) and an ``{"error": ...}`` event (raised as its typed error,
with Gemini's retry delay). Gemini names no end of its own: the stream is over when the
body ends, so ``done`` stays false and a body that ends before any ``finishReason`` is a
broken stream. Every event names the model in ``modelVersion``; :meth:`renamed` rewrites it
in place, the rest of the upstream's bytes kept.
"""

from __future__ import annotations

from typing import Any

import orjson

from msgflux.formats.common import Who, bad, rename_model, swap_model
from msgflux.formats.gemini.answer import FINISH_REASONS, gemini_usage
from msgflux.formats.gemini.errors import interrupted_event, stream_error

__all__ = ["GeminiRelay"]


def _parse(data: bytes, who: Who) -> dict[str, Any]:
    try:
        payload = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise bad(who, f"a stream event that is not JSON: {exc}", data) from None
    if type(payload) is not dict:
        raise bad(who, "a stream event must be an object", data)
    return payload


_CONTENT_PARTS = (
    "functionCall",
    "inlineData",
    "fileData",
    "executableCode",
    "codeExecutionResult",
)
"""Parts that are content whatever their size (a text part is content when not empty)."""


def _text(candidates: Any) -> str | None:
    """The answer text (not thoughts) of the first candidate's new parts."""
    first = candidates[0] if type(candidates) is list and candidates else None
    content = first.get("content") if type(first) is dict else None
    parts = content.get("parts") if type(content) is dict else None
    if type(parts) is not list:
        return None
    texts = [
        text
        for part in parts
        if type(part) is dict and not part.get("thought") and type(text := part.get("text")) is str
    ]
    return "".join(texts) if texts else None


def _has_content(parts: list[Any]) -> bool:
    """Whether a candidate's new parts carry content (a non-empty text, thoughts included, or
    a part that is not text)."""
    for part in parts:
        if type(part) is dict and (part.get("text") or any(k in part for k in _CONTENT_PARTS)):
            return True
    return False


class GeminiRelay:
    """The :class:`~msgflux.formats.Relay` of a Gemini stream (see the module docstring)."""

    __slots__ = ("_called", "_names", "done", "finish_reason", "model", "texts", "usage", "who")

    def __init__(self, who: Who) -> None:
        self.who = who
        self.texts: list[str] | None = None
        self.model: str | None = None
        self._names: dict[Any, bytes] = {}
        self._called: set[Any] = set()
        self.usage: dict[str, Any] | None = None
        self.finish_reason: str | None = None
        self.done = False

    def feed(self, event: str | None, data: bytes) -> tuple[bytes | None, bool]:
        who = self.who
        payload = _parse(data, who)
        if "error" in payload:
            raise stream_error(payload, data, who)
        meta = payload.get("usageMetadata")
        if meta is not None:
            self.usage = gemini_usage(meta, who)
        candidates = payload.get("candidates")
        if not candidates:
            feedback = payload.get("promptFeedback")
            if type(feedback) is dict and feedback.get("blockReason"):
                self.finish_reason = "content_filter"
            if self.model is not None:
                data = swap_model(data, payload, self.model, self._names, "modelVersion")
            return data, False
        if type(candidates) is not list:
            raise bad(who, "candidates must be a list", data)
        content = False
        for candidate in candidates:
            if type(candidate) is not dict:
                raise bad(who, "a candidate must be an object", data)
            index = candidate.get("index", 0)
            body = candidate.get("content")
            parts = body.get("parts") if type(body) is dict else None
            if type(parts) is list and parts:
                content = content or _has_content(parts)
                if any(type(p) is dict and "functionCall" in p for p in parts):
                    self._called.add(index)
            reason = candidate.get("finishReason")
            if type(reason) is str:
                finish = FINISH_REASONS.get(reason, "stop")
                if finish == "stop" and index in self._called:
                    finish = "tool_calls"
                self.finish_reason = finish
        if self.texts is not None and content:
            text = _text(candidates)
            if text:
                self.texts.append(text)
        if self.model is not None:
            data = swap_model(data, payload, self.model, self._names, "modelVersion")
        return data, content

    def error(self, exc: BaseException) -> bytes:
        return interrupted_event(exc)

    def text_of(self, event: str | None, data: bytes) -> str | None:
        payload = orjson.loads(data)
        return _text(payload.get("candidates")) if type(payload) is dict else None

    def renamed(self, event: str | None, data: bytes, model: str) -> bytes:
        if b'"modelVersion"' not in data:
            return data
        return rename_model(data, model, self._names, "modelVersion")
