"""``Model``: build any registered model from a ``"provider/model_id"`` string."""

from __future__ import annotations

from typing import Any

from msgflux.models import registry
from msgflux.models.base import BaseModel

__all__ = ["Model"]


def _split(model_path: Any) -> tuple[str, str]:
    if not isinstance(model_path, str):
        raise TypeError(
            f"model_path must be a str like 'openai/gpt-4.1-nano', got {type(model_path).__name__}"
        )
    provider, sep, model_id = model_path.partition("/")
    if not sep or not provider or not model_id:
        raise ValueError(
            f"model_path must look like 'provider/model_id' (e.g. 'openai/gpt-4.1-nano'), "
            f"got {model_path!r}"
        )
    return provider, model_id


class Model:
    """Factory for models: ``Model.chat_completion("openai/gpt-4.1-nano", temperature=0)``."""

    @classmethod
    def _create(cls, model_type: str, model_path: str, **kwargs: Any) -> Any:
        provider, model_id = _split(model_path)
        return registry.lookup(model_type, provider)(model_id=model_id, **kwargs)  # type: ignore[call-arg]

    @classmethod
    def chat_completion(cls, model_path: str, **kwargs: Any) -> Any:
        return cls._create("chat_completion", model_path, **kwargs)

    @classmethod
    def text_embedder(cls, model_path: str, **kwargs: Any) -> Any:
        return cls._create("text_embedder", model_path, **kwargs)

    @classmethod
    def moderation(cls, model_path: str, **kwargs: Any) -> Any:
        return cls._create("moderation", model_path, **kwargs)

    @classmethod
    def text_to_speech(cls, model_path: str, **kwargs: Any) -> Any:
        return cls._create("text_to_speech", model_path, **kwargs)

    @classmethod
    def speech_to_text(cls, model_path: str, **kwargs: Any) -> Any:
        return cls._create("speech_to_text", model_path, **kwargs)

    @classmethod
    def text_to_image(cls, model_path: str, **kwargs: Any) -> Any:
        return cls._create("text_to_image", model_path, **kwargs)

    @classmethod
    def providers(cls) -> dict[str, list[str]]:
        """``{model_type: [provider, ...]}``."""
        return registry.providers()

    @classmethod
    def model_types(cls) -> list[str]:
        return registry.model_types()

    @classmethod
    def from_serialized(cls, provider: str, model_type: str, state: dict[str, Any]) -> BaseModel:
        """Rebuild a model from the pieces of its :meth:`BaseModel.serialize` output."""
        return registry.lookup(model_type, provider).from_serialized(state)
