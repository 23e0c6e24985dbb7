"""Bedrock Converse answers, both ways, with no I/O.

* :func:`to_completion`: a Converse answer -> the canonical chat completion: ``text`` blocks
  join into ``content``, ``toolUse`` blocks become ``tool_calls``, ``reasoningContent``
  becomes ``reasoning_content`` and ``thinking_blocks`` (their signatures kept, so a Claude
  conversation can send them back); ``stopReason`` maps to ``finish_reason``; a guardrail
  that intervened (``guardrail_intervened``) or content the model filtered
  (``content_filtered``) raises :class:`~msgflux.exceptions.ContentPolicyError` with the
  guardrail's trace, and a malformed model output an
  :class:`~msgflux.exceptions.APIResponseValidationError`;
* :func:`to_converse_answer`: a canonical completion -> a Converse answer;
* usage both ways: :func:`converse_usage` (cache reads and writes are prompt tokens too, as
  OpenAI counts them, and kept as Anthropic names them) and its inverse :func:`token_usage`.

:data:`FINISH_REASONS` and :data:`STOP_REASONS` are one table read both ways.
"""

from __future__ import annotations

from typing import Any

import orjson

from msgflux.formats.common import Who, bad, int_of, now, policy_error

__all__ = [
    "FINISH_REASONS",
    "STOP_REASONS",
    "content_of",
    "converse_usage",
    "finish_of",
    "to_completion",
    "to_converse_answer",
    "token_usage",
]

FINISH_REASONS = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "guardrail_intervened": "content_filter",
    "content_filtered": "content_filter",
    "malformed_model_output": "error",
    "malformed_tool_use": "error",
}
"""``stopReason`` -> OpenAI ``finish_reason``; ``content_filter`` raises ContentPolicyError,
``error`` APIResponseValidationError; an unknown reason is ``stop``."""

STOP_REASONS: dict[str, str] = {"function_call": "tool_use"}
"""OpenAI ``finish_reason`` -> ``stopReason``: the first reason that maps to it."""
for _reason, _finish_reason in FINISH_REASONS.items():
    STOP_REASONS.setdefault(_finish_reason, _reason)
del _reason, _finish_reason


def converse_usage(usage: Any, who: Who) -> dict[str, Any] | None:
    """OpenAI's usage for Converse's ``usage`` (``inputTokens`` excludes the cache)."""
    if usage is None:
        return None
    if type(usage) is not dict:
        raise bad(who, "usage must be an object", usage)
    fresh = int_of(usage.get("inputTokens"), who, "inputTokens")
    output = int_of(usage.get("outputTokens"), who, "outputTokens")
    read = int_of(usage.get("cacheReadInputTokens"), who, "cacheReadInputTokens")
    written = int_of(usage.get("cacheWriteInputTokens"), who, "cacheWriteInputTokens")
    prompt = fresh + read + written
    out: dict[str, Any] = {
        "prompt_tokens": prompt,
        "completion_tokens": output,
        "total_tokens": prompt + output,
    }
    if read or written:
        out["prompt_tokens_details"] = {"cached_tokens": read}
        out["cache_read_input_tokens"] = read
        out["cache_creation_input_tokens"] = written
    return out


def token_usage(usage: Any) -> dict[str, int]:
    """Converse's ``usage`` for an OpenAI usage dict (the inverse of :func:`converse_usage`)."""
    usage = usage if isinstance(usage, dict) else {}
    prompt = usage.get("prompt_tokens") or 0
    output = usage.get("completion_tokens") or 0
    details = usage.get("prompt_tokens_details")
    read = usage.get("cache_read_input_tokens")
    if read is None:
        read = details.get("cached_tokens") if isinstance(details, dict) else 0
    written = usage.get("cache_creation_input_tokens") or 0
    out = {
        "inputTokens": max(prompt - (read or 0) - written, 0),
        "outputTokens": output,
        "totalTokens": prompt + output,
    }
    if read:
        out["cacheReadInputTokens"] = read
    if written:
        out["cacheWriteInputTokens"] = written
    return out


def finish_of(stop: Any, who: Who, body: Any) -> str:
    """The ``finish_reason`` of a ``stopReason``, or the error it means."""
    if not isinstance(stop, str):
        raise bad(who, "stopReason must be a str", body)
    finish = FINISH_REASONS.get(stop, "stop")
    if finish == "content_filter":
        what = "a guardrail intervened" if stop == "guardrail_intervened" else "content filtered"
        raise policy_error(who, f"Bedrock stopped the answer: {what} ({stop})", body)
    if finish == "error":
        raise bad(who, f"the model failed to answer ({stop})", body)
    return finish


