"""The canonical request: what one call asks for, in the OpenAI wire format every gateway speaks.

A :class:`Request` is an OpenAI request body (``messages``, ``temperature``, ``tools``, ...,
without ``model``: each deployment names its own) plus call options (stream, timeouts, extra
headers). msgflux-style arguments build it (:func:`chat_request` turns ``messages``,
``system_prompt``, ``prefilling``, ``generation_schema``, ``tool_schemas`` and ``tool_choice``
into OpenAI fields), an OpenAI JSON body builds it directly (:func:`from_openai`, what the
server uses), and every provider adapter translates it to its own wire format.

Validation happens here, once, before any attempt: a caller's mistake raises ``TypeError`` or
``ValueError`` naming the argument and what it accepts, and never counts against a
deployment. Fields this module does not know pass through untouched (vendor extensions).

>>> req = chat_request("Who was Frank Rosenblatt?", temperature=0.2, max_tokens=50, seed=7)
>>> req.body["messages"], req.body["max_tokens"]
([{'role': 'user', 'content': 'Who was Frank Rosenblatt?'}], 50)
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Callable, Mapping
from typing import IO, TYPE_CHECKING, Any

import msgspec

from msgflux.models._checks import check_str, check_timeout, type_name

if TYPE_CHECKING:
    from msgflux.formats.policy import Translation
    from msgflux.models.native import Native

__all__ = [
    "CHAT",
    "EMBEDDINGS",
    "IMAGES",
    "KINDS",
    "MODERATIONS",
    "SPEECH",
    "TRANSCRIPTIONS",
    "Request",
    "Schema",
    "chat_messages",
    "chat_request",
    "embeddings_request",
    "from_openai",
    "image_request",
    "moderation_request",
    "schema_and_decoder",
    "schema_of",
    "speech_request",
    "transcription_request",
]

CHAT = "chat"
EMBEDDINGS = "embeddings"
MODERATIONS = "moderations"
SPEECH = "speech"
TRANSCRIPTIONS = "transcriptions"
IMAGES = "images"

KINDS: dict[str, str] = {
    "chat_completion": CHAT,
    "text_embedder": EMBEDDINGS,
    "moderation": MODERATIONS,
    "text_to_speech": SPEECH,
    "speech_to_text": TRANSCRIPTIONS,
    "text_to_image": IMAGES,
}
"""msgflux ``model_type`` -> request kind."""

AudioInput = bytes | bytearray | memoryview | str | os.PathLike[str] | IO[bytes]


@dataclasses.dataclass(frozen=True)
class Schema:
    """A ``generation_schema``: its JSON schema (root inlined) and the decoder of an answer."""

    name: str
    json_schema: dict[str, Any]
    decode: Callable[[str], Any]


@dataclasses.dataclass(slots=True)
class Request:
    """One call in canonical form (see the module docstring).

    ``body`` never holds ``model`` or ``stream``; ``schema`` is set when the caller asked for
    structured output with ``generation_schema`` (``response_format`` is then in ``body`` as a
    strict ``json_schema``; adapters may express it differently); ``file`` is the audio of a
    transcription; ``single`` says the caller passed one input rather than a list (embeddings,
    moderation), which shapes the msgflux view of the answer.
    """

    kind: str
    body: dict[str, Any]
    stream: bool = False
    timeout: float | None = None
    first_chunk_timeout: float | None = None
    idle_timeout: float | None = None
    extra_headers: dict[str, str] | None = None
    schema: Schema | None = None
    file: tuple[str, bytes] | None = None
    single: bool = False
    prefill: str | None = None
    """The assistant prefill the caller gave (the last message of ``body["messages"]``)."""
    deadline: float | None = None
    """Seconds the whole attempt may last, an open stream included (a gateway's deadline)."""
    max_response_bytes: int | None = None
    """Cap on the answer (a stream: all of it), decompressed; None: the model's own."""
    max_event_bytes: int | None = None
    """Cap on one SSE event; None: the model's own."""
    native: Native | None = None
    """The request as its client sent it, in its API family (a native lane sends that)."""
    translation: Translation | None = None
    """This attempt's translation policy and what it dropped (a gateway's, per attempt)."""

    def replace(self, **changes: Any) -> Request:
        return dataclasses.replace(self, **changes)

    def bounded(
        self,
        timeout: float | None,
        first_chunk_timeout: float | None,
        idle_timeout: float | None,
        max_response_bytes: int | None,
        max_event_bytes: int | None,
        deadline: float | None,
    ) -> Request:
        """A copy with other time and byte bounds (a gateway's, for one attempt); a plain
        copy, several times cheaper than :func:`dataclasses.replace` on this hot path."""
        new = Request(
            self.kind,
            self.body,
            self.stream,
            timeout,
            first_chunk_timeout,
            idle_timeout,
            self.extra_headers,
            self.schema,
            self.file,
            self.single,
            self.prefill,
            deadline,
            max_response_bytes,
            max_event_bytes,
            self.native,
            self.translation,
        )
        return new

    def with_body(self, **fields: Any) -> Request:
        return dataclasses.replace(self, body={**self.body, **fields})

    def with_fields(self, **fields: Any) -> Request:
        """A copy with ``fields`` set in what the deployments get: the client's own body (a
        native lane sends it as it is, in its family's names) and, for a chat request, the
        canonical one; another family's request is translated again from its new body."""
        native = self.native
        if native is None:
            return self.with_body(**fields)
        if native.family != CHAT:
            return dataclasses.replace(self, native=native.with_fields(fields))
        return dataclasses.replace(
            self, body={**self.body, **fields}, native=native.with_fields(fields)
        )

    def msgflux_kwargs(self) -> dict[str, Any]:
        """The call as msgflux-style keyword arguments, for models that only take those."""
        body = dict(self.body)
        out: dict[str, Any] = {}
        if self.kind == CHAT:
            out["messages"] = body.pop("messages")
            if "tools" in body:
                out["tool_schemas"] = body.pop("tools")
            if "tool_choice" in body:
                out["tool_choice"] = body.pop("tool_choice")
            if self.schema is not None:
                body.pop("response_format", None)
            out["stream"] = self.stream
        elif self.kind in (EMBEDDINGS, MODERATIONS, SPEECH):
            out["data"] = body.pop("input")
        elif self.kind == IMAGES:
            out["prompt"] = body.pop("prompt")
        elif self.kind == TRANSCRIPTIONS and self.file is not None:
            out["data"] = self.file[1]
        out.update(body)
        return out


# -- msgflux's chat arguments ------------------------------------------------------------------
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


# -- field checks -------------------------------------------------------------------------------
def _number(name: str, value: Any, low: float, high: float) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number between {low:g} and {high:g}, got {value!r}")
    if not (low <= value <= high):  # also rejects NaN
        raise ValueError(f"{name} must be a number between {low:g} and {high:g}, got {value!r}")


def _integer(name: str, value: Any, low: int, high: int | None = None) -> None:
    accepted = f"an int >= {low}" + (f" and <= {high}" if high is not None else "")
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be {accepted}, got {value!r}")
    if value < low or (high is not None and value > high):
        raise ValueError(f"{name} must be {accepted}, got {value!r}")


def _of(name: str, value: Any, types: type | tuple[type, ...], what: str) -> None:
    if isinstance(value, bool) and bool not in (types if isinstance(types, tuple) else (types,)):
        raise TypeError(f"{name} must be {what}, got {value!r}")
    if not isinstance(value, types):
        raise TypeError(f"{name} must be {what}, got {type_name(value)}")


def _stop(name: str, value: Any) -> None:
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, (list, tuple)) or not all(isinstance(s, str) for s in items):
        raise TypeError(f"{name} must be a str or a list of str, got {value!r}")


