"""Canonical (OpenAI chat) stream chunks as Responses API events, chunk by chunk.

:class:`ResponseEvents` is what a Responses client (Codex CLI, the Agents SDK, the openai
SDK's ``responses.stream``) reads when a deployment of another family answers its stream:
named SSE events, each with its ``sequence_number``, in the order the API sends them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson

from msgflux._secrets import scrub
from msgflux.formats.common import now
from msgflux.formats.openai_responses.answer import (
    function_item,
    namespaces_of,
    new_id,
    reasoning_item,
    response_object,
    responses_usage,
)

__all__ = ["ResponseEvents"]

_TEXT = {"type": "output_text", "text": "", "annotations": [], "logprobs": []}
_DELTA = b'event: response.output_text.delta\ndata: {"type":"response.output_text.delta"'


class ResponseEvents:
    """The Responses API's SSE events for one canonical stream: :meth:`feed` each chunk, then
    :meth:`end` (or :meth:`error` when the stream broke). Each returns the bytes to write.

    Order: ``response.created`` and ``response.in_progress``; per output item
    ``response.output_item.added``, its parts and deltas (a reasoning summary, the message's
    ``output_text`` or ``refusal`` parts, a function call's arguments), their ``.done``
    events and ``response.output_item.done``; then ``response.completed`` (or
    ``response.incomplete`` when the answer hit its token limit) holding the whole response,
    usage included: the canonical stream sends the usage after the finish, so this waits for
    the end. Only the open item's state is kept, with the finished items (the final response
    holds them, as the API's does). Parallel tool calls must arrive one after the other (as
    every OpenAI-wire upstream sends them); an interleaved one raises ``ValueError``.
    """

    __slots__ = (
        "_head",
        "calls",
        "created",
        "finish",
        "ident",
        "index",
        "item",
        "item_id",
        "model",
        "name",
        "output",
        "part",
        "parts",
        "pieces",
        "request",
        "seq",
        "spaces",
        "started",
        "usage",
    )

    def __init__(self, model: str, request: Mapping[str, Any] | None = None) -> None:
        self.model = model
        self.request = request
        self.spaces = namespaces_of(request)
        self.ident = new_id("resp_")
        self.created = now()
        self.seq = 0
        self.started = False
        self.output: list[dict[str, Any]] = []
        """The finished output items."""
        self.item: str | int | None = None
        """The open item: ``"message"``, ``"reasoning"``, a tool call's index, or None."""
        self.item_id = ""
        self.index = -1
        """The open item's ``output_index``."""
        self.part: str | None = None
        """The message's open part: ``"text"``, ``"refusal"`` or None."""
        self.parts: list[dict[str, Any]] = []
        """The open message's finished parts."""
        self.pieces: list[str] = []
        """The open part's text (or the reasoning's, or the call's arguments) so far."""
        self.calls: set[int] = set()
        """The tool call indexes met (a call comes back only while it is open)."""
        self.name: tuple[str, str] = ("", "")
        """The open call's ``(call_id, name)``."""
        self.finish: str | None = None
        self.usage: Any = None
        self._head = b""
        """The open text part's ``item_id``, ``output_index`` and ``content_index`` as JSON
        members: what each of its delta events repeats (written once per part)."""

    def _event(self, kind: str, data: dict[str, Any]) -> bytes:
        data = {"type": kind, "sequence_number": self.seq, **data}
        self.seq += 1
        return b"event: " + kind.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"

    def _where(self) -> dict[str, Any]:
        return {"item_id": self.item_id, "output_index": self.index}

    def _response(self, status: str, **fields: Any) -> dict[str, Any]:
        return response_object(
            self.ident,
            self.created,
            self.model,
            self.request,
            status=status,
            output=list(self.output),
            **fields,
        )

    def _start(self) -> bytes:
        self.started = True
        response = self._response("in_progress")
        return self._event("response.created", {"response": response}) + self._event(
            "response.in_progress", {"response": response}
        )

    # -- items ---------------------------------------------------------------------------------
    def _open(self, which: str | int, item: dict[str, Any], parts: list[bytes]) -> None:
        self._close(parts)
        self.item = which
        self.index += 1
        self.item_id = item["id"]
        self.pieces = []
        added = {"output_index": self.index, "item": item}
        parts.append(self._event("response.output_item.added", added))

    def _done(self, item: dict[str, Any], parts: list[bytes]) -> None:
        self.output.append(item)
        self.item = None
        done = {"output_index": self.index, "item": item}
        parts.append(self._event("response.output_item.done", done))

    def _close(self, parts: list[bytes]) -> None:
        which = self.item
        if which is None:
            return
        if which == "message":
            self._close_part(parts)
            item = {
                "id": self.item_id,
                "type": "message",
                "status": "completed",
                "role": "assistant",
                "content": self.parts,
            }
            self.parts = []
        elif which == "reasoning":
            text = "".join(self.pieces)
            where = {**self._where(), "summary_index": 0}
            parts.append(
                self._event("response.reasoning_summary_text.done", {**where, "text": text})
            )
            part = {"type": "summary_text", "text": text}
            parts.append(
                self._event("response.reasoning_summary_part.done", {**where, "part": part})
            )
            item = reasoning_item(self.item_id, text)
        else:
            arguments = "".join(self.pieces)
            done = {**self._where(), "arguments": arguments}
            parts.append(self._event("response.function_call_arguments.done", done))
            call_id, name = self.name
            item = function_item(self.item_id, call_id, name, arguments, self.spaces, "completed")
        self._done(item, parts)

    # -- the message's parts -------------------------------------------------------------------
    def _open_part(self, which: str, parts: list[bytes]) -> None:
        if self.item != "message":
            item = {
                "id": new_id("msg_"),
                "type": "message",
                "status": "in_progress",
                "role": "assistant",
                "content": [],
            }
            self._open("message", item, parts)
        self._close_part(parts)
        self.part = which
        self.pieces = []
        where = {**self._where(), "content_index": len(self.parts)}
        part = dict(_TEXT) if which == "text" else {"type": "refusal", "refusal": ""}
        parts.append(self._event("response.content_part.added", {**where, "part": part}))
        if which == "text":
            self._head = orjson.dumps(where)[1:-1]

    def _close_part(self, parts: list[bytes]) -> None:
        which = self.part
        if which is None:
            return
        text = "".join(self.pieces)
        where = {**self._where(), "content_index": len(self.parts)}
        if which == "text":
            done = {**where, "text": text, "logprobs": []}
            parts.append(self._event("response.output_text.done", done))
            part: dict[str, Any] = {**_TEXT, "text": text}
        else:
            parts.append(self._event("response.refusal.done", {**where, "refusal": text}))
            part = {"type": "refusal", "refusal": text}
        parts.append(self._event("response.content_part.done", {**where, "part": part}))
        self.parts.append(part)
        self.part = None

    def _text(self, text: str) -> bytes:
        self.pieces.append(text)
        seq = self.seq
        self.seq += 1
        return b'%s,"sequence_number":%d,%s,"delta":%s,"logprobs":[]}\n\n' % (
            _DELTA,
            seq,
            self._head,
            orjson.dumps(text),
        )

    # -- chunks --------------------------------------------------------------------------------
    def feed(self, chunk: dict[str, Any]) -> bytes:
        out = b"" if self.started else self._start()
        if chunk.get("usage"):
            self.usage = chunk["usage"]
        choices = chunk.get("choices")
        if not choices:
            return out
        choice = choices[0]
        delta = choice.get("delta") or {}
        text = delta.get("content")
        finish = choice.get("finish_reason")
        if self.part == "text" and len(delta) == 1 and type(text) is str and finish is None:
            # The common chunk, in line: one more piece of the open text part.
            return out + self._text(text) if text else out
        parts = [out]
        if delta:
            self._pieces(delta, text, parts)
        if finish:
            self.finish = finish
            self._close(parts)
        return b"".join(parts)

    def _pieces(self, delta: dict[str, Any], text: Any, parts: list[bytes]) -> None:
        reasoning = delta.get("reasoning_content") or delta.get("reasoning")
        if reasoning and type(reasoning) is str:
            if self.item != "reasoning":
                self._open(
                    "reasoning", {"id": new_id("rs_"), "type": "reasoning", "summary": []}, parts
                )
                part = {"type": "summary_text", "text": ""}
                added = {**self._where(), "summary_index": 0, "part": part}
                parts.append(self._event("response.reasoning_summary_part.added", added))
            self.pieces.append(reasoning)
            where = {**self._where(), "summary_index": 0}
            parts.append(
                self._event("response.reasoning_summary_text.delta", {**where, "delta": reasoning})
            )
        if text and type(text) is str:
            if self.item != "message" or self.part != "text":
                self._open_part("text", parts)
            parts.append(self._text(text))
        refusal = delta.get("refusal")
        if refusal and type(refusal) is str:
            if self.item != "message" or self.part != "refusal":
                self._open_part("refusal", parts)
            self.pieces.append(refusal)
            where = {**self._where(), "content_index": len(self.parts)}
            parts.append(self._event("response.refusal.delta", {**where, "delta": refusal}))
        for call in delta.get("tool_calls") or ():
            self._call(call, parts)

    def _call(self, call: dict[str, Any], parts: list[bytes]) -> None:
        position = call.get("index", 0)
        function = call.get("function") or {}
        name = function.get("name") or ""
        if position != self.item:
            if position in self.calls:
                raise ValueError(
                    f"the deployment interleaved tool call {position}'s arguments with another "
                    "call's; the Responses stream sends one item at a time"
                )
            self.calls.add(position)
            call_id = call.get("id") or f"call_{position}"
            item = function_item(new_id("fc_"), call_id, name, "", self.spaces, "in_progress")
            self._open(position, item, parts)
            self.name = (call_id, name)
        elif name:
            self.name = (self.name[0], self.name[1] + name)
        arguments = function.get("arguments")
        if arguments:
            self.pieces.append(arguments)
            delta = {**self._where(), "delta": arguments}
            parts.append(self._event("response.function_call_arguments.delta", delta))

    def end(self) -> bytes:
        """The events that end a complete stream."""
        parts = [b"" if self.started else self._start()]
        self._close(parts)
        response = self._response(
            "completed", usage=responses_usage(self.usage), finish=self.finish
        )
        kind = "response.completed" if response["status"] == "completed" else "response.incomplete"
        parts.append(self._event(kind, {"response": response}))
        return b"".join(parts)

    def error(self, exc: BaseException) -> bytes:
        """The event that ends a stream broken mid-way: ``response.failed``."""
        head = b"" if self.started else self._start()
        error = {"code": "server_error", "message": scrub(f"{type(exc).__name__}: {exc}")}
        response = self._response("failed", error=error)
        return head + self._event("response.failed", {"response": response})
