"""Chat input shared by the chat providers (the OpenAI wire format and local llama.cpp).

* :func:`chat_messages` turns ``messages``/``system_prompt``/``prefilling`` into the list of
  role/content turns; a provider that takes less than any message dict (llama.cpp renders text
  only) passes a ``turn`` that checks and rewrites each of the caller's messages.
* :func:`schema_and_decoder` turns a ``generation_schema`` (a msgspec Struct or pydantic model
  class) into its JSON schema and the decoder of an answer; what a provider does with the
  schema (OpenAI's strict ``response_format``, llama.cpp's grammar) stays in the provider.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import msgspec

from msgflux.models.providers._params import check_str, type_name

__all__ = ["chat_messages", "schema_and_decoder"]


def chat_messages(
    messages: Any,
    system_prompt: Any,
    prefilling: Any = None,
    *,
    turn: Callable[[int, dict[str, Any]], dict[str, Any]] | None = None,
) -> list[dict[str, Any]]:
    """The conversation: a ``system_prompt`` turn, *messages*, a ``prefilling`` assistant turn.

    A str is one user turn. A list must hold dicts; without *turn* it is used as it is (not
    copied) when no system prompt or prefilling is added, with *turn* each message is replaced
    by ``turn(index, message)``. Raises ``ValueError`` when the conversation is empty.
    """
    if type(messages) is str or isinstance(messages, str):
        chat: list[dict[str, Any]] = [{"role": "user", "content": messages}]
    elif isinstance(messages, list):
        for message in messages:
            if not isinstance(message, dict):
                raise _not_a_dict(messages)
        chat = messages if turn is None else [turn(i, m) for i, m in enumerate(messages)]
    else:
        raise TypeError(
            f"messages must be a str or a list of message dicts, got {type_name(messages)}"
        )
    if system_prompt is not None:
        check_str("system_prompt", system_prompt)
        chat = [{"role": "system", "content": system_prompt}, *chat]
    if prefilling is not None:
        check_str("prefilling", prefilling)
        chat = [*chat, {"role": "assistant", "content": prefilling}]
    if not chat:
        raise ValueError("messages must not be empty")
    return chat


def _not_a_dict(messages: list[Any]) -> TypeError:
    index, message = next((i, m) for i, m in enumerate(messages) if not isinstance(m, dict))
    return TypeError(
        f"messages[{index}] must be a dict like {{'role': 'user', 'content': '...'}}, "
        f"got {type_name(message)}"
    )


def schema_and_decoder(
    generation_schema: Any,
) -> tuple[dict[str, Any], Callable[[str], Any]]:
    """A new JSON schema of a msgspec Struct or pydantic model class, and its JSON decoder."""
    schema = generation_schema
    if isinstance(schema, type) and issubclass(schema, msgspec.Struct):
        return msgspec.json.schema(schema), msgspec.json.Decoder(schema).decode
    if (
        isinstance(schema, type)
        and callable(getattr(schema, "model_json_schema", None))
        and callable(getattr(schema, "model_validate_json", None))
    ):
        model: Any = schema
        return model.model_json_schema(), model.model_validate_json
    raise TypeError(
        f"generation_schema must be a msgspec.Struct or pydantic.BaseModel subclass, got {schema!r}"
    )