def _tools(name: str, value: Any) -> None:
    if not isinstance(value, list) or not all(isinstance(t, dict) for t in value):
        raise TypeError(
            f"{name} must be a list of tool dicts like {{'type': 'function', 'function': "
            f"{{'name': ..., 'parameters': {{...}}}}}}, got {value!r:.80}"
        )


def _tool_choice(name: str, value: Any) -> None:
    if isinstance(value, dict):
        return
    if isinstance(value, str) and value in ("auto", "required", "none"):
        return
    raise TypeError(
        f"{name} must be 'auto', 'required', 'none' or a dict naming a function, got {value!r}"
    )


def _response_format(name: str, value: Any) -> None:
    if not isinstance(value, dict) or not isinstance(value.get("type"), str):
        raise TypeError(
            f"{name} must be a dict like {{'type': 'json_object'}} or "
            f"{{'type': 'json_schema', 'json_schema': {{...}}}}, got {value!r:.80}"
        )


_ROLES = ("system", "developer", "user", "assistant", "tool", "function")


def _messages(name: str, value: Any) -> None:
    if not isinstance(value, list):
        raise TypeError(f"{name} must be a list of message dicts, got {type_name(value)}")
    if not value:
        raise ValueError(f"{name} must not be empty")
    for i, message in enumerate(value):
        if not isinstance(message, dict):
            raise TypeError(
                f"{name}[{i}] must be a dict like {{'role': 'user', 'content': '...'}}, "
                f"got {type_name(message)}"
            )
        role = message.get("role")
        if role not in _ROLES:
            raise ValueError(
                f"{name}[{i}]['role'] must be one of {', '.join(_ROLES)}, got {role!r}"
            )
        content = message.get("content")
        if content is not None and not isinstance(content, (str, list)):
            raise TypeError(
                f"{name}[{i}]['content'] must be a str, a list of content parts or None, "
                f"got {type_name(content)}"
            )


