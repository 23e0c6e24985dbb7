"""Canonical chat answers: check their shape, accumulate their streams, build msgflux's views.

Every chat adapter (OpenAI wire, Anthropic, Gemini, the local model) produces the same
canonical form: an OpenAI chat completion dict, or a stream of OpenAI chunk dicts, with every
field the upstream sent kept. This module is where that form is *read*:

* :func:`check_completion` validates the parts anyone reads (choices, message, content,
  tool calls, audio, usage) and raises :class:`APIResponseValidationError` for anything else:
  a malformed answer is never a built-in exception and never a wrong "success";
* :class:`ChatStream` does the same for each chunk of a stream, accumulates the tool calls
  (a repeated name is set, not appended), reasoning, usage and finish reason, and tells which
  chunks carry content (what moves a stream's first-chunk and idle bounds);
* :func:`completion_view` builds msgflux's :class:`ModelResponse` from a checked answer;
* :func:`completion_of` and :func:`chunk_of` go the other way, for user-written models whose
  msgflux answers must be served in the canonical form (the raw gateway path, the server).
"""

from __future__ import annotations

import base64
import binascii
import time
from collections.abc import AsyncIterator, Iterator, Mapping
from typing import Any, Protocol

import orjson

from msgflux._transport.errors import status_error
from msgflux.exceptions import APIConnectionError, APIResponseValidationError
from msgflux.models.request import Request, Schema
from msgflux.models.response import (
    CONTENT,
    SKIP,
    Metadata,
    ModelResponse,
    ModelStreamResponse,
    Pair,
    metadata_of,
)
from msgflux.models.tool_call import ToolCall

__all__ = [
    "ChatStream",
    "Translator",
    "achat_pairs",
    "atranslated_pairs",
    "chat_pairs",
    "check_completion",
    "chunk_of",
    "completion_of",
    "completion_view",
    "translated_pairs",
]

Who = tuple["str | None", "str | None"]
"""(provider, model_id) to name in errors."""


def _bad(who: Who, what: str, body: Any = None) -> APIResponseValidationError:
    return APIResponseValidationError(what, provider=who[0], model_id=who[1], body=body)


def _text_of(content: Any, who: Who, where: str) -> str | None:
    """A message's content as text: a str, None, or a list of text parts (joined)."""
    if content is None or isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = []
        for part in content:
            if isinstance(part, dict) and part.get("type") == "text":
                text = part.get("text")
                if isinstance(text, str):
                    texts.append(text)
                    continue
            elif isinstance(part, dict) and part.get("type") in ("thinking", "reasoning"):
                continue
            raise _bad(who, f"{where} has a content part that is not text", content)
        return "".join(texts)
    raise _bad(who, f"{where} must be a str, a list of text parts or null", content)


def _check_tool_calls(calls: Any, who: Who, where: str) -> list[dict[str, Any]]:
    if not isinstance(calls, list):
        raise _bad(who, f"{where} must be a list", calls)
    for i, call in enumerate(calls):
        function = call.get("function") if isinstance(call, dict) else None
        if not isinstance(function, dict):
            raise _bad(who, f"{where}[{i}] must be a dict with a 'function' dict", calls)
        if not isinstance(function.get("name"), str) or not function["name"]:
            raise _bad(who, f"{where}[{i}].function.name must be a non-empty str", calls)
        arguments = function.get("arguments")
        if arguments is not None and not isinstance(arguments, (str, dict)):
            raise _bad(who, f"{where}[{i}].function.arguments must be a JSON str", calls)
        if call.get("id") is not None and not isinstance(call["id"], str):
            raise _bad(who, f"{where}[{i}].id must be a str", calls)
    return calls


def _check_usage(usage: Any, who: Who) -> None:
    if usage is not None and not isinstance(usage, dict):
        raise _bad(who, "usage must be an object", usage)


