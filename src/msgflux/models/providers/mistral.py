"""Mistral AI (``MISTRAL_API_KEY``; ``MISTRAL_BASE_URL`` or ``base_url=`` to move it).

Mistral always reports usage in its last stream chunk, so ``stream_options`` is not sent.
"""

from __future__ import annotations

from msgflux.models.providers.openai import (
    OpenAIChatCompletion,
    OpenAITextEmbedder,
    ProviderSpec,
)
from msgflux.models.registry import register

__all__ = ["MISTRAL", "MistralChatCompletion", "MistralTextEmbedder"]

MISTRAL = ProviderSpec("mistral", "https://api.mistral.ai/v1", stream_usage=False)


@register("chat_completion", "mistral")
class MistralChatCompletion(OpenAIChatCompletion):
    """Mistral AI: chat completions."""

    spec = MISTRAL


@register("text_embedder", "mistral")
class MistralTextEmbedder(OpenAITextEmbedder):
    """Mistral AI: text embeddings."""

    spec = MISTRAL