def content_of(blocks: Any, who: Who) -> dict[str, Any]:
    """The canonical assistant message of Converse content blocks."""
    if type(blocks) is not list:
        raise bad(who, "output.message.content must be a list", blocks)
    texts: list[str] = []
    reasoning: list[str] = []
    thinking: list[dict[str, Any]] = []
    calls: list[dict[str, Any]] = []
    for block in blocks:
        if type(block) is not dict:
            raise bad(who, "a content block must be an object", block)
        if "text" in block:
            text = block["text"]
            if not isinstance(text, str):
                raise bad(who, "a text block needs a str text", block)
            texts.append(text)
        elif "toolUse" in block:
            use = block["toolUse"]
            name = use.get("name") if type(use) is dict else None
            if not isinstance(name, str) or not name:
                raise bad(who, "a toolUse block needs a name", block)
            assert type(use) is dict
            args = use.get("input")
            calls.append(
                {
                    "id": use.get("toolUseId") or f"tooluse_{len(calls)}",
                    "type": "function",
                    "function": {
                        "name": name,
                        "arguments": orjson.dumps(args if args is not None else {}).decode(),
                    },
                }
            )
        elif "reasoningContent" in block:
            content = block["reasoningContent"]
            if type(content) is not dict:
                raise bad(who, "a reasoningContent block must be an object", block)
            text = content.get("reasoningText")
            if type(text) is dict:
                reasoning.append(str(text.get("text") or ""))
                item = {"type": "thinking", "thinking": str(text.get("text") or "")}
                if text.get("signature"):
                    item["signature"] = text["signature"]
                thinking.append(item)
            elif content.get("redactedContent"):
                thinking.append({"type": "redacted_thinking", "data": content["redactedContent"]})
    message: dict[str, Any] = {"role": "assistant", "content": "".join(texts) if texts else None}
    if calls:
        message["tool_calls"] = calls
    if reasoning:
        message["reasoning_content"] = "".join(reasoning)
    if thinking:
        message["thinking_blocks"] = thinking
    return message


def to_completion(payload: Any, who: Who, ident: str | None = None) -> dict[str, Any]:
    """The canonical completion of a Converse answer (see the module docstring); ``ident`` is
    its id (Bedrock's answers carry none: the request id)."""
    if type(payload) is not dict:
        raise bad(who, "a Converse answer must be a JSON object", payload)
    output = payload.get("output")
    message = output.get("message") if type(output) is dict else None
    stop = payload.get("stopReason")
    if type(message) is not dict:
        if isinstance(stop, str) and FINISH_REASONS.get(stop) == "content_filter":
            finish_of(stop, who, _policy_body(payload))
        raise bad(who, "a Converse answer needs output.message", payload)
    canonical = content_of(message.get("content"), who)
    finish = finish_of(stop, who, _policy_body(payload))
    if finish == "stop" and canonical.get("tool_calls"):
        finish = "tool_calls"
    return {
        "id": ident or "bedrock",
        "object": "chat.completion",
        "created": now(),
        "model": who[1],
        "choices": [{"index": 0, "message": canonical, "finish_reason": finish}],
        "usage": converse_usage(payload.get("usage"), who),
    }


def _policy_body(payload: dict[str, Any]) -> Any:
    """What a ContentPolicyError carries: the stop reason and the guardrail's trace."""
    body: dict[str, Any] = {"stopReason": payload.get("stopReason")}
    if payload.get("trace") is not None:
        body["trace"] = payload["trace"]
    return body


# -- canonical -> a Converse answer ---------------------------------------------------------
def to_converse_answer(completion: dict[str, Any]) -> dict[str, Any]:
    """The Converse answer of a canonical completion (its first choice)."""
    choice = completion["choices"][0]
    message = choice.get("message") or {}
    blocks: list[dict[str, Any]] = []
    for item in message.get("thinking_blocks") or ():
        if item.get("type") == "thinking":
            text = {"text": item.get("thinking") or ""}
            if item.get("signature"):
                text["signature"] = item["signature"]
            blocks.append({"reasoningContent": {"reasoningText": text}})
        elif item.get("type") == "redacted_thinking":
            blocks.append({"reasoningContent": {"redactedContent": item.get("data")}})
    content = message.get("content")
    if isinstance(content, str) and content:
        blocks.append({"text": content})
    for call in message.get("tool_calls") or ():
        function = call["function"]
        arguments = function.get("arguments") or "{}"
        args = arguments if isinstance(arguments, dict) else orjson.loads(arguments)
        blocks.append(
            {"toolUse": {"toolUseId": call.get("id"), "name": function["name"], "input": args}}
        )
    finish = choice.get("finish_reason") or "stop"
    return {
        "output": {"message": {"role": "assistant", "content": blocks}},
        "stopReason": STOP_REASONS.get(finish, "end_turn"),
        "usage": token_usage(completion.get("usage")),
        "metrics": {"latencyMs": 0},
    }
