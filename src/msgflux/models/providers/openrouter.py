"""OpenRouter (``OPENROUTER_API_KEY``; ``OPENROUTER_BASE_URL`` or ``base_url=`` to move it)."""

from __future__ import annotations

from msgflux.models.providers.openai import (
    OpenAIChatCompletion,
    ProviderSpec,
)
from msgflux.models.registry import register

__all__ = ["OPENROUTER", "OpenRouterChatCompletion"]

OPENROUTER = ProviderSpec("openrouter", "https://openrouter.ai/api/v1")


@register("chat_completion", "openrouter")
class OpenRouterChatCompletion(OpenAIChatCompletion):
    """OpenRouter: chat completions."""

    spec = OPENROUTER
