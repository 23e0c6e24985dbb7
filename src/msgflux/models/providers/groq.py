"""Groq (``GROQ_API_KEY``; ``GROQ_BASE_URL`` or ``base_url=`` to move it)."""

from __future__ import annotations

from msgflux.models.providers.openai import (
    OpenAIChatCompletion,
    OpenAISpeechToText,
    OpenAITextToSpeech,
    ProviderSpec,
)
from msgflux.models.registry import register

__all__ = ["GROQ", "GroqChatCompletion", "GroqSpeechToText", "GroqTextToSpeech"]

GROQ = ProviderSpec("groq", "https://api.groq.com/openai/v1", responses=True)


@register("chat_completion", "groq")
class GroqChatCompletion(OpenAIChatCompletion):
    """Groq: chat completions."""

    spec = GROQ


@register("speech_to_text", "groq")
class GroqSpeechToText(OpenAISpeechToText):
    """Groq: speech to text."""

    spec = GROQ


@register("text_to_speech", "groq")
class GroqTextToSpeech(OpenAITextToSpeech):
    """Groq: text to speech."""

    spec = GROQ
