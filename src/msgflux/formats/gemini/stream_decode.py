"""Gemini ``streamGenerateContent?alt=sse`` events as canonical (OpenAI) chunks, event by event.

:class:`GeminiEvents` is the :class:`~msgflux.models.chat.Translator` of a Gemini stream
answered to a caller of another family. Each event is a whole ``GenerateContentResponse``
holding only the new parts: text, ``thought`` and ``functionCall`` parts become deltas, a
``finishReason`` the finish chunk, the last ``usageMetadata`` the usage chunk; an
``{"error": ...}`` event raises its typed error (with Gemini's retry delay) and a blocked
prompt or answer :class:`~msgflux.exceptions.ContentPolicyError`. It keeps only what spans
events (the tool call positions, the latest usage).
"""

from __future__ import annotations

from typing import Any

import orjson

from msgflux.formats.common import Who, bad, chunk, loads, now, usage_chunk
from msgflux.formats.gemini.answer import blocked, finish_of, gemini_usage, parts_of, tool_call
from msgflux.formats.gemini.errors import stream_error
from msgflux.models.response import SKIP

__all__ = ["GeminiEvents"]


class GeminiEvents:
    """The canonical chunks of a ``streamGenerateContent?alt=sse`` stream (a ``Translator``):
    each event is a whole ``GenerateContentResponse`` holding only the new parts."""

    __slots__ = (
        "created",
        "done",
        "ident",
        "include_usage",
        "model",
        "started",
        "tools",
        "usage",
        "who",
    )

    def __init__(self, who: Who, include_usage: bool) -> None:
        self.who = who
        self.include_usage = include_usage
        self.ident = "gemini"
        self.model = who[1]
        self.created = now()
        self.usage: Any = None
        self.tools: dict[int, int] = {}
        self.started = False
        self.done = False

    def feed(self, event: str | None, data: bytes) -> list[tuple[dict[str, Any], Any]]:
        who = self.who
        try:
            payload = orjson.loads(data)
        except orjson.JSONDecodeError:
            payload = loads(data, who)  # raises the validation error
        if type(payload) is not dict:
            raise bad(who, "a stream event must be an object", payload)
        if "error" in payload:
            raise stream_error(payload, data, who)
        usage = payload.get("usageMetadata")
        if usage is not None:
            self.usage = usage
        out: list[tuple[dict[str, Any], Any]] = []
        if not self.started:
            self.started = True
            if isinstance(payload.get("responseId"), str):
                self.ident = payload["responseId"]
            if isinstance(payload.get("modelVersion"), str):
                self.model = payload["modelVersion"]
            out.append((chunk(self.ident, self.created, self.model, {"role": "assistant"}), None))
        candidates = payload.get("candidates")
        if not candidates:
            blocked(payload, who)
            return out
        if type(candidates) is not list:
            raise bad(who, "candidates must be a list", payload)
        for candidate in candidates:
            if type(candidate) is not dict:
                raise bad(who, "a candidate must be an object", candidate)
            index = candidate.get("index", 0)
            if type(index) is not int:
                raise bad(who, "candidate.index must be an int", candidate)
            for part in parts_of(candidate, who):
                if type(part) is not dict:
                    raise bad(who, "a part must be an object", part)
                text = part.get("text")
                item: Any = None
                if type(text) is str and len(part) == 1:
                    delta: dict[str, Any] | None = {"content": text} if text else None
                    item = text  # built here: the stream accounts for it without a check
                else:
                    delta = self._delta(part, index)
                if delta is not None:
                    if index:
                        item = SKIP  # msgflux's view is the first candidate's
                    choice = {"index": index, "delta": delta, "finish_reason": None}
                    event_chunk = {
                        "id": self.ident,
                        "object": "chat.completion.chunk",
                        "created": self.created,
                        "model": self.model,
                        "choices": [choice],
                    }
                    out.append((event_chunk, item))
            if "finishReason" in candidate:
                finish = finish_of(candidate, who, index in self.tools)
                finished = chunk(self.ident, self.created, self.model, {}, finish, index)
                out.append((finished, SKIP if index else None))
        return out

    def _delta(self, part: dict[str, Any], index: int) -> dict[str, Any] | None:
        if "functionCall" in part:
            position = self.tools.get(index, -1) + 1
            self.tools[index] = position
            return {"tool_calls": [{"index": position, **tool_call(part, position, self.who)}]}
        text = part.get("text")
        if text is None:
            return None
        if not isinstance(text, str):
            raise bad(self.who, "a text part must hold a str", part)
        if not text:
            return None
        return {"reasoning_content": text} if part.get("thought") else {"content": text}

    def end(self) -> list[dict[str, Any]]:
        if not self.include_usage or self.usage is None:
            return []
        usage = gemini_usage(self.usage, self.who)
        assert usage is not None
        return [usage_chunk(self.ident, self.created, self.model, usage)]
