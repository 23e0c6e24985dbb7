"""Gemini ``generateContent`` answers, both ways, with no I/O.

* :func:`to_completion`: an upstream's answer -> the canonical chat completion: each
  candidate is a choice; text parts join into ``content``, ``thought`` parts into
  ``reasoning_content``, ``functionCall`` parts become ``tool_calls`` (their
  ``thoughtSignature`` in ``extra_content.google.thought_signature``); ``finishReason`` maps
  to ``finish_reason`` (``tool_calls`` when the model called a function); a prompt blocked by
  ``promptFeedback.blockReason``, or an answer stopped for safety, recitation or a blocklist,
  raises :class:`~msgflux.exceptions.ContentPolicyError`;
* :func:`to_gemini_answer`: a canonical completion -> the answer a Gemini client reads;
* usage both ways: :func:`gemini_usage` (thoughts count as completion tokens) and its inverse
  :func:`usage_metadata`.

:data:`FINISH_REASONS` and :data:`GEMINI_REASONS` are one table read both ways, so the two
directions cannot disagree.
"""

from __future__ import annotations

from typing import Any

import orjson

from msgflux.formats.common import Who, bad, int_of, now, policy_error

__all__ = [
    "FINISH_REASONS",
    "GEMINI_REASONS",
    "gemini_usage",
    "to_completion",
    "to_gemini_answer",
    "usage_metadata",
]

FINISH_REASONS = {
    "STOP": "stop",
    "MAX_TOKENS": "length",
    "SAFETY": "content_filter",
    "RECITATION": "content_filter",
    "LANGUAGE": "content_filter",
    "BLOCKLIST": "content_filter",
    "PROHIBITED_CONTENT": "content_filter",
    "SPII": "content_filter",
    "IMAGE_SAFETY": "content_filter",
    "IMAGE_PROHIBITED_CONTENT": "content_filter",
    "IMAGE_RECITATION": "content_filter",
    "MODEL_ARMOR": "content_filter",
    "MALFORMED_FUNCTION_CALL": "error",
    "UNEXPECTED_TOOL_CALL": "error",
    "MALFORMED_RESPONSE": "error",
    "MISSING_THOUGHT_SIGNATURE": "error",
}
"""``finishReason`` -> OpenAI ``finish_reason``; ``content_filter`` raises ContentPolicyError,
``error`` (the model failed to answer) APIResponseValidationError; others are ``stop``."""

GEMINI_REASONS: dict[str, str] = {"tool_calls": "STOP", "function_call": "STOP"}
"""OpenAI ``finish_reason`` -> ``finishReason``: the first reason of :data:`FINISH_REASONS`
that maps to it (``stop`` -> ``STOP``, ``length`` -> ``MAX_TOKENS``, ``content_filter`` ->
``SAFETY``); Gemini ends a turn that calls functions with ``STOP``."""
for _reason, _finish_reason in FINISH_REASONS.items():
    GEMINI_REASONS.setdefault(_finish_reason, _reason)
del _reason, _finish_reason

_USAGE_KEYS = (
    "promptTokenCount",
    "toolUsePromptTokenCount",
    "candidatesTokenCount",
    "thoughtsTokenCount",
    "cachedContentTokenCount",
    "totalTokenCount",
)


# -- upstream answers -> canonical ----------------------------------------------------------
def gemini_usage(meta: Any, who: Who) -> dict[str, Any] | None:
    """OpenAI's usage for ``usageMetadata`` (thoughts are completion tokens)."""
    if meta is None:
        return None
    if type(meta) is not dict:
        raise bad(who, "usageMetadata must be an object", meta)
    prompt = meta.get("promptTokenCount", 0)
    tool = meta.get("toolUsePromptTokenCount", 0)
    candidates = meta.get("candidatesTokenCount", 0)
    thoughts = meta.get("thoughtsTokenCount", 0)
    cached = meta.get("cachedContentTokenCount", 0)
    total = meta.get("totalTokenCount", 0)
    if not (
        type(prompt) is int
        and type(tool) is int
        and type(candidates) is int
        and type(thoughts) is int
        and type(cached) is int
        and type(total) is int
    ):
        prompt, tool, candidates, thoughts, cached, total = (
            int_of(meta.get(key), who, key) for key in _USAGE_KEYS
        )
    prompt += tool
    completion = candidates + thoughts
    usage: dict[str, Any] = {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": total or prompt + completion,
    }
    if cached:
        usage["prompt_tokens_details"] = {"cached_tokens": cached}
    if thoughts:
        usage["completion_tokens_details"] = {"reasoning_tokens": thoughts}
    return usage


def obj(value: Any, who: Who, what: str) -> dict[str, Any]:
    """``value`` when it is an object, else the validation error naming ``what``."""
    if not isinstance(value, dict):
        raise bad(who, f"{what} must be an object", value)
    return value


