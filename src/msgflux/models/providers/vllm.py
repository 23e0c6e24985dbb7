"""A vLLM server (``VLLM_API_KEY``; ``VLLM_BASE_URL`` or ``base_url=`` to move it).

No key is needed; ``VLLM_API_KEY`` is sent when set (``vllm serve --api-key``).
"""

from __future__ import annotations

from msgflux.models.providers.openai import (
    OpenAIChatCompletion,
    OpenAISpeechToText,
    OpenAITextEmbedder,
    ProviderSpec,
)
from msgflux.models.registry import register

__all__ = ["VLLM", "VLLMChatCompletion", "VLLMSpeechToText", "VLLMTextEmbedder"]

VLLM = ProviderSpec("vllm", "http://localhost:8000/v1", api_key_required=False, responses=True)


@register("chat_completion", "vllm")
class VLLMChatCompletion(OpenAIChatCompletion):
    """vLLM: chat completions."""

    spec = VLLM


@register("text_embedder", "vllm")
class VLLMTextEmbedder(OpenAITextEmbedder):
    """vLLM: text embeddings."""

    spec = VLLM


@register("speech_to_text", "vllm")
class VLLMSpeechToText(OpenAISpeechToText):
    """vLLM: speech to text."""

    spec = VLLM
