"""Responses API stream events as canonical (OpenAI chat) chunks, event by event.

:class:`ResponseStreamEvents` is the :class:`~msgflux.models.chat.Translator` of a Responses
stream answered to a caller of another family: ``response.created`` (the id, the model),
``output_text``, ``refusal`` and reasoning summary deltas, function calls
(``response.output_item.added`` then their arguments' deltas) and the end
(``response.completed``/``incomplete``: the finish reason and the usage) become chat chunks;
``response.failed`` and ``error`` events raise the typed error of their code. It keeps only
what spans events: the calls' positions and whether their arguments (or an item's text) came
as deltas, for the servers that send them whole in the ``.done`` events only.
"""

from __future__ import annotations

from typing import Any

import orjson

from msgflux.formats.common import Who, bad, chunk, loads, now, usage_chunk
from msgflux.formats.openai_responses.answer import canonical_usage, finish_of
from msgflux.formats.openai_responses.errors import event_error, response_error

__all__ = ["ResponseStreamEvents"]

Out = tuple[dict[str, Any], Any]
"""A canonical chunk and what the ChatStream needs of it (see ``Translator``)."""

_REASONING = frozenset(("response.reasoning_summary_text.delta", "response.reasoning_text.delta"))
_ENDS = frozenset(("response.completed", "response.incomplete", "response.failed"))


class ResponseStreamEvents:
    """The canonical chunks of one Responses API stream, event by event (a ``Translator``)."""

    __slots__ = (
        "calls",
        "created",
        "done",
        "ident",
        "include_usage",
        "model",
        "sent",
        "thought",
        "usage",
        "who",
    )

    def __init__(self, who: Who, include_usage: bool = True) -> None:
        self.who = who
        self.include_usage = include_usage
        self.ident = "resp"
        self.model = who[1]
        self.created = now()
        self.usage: dict[str, Any] | None = None
        self.calls: dict[Any, int] = {}
        """A function call item's ``output_index`` -> its position among the calls."""
        self.sent: set[Any] = set()
        """The ``output_index`` of the items whose text or arguments came as deltas."""
        self.thought = False
        self.done = False

    def _chunk(self, delta: dict[str, Any], finish: str | None = None) -> Out:
        return chunk(self.ident, self.created, self.model, delta, finish), None

    def _call(self, index: Any, arguments: str) -> Out:
        position = self.calls[index]
        call = {"index": position, "function": {"arguments": arguments}}
        return self._chunk({"tool_calls": [call]})

    def feed(self, event: str | None, data: bytes) -> list[Out]:
        who = self.who
        try:
            payload = orjson.loads(data)
        except orjson.JSONDecodeError:
            payload = loads(data, who)  # raises the validation error
        if type(payload) is not dict:
            raise bad(who, "a stream event must be an object", payload)
        kind = payload.get("type") or event
        index = payload.get("output_index")
        if kind == "response.output_text.delta":
            text = payload.get("delta")
            if type(text) is not str:
                raise bad(who, "an output_text delta needs a str 'delta'", payload)
            if not text:
                return []
            self.sent.add(index)
            choice = {"index": 0, "delta": {"content": text}, "finish_reason": None}
            out = {
                "id": self.ident,
                "object": "chat.completion.chunk",
                "created": self.created,
                "model": self.model,
                "choices": [choice],
            }
            return [(out, text)]
        if kind == "response.function_call_arguments.delta":
            if index not in self.calls:
                raise bad(who, "function call arguments for an item that is not a call", payload)
            part = payload.get("delta")
            if type(part) is not str:
                raise bad(who, "a function call delta needs a str 'delta'", payload)
            if not part:
                return []
            self.sent.add(index)
            return [self._call(index, part)]
        if kind in _REASONING:
            text = payload.get("delta")
            if type(text) is not str or not text:
                return []
            self.thought = True
            return [self._chunk({"reasoning_content": text})]
        return self._other(kind, payload, index)

    def _other(self, kind: Any, payload: dict[str, Any], index: Any) -> list[Out]:
        who = self.who
        if kind == "response.output_item.added":
            item = payload.get("item")
            if type(item) is dict and item.get("type") == "function_call":
                return self._start(item, index)
            return []
        if kind == "response.reasoning_summary_part.added":
            # Summary parts are paragraphs (joined so in a whole answer too).
            return [self._chunk({"reasoning_content": "\n\n"})] if self.thought else []
        if kind == "response.refusal.delta":
            text = payload.get("delta")
            return [self._chunk({"refusal": text})] if type(text) is str and text else []
        if kind in ("response.function_call_arguments.done", "response.output_item.done"):
            return self._whole(payload, index)
        if kind == "response.output_text.done":
            text = payload.get("text")
            if index in self.sent or type(text) is not str or not text:
                return []
            self.sent.add(index)
            return [self._chunk({"content": text})]
        if kind == "response.created":
            response = payload.get("response")
            if type(response) is not dict:
                raise bad(who, "response.created needs a response object", payload)
            if isinstance(response.get("id"), str):
                self.ident = response["id"]
            if isinstance(response.get("model"), str):
                self.model = response["model"]
            return [self._chunk({"role": "assistant", "content": ""})]
        if kind in _ENDS:
            return self._end(payload)
        if kind == "error":
            raise event_error(payload, who)
        return []  # in_progress, part and .done events, hosted tools' events, newer ones

    def _start(self, item: dict[str, Any], index: Any) -> list[Out]:
        name, call_id = item.get("name"), item.get("call_id")
        if not isinstance(name, str) or not isinstance(call_id, str):
            raise bad(self.who, "a function_call item needs a str call_id and name", item)
        namespace = item.get("namespace")
        if isinstance(namespace, str) and namespace:
            name = f"{namespace}__{name}"
        position = self.calls[index] = len(self.calls)
        arguments = item.get("arguments")
        arguments = arguments if isinstance(arguments, str) else ""
        if arguments:
            self.sent.add(index)
        call = {
            "index": position,
            "id": call_id,
            "type": "function",
            "function": {"name": name, "arguments": arguments},
        }
        return [self._chunk({"tool_calls": [call]})]

    def _whole(self, payload: dict[str, Any], index: Any) -> list[Out]:
        """A call's arguments sent whole in a ``.done`` event, with no delta before."""
        if index not in self.calls or index in self.sent:
            return []
        item = payload.get("item")
        arguments = item.get("arguments") if type(item) is dict else payload.get("arguments")
        if type(arguments) is not str or not arguments:
            return []
        self.sent.add(index)
        return [self._call(index, arguments)]

    def _end(self, payload: dict[str, Any]) -> list[Out]:
        who = self.who
        response = payload.get("response")
        if type(response) is not dict:
            raise bad(who, f"{payload.get('type')} needs a response object", payload)
        self.done = True
        if response.get("status") == "failed" or payload.get("type") == "response.failed":
            raise response_error(response, who)
        self.usage = canonical_usage(response.get("usage"), who)
        return [self._chunk({}, finish_of(response, bool(self.calls), who))]

    def end(self) -> list[dict[str, Any]]:
        if not self.include_usage or not self.usage:
            return []
        return [usage_chunk(self.ident, self.created, self.model, self.usage)]
