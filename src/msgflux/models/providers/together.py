"""Together AI (``TOGETHER_API_KEY``; ``TOGETHER_BASE_URL`` or ``base_url=`` to move it)."""

from __future__ import annotations

from msgflux.models.providers.openai import (
    OpenAIChatCompletion,
    OpenAITextEmbedder,
    OpenAITextToImage,
    ProviderSpec,
)
from msgflux.models.registry import register

__all__ = ["TOGETHER", "TogetherChatCompletion", "TogetherTextEmbedder", "TogetherTextToImage"]

TOGETHER = ProviderSpec("together", "https://api.together.xyz/v1")


@register("chat_completion", "together")
class TogetherChatCompletion(OpenAIChatCompletion):
    """Together AI: chat completions."""

    spec = TOGETHER


@register("text_embedder", "together")
class TogetherTextEmbedder(OpenAITextEmbedder):
    """Together AI: text embeddings."""

    spec = TOGETHER


@register("text_to_image", "together")
class TogetherTextToImage(OpenAITextToImage):
    """Together AI: image generation."""

    spec = TOGETHER