def check_completion(payload: Any, who: Who) -> dict[str, Any]:
    """``payload`` when it is a well-formed chat completion; see the module docstring."""
    if not isinstance(payload, dict):
        raise _bad(who, "a chat completion must be a JSON object", payload)
    choices = payload.get("choices")
    if not isinstance(choices, list) or not choices:
        raise _bad(who, "a chat completion needs a non-empty choices list", payload)
    for i, choice in enumerate(choices):
        message = choice.get("message") if isinstance(choice, dict) else None
        if not isinstance(message, dict):
            raise _bad(who, f"choices[{i}].message must be an object", payload)
        _text_of(message.get("content"), who, f"choices[{i}].message.content")
        if message.get("tool_calls") is not None:
            _check_tool_calls(message["tool_calls"], who, f"choices[{i}].message.tool_calls")
        for field in ("reasoning_content", "reasoning", "refusal"):
            value = message.get(field)
            if value is not None and not isinstance(value, str):
                raise _bad(who, f"choices[{i}].message.{field} must be a str", payload)
        audio = message.get("audio")
        if audio is not None and (
            not isinstance(audio, dict) or not isinstance(audio.get("data"), str)
        ):
            raise _bad(who, f"choices[{i}].message.audio must be an object with base64 data", audio)
        finish = choice.get("finish_reason")
        if finish is not None and not isinstance(finish, str):
            raise _bad(who, f"choices[{i}].finish_reason must be a str", payload)
    _check_usage(payload.get("usage"), who)
    return payload


def _tool_call_objects(calls: list[dict[str, Any]]) -> list[ToolCall]:
    out = []
    for i, call in enumerate(calls):
        function = call["function"]
        arguments = function.get("arguments")
        if isinstance(arguments, dict):
            arguments = orjson.dumps(arguments).decode()
        out.append(
            ToolCall.from_text(call.get("id") or f"call_{i}", function["name"], arguments or "")
        )
    return out


def completion_view(
    payload: dict[str, Any], req: Request, who: Who, headers: Mapping[str, str] | None = None
) -> ModelResponse:
    """msgflux's view of a checked completion: ``response_type``, ``data`` and ``metadata``
    (``usage``, ``finish_reason``, ``request_id``); ``raw`` keeps the whole answer."""
    from msgflux.exceptions import ContentPolicyError

    choice = payload["choices"][0]
    message = choice["message"]
    resp = ModelResponse()
    resp.raw = payload
    metadata = metadata_of(resp)
    metadata["usage"] = payload.get("usage")
    metadata["finish_reason"] = choice.get("finish_reason")
    metadata["request_id"] = headers.get("x-request-id") if headers is not None else None
    content = _text_of(message.get("content"), who, "message.content")
    reasoning = message.get("reasoning_content") or message.get("reasoning")
    tool_calls = message.get("tool_calls")
    data: Any
    if tool_calls:
        kind = "tool_call"
        data = _tool_call_objects(tool_calls)
    elif req.schema is not None:
        kind = "structured"
        data = _decode_structured(req.schema, content, choice, who, ContentPolicyError)
    elif content is None and message.get("audio"):
        audio = message["audio"]
        try:
            raw_audio = base64.b64decode(audio["data"], validate=True)
        except (binascii.Error, ValueError):
            raise _bad(who, "message.audio.data is not valid base64", audio.get("id")) from None
        data = Metadata(id=audio.get("id"), audio=raw_audio)
        kind = "audio_generation"
        if audio.get("transcript"):
            data["text"] = audio["transcript"]
            kind = "audio_text_generation"
    else:
        kind = "text_generation"
        data = content or ""
    if reasoning:
        kind = "reasoning_" + kind
        data = Metadata(answer=data, think=reasoning)
    resp.response_type = kind
    resp.data = data
    return resp


def _decode_structured(
    schema: Schema, content: str | None, choice: dict[str, Any], who: Who, policy: type
) -> Any:
    message = choice["message"]
    if not content:
        refusal = message.get("refusal")
        if refusal:
            raise policy(
                f"the model refused: {refusal}", provider=who[0], model_id=who[1], body=message
            )
        raise _bad(who, "a structured answer without content", message)
    try:
        return schema.decode(content)
    except Exception as exc:  # msgspec and pydantic raise their own validation errors
        hint = ""
        if choice.get("finish_reason") == "length":
            hint = "; the answer was cut short at max_tokens: raise max_tokens"
        raise _bad(
            who, f"the answer does not match generation_schema: {exc}{hint}", content
        ) from None


