"""OpenAI Chat Completions: the canonical family, and what other families need to know of it.

The canonical request *is* an OpenAI chat body (:mod:`msgflux.models.request` builds and
validates it) and the canonical answer an OpenAI completion or chunk stream, so the
translation both ways is the identity. What lives here is the family's wire knowledge:

* :func:`classify_openai_error`: the OpenAI family's wording of a 400 (context window, content
  filter), which other vendors' errors fall back to;
* :func:`without_vendor_fields`: the canonical body without what other vendors put in it
  (thinking blocks, cache marks...), for APIs that refuse fields they do not define;
* native lanes: :class:`ChatRelay` reads a relayed stream's chunks (usage, finish reason,
  content, an in-stream error) and names the gateway's model in each;
* translated lanes: :class:`ChatEvents` writes canonical chunks as SSE;
* the server side: errors in OpenAI's shape and the stream's error event.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson

from msgflux._secrets import scrub
from msgflux._transport import status_error
from msgflux.exceptions import APIStatusError, ContentPolicyError, ContextWindowExceededError
from msgflux.formats import CHAT, Family
from msgflux.formats.common import Who, bad, rename_model, swap_model
from msgflux.formats.policy import Translation

__all__ = [
    "FAMILY",
    "VENDOR_MESSAGE_FIELDS",
    "ChatChunks",
    "ChatEvents",
    "ChatRelay",
    "classify_openai_error",
    "completion_chunks",
    "error_body",
    "stream_error",
    "stream_error_event",
    "without_vendor_fields",
]

_CONTEXT_MARKERS = (
    "context_length_exceeded",
    "context length",
    "context window",
    "maximum context",
    "context_window",
    "too many tokens",
    "prompt is too long",
    "input is too long",
    "reduce the length",
    "string_above_max_length",
)
_POLICY_MARKERS = (
    "content_policy",
    "content policy",
    "content_filter",
    "content filter",
    "content management policy",
    "safety system",
    "responsible ai",
    "moderation_blocked",
)


def classify_openai_error(status: int, body: Any) -> type[APIStatusError] | None:
    """OpenAI-family wording of a 400/422: context window exceeded, or content filtered."""
    if status not in (400, 422):
        return None
    text = (orjson.dumps(body).decode() if isinstance(body, (dict, list)) else str(body)).lower()
    if any(marker in text for marker in _CONTEXT_MARKERS):
        return ContextWindowExceededError
    if any(marker in text for marker in _POLICY_MARKERS):
        return ContentPolicyError
    return None


# -- the canonical form's vendor fields, for APIs that refuse what they do not define ---------
VENDOR_MESSAGE_FIELDS = frozenset(
    {"thinking_blocks", "reasoning_content", "cache_control", "is_error"}
)
"""Message fields the canonical form carries for other vendors: Anthropic's thinking blocks and
prompt-cache marks, tool results flagged as errors, the reasoning text of an earlier answer."""

_FEATURES = {
    "thinking_blocks": "thinking_blocks",
    "reasoning_content": "thinking_blocks",
    "cache_control": "cache_control",
    "is_error": "metadata",
    "extra_content": "thinking_blocks",
}


def _without(item: Any, keys: frozenset[str] | tuple[str, ...], lost: set[str]) -> Any:
    if type(item) is dict and any(k in item for k in keys):
        lost.update(k for k in keys if k in item)
        return {k: v for k, v in item.items() if k not in keys}
    return item


def _cleaned(items: Any, keys: tuple[str, ...], lost: set[str]) -> Any:
    """``items`` (a list) with ``keys`` removed from its dicts; the same list when none has one."""
    if type(items) is not list:
        return items
    out = [_without(item, keys, lost) for item in items]
    return items if all(a is b for a, b in zip(out, items, strict=True)) else out


def without_vendor_fields(
    body: dict[str, Any], ctx: Translation | None = None, target: str = "OpenAI"
) -> dict[str, Any]:
    """``body`` without the fields other vendors put in the canonical form (see
    :data:`VENDOR_MESSAGE_FIELDS`; ``cache_control`` on content parts and tools, Gemini's
    ``extra_content`` on tool calls), each kind lost through ``ctx``. For APIs that refuse
    fields they do not define (OpenAI, Azure): a conversation begun with Claude or Gemini can
    then go on with them. The body is returned as it is when it holds none (the common case
    costs one scan of the messages)."""
    lost: set[str] = set()
    messages = body.get("messages")
    changed = False
    if type(messages) is list:
        out = []
        for message in messages:
            clean = _without(message, VENDOR_MESSAGE_FIELDS, lost)
            if type(clean) is dict:
                content = _cleaned(clean.get("content"), ("cache_control",), lost)
                calls = _cleaned(clean.get("tool_calls"), ("extra_content",), lost)
                if content is not clean.get("content") or calls is not clean.get("tool_calls"):
                    clean = {**clean, "content": content}
                    if calls is not None:
                        clean["tool_calls"] = calls
            changed = changed or clean is not message
            out.append(clean)
        if changed:
            body = {**body, "messages": out}
    tools = _cleaned(body.get("tools"), ("cache_control",), lost)
    if tools is not body.get("tools"):
        body = {**body, "tools": tools}
    if lost and ctx is not None:
        for field in sorted(lost):
            ctx.lose(_FEATURES[field], field, target, f"take {field} (another vendor's field)")
    return body


# -- the server side: errors in OpenAI's shape --------------------------------------------------
def error_body(message: str, type: str, param: str | None, code: str | None) -> bytes:
    """OpenAI's error body (the message scrubbed of every key the process knows)."""
    error = {"message": scrub(message), "type": type, "param": param, "code": code}
    return orjson.dumps({"error": error})


