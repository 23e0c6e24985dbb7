"""Cerebras (``CEREBRAS_API_KEY``; ``CEREBRAS_BASE_URL`` or ``base_url=`` to move it)."""

from __future__ import annotations

from msgflux.models.providers.openai import (
    OpenAIChatCompletion,
    ProviderSpec,
)
from msgflux.models.registry import register

__all__ = ["CEREBRAS", "CerebrasChatCompletion"]

CEREBRAS = ProviderSpec("cerebras", "https://api.cerebras.ai/v1")


@register("chat_completion", "cerebras")
class CerebrasChatCompletion(OpenAIChatCompletion):
    """Cerebras: chat completions."""

    spec = CEREBRAS