class ChatStream:
    """Checks and accumulates the canonical chunks of one chat stream (first choice), and keeps
    the :class:`ModelStreamResponse` it feeds (``target``) current: its ``response_type`` as
    soon as content shows what kind of answer it is, its ``metadata`` (``usage``,
    ``finish_reason``, ``reasoning``) and ``data`` (the tool calls) at the end.

    :meth:`feed` returns what msgflux's stream view yields for the chunk: its text, or
    :data:`~msgflux.models.response.CONTENT` (content without text: a tool-call delta,
    reasoning, audio), or :data:`~msgflux.models.response.SKIP` (no content: a role-only or
    empty delta, a usage-only chunk). :meth:`finish` checks the stream really finished and
    returns the tool calls, when the answer was tool calls.
    """

    __slots__ = ("calls", "finish_reason", "reasoning", "target", "usage", "who")

    def __init__(self, target: ModelStreamResponse, who: Who) -> None:
        self.target = target
        self.who = who
        self.reasoning: list[str] = []
        self.calls: dict[int, list[str]] = {}
        self.finish_reason: str | None = None
        self.usage: Any = None

    def _kind(self, base: str) -> None:
        target = self.target
        if target.response_type is None:
            target.response_type = f"reasoning_{base}" if self.reasoning else base

    def feed(self, chunk: Any) -> Any:
        who = self.who
        if not isinstance(chunk, dict):
            raise _bad(who, "a stream chunk must be a JSON object", chunk)
        error = chunk.get("error")
        if error:
            raise _stream_error(error, who)
        usage = chunk.get("usage")
        if usage is not None:
            _check_usage(usage, who)
            self.usage = usage
        choices = chunk.get("choices")
        if choices is None:
            return SKIP
        if not isinstance(choices, list):
            raise _bad(who, "chunk choices must be a list", chunk)
        if not choices:
            return SKIP
        choice = choices[0]
        if not isinstance(choice, dict):
            raise _bad(who, "chunk choices[0] must be an object", chunk)
        finish = choice.get("finish_reason")
        if finish is not None:
            if not isinstance(finish, str):
                raise _bad(who, "chunk finish_reason must be a str", chunk)
            self.finish_reason = finish
        delta = choice.get("delta")
        if delta is None:
            return SKIP
        if not isinstance(delta, dict):
            raise _bad(who, "chunk delta must be an object", chunk)
        item: Any = SKIP
        reasoning = delta.get("reasoning_content") or delta.get("reasoning")
        if reasoning:
            if not isinstance(reasoning, str):
                raise _bad(who, "delta reasoning must be a str", chunk)
            self.reasoning.append(reasoning)
            item = CONTENT
        tool_calls = delta.get("tool_calls")
        if tool_calls is not None:
            self._add_tool_deltas(tool_calls, chunk)
            if tool_calls:
                self._kind("tool_call")
                item = CONTENT
        content = delta.get("content")
        if content is not None:
            text = _text_of(content, who, "delta.content")
            if text:
                self._kind("text_generation")
                return text
        if delta.get("audio"):
            item = CONTENT
        return item

    def text(self, piece: str) -> str:
        """Account for the text of a canonical chunk whose producer built it (a vendor stream's
        translator) and so needs no checking; returns the view item (the text)."""
        if self.target.response_type is None:
            self._kind("text_generation")
        return piece

    def _add_tool_deltas(self, deltas: Any, chunk: Any) -> None:
        who = self.who
        if not isinstance(deltas, list):
            raise _bad(who, "delta tool_calls must be a list", chunk)
        for delta in deltas:
            if not isinstance(delta, dict):
                raise _bad(who, "a tool_calls delta must be an object", chunk)
            index = delta.get("index", 0)
            if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < 1024:
                raise _bad(who, "a tool_calls delta index must be a small int", chunk)
            parts = self.calls.setdefault(index, ["", "", ""])
            call_id = delta.get("id")
            if call_id:
                if not isinstance(call_id, str):
                    raise _bad(who, "a tool_calls delta id must be a str", chunk)
                parts[0] = call_id
            function = delta.get("function")
            if function is None:
                continue
            if not isinstance(function, dict):
                raise _bad(who, "a tool_calls delta function must be an object", chunk)
            name = function.get("name")
            if name:
                if not isinstance(name, str):
                    raise _bad(who, "a tool_calls delta function.name must be a str", chunk)
                current = parts[1]
                # Servers differ: most send the name once, some repeat it in every delta,
                # some send it growing, a few in pieces. Set it unless it is a new piece.
                if not current or name == current or name.startswith(current):
                    parts[1] = name
                elif not current.endswith(name):
                    parts[1] = current + name
            arguments = function.get("arguments")
            if arguments:
                if not isinstance(arguments, str):
                    raise _bad(who, "a tool_calls delta function.arguments must be a str", chunk)
                parts[2] += arguments

    def finish(self) -> list[ToolCall] | None:
        """The stream ended: check it finished and fill the target's metadata; returns the
        tool calls when the answer was tool calls (the view's last item)."""
        if self.finish_reason is None:
            raise APIConnectionError(
                "the stream ended before the model finished (no finish_reason)",
                provider=self.who[0],
                model_id=self.who[1],
            )
        target = self.target
        metadata = metadata_of(target)
        metadata["usage"] = self.usage
        metadata["finish_reason"] = self.finish_reason
        if self.reasoning:
            metadata["reasoning"] = "".join(self.reasoning)
        calls = None
        if self.calls:
            calls = [
                ToolCall.from_text(parts[0] or f"call_{index}", parts[1], parts[2])
                for index, parts in sorted(self.calls.items())
            ]
            target.data = calls
            base = "tool_call"
        else:
            base = "text_generation"
        target.response_type = f"reasoning_{base}" if self.reasoning else base
        return calls