_FIELD_CHECKS: dict[str, Callable[[str, Any], None]] = {
    "messages": _messages,
    "temperature": lambda n, v: _number(n, v, 0, 2),
    "top_p": lambda n, v: _number(n, v, 0, 1),
    "presence_penalty": lambda n, v: _number(n, v, -2, 2),
    "frequency_penalty": lambda n, v: _number(n, v, -2, 2),
    "max_tokens": lambda n, v: _integer(n, v, 1),
    "max_completion_tokens": lambda n, v: _integer(n, v, 1),
    "n": lambda n, v: _integer(n, v, 1, 128),
    "seed": lambda n, v: _integer(n, v, -(2**63), 2**63 - 1),
    "top_logprobs": lambda n, v: _integer(n, v, 0, 20),
    "logprobs": lambda n, v: _of(n, v, bool, "a bool"),
    "parallel_tool_calls": lambda n, v: _of(n, v, bool, "a bool"),
    "store": lambda n, v: _of(n, v, bool, "a bool"),
    "stop": _stop,
    "tools": _tools,
    "tool_choice": _tool_choice,
    "response_format": _response_format,
    "user": lambda n, v: _of(n, v, str, "a str"),
    "reasoning_effort": lambda n, v: _of(n, v, str, "a str"),
    "stream_options": lambda n, v: _of(n, v, dict, "a dict like {'include_usage': True}"),
    "logit_bias": lambda n, v: _of(n, v, dict, "a dict of token id -> bias"),
    "metadata": lambda n, v: _of(n, v, dict, "a dict of str -> str"),
    "modalities": lambda n, v: _stop(n, v),
    "audio": lambda n, v: _of(n, v, dict, "a dict like {'voice': 'alloy', 'format': 'wav'}"),
}
"""Checks of the OpenAI chat fields we know (None values are dropped before checking)."""


def _check_fields(
    fields: Mapping[str, Any], checks: Mapping[str, Callable[[str, Any], None]]
) -> None:
    for name, value in fields.items():
        check = checks.get(name)
        if check is not None:
            check(name, value)