def stream_error_event(exc: BaseException) -> bytes:
    """The SSE event that ends a chat stream broken after its first chunk."""
    body = error_body(f"{type(exc).__name__}: {exc}", "api_error", None, "stream_interrupted")
    return b"data: " + body + b"\n\n"


_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "invalid_request_error",
    405: "invalid_request_error",
    408: "invalid_request_error",
    413: "invalid_request_error",
    422: "invalid_request_error",
    429: "rate_limit_error",
    502: "api_error",
    503: "service_unavailable",
    504: "timeout_error",
}


def error_type(status: int) -> str:
    """OpenAI's ``error.type`` for an HTTP status."""
    return _ERROR_TYPES.get(status, "api_error")


# -- streams ------------------------------------------------------------------------------------
def stream_error(error: Any, who: Who) -> Exception:
    """An ``{"error": ...}`` event inside a 200 stream: the typed error of its code."""
    code = error.get("code") if isinstance(error, dict) else None
    status = code if isinstance(code, int) and 400 <= code <= 599 else 500
    return status_error(
        status, orjson.dumps({"error": error}), None, provider=who[0], model_id=who[1]
    )


def _has_content(delta: dict[str, Any]) -> bool:
    """Whether a chunk's delta carries content (a role-only or empty delta does not)."""
    for key in ("content", "tool_calls", "reasoning_content", "reasoning", "refusal", "audio"):
        if delta.get(key):
            return True
    return bool(delta.get("function_call"))


def _text(choices: Any) -> str | None:
    choice = choices[0] if type(choices) is list and choices else None
    delta = choice.get("delta") if type(choice) is dict else None
    text = delta.get("content") if type(delta) is dict else None
    return text if type(text) is str else None