def parts_of(candidate: dict[str, Any], who: Who) -> list[dict[str, Any]]:
    """A candidate's ``content.parts`` (none when it has no content)."""
    content = candidate.get("content")
    if content is None:
        return []
    parts = obj(content, who, "candidate.content").get("parts")
    if parts is None:
        return []
    if not isinstance(parts, list):
        raise bad(who, "candidate.content.parts must be a list", candidate)
    return parts


def tool_call(part: dict[str, Any], position: int, who: Who) -> dict[str, Any]:
    """The canonical tool call of a ``functionCall`` part (``call_<position>`` when Gemini
    gave it no id)."""
    fc = obj(part["functionCall"], who, "functionCall")
    name = fc.get("name")
    if not isinstance(name, str) or not name:
        raise bad(who, "a functionCall needs a name", fc)
    args = fc.get("args")
    arguments = orjson.dumps(obj(args, who, "functionCall.args") if args is not None else {})
    ident = fc.get("id")
    call: dict[str, Any] = {
        "id": ident if isinstance(ident, str) and ident else f"call_{position}",
        "type": "function",
        "function": {"name": name, "arguments": arguments.decode()},
    }
    signature = part.get("thoughtSignature")
    if isinstance(signature, str):
        call["extra_content"] = {"google": {"thought_signature": signature}}
    return call


def finish_of(candidate: dict[str, Any], who: Who, called: bool) -> str | None:
    """A candidate's ``finish_reason`` (None while it goes on); a reason that stops the
    answer for its content raises :class:`ContentPolicyError`, one that says the model failed
    raises the validation error."""
    reason = candidate.get("finishReason")
    if reason is None:
        return None
    if not isinstance(reason, str):
        raise bad(who, "finishReason must be a str", reason)
    finish = FINISH_REASONS.get(reason, "stop")
    if finish == "content_filter":
        detail = {k: candidate.get(k) for k in ("finishReason", "safetyRatings", "finishMessage")}
        raise policy_error(who, f"Gemini stopped the answer: {reason}", detail)
    if finish == "error":
        raise bad(who, f"Gemini could not answer: {reason}", candidate.get("finishMessage"))
    return "tool_calls" if called and finish == "stop" else finish


def blocked(payload: dict[str, Any], who: Who) -> None:
    """Raise :class:`ContentPolicyError` when Gemini blocked the prompt itself."""
    feedback = payload.get("promptFeedback")
    reason = feedback.get("blockReason") if isinstance(feedback, dict) else None
    if reason:
        raise policy_error(who, f"Gemini blocked the prompt: {reason}", feedback)


def to_completion(payload: Any, who: Who) -> dict[str, Any]:
    """The canonical completion of a ``generateContent`` answer (``who[1]`` names the model
    when the answer has no ``modelVersion``)."""
    answer = obj(payload, who, "a generateContent answer")
    candidates = answer.get("candidates")
    if not candidates:
        blocked(answer, who)
        raise bad(who, "a generateContent answer without candidates", payload)
    if not isinstance(candidates, list):
        raise bad(who, "candidates must be a list", payload)
    choices = []
    for position, candidate in enumerate(candidates):
        if type(candidate) is not dict:
            raise bad(who, "a candidate must be an object", candidate)
        texts: list[str] = []
        thoughts: list[str] = []
        calls: list[dict[str, Any]] = []
        for part in parts_of(candidate, who):
            if type(part) is not dict:
                raise bad(who, "a part must be an object", part)
            if "functionCall" in part:
                calls.append(tool_call(part, len(calls), who))
                continue
            text = part.get("text")
            if isinstance(text, str):
                (thoughts if part.get("thought") else texts).append(text)
            elif text is not None:
                raise bad(who, "a text part must hold a str", part)
        message: dict[str, Any] = {
            "role": "assistant",
            "content": "".join(texts) if texts or not calls else None,
        }
        if calls:
            message["tool_calls"] = calls
        if thoughts:
            message["reasoning_content"] = "".join(thoughts)
        reason = candidate.get("finishReason")
        finish = FINISH_REASONS.get(reason) if type(reason) is str else None
        if finish == "stop" or (finish is None and type(reason) is str):
            finish = "tool_calls" if calls else "stop"  # an unknown reason too
        elif finish != "length":
            finish = finish_of(candidate, who, bool(calls)) or "stop"
        index = candidate.get("index", position)
        choices.append(
            {
                "index": index if isinstance(index, int) else position,
                "message": message,
                "finish_reason": finish,
                "logprobs": None,
            }
        )
    ident = answer.get("responseId")
    model = answer.get("modelVersion")
    return {
        "id": ident if isinstance(ident, str) else "gemini",
        "object": "chat.completion",
        "created": now(),
        "model": model if isinstance(model, str) else who[1],
        "choices": choices,
        "usage": gemini_usage(answer.get("usageMetadata"), who),
    }