def _stream_error(error: Any, who: Who) -> Exception:
    """An ``{"error": ...}`` event inside a 200 stream: the typed error of its code."""
    code = error.get("code") if isinstance(error, dict) else None
    status = code if isinstance(code, int) and 400 <= code <= 599 else 500
    return status_error(
        status, orjson.dumps({"error": error}), None, provider=who[0], model_id=who[1]
    )


# -- OpenAI-shaped SSE streams ----------------------------------------------------------------
def _chunk(data: bytes, who: Who) -> Any:
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise _bad(who, f"a stream event that is not JSON: {exc}", data[:500]) from None


def chat_pairs(events: Any, state: ChatStream) -> Iterator[Pair]:
    """The ``(chunk, view item)`` pairs of an SSE stream of OpenAI chunks (sync events from
    :func:`msgflux._transport.post_stream`); content moves the stream's time bounds."""
    try:
        for _, data in events:
            if data == b"[DONE]":
                events.finish()
                break
            chunk = _chunk(data, state.who)
            item = state.feed(chunk)
            if item is not SKIP:
                events.content()
            yield chunk, item
        calls = state.finish()
        if calls is not None:
            yield None, calls
    finally:
        events.close()


async def achat_pairs(events: Any, state: ChatStream) -> AsyncIterator[Pair]:
    """Async form of :func:`chat_pairs`."""
    try:
        async for _, data in events:
            if data == b"[DONE]":
                await events.afinish()
                break
            chunk = _chunk(data, state.who)
            item = state.feed(chunk)
            if item is not SKIP:
                events.content()
            yield chunk, item
        calls = state.finish()
        if calls is not None:
            yield None, calls
    finally:
        events.close()


# -- vendor SSE streams, translated into OpenAI chunks ----------------------------------------
class Translator(Protocol):
    """Turns one vendor SSE event into canonical OpenAI chunks (Anthropic's, Gemini's).

    :meth:`feed` returns the chunks of one ``(event name, data)`` pair (often none), each with
    what the :class:`ChatStream` needs of it: None (check and accumulate the chunk), the text
    of a plain text delta the translator built itself (accounted without re-checking), or
    :data:`~msgflux.models.response.SKIP`; it raises the typed error of an in-stream error
    event. ``done`` turns true at the vendor's logical end (Anthropic's ``message_stop``);
    :meth:`end` returns the chunks that close the stream (the usage chunk) once the events
    are over.
    """

    done: bool

    def feed(self, event: str | None, data: bytes) -> list[tuple[dict[str, Any], Any]]: ...

    def end(self) -> list[dict[str, Any]]: ...