class ChatRelay:
    """The :class:`~msgflux.formats.Relay` of an OpenAI chunk stream (see the module
    docstring). Every chunk is parsed (about a microsecond): what moves the idle bound is real
    content, never an empty delta; the relayed bytes are the upstream's, with the model's
    name replaced in place."""

    __slots__ = (
        "_drop_usage",
        "_names",
        "done",
        "finish_reason",
        "model",
        "texts",
        "usage",
        "who",
    )

    def __init__(self, who: Who, drop_usage: bool = False) -> None:
        self.who = who
        self.texts: list[str] | None = None
        self.model: str | None = None
        self._drop_usage = drop_usage
        self._names: dict[Any, bytes] = {}
        self.usage: dict[str, Any] | None = None
        self.finish_reason: str | None = None
        self.done = False

    def feed(self, event: str | None, data: bytes) -> tuple[bytes | None, bool]:
        if data == b"[DONE]":
            self.done = True
            return data, False
        who = self.who
        try:
            chunk = orjson.loads(data)
        except orjson.JSONDecodeError as exc:
            raise bad(who, f"a stream event that is not JSON: {exc}", data) from None
        if type(chunk) is not dict:
            raise bad(who, "a stream chunk must be a JSON object", data)
        error = chunk.get("error")
        if error:
            raise stream_error(error, who)
        usage = chunk.get("usage")
        if type(usage) is dict:
            self.usage = usage
        content = False
        choices = chunk.get("choices")
        if choices and type(choices) is list:
            for choice in choices:
                if type(choice) is not dict:
                    raise bad(who, "a stream chunk's choices must be objects", data)
                finish = choice.get("finish_reason")
                if finish is not None:
                    self.finish_reason = finish
                delta = choice.get("delta")
                if not content and type(delta) is dict and delta:
                    content = _has_content(delta)
            if self.texts is not None:
                text = _text(choices)
                if text:
                    self.texts.append(text)
        elif usage is not None and self._drop_usage:
            return None, False
        model = self.model
        if model is not None:
            data = swap_model(data, chunk, model, self._names)
        return data, content

    def renamed(self, event: str | None, data: bytes, model: str) -> bytes:
        if data == b"[DONE]" or b'"model"' not in data:
            return data
        return rename_model(data, model, self._names)

    def error(self, exc: BaseException) -> bytes:
        return stream_error_event(exc)

    def text_of(self, event: str | None, data: bytes) -> str | None:
        if data == b"[DONE]":
            return None
        chunk = orjson.loads(data)
        return _text(chunk.get("choices")) if type(chunk) is dict else None


def completion_chunks(completion: dict[str, Any]) -> list[dict[str, Any]]:
    """A whole chat completion as the stream that would have given it: the role, the
    reasoning, the text, the tool calls (each with its index), the finish and the usage (a
    stream replayed from a stored answer)."""
    ident = completion.get("id") or "chatcmpl-replay"
    created = completion.get("created") or 0
    model = completion.get("model") or ""
    out: list[dict[str, Any]] = []

    def add(delta: dict[str, Any], finish: str | None = None, index: int = 0) -> None:
        choice = {"index": index, "delta": delta, "finish_reason": finish}
        out.append(
            {
                "id": ident,
                "object": "chat.completion.chunk",
                "created": created,
                "model": model,
                "choices": [choice],
            }
        )

    for position, choice in enumerate(completion.get("choices") or ()):
        index = choice.get("index", position)
        message = choice.get("message") or {}
        add({"role": "assistant", "content": ""}, index=index)
        reasoning = message.get("reasoning_content") or message.get("reasoning")
        if reasoning:
            add({"reasoning_content": reasoning}, index=index)
        content = message.get("content")
        if isinstance(content, list):
            content = "".join(p.get("text") or "" for p in content if isinstance(p, dict))
        if content:
            add({"content": content}, index=index)
        calls = message.get("tool_calls")
        if calls:
            add({"tool_calls": [{"index": i, **call} for i, call in enumerate(calls)]}, index=index)
        add({}, choice.get("finish_reason") or "stop", index)
    usage = completion.get("usage")
    if usage:
        out.append(
            {
                "id": ident,
                "object": "chat.completion.chunk",
                "created": created,
                "model": model,
                "choices": [],
                "usage": usage,
            }
        )
    return out


