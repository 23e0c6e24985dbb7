"""The native lane of the Responses API: a Responses stream relayed as it arrives.

:class:`ResponsesRelay` reads each event for what the gateway needs and hands it back as the
upstream wrote it: content (a delta, or a function call starting: what moves the stream's
time bounds), the usage and finish reason (``response.completed``/``incomplete``), the logical
end, and the errors (``response.failed`` and ``error`` events, raised as their typed error).
Deltas and part events, the bulk of a stream, are recognised by their event name and never
parsed; only the ``response.*`` events that hold the whole response object are, which is also
where the model is named, so only they are rewritten. A stream broken after what was relayed
ends with ``response.failed`` naming the response in progress, numbered next (:meth:`error`).
"""

from __future__ import annotations

import re
from typing import Any

import orjson

from msgflux._secrets import scrub
from msgflux.formats.common import Who, bad
from msgflux.formats.openai_responses.answer import canonical_usage
from msgflux.formats.openai_responses.errors import error_event, event_error, response_error

__all__ = ["ResponsesRelay"]

_TEXT = "response.output_text.delta"
_DELTAS = frozenset(
    (
        _TEXT,
        "response.function_call_arguments.delta",
        "response.reasoning_summary_text.delta",
        "response.reasoning_text.delta",
        "response.refusal.delta",
        "response.custom_tool_call_input.delta",
        "response.mcp_call_arguments.delta",
        "response.code_interpreter_call_code.delta",
        "response.audio.delta",
        "response.audio.transcript.delta",
    )
)
"""Events that carry a piece of the answer (content, unless the piece is empty)."""
_RESPONSES = frozenset(
    (
        "response.created",
        "response.in_progress",
        "response.queued",
        "response.completed",
        "response.incomplete",
        "response.failed",
    )
)
"""Events that hold the whole response object (and so its model)."""
_ITEMS = (b'"type":"message"', b'"type": "message"', b'"type":"reasoning"', b'"type": "reasoning"')
"""An added item of these types carries nothing yet; any other (a call) is content."""
_EMPTY = re.compile(rb'"delta": ?""').search
"""Finds an empty delta (a delta that is not content)."""


def _parse(data: bytes, who: Who) -> dict[str, Any]:
    try:
        payload = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise bad(who, f"a stream event that is not JSON: {exc}", data) from None
    if type(payload) is not dict:
        raise bad(who, "a stream event must be an object", data)
    return payload


def _finish(response: dict[str, Any], kind: str) -> str:
    if kind == "response.incomplete":
        details = response.get("incomplete_details")
        reason = details.get("reason") if type(details) is dict else None
        return "content_filter" if reason == "content_filter" else "length"
    output = response.get("output")
    called = type(output) is list and any(
        type(item) is dict and item.get("type") == "function_call" for item in output
    )
    return "tool_calls" if called else "stop"


class ResponsesRelay:
    """The :class:`~msgflux.formats.Relay` of a Responses API stream (module docstring)."""

    __slots__ = (
        "_names",
        "_response",
        "_seq",
        "_since",
        "done",
        "finish_reason",
        "model",
        "texts",
        "usage",
        "who",
    )

    def __init__(self, who: Who) -> None:
        self.who = who
        self.texts: list[str] | None = None
        self.model: str | None = None
        self._names: dict[Any, bytes] = {}
        self.usage: dict[str, Any] | None = None
        self.finish_reason: str | None = None
        self.done = False
        self._response: dict[str, Any] | None = None
        """The response object as the last event that held it had it."""
        self._seq = 0
        self._since = 0
        """The next event's number is ``_seq + _since``: the last number read, and the
        events relayed since (deltas are never parsed; OpenAI numbers every event)."""

    def error(self, exc: BaseException) -> bytes:
        message = scrub(f"{type(exc).__name__}: {exc}")
        seq = self._seq + self._since
        response = self._response
        if response is None:
            return error_event(message, "server_error", None, seq)
        error = {"code": "server_error", "message": message}
        failed = {**response, "status": "failed", "error": error}
        if self.model is not None:
            failed["model"] = self.model
        data = {"type": "response.failed", "sequence_number": seq, "response": failed}
        return b"event: response.failed\ndata: " + orjson.dumps(data) + b"\n\n"

    def text_of(self, event: str | None, data: bytes) -> str | None:
        if event != _TEXT and (event is not None or _TEXT.encode() not in data):
            return None
        text = _parse(data, self.who).get("delta")
        return text if type(text) is str else None

    def _rename(self, data: bytes, payload: dict[str, Any], model: str) -> bytes:
        """``data`` naming ``model`` as its response's model: the pair replaced in place when
        it occurs once (a quote inside a JSON string is escaped), else encoded again."""
        response = payload.get("response")
        old = response.get("model") if type(response) is dict else None
        if old is None or old == model:
            return data
        assert type(response) is dict
        names = self._names
        pattern = names.get(old)
        if pattern is None:
            pattern = names[old] = b'"model":' + orjson.dumps(old)
        if data.count(pattern) == 1:
            new = names.get(model)
            if new is None:
                new = names[model] = b'"model":' + orjson.dumps(model)
            return data.replace(pattern, new)
        response["model"] = model
        return orjson.dumps(payload)

    def renamed(self, event: str | None, data: bytes, model: str) -> bytes:
        if event is not None and event not in _RESPONSES:
            return data
        if b'"model"' not in data:
            return data
        return self._rename(data, _parse(data, self.who), model)

    def feed(self, event: str | None, data: bytes) -> tuple[bytes | None, bool]:
        self._since += 1
        payload: dict[str, Any] | None = None
        if event is None:  # a server that names its events only in the data
            payload = _parse(data, self.who)
            kind = payload.get("type")
            event = kind if type(kind) is str else ""
        if event in _DELTAS:
            if self.texts is not None and event == _TEXT:
                text = self.text_of(event, data)
                if text:
                    self.texts.append(text)
            return data, _EMPTY(data) is None
        if event == "response.output_item.added":
            return data, not any(kind in data for kind in _ITEMS)
        if event not in _RESPONSES and event != "error":
            return data, False  # part and .done events, keep-alives, hosted tools' progress
        if payload is None:
            payload = _parse(data, self.who)
        seq = payload.get("sequence_number")
        if type(seq) is int:
            self._seq, self._since = seq, 1
        if event == "error":
            self.done = True
            raise event_error(payload, self.who)
        response = payload.get("response")
        if type(response) is dict:
            self._response = response
        if event in ("response.completed", "response.incomplete", "response.failed"):
            if type(response) is not dict:
                raise bad(self.who, f"{event} needs a response object", data)
            self.done = True
            if event == "response.failed":
                raise response_error(response, self.who)
            self.usage = canonical_usage(response.get("usage"), self.who)
            self.finish_reason = _finish(response, event)
        if self.model is not None:
            data = self._rename(data, payload, self.model)
        return data, False