def _options(
    timeout: Any, first_chunk_timeout: Any, idle_timeout: Any, extra_headers: Any
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if timeout is not None:
        out["timeout"] = check_timeout(timeout, "timeout")
    if first_chunk_timeout is not None:
        out["first_chunk_timeout"] = check_timeout(first_chunk_timeout, "first_chunk_timeout")
    if idle_timeout is not None:
        out["idle_timeout"] = check_timeout(idle_timeout, "idle_timeout")
    if extra_headers is not None:
        if not isinstance(extra_headers, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in extra_headers.items()
        ):
            raise TypeError(
                f"extra_headers must be a dict of str -> str, got {extra_headers!r:.80}"
            )
        out["extra_headers"] = dict(extra_headers)
    return out


def _extra_body(extra_body: Any) -> dict[str, Any]:
    if extra_body is None:
        return {}
    if not isinstance(extra_body, dict):
        raise TypeError(f"extra_body must be a dict of vendor fields, got {type_name(extra_body)}")
    return extra_body


def _fields(fields: dict[str, Any], reserved: tuple[str, ...]) -> dict[str, Any]:
    for name in reserved:
        if name in fields:
            raise TypeError(
                f"{name!r} is not a per-call field here; "
                + ("each deployment sets its own model id" if name == "model" else f"pass {name}=")
            )
    return {k: v for k, v in fields.items() if v is not None}


# -- structured output --------------------------------------------------------------------------
_schemas: dict[type, Schema] = {}


def schema_of(generation_schema: Any) -> Schema:
    """The :class:`Schema` of a msgspec Struct or pydantic model class (cached per class)."""
    cached = _schemas.get(generation_schema) if isinstance(generation_schema, type) else None
    if cached is not None:
        return cached
    json_schema, decode = schema_and_decoder(generation_schema)
    name = re.sub(r"[^a-zA-Z0-9_-]", "_", generation_schema.__name__)[:64]
    result = Schema(name, _inline_root(json_schema), decode)
    _schemas[generation_schema] = result
    return result


def _inline_root(schema: dict[str, Any]) -> dict[str, Any]:
    """Providers want an object at the root, not msgspec's ``{"$ref": ...}``."""
    ref = schema.get("$ref")
    defs = schema.get("$defs")
    if isinstance(ref, str) and isinstance(defs, dict) and ref.startswith("#/$defs/"):
        root = dict(defs[ref[len("#/$defs/") :]])
        rest = {k: v for k, v in defs.items() if k != ref[len("#/$defs/") :]}
        if rest or _refers(root, ref):
            root["$defs"] = defs
        return root
    return schema


def _refers(node: Any, ref: str) -> bool:
    if isinstance(node, dict):
        return node.get("$ref") == ref or any(_refers(v, ref) for v in node.values())
    if isinstance(node, list):
        return any(_refers(v, ref) for v in node)
    return False


def strict_schema(schema: dict[str, Any]) -> tuple[dict[str, Any], bool]:
    """A copy made OpenAI-strict (every property required, no extra ones), and whether that
    was possible (open dicts cannot be strict)."""
    node = _copy(schema)
    return node, _strictify(node)


def _copy(node: Any) -> Any:
    if isinstance(node, dict):
        return {k: _copy(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_copy(v) for v in node]
    return node


def _strictify(node: Any) -> bool:
    ok = True
    if isinstance(node, dict):
        node.pop("default", None)
        if node.get("type") == "object":
            properties = node.get("properties")
            extra = node.get("additionalProperties")
            if isinstance(properties, dict) and extra in (None, False):
                node["additionalProperties"] = False
                node["required"] = list(properties)
            else:
                ok = False
        for key, value in node.items():
            if key in ("properties", "$defs") and isinstance(value, dict):
                for sub in value.values():
                    ok = _strictify(sub) and ok
            elif key in ("items", "additionalProperties", "not"):
                ok = _strictify(value) and ok
            elif key in ("anyOf", "allOf", "oneOf", "prefixItems") and isinstance(value, list):
                for sub in value:
                    ok = _strictify(sub) and ok
    return ok


_strict_formats: dict[int, dict[str, Any]] = {}


def json_schema_format(schema: Schema) -> dict[str, Any]:
    """OpenAI's ``response_format`` for ``schema`` (strict when the schema allows it)."""
    key = id(schema)
    cached = _strict_formats.get(key)
    if cached is None:
        strict, ok = strict_schema(schema.json_schema)
        cached = {
            "type": "json_schema",
            "json_schema": {"name": schema.name, "schema": strict, "strict": ok},
        }
        _strict_formats[key] = cached
    return cached


# -- builders -----------------------------------------------------------------------------------
def _tool_list(tool_schemas: Any) -> list[dict[str, Any]]:
    """msgflux's ``tool_schemas``: OpenAI tools, or bare function schemas with a ``name``."""
    if not isinstance(tool_schemas, (list, tuple)):
        raise TypeError(f"tool_schemas must be a list of tool dicts, got {type_name(tool_schemas)}")
    tools = []
    for i, tool in enumerate(tool_schemas):
        if not isinstance(tool, dict):
            raise TypeError(f"tool_schemas[{i}] must be a dict, got {type_name(tool)}")
        if tool.get("type") == "function" and isinstance(tool.get("function"), dict):
            tools.append(tool)
        elif isinstance(tool.get("name"), str):
            tools.append({"type": "function", "function": tool})
        else:
            raise ValueError(
                f"tool_schemas[{i}] must be an OpenAI tool ({{'type': 'function', 'function': "
                "{...}}) or a function schema with a 'name'"
            )
    return tools


def _choice(tool_choice: Any) -> Any:
    """msgflux's ``tool_choice``: also a bare function name."""
    if isinstance(tool_choice, str) and tool_choice not in ("auto", "required", "none", ""):
        return {"type": "function", "function": {"name": tool_choice}}
    _tool_choice("tool_choice", tool_choice)
    return tool_choice


def chat_request(
    messages: Any,
    *,
    system_prompt: Any = None,
    prefilling: Any = None,
    stream: Any = False,
    generation_schema: Any = None,
    tool_schemas: Any = None,
    tool_choice: Any = None,
    timeout: Any = None,
    first_chunk_timeout: Any = None,
    idle_timeout: Any = None,
    extra_headers: Any = None,
    extra_body: Any = None,
    **fields: Any,
) -> Request:
    """A chat request from msgflux-style arguments plus any OpenAI field (``temperature=0``,
    ``max_tokens=50``, ``seed=7``, ``logprobs=True``, ...); ``extra_body`` adds vendor fields.

    A per-call field wins over the model's construction defaults. Raises ``TypeError`` /
    ``ValueError`` naming the argument at fault.
    """
    if stream is not True and stream is not False:
        raise TypeError(f"stream must be a bool, got {stream!r}")
    chat = chat_messages(messages, system_prompt, prefilling)
    body = _fields(fields, ("model",))
    _check_fields(body, _FIELD_CHECKS)
    body["messages"] = chat
    schema = None
    if generation_schema is not None:
        if stream:
            raise ValueError("generation_schema cannot be combined with stream=True")
        if prefilling is not None:
            raise ValueError("generation_schema cannot be combined with prefilling")
        schema = schema_of(generation_schema)
        body["response_format"] = json_schema_format(schema)
    if tool_schemas is not None:
        body["tools"] = _tool_list(tool_schemas)
    if tool_choice is not None:
        if "tools" not in body:
            raise ValueError("tool_choice needs tool_schemas")
        body["tool_choice"] = _choice(tool_choice)
    body.update(_extra_body(extra_body))
    return Request(
        CHAT,
        body,
        stream,
        schema=schema,
        prefill=prefilling,
        **_options(timeout, first_chunk_timeout, idle_timeout, extra_headers),
    )


def embeddings_request(
    data: Any,
    *,
    timeout: Any = None,
    extra_headers: Any = None,
    extra_body: Any = None,
    **fields: Any,
) -> Request:
    """Embeddings of one text (the view is one vector) or a list of texts (a list of them)."""
    if isinstance(data, str):
        single = True
    elif isinstance(data, list) and data and all(isinstance(x, str) for x in data):
        single = False
    else:
        raise TypeError(f"data must be a str or a non-empty list of str, got {data!r:.80}")
    body = _fields(fields, ("model", "input"))
    if "dimensions" in body:
        _integer("dimensions", body["dimensions"], 1)
    body["input"] = data
    body.update(_extra_body(extra_body))
    return Request(EMBEDDINGS, body, single=single, **_options(timeout, None, None, extra_headers))


def moderation_request(
    data: Any,
    *,
    timeout: Any = None,
    extra_headers: Any = None,
    extra_body: Any = None,
    **fields: Any,
) -> Request:
    if not isinstance(data, (str, list)) or not data:
        raise TypeError(f"data must be a non-empty str or list, got {data!r:.80}")
    body = _fields(fields, ("model", "input"))
    body["input"] = data
    body.update(_extra_body(extra_body))
    return Request(
        MODERATIONS,
        body,
        single=isinstance(data, str),
        **_options(timeout, None, None, extra_headers),
    )


def speech_request(
    data: Any,
    *,
    prompt: Any = None,
    response_format: Any = None,
    timeout: Any = None,
    extra_headers: Any = None,
    extra_body: Any = None,
    **fields: Any,
) -> Request:
    if not isinstance(data, str):
        raise TypeError(f"data must be a str, got {type_name(data)}")
    for name, value in (("prompt", prompt), ("response_format", response_format)):
        if value is not None and not isinstance(value, str):
            raise TypeError(f"{name} must be a str or None, got {type_name(value)}")
    body = _fields(fields, ("model", "input"))
    if "speed" in body:
        _number("speed", body["speed"], 0.25, 4.0)
    body["input"] = data
    if prompt is not None:
        body["instructions"] = prompt
    if response_format is not None:
        body["response_format"] = response_format
    body.update(_extra_body(extra_body))
    return Request(SPEECH, body, **_options(timeout, None, None, extra_headers))


_TEXT_FORMATS = ("text", "srt", "vtt")
TRANSCRIPT_FORMATS = ("json", "verbose_json", *_TEXT_FORMATS)


def read_audio(data: Any) -> tuple[str, bytes]:
    """``(filename, bytes)`` of audio given as bytes, a path or a binary file object."""
    if isinstance(data, (bytes, bytearray, memoryview)):
        return "audio", bytes(data)
    if isinstance(data, (str, os.PathLike)):
        path = os.fspath(data)
        try:
            with open(path, "rb") as fh:
                return os.path.basename(path), fh.read()
        except OSError as exc:
            raise ValueError(f"data: cannot read audio file {path!r}: {exc}") from None
    read = getattr(data, "read", None)
    if callable(read):
        content = read()
        if isinstance(content, bytes):
            return os.path.basename(str(getattr(data, "name", "audio"))), content
    raise TypeError(
        f"data must be audio bytes, a file path or a binary file object, got {type_name(data)}"
    )


def transcription_request(
    data: Any,
    *,
    response_format: Any = "json",
    timestamp_granularities: Any = None,
    prompt: Any = None,
    language: Any = None,
    timeout: Any = None,
    extra_headers: Any = None,
    extra_body: Any = None,
    **fields: Any,
) -> Request:
    file = read_audio(data)
    if response_format not in TRANSCRIPT_FORMATS:
        raise ValueError(
            f"response_format must be one of {list(TRANSCRIPT_FORMATS)}, got {response_format!r}"
        )
    for name, value in (("prompt", prompt), ("language", language)):
        if value is not None and not isinstance(value, str):
            raise TypeError(f"{name} must be a str or None, got {type_name(value)}")
    body = _fields(fields, ("model", "file"))
    if "temperature" in body:
        _number("temperature", body["temperature"], 0, 1)
    body["response_format"] = response_format
    if prompt is not None:
        body["prompt"] = prompt
    if language is not None:
        body["language"] = language
    if timestamp_granularities is not None:
        if not isinstance(timestamp_granularities, list) or not set(timestamp_granularities) <= {
            "word",
            "segment",
        }:
            raise ValueError(
                "timestamp_granularities must be a list drawn from ['word', 'segment'], "
                f"got {timestamp_granularities!r}"
            )
        body["timestamp_granularities"] = timestamp_granularities
    body.update(_extra_body(extra_body))
    return Request(TRANSCRIPTIONS, body, file=file, **_options(timeout, None, None, extra_headers))


def image_request(
    prompt: Any,
    *,
    response_format: Any = None,
    n: Any = 1,
    timeout: Any = None,
    extra_headers: Any = None,
    extra_body: Any = None,
    **fields: Any,
) -> Request:
    if not isinstance(prompt, str):
        raise TypeError(f"prompt must be a str, got {type_name(prompt)}")
    _integer("n", n, 1, 10)
    body = _fields(fields, ("model",))
    body["prompt"] = prompt
    body["n"] = n
    if response_format is not None:
        if response_format not in ("url", "base64", "b64_json"):
            raise ValueError(f"response_format must be 'url' or 'base64', got {response_format!r}")
        body["response_format"] = "url" if response_format == "url" else "b64_json"
    body.update(_extra_body(extra_body))
    return Request(IMAGES, body, **_options(timeout, None, None, extra_headers))


BUILDERS: dict[str, Callable[..., Request]] = {
    CHAT: chat_request,
    EMBEDDINGS: embeddings_request,
    MODERATIONS: moderation_request,
    SPEECH: speech_request,
    TRANSCRIPTIONS: transcription_request,
    IMAGES: image_request,
}


# -- from an OpenAI JSON body (the server) ------------------------------------------------------
def from_openai(kind: str, body: Any, *, file: tuple[str, bytes] | None = None) -> Request:
    """A request from an OpenAI JSON body, validated the same way (``model`` is dropped: the
    gateway the client named decides who answers). ``stream`` becomes the call option."""
    if not isinstance(body, dict):
        raise TypeError(f"the request body must be a JSON object, got {type_name(body)}")
    fields = {k: v for k, v in body.items() if k != "model" and v is not None}
    stream = fields.pop("stream", False)
    if stream is not True and stream is not False:
        raise TypeError(f"stream must be a bool, got {stream!r}")
    if kind == CHAT:
        if "messages" not in fields:
            raise ValueError("messages is required: a list of message dicts")
        _check_fields(fields, _FIELD_CHECKS)
        return Request(CHAT, fields, stream)
    if stream:
        raise ValueError(f"stream is only supported for chat completions, not {kind}")
    if kind in (EMBEDDINGS, MODERATIONS, SPEECH):
        if "input" not in fields:
            raise ValueError("input is required")
        data = fields["input"]
        if kind == EMBEDDINGS and not (isinstance(data, str) or (isinstance(data, list) and data)):
            raise TypeError("input must be a str or a non-empty list")
        if kind == SPEECH and not isinstance(data, str):
            raise TypeError(f"input must be a str, got {type_name(data)}")
        return Request(kind, fields, single=isinstance(data, str))
    if kind == IMAGES:
        if not isinstance(fields.get("prompt"), str):
            raise ValueError("prompt is required: a str")
        if "n" in fields:
            _integer("n", fields["n"], 1, 10)
        return Request(kind, fields)
    if kind == TRANSCRIPTIONS:
        if file is None:
            raise ValueError("file is required: the audio to transcribe")
        return Request(kind, fields, file=file)
    raise ValueError(f"unknown request kind {kind!r}; known: {', '.join(BUILDERS)}")