class ChatChunks:
    """A native chat stream's chunks as dicts (a :class:`~msgflux.formats.Decoder`: OpenAI's
    chunks are the canonical ones already)."""

    __slots__ = ("done", "who")

    def __init__(self, who: Who) -> None:
        self.who = who
        self.done = False

    def feed(self, event: str | None, data: bytes) -> list[tuple[dict[str, Any], Any]]:
        if data == b"[DONE]":
            self.done = True
            return []
        try:
            chunk = orjson.loads(data)
        except orjson.JSONDecodeError as exc:
            raise bad(self.who, f"a stream event that is not JSON: {exc}", data) from None
        if type(chunk) is not dict:
            raise bad(self.who, "a stream chunk must be a JSON object", data)
        return [(chunk, None)]

    def end(self) -> list[dict[str, Any]]:
        return []


class ChatEvents:
    """Canonical chunks as OpenAI's SSE (:class:`~msgflux.formats.StreamOut`): the model named,
    the usage-only chunk dropped unless the client asked for it, ``[DONE]`` at the end."""

    __slots__ = ("_dumps", "model", "usage")

    def __init__(self, model: str, usage: bool = True) -> None:
        self.model = model
        self.usage = usage
        self._dumps = orjson.dumps

    def feed(self, chunk: dict[str, Any]) -> bytes:
        if not self.usage and not chunk.get("choices") and "usage" in chunk:
            return b""
        chunk["model"] = self.model
        return b"data: " + self._dumps(chunk) + b"\n\n"

    def end(self) -> bytes:
        return b"data: [DONE]\n\n"

    def error(self, exc: BaseException) -> bytes:
        return stream_error_event(exc)


class _Chat(Family):
    name = CHAT

    def native_body(self, payload: dict[str, Any]) -> tuple[dict[str, Any], bool]:
        if payload.get("stream") is not True:
            return payload, False
        options = payload.get("stream_options")
        if type(options) is dict and options.get("include_usage"):
            return payload, False
        # Tokens are accounted (cost, tpm, budgets): ask for the usage chunk, drop it on the
        # way back. The one field a native lane adds.
        options = {**options, "include_usage": True} if type(options) is dict else None
        return {**payload, "stream_options": options or {"include_usage": True}}, True

    def relay(self, who: Who, *, drop_usage: bool = False) -> ChatRelay:
        return ChatRelay(who, drop_usage)

    def read_answer(self, payload: Any, who: Who) -> tuple[dict[str, Any] | None, str | None]:
        if type(payload) is not dict:
            raise bad(who, "a chat completion must be a JSON object", payload)
        choices = payload.get("choices")
        if not choices:
            error = payload.get("error")
            if error:
                raise stream_error(error, who)
            raise bad(who, "a chat completion needs a non-empty choices list", payload)
        usage = payload.get("usage")
        choice = choices[0] if type(choices) is list else None
        finish = choice.get("finish_reason") if type(choice) is dict else None
        return (usage if type(usage) is dict else None), finish

    def completion(self, payload: Any, who: Who) -> dict[str, Any]:
        if type(payload) is not dict or not payload.get("choices"):
            self.read_answer(payload, who)  # raises the typed error
        return payload  # type: ignore[no-any-return]

    def decoder(self, who: Who) -> ChatChunks:
        return ChatChunks(who)

    def to_canonical(
        self, payload: Any, ctx: Translation, headers: Mapping[str, str] | None = None
    ) -> dict[str, Any]:
        from msgflux.models.request import CHAT as KIND
        from msgflux.models.request import from_openai

        req = from_openai(KIND, payload)
        body = dict(req.body)
        if req.stream:
            body["stream"] = True
        return body

    def answer(
        self, completion: dict[str, Any], model: str, request: Mapping[str, Any] | None = None
    ) -> dict[str, Any]:
        completion["model"] = model
        return completion

    def stream(
        self, model: str, usage: bool = True, request: Mapping[str, Any] | None = None
    ) -> ChatEvents:
        return ChatEvents(model, usage)

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


FAMILY = _Chat()
