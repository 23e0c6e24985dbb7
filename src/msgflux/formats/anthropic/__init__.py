"""Anthropic's Messages API, both ways, with no I/O.

* requests: :mod:`.request_decode` (a Messages body -> canonical) and :mod:`.request_encode`
  (canonical -> a Messages body);
* answers: :mod:`.answer` (both ways, usage, stop reasons);
* streams: :mod:`.stream_decode` (events -> canonical chunks), :mod:`.stream_encode`
  (canonical chunks -> events) and :mod:`.relay` (a native stream, read as it passes);
* errors: :mod:`.errors` (``error.type`` <-> status, Anthropic's error body).

:data:`FAMILY` is the :class:`~msgflux.formats.Family` the gateway and the server use.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson

from msgflux.formats import MESSAGES, Family
from msgflux.formats.anthropic.answer import (
    FINISH_REASONS,
    STOP_REASONS,
    anthropic_usage,
    message_usage,
    to_completion,
    to_message,
)
from msgflux.formats.anthropic.errors import (
    ERROR_STATUS,
    classify_anthropic_error,
    error_body,
    error_event,
    error_type,
)
from msgflux.formats.anthropic.relay import MessagesRelay
from msgflux.formats.anthropic.request_decode import to_canonical
from msgflux.formats.anthropic.request_encode import (
    DEFAULT_VERSION,
    JSON_TOOL,
    NO_SAMPLING_VERSIONS,
    THINKING_BUDGETS,
    json_tool,
    to_anthropic,
)
from msgflux.formats.anthropic.stream_decode import AnthropicEvents
from msgflux.formats.anthropic.stream_encode import MessageEvents
from msgflux.formats.common import Who, bad
from msgflux.formats.policy import Translation

__all__ = [
    "DEFAULT_VERSION",
    "ERROR_STATUS",
    "FAMILY",
    "FINISH_REASONS",
    "JSON_TOOL",
    "NO_SAMPLING_VERSIONS",
    "STOP_REASONS",
    "THINKING_BUDGETS",
    "AnthropicEvents",
    "MessageEvents",
    "MessagesRelay",
    "anthropic_usage",
    "classify_anthropic_error",
    "error_body",
    "error_event",
    "error_type",
    "json_tool",
    "message_usage",
    "to_anthropic",
    "to_canonical",
    "to_completion",
    "to_message",
    "without_unsigned_thinking",
]


def without_unsigned_thinking(payload: dict[str, Any]) -> dict[str, Any]:
    """``payload`` without the thinking blocks that have no signature.

    Those are another vendor's reasoning as a translated answer gave it (:func:`to_message`):
    a client sends them back with the conversation, and Anthropic refuses a block it did not
    sign. The one change a native Messages lane makes to a body; the body is returned as it
    is when it holds none (one look at each assistant turn)."""
    messages = payload.get("messages")
    if type(messages) is not list:
        return payload
    out = None
    for i, turn in enumerate(messages):
        content = turn.get("content") if type(turn) is dict else None
        if type(content) is not list or turn.get("role") != "assistant":
            continue
        kept = [
            block
            for block in content
            if not (
                type(block) is dict
                and block.get("type") == "thinking"
                and not block.get("signature")
            )
        ]
        if len(kept) != len(content):
            if out is None:
                out = list(messages)
            out[i] = {**turn, "content": kept or [{"type": "text", "text": ""}]}
    return payload if out is None else {**payload, "messages": out}


class _Messages(Family):
    name = MESSAGES
    forward_headers = ("anthropic-version", "anthropic-beta")
    request_id_header = "request-id"

    def native_body(self, payload: dict[str, Any]) -> tuple[dict[str, Any], bool]:
        return without_unsigned_thinking(payload), False

    def relay(self, who: Who, *, drop_usage: bool = False) -> MessagesRelay:
        return MessagesRelay(who)

    def read_answer(self, payload: Any, who: Who) -> tuple[dict[str, Any] | None, str | None]:
        if type(payload) is not dict:
            raise bad(who, "a Messages API answer must be a JSON object", payload)
        if payload.get("type") == "error":
            error = payload.get("error")
            kind = error.get("type") if isinstance(error, dict) else None
            from msgflux._transport import status_error

            raise status_error(
                ERROR_STATUS.get(kind, 500) if isinstance(kind, str) else 500,
                orjson.dumps(payload),
                None,
                provider=who[0],
                model_id=who[1],
                classify=classify_anthropic_error,
            )
        stop = payload.get("stop_reason")
        finish = FINISH_REASONS.get(stop, "stop") if isinstance(stop, str) else None
        return anthropic_usage(payload.get("usage"), who), finish

    def completion(self, payload: Any, who: Who) -> dict[str, Any]:
        self.read_answer(payload, who)
        return to_completion(payload, who)

    def decoder(self, who: Who) -> AnthropicEvents:
        return AnthropicEvents(who, False, True)

    def to_canonical(
        self, payload: Any, ctx: Translation, headers: Mapping[str, str] | None = None
    ) -> dict[str, Any]:
        version = headers.get("anthropic-version") if headers else None
        if headers and headers.get("anthropic-beta"):
            ctx.lose("betas", "anthropic-beta", "the deployment's API", "take Anthropic's betas")
        return to_canonical(payload, ctx, version=version)

    def answer(
        self, completion: dict[str, Any], model: str, request: Mapping[str, Any] | None = None
    ) -> dict[str, Any]:
        return to_message(completion, model)

    def stream(
        self, model: str, usage: bool = True, request: Mapping[str, Any] | None = None
    ) -> MessageEvents:
        return MessageEvents(model)

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
            status = 529
        return status, orjson.dumps(error_body(error_type(status), message))


FAMILY = _Messages()
