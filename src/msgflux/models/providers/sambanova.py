"""SambaNova (``SAMBANOVA_API_KEY``; ``SAMBANOVA_BASE_URL`` or ``base_url=`` to move it)."""

from __future__ import annotations

from msgflux.models.providers.openai import (
    OpenAIChatCompletion,
    ProviderSpec,
)
from msgflux.models.registry import register

__all__ = ["SAMBANOVA", "SambaNovaChatCompletion"]

SAMBANOVA = ProviderSpec("sambanova", "https://api.sambanova.ai/v1")


@register("chat_completion", "sambanova")
class SambaNovaChatCompletion(OpenAIChatCompletion):
    """SambaNova: chat completions."""

    spec = SAMBANOVA
