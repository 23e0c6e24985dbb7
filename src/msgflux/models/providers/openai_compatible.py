"""Any OpenAI-compatible server: ``Model.chat_completion("openai_compatible/m", base_url=...)``.

There is no default URL: pass ``base_url=`` or set ``OPENAI_COMPATIBLE_BASE_URL``.
``OPENAI_COMPATIBLE_API_KEY`` is sent when set.
"""

from __future__ import annotations

from msgflux.models.providers.openai import (
    OpenAIChatCompletion,
    OpenAIModeration,
    OpenAISpeechToText,
    OpenAITextEmbedder,
    OpenAITextToImage,
    OpenAITextToSpeech,
    ProviderSpec,
)
from msgflux.models.registry import register

__all__ = [
    "OPENAI_COMPATIBLE",
    "OpenAICompatibleChatCompletion",
    "OpenAICompatibleModeration",
    "OpenAICompatibleSpeechToText",
    "OpenAICompatibleTextEmbedder",
    "OpenAICompatibleTextToImage",
    "OpenAICompatibleTextToSpeech",
]

OPENAI_COMPATIBLE = ProviderSpec("openai_compatible", None, api_key_required=False)


@register("chat_completion", "openai_compatible")
class OpenAICompatibleChatCompletion(OpenAIChatCompletion):
    """OpenAI-compatible server: chat completions."""

    spec = OPENAI_COMPATIBLE


@register("text_embedder", "openai_compatible")
class OpenAICompatibleTextEmbedder(OpenAITextEmbedder):
    """OpenAI-compatible server: text embeddings."""

    spec = OPENAI_COMPATIBLE


@register("moderation", "openai_compatible")
class OpenAICompatibleModeration(OpenAIModeration):
    """OpenAI-compatible server: moderation."""

    spec = OPENAI_COMPATIBLE


@register("text_to_speech", "openai_compatible")
class OpenAICompatibleTextToSpeech(OpenAITextToSpeech):
    """OpenAI-compatible server: text to speech."""

    spec = OPENAI_COMPATIBLE


@register("speech_to_text", "openai_compatible")
class OpenAICompatibleSpeechToText(OpenAISpeechToText):
    """OpenAI-compatible server: speech to text."""

    spec = OPENAI_COMPATIBLE


@register("text_to_image", "openai_compatible")
class OpenAICompatibleTextToImage(OpenAITextToImage):
    """OpenAI-compatible server: image generation."""

    spec = OPENAI_COMPATIBLE
