"""OpenAI's Responses API, both ways, with no I/O.

* requests: :mod:`.request_decode` (a Responses body -> canonical, with :mod:`.input_decode`
  for its ``input`` items) and :mod:`.request_encode` (canonical -> a Responses body);
  :mod:`.expand` puts stored turns (``previous_response_id``) back into a request;
* answers: :mod:`.answer` (both ways, usage, the ``response`` object);
* streams: :mod:`.stream_decode` (events -> canonical chunks), :mod:`.stream_encode`
  (canonical chunks -> events) and :mod:`.relay` (a native stream, read as it passes);
* errors: :mod:`.errors` (a failed response's or an ``error`` event's code as the typed error;
  OpenAI's error body).

The canonical form names a function of a ``namespace`` tool ``NS__name``; an answer to a
Responses client names it back as the client declared it (``name`` and ``namespace``).

:data:`FAMILY` is the :class:`~msgflux.formats.Family` the gateway and the server use.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from msgflux.formats import RESPONSES, Family
from msgflux.formats.common import Who, bad
from msgflux.formats.openai_chat import stream_error
from msgflux.formats.openai_responses.answer import (
    canonical_usage,
    finish_of,
    response_object,
    responses_usage,
    split_name,
    to_completion,
    to_response,
)
from msgflux.formats.openai_responses.errors import (
    CODE_STATUS,
    classify_responses_error,
    error_body,
    error_event,
    error_type,
    event_error,
    response_error,
)
from msgflux.formats.openai_responses.expand import expand, input_items, output_items
from msgflux.formats.openai_responses.relay import ResponsesRelay
from msgflux.formats.openai_responses.request_decode import to_canonical
from msgflux.formats.openai_responses.request_encode import to_responses
from msgflux.formats.openai_responses.stream_decode import ResponseStreamEvents
from msgflux.formats.openai_responses.stream_encode import ResponseEvents
from msgflux.formats.policy import Translation

__all__ = [
    "CODE_STATUS",
    "FAMILY",
    "ResponseEvents",
    "ResponseStreamEvents",
    "ResponsesRelay",
    "canonical_usage",
    "classify_responses_error",
    "error_body",
    "error_event",
    "error_type",
    "event_error",
    "expand",
    "input_items",
    "output_items",
    "response_error",
    "response_object",
    "responses_usage",
    "split_name",
    "to_canonical",
    "to_completion",
    "to_response",
    "to_responses",
]


class _Responses(Family):
    name = RESPONSES

    def native_body(self, payload: dict[str, Any]) -> tuple[dict[str, Any], bool]:
        return payload, False  # response.completed always carries the usage

    def relay(self, who: Who, *, drop_usage: bool = False) -> ResponsesRelay:
        return ResponsesRelay(who)

    def read_answer(self, payload: Any, who: Who) -> tuple[dict[str, Any] | None, str | None]:
        if type(payload) is not dict:
            raise bad(who, "a Responses API answer must be a JSON object", payload)
        if payload.get("status") == "failed":
            raise response_error(payload, who)
        output = payload.get("output")
        if type(output) is not list:
            error = payload.get("error")
            if error:
                raise stream_error(error, who)
            raise bad(who, "a Responses API answer needs an output list", payload)
        called = any(type(item) is dict and item.get("type") == "function_call" for item in output)
        usage = canonical_usage(payload.get("usage"), who)
        status = payload.get("status")
        if status in ("queued", "in_progress", "cancelled"):
            return usage, None  # a background response: it is the client's to poll
        if status == "incomplete":
            details = payload.get("incomplete_details")
            reason = details.get("reason") if type(details) is dict else None
            return usage, "content_filter" if reason == "content_filter" else "length"
        return usage, finish_of(payload, called, who)

    def completion(self, payload: Any, who: Who) -> dict[str, Any]:
        if self.read_answer(payload, who)[1] is None:
            raise bad(who, "a background response is not an answer yet", payload)
        return to_completion(payload, who)

    def decoder(self, who: Who) -> ResponseStreamEvents:
        return ResponseStreamEvents(who, True)

    def to_canonical(
        self, payload: Any, ctx: Translation, headers: Mapping[str, str] | None = None
    ) -> dict[str, Any]:
        return to_canonical(payload, ctx)

    def answer(
        self, completion: dict[str, Any], model: str, request: Mapping[str, Any] | None = None
    ) -> dict[str, Any]:
        return to_response(completion, model, request)

    def stream(
        self, model: str, usage: bool = True, request: Mapping[str, Any] | None = None
    ) -> ResponseEvents:
        return ResponseEvents(model, request)

    def error(
        self,
        status: int,
        message: str,
        *,
        type: str | None = None,
        param: str | None = None,
        code: str | None = None,
    ) -> tuple[int, bytes]:
        return status, error_body(message, type or error_type(status), param, code)


FAMILY = _Responses()