def translated_pairs(events: Any, state: ChatStream, translator: Translator) -> Iterator[Pair]:
    """The ``(chunk, view item)`` pairs of a vendor SSE stream, like :func:`chat_pairs` but
    with each event translated into OpenAI chunks first."""
    try:
        for name, data in events:
            for chunk, item in translator.feed(name, data):
                if item is None:
                    item = state.feed(chunk)
                elif type(item) is str:
                    item = state.text(item)
                if item is not SKIP:
                    events.content()
                yield chunk, item
            if translator.done:
                events.finish()
                break
        for chunk in translator.end():
            yield chunk, state.feed(chunk)
        calls = state.finish()
        if calls is not None:
            yield None, calls
    finally:
        events.close()


async def atranslated_pairs(
    events: Any, state: ChatStream, translator: Translator
) -> AsyncIterator[Pair]:
    """Async form of :func:`translated_pairs`."""
    try:
        async for name, data in events:
            for chunk, item in translator.feed(name, data):
                if item is None:
                    item = state.feed(chunk)
                elif type(item) is str:
                    item = state.text(item)
                if item is not SKIP:
                    events.content()
                yield chunk, item
            if translator.done:
                await events.afinish()
                break
        for chunk in translator.end():
            yield chunk, state.feed(chunk)
        calls = state.finish()
        if calls is not None:
            yield None, calls
    finally:
        events.close()


# -- the other way: msgflux answers of user-written models, in canonical form -----------------
def completion_of(result: Any, model: str, created: int | None = None) -> dict[str, Any]:
    """An OpenAI chat completion for a msgflux :class:`ModelResponse` (a user model's answer)."""
    raw = getattr(result, "raw", None)
    if isinstance(raw, dict):
        return raw
    data = getattr(result, "data", result)
    kind = getattr(result, "response_type", None) or "text_generation"
    metadata = getattr(result, "metadata", None) or {}
    message: dict[str, Any] = {"role": "assistant", "content": None}
    if kind.startswith("reasoning_") and isinstance(data, dict):
        message["reasoning_content"] = data.get("think")
        data = data.get("answer")
    finish = metadata.get("finish_reason") if isinstance(metadata, dict) else None
    if isinstance(data, list) and data and all(isinstance(c, ToolCall) for c in data):
        message["tool_calls"] = [c.to_openai() for c in data]
        finish = finish or "tool_calls"
    elif isinstance(data, str):
        message["content"] = data
    elif data is not None:
        message["content"] = _json_text(data)
    usage = metadata.get("usage") if isinstance(metadata, dict) else None
    return {
        "id": f"chatcmpl-msgflux-{time.monotonic_ns():x}",
        "object": "chat.completion",
        "created": created if created is not None else int(time.time()),
        "model": model,
        "choices": [{"index": 0, "message": message, "finish_reason": finish or "stop"}],
        "usage": usage if isinstance(usage, dict) else None,
    }


def _json_text(value: Any) -> str:
    to_builtins = getattr(value, "model_dump", None)
    if callable(to_builtins):
        value = to_builtins(mode="json")
    try:
        import msgspec

        return msgspec.json.encode(value).decode()
    except (TypeError, msgspec.EncodeError):
        return str(value)


def chunk_of(
    item: Any,
    model: str,
    chunk_id: str,
    created: int,
    *,
    finish_reason: str | None = None,
    usage: Any = None,
) -> dict[str, Any]:
    """An OpenAI chunk for one msgflux stream item (text, or the final tool-call list)."""
    delta: dict[str, Any] = {}
    if isinstance(item, str):
        delta["content"] = item
    elif isinstance(item, list) and all(isinstance(c, ToolCall) for c in item):
        delta["tool_calls"] = [{"index": i, **c.to_openai()} for i, c in enumerate(item)]
    chunk: dict[str, Any] = {
        "id": chunk_id,
        "object": "chat.completion.chunk",
        "created": created,
        "model": model,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}],
    }
    if usage is not None:
        chunk["usage"] = usage
    return chunk
