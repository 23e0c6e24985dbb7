"""DeepSeek (``DEEPSEEK_API_KEY``; ``DEEPSEEK_BASE_URL`` or ``base_url=`` to move it)."""

from __future__ import annotations

from msgflux.models.providers.openai import (
    OpenAIChatCompletion,
    ProviderSpec,
)
from msgflux.models.registry import register

__all__ = ["DEEPSEEK", "DeepSeekChatCompletion"]

DEEPSEEK = ProviderSpec("deepseek", "https://api.deepseek.com/v1")


@register("chat_completion", "deepseek")
class DeepSeekChatCompletion(OpenAIChatCompletion):
    """DeepSeek: chat completions."""

    spec = DEEPSEEK