# -- canonical -> Gemini answers ----------------------------------------------------------------
def usage_metadata(usage: Any) -> dict[str, Any] | None:
    """Gemini's ``usageMetadata`` for OpenAI's usage (the inverse of :func:`gemini_usage`):
    reasoning tokens are ``thoughtsTokenCount``, the rest of the completion
    ``candidatesTokenCount``; None when the deployment reported no usage."""
    if type(usage) is not dict:
        return None
    prompt = usage.get("prompt_tokens") or 0
    completion = usage.get("completion_tokens") or 0
    details = usage.get("completion_tokens_details")
    thoughts = (details.get("reasoning_tokens") if type(details) is dict else None) or 0
    thoughts = min(thoughts, completion)
    out: dict[str, Any] = {
        "promptTokenCount": prompt,
        "candidatesTokenCount": completion - thoughts,
        "totalTokenCount": usage.get("total_tokens") or prompt + completion,
    }
    cached = usage.get("prompt_tokens_details")
    cached = (cached.get("cached_tokens") if type(cached) is dict else None) or 0
    if cached:
        out["cachedContentTokenCount"] = cached
    if thoughts:
        out["thoughtsTokenCount"] = thoughts
    return out


def function_args(arguments: Any, where: str) -> dict[str, Any]:
    """A canonical tool call's arguments (a JSON object text) as ``functionCall.args``;
    ``ValueError`` when they are not an object."""
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


def function_call(call: Any, position: int, where: str) -> dict[str, Any]:
    """The ``functionCall`` part of a canonical tool call (its id kept: a Gemini client sends
    it back in the ``functionResponse``, which then names the call it answers)."""
    if type(call) is not dict:
        raise ValueError(f"the deployment's {where} is not a tool call: {call!r:.80}")
    function = call.get("function") or {}
    fc: dict[str, Any] = {
        "id": call.get("id") or f"call_{position}",
        "name": function.get("name") or "",
        "args": function_args(function.get("arguments"), f"{where}.function.arguments"),
    }
    part: dict[str, Any] = {"functionCall": fc}
    extra = call.get("extra_content")
    google = extra.get("google") if type(extra) is dict else None
    signature = google.get("thought_signature") if type(google) is dict else None
    if type(signature) is str:
        part["thoughtSignature"] = signature
    return part


def _text(content: Any) -> str:
    if type(content) is list:
        return "".join(p.get("text") or "" for p in content if type(p) is dict)
    return content if type(content) is str else ""


def candidate_parts(message: dict[str, Any], where: str) -> list[dict[str, Any]]:
    """A canonical message's parts: its reasoning (a ``thought`` part), its text, its refusal,
    then its tool calls."""
    parts: list[dict[str, Any]] = []
    reasoning = message.get("reasoning_content") or message.get("reasoning")
    if type(reasoning) is str and reasoning:
        parts.append({"text": reasoning, "thought": True})
    text = _text(message.get("content"))
    if text:
        parts.append({"text": text})
    refusal = message.get("refusal")
    if type(refusal) is str and refusal:
        parts.append({"text": refusal})
    for j, call in enumerate(message.get("tool_calls") or ()):
        parts.append(function_call(call, j, f"{where}.tool_calls[{j}]"))
    return parts


def to_gemini_answer(completion: Any, model: str) -> dict[str, Any]:
    """The ``generateContent`` answer for a canonical chat completion (``model``: the name
    the client knows, in ``modelVersion``); raises ``ValueError`` for a completion that is
    not one."""
    choices = completion.get("choices") if type(completion) is dict else None
    if type(choices) is not list or not choices:
        raise ValueError(f"the deployment's answer has no choices: {completion!r:.120}")
    candidates = []
    for position, choice in enumerate(choices):
        message = choice.get("message") if type(choice) is dict else None
        if type(message) is not dict:
            raise ValueError(f"the deployment's choices[{position}] has no message")
        index = choice.get("index")
        candidates.append(
            {
                "content": {
                    "role": "model",
                    "parts": candidate_parts(message, f"choices[{position}].message"),
                },
                "finishReason": GEMINI_REASONS.get(choice.get("finish_reason"), "STOP"),
                "index": index if type(index) is int else position,
            }
        )
    out: dict[str, Any] = {"candidates": candidates}
    usage = usage_metadata(completion.get("usage"))
    if usage is not None:
        out["usageMetadata"] = usage
    out["modelVersion"] = model
    out["responseId"] = completion.get("id") or "gemini"
    return out
