"""The native lane of the Messages API: an Anthropic stream relayed as it arrives.

:class:`MessagesRelay` reads each event for what the gateway needs and hands it back as the
upstream wrote it: the usage (``message_start`` and the cumulative counts of
``message_delta``), the stop reason, content (the first delta or tool call: what moves the
stream's time bounds), the logical end (``message_stop``) and an ``error`` event (raised as its
typed error). Text deltas, the bulk of a stream, are recognised by their event name and never
parsed; only ``message_start`` names the model, so only it is rewritten.
"""

from __future__ import annotations

import re
from typing import Any

import orjson

from msgflux._transport import status_error
from msgflux.formats.anthropic.answer import FINISH_REASONS, anthropic_usage
from msgflux.formats.anthropic.errors import (
    ERROR_STATUS,
    classify_anthropic_error,
    interrupted_event,
)
from msgflux.formats.common import Who, bad

__all__ = ["MessagesRelay"]

_EMPTY = re.compile(rb'"(?:text|partial_json)": ?""').search
"""Finds an empty delta (a delta that is not content)."""
"""A delta holding one of these carries nothing (some servers send empty first deltas)."""
_CONTENT_BLOCKS = (b'"tool_use"', b'"server_tool_use"', b'"redacted_thinking"')


def _parse(data: bytes, who: Who) -> dict[str, Any]:
    try:
        payload = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise bad(who, f"a stream event that is not JSON: {exc}", data) from None
    if type(payload) is not dict:
        raise bad(who, "a stream event must be an object", data)
    return payload


class MessagesRelay:
    """The :class:`~msgflux.formats.Relay` of a Messages API stream (module docstring)."""

    __slots__ = ("_counts", "done", "finish_reason", "model", "texts", "usage", "who")

    def __init__(self, who: Who) -> None:
        self.who = who
        self.texts: list[str] | None = None
        self.model: str | None = None
        self._counts: dict[str, Any] = {}
        self.usage: dict[str, Any] | None = None
        self.finish_reason: str | None = None
        self.done = False

    def error(self, exc: BaseException) -> bytes:
        return interrupted_event(exc)

    def text_of(self, event: str | None, data: bytes) -> str | None:
        if event != "content_block_delta" or b'"text_delta"' not in data:
            return None
        delta = _parse(data, self.who).get("delta")
        text = delta.get("text") if type(delta) is dict else None
        return text if type(text) is str else None

    def renamed(self, event: str | None, data: bytes, model: str) -> bytes:
        if event != "message_start":
            return data
        payload = _parse(data, self.who)
        message = payload.get("message")
        if type(message) is dict and message.get("model", model) != model:
            message["model"] = model
            return orjson.dumps(payload)
        return data

    def feed(self, event: str | None, data: bytes) -> tuple[bytes | None, bool]:
        if event == "content_block_delta":
            if self.texts is not None:
                text = self.text_of(event, data)
                if text:
                    self.texts.append(text)
            return data, _EMPTY(data) is None
        if event == "content_block_start":
            if any(kind in data for kind in _CONTENT_BLOCKS):
                return data, True
            return data, b'"text":""' not in data and b'"thinking":""' not in data
        if event in ("ping", "content_block_stop"):
            return data, False
        payload = _parse(data, self.who)
        kind = payload.get("type") or event
        if kind == "message_start":
            message = payload.get("message")
            if type(message) is dict:
                self._count(message.get("usage"))
                if self.model is not None:
                    data = self.renamed(event, data, self.model)
        elif kind == "message_delta":
            self._count(payload.get("usage"))
            delta = payload.get("delta")
            stop = delta.get("stop_reason") if type(delta) is dict else None
            if isinstance(stop, str):
                self.finish_reason = FINISH_REASONS.get(stop, "stop")
        elif kind == "message_stop":
            self.done = True
        elif kind == "error":
            error = payload.get("error")
            etype = error.get("type") if isinstance(error, dict) else None
            status = ERROR_STATUS.get(etype, 500) if isinstance(etype, str) else 500
            who = self.who
            raise status_error(
                status,
                data,
                None,
                provider=who[0],
                model_id=who[1],
                classify=classify_anthropic_error,
            )
        return data, False

    def _count(self, usage: Any) -> None:
        if type(usage) is not dict:
            return
        counts = self._counts
        counts.update(usage)  # message_delta counts are cumulative
        self.usage = anthropic_usage(counts, self.who)
