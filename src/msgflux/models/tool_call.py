"""``ToolCall``: one function call a chat model asked for (the data of a ``tool_call`` answer)."""

from __future__ import annotations

import dataclasses
from typing import Any

import orjson

__all__ = ["ToolCall"]


@dataclasses.dataclass(frozen=True)
class ToolCall:
    """A requested call: ``ToolCall(id="call_0", name="get_weather", arguments={"city": "Rio"})``.

    ``arguments`` is the decoded JSON when the model produced valid JSON, else the raw text
    (models do emit broken JSON; the caller decides what to do with it). ``raw_arguments``
    always keeps the text exactly as received.
    """

    id: str
    name: str
    arguments: Any
    raw_arguments: str = ""

    @classmethod
    def from_text(cls, id: str, name: str, raw_arguments: str) -> ToolCall:
        """Build one from the wire form, decoding ``raw_arguments`` when it is JSON."""
        arguments: Any = raw_arguments
        if raw_arguments:
            try:
                arguments = orjson.loads(raw_arguments)
            except orjson.JSONDecodeError:
                pass
        else:
            arguments = {}
        return cls(id=id, name=name, arguments=arguments, raw_arguments=raw_arguments)

    def to_openai(self) -> dict[str, Any]:
        """The ``tool_calls`` entry to send back in an assistant message."""
        return {
            "id": self.id,
            "type": "function",
            "function": {"name": self.name, "arguments": self.raw_arguments},
        }
