"""Stored turns of the Responses API as a request's own input (pure: the store is the caller's).

A Responses client may continue a conversation by naming the last answer
(``previous_response_id``) instead of sending the turns again: OpenAI keeps them. A gateway
that answers with another family (or with a deployment that never saw those turns) must send
them: the caller (the server, the gateway) reads the stored responses, and :func:`expand`
makes the request whole again, so :func:`~.request_decode.to_canonical` never sees a
reference. :func:`input_items` and :func:`output_items` are the item lists a store keeps for
each turn (the turn's input, then the answer's output), in the form :func:`expand` takes back.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

__all__ = ["expand", "input_items", "output_items"]


def _message(item: dict[str, Any]) -> dict[str, Any]:
    """A message item with its ``type`` and its content as parts (an EasyInputMessage
    normalised: the form OpenAI lists input items in)."""
    content = item.get("content")
    if item.get("type") == "message" and type(content) is not str:
        return item
    out = {"type": "message", **item}
    if type(content) is str:
        part = "output_text" if item.get("role") == "assistant" else "input_text"
        text: dict[str, Any] = {"type": part, "text": content}
        if part == "output_text":
            text["annotations"] = []
        out["content"] = [text]
    return out


def input_items(body: Mapping[str, Any]) -> list[Any]:
    """The input items of one request, normalised: a string input is one user message; a
    message without ``type`` (or with string content) gets its type and its parts."""
    value = body.get("input")
    if value is None:
        return []
    if type(value) is str:
        return [
            {"type": "message", "role": "user", "content": [{"type": "input_text", "text": value}]}
        ]
    if type(value) is not list:
        raise ValueError(f"input: must be a string or an array of input items, got {value!r:.60}")
    return [
        _message(item)
        if type(item) is dict and (item.get("type") == "message" or "role" in item)
        else item
        for item in value
    ]


def output_items(response: Mapping[str, Any]) -> list[Any]:
    """The output items of a ``response`` object: what the next turn's input continues from
    (message, function call and reasoning items are valid input items as they are)."""
    output = response.get("output")
    return list(output) if type(output) is list else []


def expand(body: Mapping[str, Any], history: Iterable[Any]) -> dict[str, Any]:
    """``body`` with the stored turns it continues as its own input: ``history`` is every
    earlier turn's items, oldest first (each stored response's input items, then its output
    items), and ``previous_response_id`` is gone. ``instructions`` are the request's own: as
    on OpenAI, an earlier turn's are not carried over."""
    out = {k: v for k, v in body.items() if k != "previous_response_id"}
    out["input"] = [*history, *input_items(body)]
    return out
