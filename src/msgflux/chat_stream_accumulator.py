"""A streamed answer as conversation history items, in the order it arrived (msgflux's
``msgflux.chat_stream_accumulator``).

A stream interleaves reasoning, reasoning summaries and answer text; what a caller stores to
continue the conversation is the list of items they make: a ``reasoning`` item (its
``text``, its ``summary``, and the provider's opaque ``provider_state`` such as an encrypted
reasoning blob), then a ``message`` item with the answer's ``content``. Consecutive pieces of
one kind extend the same item; a reasoning piece naming an ``item_id`` (the Responses API's
ids) joins the item of that id wherever it stands, so state that arrives late lands on the
reasoning it belongs to.

>>> acc = ChatStreamAccumulator()
>>> acc.add_reasoning("Checked ")
>>> acc.add_reasoning("inventory.")
>>> acc.add_text("In stock.")
>>> [item["type"] for item in acc.snapshot()]
['reasoning', 'message']
"""

from __future__ import annotations

import threading
from typing import Any

__all__ = ["ChatStreamAccumulator"]


class ChatStreamAccumulator:
    """See the module docstring. Safe to feed from a producer thread while another reads."""

    def __init__(self) -> None:
        self._items: list[dict[str, Any]] = []
        self._by_id: dict[str, dict[str, Any]] = {}
        self._lock = threading.Lock()

    def add_text(self, text: str) -> None:
        """Answer text: extends the last item when it is the message, else starts one."""
        with self._lock:
            last = self._items[-1] if self._items else None
            if last is not None and last["type"] == "message":
                last["content"].append(text)
            else:
                self._items.append({"type": "message", "role": "assistant", "content": [text]})

    def add_reasoning(
        self,
        text: str | None = None,
        *,
        summary: str | None = None,
        item_id: str | None = None,
        provider: str | None = None,
        provider_state: Any = None,
        api_mode: str | None = None,
        codec: str | None = None,
    ) -> None:
        """Reasoning ``text``, a ``summary`` of it, or a provider's opaque state for it (what a
        provider needs back to continue, e.g. OpenAI's encrypted reasoning)."""
        with self._lock:
            item = self._reasoning_item(item_id)
            if text:
                item.setdefault("text", []).append(text)
            if summary:
                item.setdefault("summary", []).append(summary)
            if provider_state is not None or provider is not None:
                state: dict[str, Any] = {}
                if provider is not None:
                    state["provider"] = provider
                if api_mode is not None:
                    state["api_mode"] = api_mode
                if codec is not None:
                    state["codec"] = codec
                state["data"] = provider_state
                item["provider_state"] = state

    def _reasoning_item(self, item_id: str | None) -> dict[str, Any]:
        if item_id is not None and item_id in self._by_id:
            return self._by_id[item_id]
        last = self._items[-1] if self._items else None
        if item_id is None and last is not None and last["type"] == "reasoning":
            return last
        item: dict[str, Any] = {"type": "reasoning", "role": "assistant"}
        self._items.append(item)
        if item_id is not None:
            self._by_id[item_id] = item
        return item

    def snapshot(
        self, fallback_output: Any = None, fallback_reasoning: str | None = None
    ) -> list[dict[str, Any]]:
        """The items so far (copies). When nothing was accumulated of a kind, a text
        ``fallback_output`` / ``fallback_reasoning`` (what a producer set directly) stands
        for it."""
        with self._lock:  # texts are kept as their pieces (joined once, here)
            items = [
                {k: "".join(v) if type(v) is list else v for k, v in item.items()}
                for item in self._items
            ]
        kinds = {item["type"] for item in items}
        if "reasoning" not in kinds and isinstance(fallback_reasoning, str) and fallback_reasoning:
            items.insert(0, {"type": "reasoning", "role": "assistant", "text": fallback_reasoning})
        if "message" not in kinds and isinstance(fallback_output, str) and fallback_output:
            items.append({"type": "message", "role": "assistant", "content": fallback_output})
        return items
