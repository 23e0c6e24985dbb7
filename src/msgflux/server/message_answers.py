"""Canonical answers as Anthropic's Messages API gives them: the server's translation back.

Pure functions, no I/O (:mod:`.anthropic_api` is the endpoint; requests come in through
:mod:`.messages`):

* :func:`to_message`: a canonical chat completion -> an Anthropic ``message``;
* :class:`MessageEvents`: canonical stream chunks -> Anthropic's named SSE events, chunk by
  chunk, holding only the open block's state (bounded memory whatever the stream's length);
* :func:`error_type`, :func:`error_body` and :func:`error_event`: Anthropic's errors.

The provider adapter's tables (:mod:`msgflux.models.providers.anthropic`) are reused here,
inverted, so the two directions cannot disagree: ``FINISH_REASONS`` (stop reasons) and
``ERROR_STATUS`` (error types); :func:`message_usage` is the inverse of its usage mapping.
"""

from __future__ import annotations

from typing import Any

import orjson

from msgflux._secrets import scrub
from msgflux.models.providers.anthropic import ERROR_STATUS, FINISH_REASONS
from msgflux.server.errors import is_overloaded

__all__ = [
    "STOP_REASONS",
    "MessageEvents",
    "error_body",
    "error_event",
    "error_type",
    "message_usage",
    "to_message",
]

STOP_REASONS: dict[str, str] = {}
"""OpenAI ``finish_reason`` -> Anthropic ``stop_reason``: the first reason of the provider's
table that maps to it (``stop`` -> ``end_turn``, ``length`` -> ``max_tokens``, ...)."""
for _stop, _finish in FINISH_REASONS.items():
    STOP_REASONS.setdefault(_finish, _stop)
STOP_REASONS.setdefault("function_call", "tool_use")

_ERROR_TYPES = {status: kind for kind, status in ERROR_STATUS.items()}


# -- the answer ---------------------------------------------------------------------------------
def message_usage(usage: Any) -> dict[str, Any]:
    """Anthropic's usage for OpenAI's (the inverse of the provider's ``anthropic_usage``):
    ``input_tokens`` counts only uncached tokens; the cache fields are there when known.
    A deployment that reported no usage gives zeros."""
    if type(usage) is not dict:
        return {"input_tokens": 0, "output_tokens": 0}
    prompt = usage.get("prompt_tokens") or 0
    read = usage.get("cache_read_input_tokens")
    if read is None:
        details = usage.get("prompt_tokens_details")
        read = details.get("cached_tokens") if type(details) is dict else None
    created = usage.get("cache_creation_input_tokens")
    out: dict[str, Any] = {
        "input_tokens": max(0, prompt - (read or 0) - (created or 0)),
        "output_tokens": usage.get("completion_tokens") or 0,
    }
    if created is not None:
        out["cache_creation_input_tokens"] = created
    if read is not None:
        out["cache_read_input_tokens"] = read
    return out


def _input(arguments: Any, where: str) -> dict[str, Any]:
    if type(arguments) is dict:
        return arguments
    if not arguments:
        return {}
    try:
        value = orjson.loads(arguments)
    except (orjson.JSONDecodeError, TypeError):
        value = None
    if type(value) is not dict:
        raise ValueError(f"the deployment's {where} is not a JSON object: {arguments!r:.80}")
    return value


def _thoughts(message: dict[str, Any]) -> list[dict[str, Any]]:
    blocks = message.get("thinking_blocks")
    if blocks:
        return list(blocks)  # an Anthropic deployment's, signatures kept
    reasoning = message.get("reasoning_content") or message.get("reasoning")
    if reasoning:
        return [{"type": "thinking", "thinking": reasoning, "signature": ""}]
    return []


def to_message(completion: Any, name: str) -> dict[str, Any]:
    """The Anthropic ``message`` for a canonical chat completion (``model``: the gateway name);
    raises ``ValueError`` for a completion that is not one."""
    try:
        choice = completion["choices"][0]
        message = choice["message"]
    except (KeyError, IndexError, TypeError):
        raise ValueError(
            f"the deployment's answer has no choices[0].message: {completion!r:.120}"
        ) from None
    content = _thoughts(message)
    text = message.get("content")
    if type(text) is list:
        text = "".join(p.get("text") or "" for p in text if type(p) is dict)
    if text:
        content.append({"type": "text", "text": text})
    refusal = message.get("refusal")
    if refusal:
        content.append({"type": "text", "text": refusal})
    for j, call in enumerate(message.get("tool_calls") or ()):
        function = call.get("function") or {}
        content.append(
            {
                "type": "tool_use",
                "id": call.get("id") or f"toolu_{j}",
                "name": function.get("name"),
                "input": _input(function.get("arguments"), f"tool_calls[{j}].function.arguments"),
            }
        )
    finish = choice.get("finish_reason")
    stop = "refusal" if refusal else STOP_REASONS.get(finish, "end_turn")
    return {
        "id": completion.get("id") or "msg",
        "type": "message",
        "role": "assistant",
        "model": name,
        "content": content,
        "stop_reason": stop,
        "stop_sequence": None,
        "usage": message_usage(completion.get("usage")),
    }


# -- streams ------------------------------------------------------------------------------------
def _event(name: bytes, data: Any) -> bytes:
    return b"event: " + name + b"\ndata: " + orjson.dumps(data) + b"\n\n"


_PING = _event(b"ping", {"type": "ping"})
_STOP = _event(b"message_stop", {"type": "message_stop"})


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
        return _event(b"message_start", {"type": "message_start", "message": message}) + _PING

    def _close(self) -> bytes:
        if self.open is None:
            return b""
        self.open = None
        return _event(b"content_block_stop", {"type": "content_block_stop", "index": self.index})

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
        return head + _event(b"content_block_start", start)

    def _delta(self, delta: dict[str, Any]) -> bytes:
        data = {"type": "content_block_delta", "index": self.index, "delta": delta}
        return _event(b"content_block_delta", data)

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
            if block.get("type") == "thinking" and self.open == "thinking":
                signature = block.get("signature") or ""
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
        tail = _event(b"message_delta", {"type": "message_delta", "delta": delta, "usage": usage})
        return head + self._close() + tail + _STOP

    def error(self, exc: BaseException) -> bytes:
        """The event that ends a stream broken mid-way (Anthropic's ``error`` event)."""
        kind = "overloaded_error" if is_overloaded(exc) else "api_error"
        return error_event(kind, f"{type(exc).__name__}: {exc}")


# -- errors -------------------------------------------------------------------------------------
def error_type(status: int) -> str:
    """Anthropic's ``error.type`` for an HTTP status (the provider's table, inverted)."""
    return _ERROR_TYPES.get(status) or ("api_error" if status >= 500 else "invalid_request_error")


def error_event(kind: str, message: str) -> bytes:
    """An ``error`` SSE event (the body of an error response is its ``data``)."""
    return _event(b"error", error_body(kind, message))


def error_body(kind: str, message: str) -> dict[str, Any]:
    """Anthropic's error body (the message scrubbed of every key the process knows)."""
    return {"type": "error", "error": {"type": kind, "message": scrub(message)}}
