"""What context-management calls return: a token estimate, and a compacted conversation.

Two immutable msgspec structs, with msgflux's fields: ``ContextTokenEstimate`` from
``count_context_tokens`` and ``ModelCompaction`` from ``compact_context``. A gateway forces the
portable form (``format="messages"``): a fallback may cross providers, and opaque provider
state must never pin a later request to one of them.
"""

from __future__ import annotations

from typing import Any, Literal

import msgspec

__all__ = ["ContextTokenEstimate", "ModelCompaction"]


class ContextTokenEstimate(msgspec.Struct, frozen=True, kw_only=True):
    """How many input tokens a conversation takes, and who said so (provider or heuristic)."""

    input_tokens: int
    source: Literal["provider", "heuristic"]


class ModelCompaction(msgspec.Struct, frozen=True, kw_only=True):
    """A compacted conversation: portable ``messages`` items, or a provider's own state."""

    format: Literal["messages", "provider"]
    items: list[dict[str, Any]]
    provider: str | None = None
    api_mode: str | None = None
    model_id: str | None = None
    usage: dict[str, Any] | None = None

    def to_view(self) -> dict[str, Any]:
        """The parts a caller puts back into a request (``provider``/``api_mode`` when set)."""
        view: dict[str, Any] = {"format": self.format, "items": self.items}
        if self.provider is not None:
            view["provider"] = self.provider
        if self.api_mode is not None:
            view["api_mode"] = self.api_mode
        return view
