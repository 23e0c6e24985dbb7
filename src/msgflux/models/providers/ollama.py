"""An Ollama server (``OLLAMA_API_KEY``; ``OLLAMA_BASE_URL`` or ``base_url=`` to move it).

No key is needed; ``OLLAMA_API_KEY`` is sent when set (e.g. behind a proxy).
"""

from __future__ import annotations

from msgflux.models.providers.openai import (
    OpenAIChatCompletion,
    OpenAITextEmbedder,
    ProviderSpec,
)
from msgflux.models.registry import register

__all__ = ["OLLAMA", "OllamaChatCompletion", "OllamaTextEmbedder"]

OLLAMA = ProviderSpec("ollama", "http://localhost:11434/v1", api_key_required=False)


@register("chat_completion", "ollama")
class OllamaChatCompletion(OpenAIChatCompletion):
    """Ollama: chat completions."""

    spec = OLLAMA


@register("text_embedder", "ollama")
class OllamaTextEmbedder(OpenAITextEmbedder):
    """Ollama: text embeddings."""

    spec = OLLAMA
