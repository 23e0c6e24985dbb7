"""Gemini's ``generateContent`` API, both ways, with no I/O.

* requests: :mod:`.request_decode` (a ``generateContent`` body -> canonical, with
  :mod:`.config_decode` for ``toolConfig`` and ``generationConfig``) and
  :mod:`.request_encode` (canonical -> a ``generateContent`` body); :mod:`.schema` converts
  JSON Schema to Gemini's OpenAPI subset and back;
* answers: :mod:`.answer` (both ways, usage, finish reasons);
* streams: :mod:`.stream_decode` (``streamGenerateContent?alt=sse`` events -> canonical
  chunks), :mod:`.stream_encode` (canonical chunks -> events) and :mod:`.relay` (a native
  stream, read as it passes);
* errors: :mod:`.errors` (an error body's ``status`` word and retry delay, Gemini's error
  body).

:data:`FAMILY` is the :class:`~msgflux.formats.Family` the gateway and the server use.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson

from msgflux.formats import GEMINI, Family
from msgflux.formats.common import Who, bad
from msgflux.formats.gemini.answer import (
    FINISH_REASONS,
    GEMINI_REASONS,
    gemini_usage,
    to_completion,
    to_gemini_answer,
    usage_metadata,
)
from msgflux.formats.gemini.errors import (
    classify_gemini_error,
    error_body,
    error_event,
    refine,
    retry_delay,
    status_word,
    stream_error,
)
from msgflux.formats.gemini.relay import GeminiRelay
from msgflux.formats.gemini.request_decode import to_canonical
from msgflux.formats.gemini.request_encode import (
    NAME,
    THINKING_BUDGETS,
    THINKING_LEVELS,
    gemini_contents,
    to_gemini,
)
from msgflux.formats.gemini.schema import gemini_schema, json_schema
from msgflux.formats.gemini.stream_decode import GeminiEvents
from msgflux.formats.gemini.stream_encode import GeminiStream
from msgflux.formats.policy import Translation

__all__ = [
    "FAMILY",
    "FINISH_REASONS",
    "GEMINI_REASONS",
    "NAME",
    "THINKING_BUDGETS",
    "THINKING_LEVELS",
    "GeminiEvents",
    "GeminiRelay",
    "GeminiStream",
    "classify_gemini_error",
    "error_body",
    "error_event",
    "gemini_contents",
    "gemini_schema",
    "gemini_usage",
    "json_schema",
    "refine",
    "retry_delay",
    "status_word",
    "stream_error",
    "to_canonical",
    "to_completion",
    "to_gemini",
    "to_gemini_answer",
    "usage_metadata",
]


def _called(candidate: dict[str, Any]) -> bool:
    content = candidate.get("content")
    parts = content.get("parts") if type(content) is dict else None
    return type(parts) is list and any(type(p) is dict and "functionCall" in p for p in parts)


class _Gemini(Family):
    name = GEMINI
    model_key = "modelVersion"

    def relay(self, who: Who, *, drop_usage: bool = False) -> GeminiRelay:
        return GeminiRelay(who)

    def read_answer(self, payload: Any, who: Who) -> tuple[dict[str, Any] | None, str | None]:
        if type(payload) is not dict:
            raise bad(who, "a generateContent answer must be a JSON object", payload)
        if "error" in payload:
            raise stream_error(payload, orjson.dumps(payload), who)
        usage = gemini_usage(payload.get("usageMetadata"), who)
        candidates = payload.get("candidates")
        if not candidates:
            feedback = payload.get("promptFeedback")
            if type(feedback) is dict and feedback.get("blockReason"):
                return usage, "content_filter"
            raise bad(who, "a generateContent answer without candidates", payload)
        first = candidates[0] if type(candidates) is list else None
        if type(first) is not dict:
            raise bad(who, "candidates must be a list of objects", payload)
        reason = first.get("finishReason")
        if not isinstance(reason, str):
            return usage, None
        finish = FINISH_REASONS.get(reason, "stop")
        return usage, "tool_calls" if finish == "stop" and _called(first) else finish

    def completion(self, payload: Any, who: Who) -> dict[str, Any]:
        self.read_answer(payload, who)
        return to_completion(payload, who)

    def decoder(self, who: Who) -> GeminiEvents:
        return GeminiEvents(who, True)

    def to_canonical(
        self, payload: Any, ctx: Translation, headers: Mapping[str, str] | None = None
    ) -> dict[str, Any]:
        """Gemini names the model and the streaming method in the URL: a request reaches a
        :class:`Family` as one body, so they come in it as ``model`` and ``stream``."""
        if type(payload) is not dict:
            return to_canonical(payload, ctx, model="")
        model = payload.get("model")
        stream = payload.get("stream") is True
        body = {k: v for k, v in payload.items() if k not in ("model", "stream")}
        return to_canonical(body, ctx, model=model if isinstance(model, str) else "", stream=stream)

    def answer(
        self, completion: dict[str, Any], model: str, request: Mapping[str, Any] | None = None
    ) -> dict[str, Any]:
        return to_gemini_answer(completion, model)

    def stream(
        self, model: str, usage: bool = True, request: Mapping[str, Any] | None = None
    ) -> GeminiStream:
        return GeminiStream(model)

    def error(
        self,
        status: int,
        message: str,
        *,
        type: str | None = None,
        param: str | None = None,
        code: str | None = None,
    ) -> tuple[int, bytes]:
        if code == "upstream_overloaded":
            status = 503
        return status, orjson.dumps(error_body(status, message))


FAMILY = _Gemini()
