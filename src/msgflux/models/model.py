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
    def from_serialized(
        cls,
        provider: str | dict[str, Any] | None = None,
        model_type: str | None = None,
        state: dict[str, Any] | None = None,
        *,
        msgflux_type: str | None = None,
    ) -> BaseModel:
        """Rebuild a model from what :meth:`BaseModel.serialize` returned.

        Takes the pieces (``Model.from_serialized("openai", "chat_completion", state)``), the
        whole dict (``Model.from_serialized(model.serialize())``) or its keys as keywords
        (``Model.from_serialized(**model.serialize())``); a whole dict passed as ``state`` is
        unwrapped.
        """
        if isinstance(provider, dict):
            data = provider
            if model_type is not None or state is not None:
                raise TypeError(
                    "pass either the whole serialize() dict alone, or (provider, model_type, state)"
                )
            return cls.from_serialized(**_serialized_keys(data))
        if msgflux_type is not None and msgflux_type != "model":
            raise ValueError(f"Incorrect msgflux type. Expected `model`, given `{msgflux_type}`")
        if isinstance(state, dict) and state.get("msgflux_type") == "model" and "state" in state:
            state = state["state"]  # the whole serialize() dict where its state was expected
        if not isinstance(provider, str) or not isinstance(model_type, str) or state is None:
            raise TypeError(
                "Model.from_serialized needs provider, model_type and state (the keys of "
                "model.serialize()), or the whole serialize() dict"
            )
        return registry.lookup(model_type, provider).from_serialized(state)


def _serialized_keys(data: dict[str, Any]) -> dict[str, Any]:
    keys = {"msgflux_type", "provider", "model_type", "state"}
    missing = {"provider", "model_type", "state"} - set(data)
    if missing:
        raise ValueError(
            f"not a serialized model: missing {sorted(missing)}; pass the dict "
            "model.serialize() returned"
        )
    return {k: v for k, v in data.items() if k in keys}
