"""The OpenAI wire format, spoken directly over :mod:`msgflux._http`.

One implementation serves every OpenAI-compatible provider; a provider's subclass only names
its :class:`ProviderSpec` (where it lives, which environment variables configure it, whether
it needs a key). Keys are read from ``<PROVIDER>_API_KEY`` when a call is made, never at
construction and never into the serialized state, so a model can be built (and a gateway
configured) anywhere, and a missing key surfaces as an :class:`AuthenticationError` naming
the variable, which a gateway treats like any other failed deployment.

Every model has two call paths. ``model(...)``/``await model.acall(...)`` are for standalone
use and retry transient errors (``max_retries``, honouring ``Retry-After``);
``_call_once``/``_acall_once`` make exactly one HTTP attempt with a per-attempt ``timeout=``
and are what a gateway calls, so retries are never doubled.

>>> model = Model.chat_completion("openai/gpt-4.1-nano", temperature=0)
>>> model(messages="Who was Frank Rosenblatt?").consume()  # doctest: +SKIP
'Frank Rosenblatt was an American psychologist ...'
"""

from __future__ import annotations

import base64
import dataclasses
import os
import re
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Generator, Iterator, Mapping
from typing import IO, Any, ClassVar

import msgspec
import orjson

from msgflux import _http
from msgflux._time import Clock, as_clock
from msgflux.exceptions import (
    APIConnectionError,
    APIResponseValidationError,
    AuthenticationError,
    ContentPolicyError,
)
from msgflux.models.base import BaseModel
from msgflux.models.providers._chat import chat_messages, schema_and_decoder
from msgflux.models.providers._params import (
    check_int,
    check_number,
    check_stop,
    check_str,
    check_timeout,
    type_name,
)
from msgflux.models.registry import register
from msgflux.models.response import Metadata, ModelResponse, ModelStreamResponse
from msgflux.models.tool_call import ToolCall
from msgflux.models.types import (
    ChatCompletionModel,
    ModerationModel,
    SpeechToTextModel,
    TextEmbedderModel,
    TextToImageModel,
    TextToSpeechModel,
)
from msgflux.retry import acall_with_retries, call_with_retries

__all__ = [
    "OPENAI",
    "OpenAIChatCompletion",
    "OpenAIModel",
    "OpenAIModeration",
    "OpenAISpeechToText",
    "OpenAITextEmbedder",
    "OpenAITextToImage",
    "OpenAITextToSpeech",
    "ProviderSpec",
]

Messages = str | list[dict[str, Any]]
AudioInput = bytes | bytearray | memoryview | str | os.PathLike[str] | IO[bytes]


@dataclasses.dataclass(frozen=True)
class ProviderSpec:
    """What tells one OpenAI-compatible provider from another.

    ``ProviderSpec("together", "https://api.together.xyz/v1")`` reads ``TOGETHER_API_KEY``
    and lets ``TOGETHER_BASE_URL`` (or ``base_url=``) move it elsewhere.
    """

    name: str
    default_base_url: str | None
    api_key_required: bool = True
    """Local servers (vLLM, Ollama) work without a key; hosted APIs refuse the call."""
    max_tokens_field: str = "max_tokens"
    """OpenAI's reasoning models only accept ``max_completion_tokens``."""
    stream_usage: bool = True
    """Ask for usage in the last stream chunk (``stream_options.include_usage``)."""
    api_key_env: str = dataclasses.field(init=False)
    base_url_env: str = dataclasses.field(init=False)

    def __post_init__(self) -> None:
        if not re.fullmatch(r"[a-z][a-z0-9_]*", self.name):
            raise ValueError(f"ProviderSpec name must be lower-case snake_case, got {self.name!r}")
        object.__setattr__(self, "api_key_env", f"{self.name.upper()}_API_KEY")
        object.__setattr__(self, "base_url_env", f"{self.name.upper()}_BASE_URL")


OPENAI = ProviderSpec(
    "openai", "https://api.openai.com/v1", max_tokens_field="max_completion_tokens"
)

_DEFAULT_RETRIES = 2
_CLIENT_PARAMS = ("organization", "project", "base_url")


# -- validation helpers ------------------------------------------------------------------------
def _check_keys(name: str, params: Any, accepted: tuple[str, ...]) -> dict[str, Any]:
    if not isinstance(params, dict):
        raise TypeError(f"{name} must be a dict, got {type_name(params)}")
    unknown = sorted(set(params) - set(accepted))
    if unknown:
        raise ValueError(f"{name} has unknown keys {unknown}; accepted: {list(accepted)}")
    return params


# -- the shared base ---------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class _Request:
    """One validated, encoded request; retries resend the same bytes."""

    path: str
    body: bytes
    parse: Callable[[Any, Mapping[str, str], _http.Endpoint, _Request], Any]
    content_type: str | None = None
    raw: bool = False
    stream: bool = False
    extra: Any = None


class OpenAIModel(BaseModel):
    """What every OpenAI-wire model shares: settings, keys, URLs, retries, serialization."""

    spec: ClassVar[ProviderSpec] = OPENAI
    provider = "openai"
    supports_timeout: ClassVar[bool] = True

    model_id: str
    sampling_params: dict[str, Any]
    max_retries: int = _DEFAULT_RETRIES
    timeout: float | None = None

    _clock: Clock
    _base_url: str | None
    _extra_headers: dict[str, str]
    _endpoints: dict[str, tuple[str | None, str | None, _http.Endpoint]]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "spec" in cls.__dict__:
            cls.provider = cls.spec.name

    def _set_common(
        self,
        model_id: str,
        base_url: str | None,
        organization: str | None,
        project: str | None,
        max_retries: int,
        timeout: float | None,
        clock: Clock | None,
    ) -> None:
        self.model_id = model_id
        params: dict[str, Any] = {"organization": organization, "project": project}
        if base_url is not None:
            params["base_url"] = base_url
        self.sampling_params = params
        self.max_retries = max_retries
        self.timeout = timeout
        self._clock = as_clock(clock)

    def _initialize(self) -> None:
        """Validate the settings and prepare per-call state (also after ``from_serialized``)."""
        model_id = check_str("model_id", getattr(self, "model_id", None), optional=False)
        if not model_id.strip():
            raise ValueError("model_id must not be empty")
        if getattr(self, "sampling_params", None) is None:
            self.sampling_params = {"organization": None, "project": None}
        params = _check_keys("sampling_params", self.sampling_params, _CLIENT_PARAMS)
        check_str("organization", params.get("organization"))
        check_str("project", params.get("project"))
        base_url = params.get("base_url")
        if base_url is not None:
            check_str("base_url", base_url)
            if not base_url.startswith(("http://", "https://")):
                raise ValueError(f"base_url must start with http:// or https://, got {base_url!r}")
        check_int("max_retries", self.max_retries, minimum=0)
        check_timeout(self.timeout)
        spec = self.spec
        if (
            base_url is None
            and spec.default_base_url is None
            and not os.environ.get(spec.base_url_env)
        ):
            raise ValueError(
                f"provider {spec.name!r} has no default URL: pass base_url='http://...' "
                f"or set {spec.base_url_env}"
            )
        self._base_url = base_url
        if "_clock" not in self.__dict__:
            self._clock = as_clock(None)
        extra = {}
        if params.get("organization"):
            extra["OpenAI-Organization"] = params["organization"]
        if params.get("project"):
            extra["OpenAI-Project"] = params["project"]
        self._extra_headers = extra
        self._endpoints = {}

    def _serialize_state(self) -> dict[str, Any]:
        state = super()._serialize_state()
        if self.max_retries != _DEFAULT_RETRIES:
            state["max_retries"] = self.max_retries
        if self.timeout is not None:
            state["timeout"] = self.timeout
        return state

    # -- transport ---------------------------------------------------------------------------
    def _endpoint(self, path: str) -> _http.Endpoint:
        """The endpoint for ``path`` with the key and URL the environment holds right now."""
        spec = self.spec
        key = os.environ.get(spec.api_key_env) or None
        base = self._base_url or os.environ.get(spec.base_url_env) or spec.default_base_url
        cached = self._endpoints.get(path)
        if cached is not None and cached[0] == key and cached[1] == base:
            return cached[2]
        if key is None and spec.api_key_required:
            raise AuthenticationError(
                f"no API key: set the {spec.api_key_env} environment variable "
                f"(e.g. msgflux.set_envs({spec.api_key_env}=...))",
                provider=self.provider,
                model_id=self.model_id,
            )
        if base is None:
            raise ValueError(
                f"provider {spec.name!r} has no URL: pass base_url= or set {spec.base_url_env}"
            )
        headers = {"Content-Type": "application/json", **self._extra_headers}
        if key is not None:
            headers["Authorization"] = f"Bearer {key}"
        endpoint = _http.Endpoint(
            base.rstrip("/") + path,
            headers,
            provider=self.provider,
            model_id=self.model_id,
            secret=key,
        )
        self._endpoints[path] = (key, base, endpoint)
        return endpoint

    def _send(self, req: _Request, timeout: float | None) -> Any:
        endpoint = self._endpoint(req.path)
        if req.content_type is not None:
            endpoint = endpoint.with_content_type(req.content_type)
        if req.stream:
            events, headers = _http.post_stream(endpoint, req.body, timeout)
            return req.parse(events, headers, endpoint, req)
        payload, headers = _http.post(endpoint, req.body, timeout, raw=req.raw)
        return req.parse(payload, headers, endpoint, req)

    async def _asend(self, req: _Request, timeout: float | None) -> Any:
        endpoint = self._endpoint(req.path)
        if req.content_type is not None:
            endpoint = endpoint.with_content_type(req.content_type)
        if req.stream:
            events, headers = await _http.apost_stream(endpoint, req.body, timeout)
            return req.parse(events, headers, endpoint, req)
        payload, headers = await _http.apost(endpoint, req.body, timeout, raw=req.raw)
        return req.parse(payload, headers, endpoint, req)

    def _timeout(self, timeout: float | None) -> float | None:
        """A per-call timeout, else the model's own."""
        if timeout is None:
            return self.timeout
        return check_timeout(timeout)

    def _once(self, req: _Request, timeout: float | None) -> Any:
        return self._send(req, self._timeout(timeout))

    async def _aonce(self, req: _Request, timeout: float | None) -> Any:
        return await self._asend(req, self._timeout(timeout))

    def _run(self, req: _Request, timeout: float | None = None) -> Any:
        """The standalone path: one attempt plus up to ``max_retries`` retries."""
        timeout = self._timeout(timeout)
        if self.max_retries == 0:
            return self._send(req, timeout)
        return call_with_retries(
            lambda: self._send(req, timeout), max_retries=self.max_retries, clock=self._clock
        )

    async def _arun(self, req: _Request, timeout: float | None = None) -> Any:
        timeout = self._timeout(timeout)
        if self.max_retries == 0:
            return await self._asend(req, timeout)
        return await acall_with_retries(
            lambda: self._asend(req, timeout), max_retries=self.max_retries, clock=self._clock
        )


def _invalid(endpoint: _http.Endpoint, what: str, body: Any = None) -> APIResponseValidationError:
    return APIResponseValidationError(
        what, provider=endpoint.provider, model_id=endpoint.model_id, body=body
    )


# -- chat: structured output -------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class _Schema:
    response_format: dict[str, Any]
    decode: Callable[[str], Any]


_schemas: dict[type, _Schema] = {}


def _schema_for(schema: Any) -> _Schema:
    """The strict-when-possible ``response_format`` and the decoder, cached per schema class."""
    cached = _schemas.get(schema) if isinstance(schema, type) else None
    if cached is not None:
        return cached
    json_schema, decode = schema_and_decoder(schema)
    json_schema = _inline_root(json_schema)
    strict = _strictify(json_schema)
    name = re.sub(r"[^a-zA-Z0-9_-]", "_", schema.__name__)[:64]
    response_format = {
        "type": "json_schema",
        "json_schema": {"name": name, "schema": json_schema, "strict": strict},
    }
    result = _Schema(response_format, decode)
    _schemas[schema] = result
    return result


def _inline_root(schema: dict[str, Any]) -> dict[str, Any]:
    """Providers want an object at the root, not msgspec's ``{"$ref": ...}``."""
    ref = schema.get("$ref")
    defs = schema.get("$defs")
    if isinstance(ref, str) and isinstance(defs, dict) and ref.startswith("#/$defs/"):
        root = dict(defs[ref[len("#/$defs/") :]])
        if len(defs) > 1 or ref.encode() in orjson.dumps(root):
            root["$defs"] = defs
        return root
    return schema


def _strictify(node: Any) -> bool:
    """Make the schema OpenAI-strict in place; False when it cannot be (open dicts)."""
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


def _tools(tool_schemas: Any) -> list[dict[str, Any]]:
    if not isinstance(tool_schemas, (list, tuple)):
        raise TypeError(f"tool_schemas must be a list of dicts, got {type_name(tool_schemas)}")
    tools = []
    for tool in tool_schemas:
        if not isinstance(tool, dict):
            raise TypeError(f"tool_schemas entries must be dicts, got {type_name(tool)}")
        if "type" in tool:
            tools.append(tool)
        elif "name" in tool:
            tools.append({"type": "function", "function": tool})
        else:
            raise ValueError(
                "tool_schemas entries must be OpenAI tools ({'type': 'function', 'function': "
                "{...}}) or function schemas with a 'name'"
            )
    return tools


def _tool_choice(tool_choice: Any) -> Any:
    if isinstance(tool_choice, dict):
        return tool_choice
    if isinstance(tool_choice, str) and tool_choice:
        if tool_choice in ("auto", "required", "none"):
            return tool_choice
        return {"type": "function", "function": {"name": tool_choice}}
    raise TypeError(
        "tool_choice must be 'auto', 'required', 'none', a function name or a dict, "
        f"got {tool_choice!r}"
    )


def _parse_tool_calls(calls: Any, endpoint: _http.Endpoint) -> list[ToolCall]:
    parsed = []
    try:
        for i, call in enumerate(calls):
            function = call["function"]
            parsed.append(
                ToolCall.from_text(
                    call.get("id") or f"call_{i}",
                    function["name"],
                    function.get("arguments") or "",
                )
            )
    except (KeyError, TypeError):
        raise _invalid(endpoint, "malformed tool_calls in the answer", calls) from None
    return parsed


# -- chat: streaming ---------------------------------------------------------------------------
class _ChatStream:
    """Turns chat SSE events into what the stream yields; shared by the sync and async paths."""

    __slots__ = ("calls", "endpoint", "finish_reason", "reasoning", "resp", "usage")

    def __init__(self, resp: ModelStreamResponse, endpoint: _http.Endpoint) -> None:
        self.resp = resp
        self.endpoint = endpoint
        self.reasoning: list[str] = []
        self.calls: dict[int, list[str]] = {}
        self.finish_reason: str | None = None
        self.usage: Any = None

    def feed(self, event: Any) -> str | None:
        """The text this event adds, if any."""
        if not isinstance(event, dict):
            raise _invalid(self.endpoint, "a stream event that is not a JSON object", event)
        error = event.get("error")
        if error:
            raise self._error(error)
        usage = event.get("usage")
        if usage:
            self.usage = usage
        choices = event.get("choices")
        if not choices:
            return None
        choice = choices[0]
        finish = choice.get("finish_reason")
        if finish:
            self.finish_reason = finish
        delta = choice.get("delta")
        if not delta:
            return None
        reasoning = delta.get("reasoning_content") or delta.get("reasoning")
        if reasoning and isinstance(reasoning, str):
            self.reasoning.append(reasoning)
        tool_calls = delta.get("tool_calls")
        if tool_calls:
            self._add_tool_deltas(tool_calls)
            if self.resp.response_type is None:
                self.resp.response_type = self._kind("tool_call")
        content = delta.get("content")
        if content:
            if self.resp.response_type is None:
                self.resp.response_type = self._kind("text_generation")
            return content  # type: ignore[no-any-return]
        return None

    def finish(self) -> list[ToolCall] | None:
        """Fill the metadata at the end; the tool calls, when the answer was tool calls."""
        if self.finish_reason is None:
            raise APIConnectionError(
                "the stream ended before the model finished (no finish_reason)",
                provider=self.endpoint.provider,
                model_id=self.endpoint.model_id,
            )
        resp = self.resp
        metadata = resp.metadata
        metadata["usage"] = self.usage
        metadata["finish_reason"] = self.finish_reason
        if self.reasoning:
            metadata["reasoning"] = "".join(self.reasoning)
        if self.calls:
            calls = [
                ToolCall.from_text(parts[0] or f"call_{index}", parts[1], parts[2])
                for index, parts in sorted(self.calls.items())
            ]
            resp.data = calls
            if resp.response_type is None:
                resp.response_type = self._kind("tool_call")
            return calls
        if resp.response_type is None:
            resp.response_type = self._kind("text_generation")
        return None

    def _kind(self, base: str) -> str:
        return f"reasoning_{base}" if self.reasoning else base

    def _add_tool_deltas(self, deltas: Any) -> None:
        for delta in deltas:
            index = delta.get("index", 0)
            parts = self.calls.setdefault(index, ["", "", ""])
            if delta.get("id"):
                parts[0] = delta["id"]
            function = delta.get("function") or {}
            if function.get("name"):
                parts[1] += function["name"]
            if function.get("arguments"):
                parts[2] += function["arguments"]

    def _error(self, error: Any) -> Exception:
        code = error.get("code") if isinstance(error, dict) else None
        status = code if isinstance(code, int) and 400 <= code <= 599 else 500
        endpoint = self.endpoint
        return _http.status_error(
            status,
            orjson.dumps({"error": error}),
            None,
            provider=endpoint.provider,
            model_id=endpoint.model_id,
            secret=endpoint.secret,
        )


def _chat_chunks(events: Generator[Any, None, None], state: _ChatStream) -> Iterator[Any]:
    try:
        for event in events:
            text = state.feed(event)
            if text is not None:
                yield text
        calls = state.finish()
        if calls is not None:
            yield calls
    finally:
        events.close()


async def _achat_chunks(
    events: AsyncGenerator[Any, None], state: _ChatStream
) -> AsyncIterator[Any]:
    try:
        async for event in events:
            text = state.feed(event)
            if text is not None:
                yield text
        calls = state.finish()
        if calls is not None:
            yield calls
    finally:
        await events.aclose()


# -- chat --------------------------------------------------------------------------------------
_RUN_PARAMS = (
    "max_tokens",
    "temperature",
    "top_p",
    "modalities",
    "audio",
    "stop",
    "reasoning_effort",
)
_MODALITIES = ("text", "audio")


@register("chat_completion", "openai")
class OpenAIChatCompletion(OpenAIModel, ChatCompletionModel):
    """Chat completions: text, streams, tool calls, structured output, reasoning.

    ``response_type`` is ``text_generation``, ``tool_call`` (data: a list of
    :class:`~msgflux.models.tool_call.ToolCall`) or ``structured`` (data: an instance of the
    ``generation_schema``); when the provider also returns reasoning it is
    ``reasoning_<type>`` and data is ``{"answer": ..., "think": reasoning}``.

    >>> model = Model.chat_completion("openai/gpt-4.1-nano", max_tokens=256)
    >>> model(messages="Hi", system_prompt="Be brief").consume()  # doctest: +SKIP
    """

    sampling_run_params: dict[str, Any]
    _body: dict[str, Any]

    def __init__(
        self,
        model_id: str,
        *,
        max_tokens: int | None = 512,
        temperature: float | None = None,
        top_p: float | None = None,
        stop: str | list[str] | None = None,
        modalities: list[str] | None = None,
        audio: dict[str, Any] | None = None,
        reasoning_effort: str | None = None,
        base_url: str | None = None,
        organization: str | None = None,
        project: str | None = None,
        max_retries: int = _DEFAULT_RETRIES,
        timeout: float | None = None,
        clock: Clock | None = None,
    ) -> None:
        self._set_common(model_id, base_url, organization, project, max_retries, timeout, clock)
        run: dict[str, Any] = {
            "max_tokens": max_tokens,
            "temperature": temperature,
            "top_p": top_p,
            "modalities": list(modalities) if isinstance(modalities, (list, tuple)) else modalities,
            "audio": audio,
        }
        if run["modalities"] is None:
            run["modalities"] = ["text"]
        if stop is not None:
            run["stop"] = list(stop) if isinstance(stop, tuple) else stop
        if reasoning_effort is not None:
            run["reasoning_effort"] = reasoning_effort
        self.sampling_run_params = run
        self._initialize()

    def _initialize(self) -> None:
        super()._initialize()
        if getattr(self, "sampling_run_params", None) is None:
            self.sampling_run_params = {
                "max_tokens": 512,
                "temperature": None,
                "top_p": None,
                "modalities": ["text"],
                "audio": None,
            }
        run = _check_keys("sampling_run_params", self.sampling_run_params, _RUN_PARAMS)
        check_int("max_tokens", run.get("max_tokens"), minimum=1, optional=True)
        check_number("temperature", run.get("temperature"), minimum=0, maximum=2)
        check_number("top_p", run.get("top_p"), minimum=0, maximum=1)
        check_stop(run.get("stop"))
        modalities = run.get("modalities") or ["text"]
        if not isinstance(modalities, list) or not set(modalities) <= set(_MODALITIES):
            raise ValueError(
                f"modalities must be a list drawn from {list(_MODALITIES)}, got {modalities!r}"
            )
        audio = run.get("audio")
        if audio is not None and not isinstance(audio, dict):
            raise TypeError(
                f"audio must be a dict like {{'voice': 'alloy', 'format': 'wav'}}, got {audio!r}"
            )
        effort = run.get("reasoning_effort")
        check_str("reasoning_effort", effort)
        body: dict[str, Any] = {"model": self.model_id}
        if run.get("max_tokens") is not None:
            body[self.spec.max_tokens_field] = run["max_tokens"]
        for name in ("temperature", "top_p", "stop", "reasoning_effort", "audio"):
            if run.get(name) is not None:
                body[name] = run[name]
        if modalities != ["text"]:
            body["modalities"] = modalities
        self._body = body

    def _request(
        self,
        messages: Messages,
        system_prompt: str | None,
        prefilling: str | None,
        stream: bool,
        generation_schema: Any,
        tool_schemas: Any,
        tool_choice: Any,
    ) -> _Request:
        chat = chat_messages(messages, system_prompt, prefilling)
        if stream is not True and stream is not False:
            raise TypeError(f"stream must be a bool, got {stream!r}")
        body = self._body.copy()
        body["messages"] = chat
        schema = None
        if generation_schema is not None:
            if stream:
                raise ValueError("generation_schema cannot be combined with stream=True")
            if prefilling is not None:
                raise ValueError("generation_schema cannot be combined with prefilling")
            schema = _schema_for(generation_schema)
            body["response_format"] = schema.response_format
        if tool_schemas is not None:
            body["tools"] = _tools(tool_schemas)
        if tool_choice is not None:
            if tool_schemas is None:
                raise ValueError("tool_choice needs tool_schemas")
            body["tool_choice"] = _tool_choice(tool_choice)
        if stream:
            body["stream"] = True
            if self.spec.stream_usage:
                body["stream_options"] = {"include_usage": True}
        try:
            data = orjson.dumps(body)
        except TypeError as exc:
            raise TypeError(f"messages must be JSON-serializable: {exc}") from None
        if stream:
            return _Request("/chat/completions", data, _parse_stream, stream=True)
        return _Request("/chat/completions", data, _parse_chat, extra=schema)

    def __call__(
        self,
        messages: Messages,
        *,
        system_prompt: str | None = None,
        prefilling: str | None = None,
        stream: bool = False,
        generation_schema: Any = None,
        tool_schemas: list[dict[str, Any]] | None = None,
        tool_choice: str | dict[str, Any] | None = None,
        timeout: float | None = None,
    ) -> ModelResponse | ModelStreamResponse:
        """Ask the model; retries transient errors ``max_retries`` times.

        ``timeout`` (seconds per attempt) overrides the model's ``timeout`` for this call.
        """
        req = self._request(
            messages,
            system_prompt,
            prefilling,
            stream,
            generation_schema,
            tool_schemas,
            tool_choice,
        )
        return self._run(req, timeout)  # type: ignore[no-any-return]

    async def acall(
        self,
        messages: Messages,
        *,
        system_prompt: str | None = None,
        prefilling: str | None = None,
        stream: bool = False,
        generation_schema: Any = None,
        tool_schemas: list[dict[str, Any]] | None = None,
        tool_choice: str | dict[str, Any] | None = None,
        timeout: float | None = None,
    ) -> ModelResponse | ModelStreamResponse:
        """Async form of ``__call__`` (a stream is then read with ``async for``)."""
        req = self._request(
            messages,
            system_prompt,
            prefilling,
            stream,
            generation_schema,
            tool_schemas,
            tool_choice,
        )
        return await self._arun(req, timeout)  # type: ignore[no-any-return]

    def _call_once(
        self,
        messages: Messages,
        *,
        system_prompt: str | None = None,
        prefilling: str | None = None,
        stream: bool = False,
        generation_schema: Any = None,
        tool_schemas: list[dict[str, Any]] | None = None,
        tool_choice: str | dict[str, Any] | None = None,
        timeout: float | None = None,
    ) -> ModelResponse | ModelStreamResponse:
        """Exactly one HTTP attempt, bounded by ``timeout`` seconds (what a gateway calls)."""
        req = self._request(
            messages,
            system_prompt,
            prefilling,
            stream,
            generation_schema,
            tool_schemas,
            tool_choice,
        )
        return self._once(req, timeout)  # type: ignore[no-any-return]

    async def _acall_once(
        self,
        messages: Messages,
        *,
        system_prompt: str | None = None,
        prefilling: str | None = None,
        stream: bool = False,
        generation_schema: Any = None,
        tool_schemas: list[dict[str, Any]] | None = None,
        tool_choice: str | dict[str, Any] | None = None,
        timeout: float | None = None,
    ) -> ModelResponse | ModelStreamResponse:
        """Async form of :meth:`_call_once`."""
        req = self._request(
            messages,
            system_prompt,
            prefilling,
            stream,
            generation_schema,
            tool_schemas,
            tool_choice,
        )
        return await self._aonce(req, timeout)  # type: ignore[no-any-return]


def _parse_chat(
    payload: Any, headers: Mapping[str, str], endpoint: _http.Endpoint, req: _Request
) -> ModelResponse:
    try:
        choice = payload["choices"][0]
        message = choice["message"]
    except (KeyError, IndexError, TypeError):
        message = None
    if not isinstance(message, dict):
        raise _invalid(endpoint, "a chat completion without choices[0].message", payload)
    resp = ModelResponse()
    metadata = resp.metadata
    metadata["usage"] = payload.get("usage")
    metadata["finish_reason"] = choice.get("finish_reason")
    metadata["request_id"] = headers.get("x-request-id")
    content = message.get("content")
    reasoning = message.get("reasoning_content") or message.get("reasoning")
    tool_calls = message.get("tool_calls")
    data: Any
    if tool_calls:
        kind = "tool_call"
        data = _parse_tool_calls(tool_calls, endpoint)
    elif req.extra is not None:
        kind = "structured"
        data = _decode_structured(req.extra, content, message, endpoint)
    elif content is None and message.get("audio"):
        audio = message["audio"]
        data = Metadata(id=audio.get("id"), audio=base64.b64decode(audio.get("data") or ""))
        kind = "audio_generation"
        if audio.get("transcript"):
            data["text"] = audio["transcript"]
            kind = "audio_text_generation"
    else:
        kind = "text_generation"
        data = content if isinstance(content, str) else ""
    if reasoning and isinstance(reasoning, str):
        kind = "reasoning_" + kind
        data = Metadata(answer=data, think=reasoning)
    resp.response_type = kind
    resp.data = data
    return resp


def _decode_structured(
    schema: _Schema, content: Any, message: dict[str, Any], endpoint: _http.Endpoint
) -> Any:
    if not isinstance(content, str) or not content:
        refusal = message.get("refusal")
        if refusal:
            raise ContentPolicyError(
                f"the model refused: {refusal}",
                provider=endpoint.provider,
                model_id=endpoint.model_id,
                body=message,
            )
        raise _invalid(endpoint, "a structured answer without content", message)
    try:
        return schema.decode(content)
    except (msgspec.MsgspecError, ValueError) as exc:
        raise _invalid(
            endpoint, f"the answer does not match generation_schema: {exc}", content
        ) from None


def _parse_stream(
    events: Any, headers: Mapping[str, str], endpoint: _http.Endpoint, req: _Request
) -> ModelStreamResponse:
    resp = ModelStreamResponse()
    resp.metadata["request_id"] = headers.get("x-request-id")
    state = _ChatStream(resp, endpoint)
    if hasattr(events, "__anext__"):
        resp.set_source(_achat_chunks(events, state))
    else:
        resp.set_source(_chat_chunks(events, state))
    return resp


# -- embeddings --------------------------------------------------------------------------------
@register("text_embedder", "openai")
class OpenAITextEmbedder(OpenAIModel, TextEmbedderModel):
    """Text embeddings: ``model("text")`` gives one vector, ``model(["a", "b"])`` a list."""

    sampling_run_params: dict[str, Any]

    def __init__(
        self,
        model_id: str,
        *,
        dimensions: int | None = None,
        base_url: str | None = None,
        organization: str | None = None,
        project: str | None = None,
        max_retries: int = _DEFAULT_RETRIES,
        timeout: float | None = None,
        clock: Clock | None = None,
    ) -> None:
        self._set_common(model_id, base_url, organization, project, max_retries, timeout, clock)
        self.sampling_run_params = {"dimensions": dimensions}
        self._initialize()

    def _initialize(self) -> None:
        super()._initialize()
        if getattr(self, "sampling_run_params", None) is None:
            self.sampling_run_params = {"dimensions": None}
        run = _check_keys("sampling_run_params", self.sampling_run_params, ("dimensions",))
        check_int("dimensions", run.get("dimensions"), minimum=1, optional=True)

    def _request(self, data: str | list[str]) -> _Request:
        if isinstance(data, str):
            single = True
        elif isinstance(data, list) and data and all(isinstance(x, str) for x in data):
            single = False
        else:
            raise TypeError(f"data must be a str or a non-empty list of str, got {data!r:.80}")
        body: dict[str, Any] = {"model": self.model_id, "input": data}
        if self.sampling_run_params.get("dimensions") is not None:
            body["dimensions"] = self.sampling_run_params["dimensions"]
        return _Request("/embeddings", orjson.dumps(body), _parse_embeddings, extra=single)

    def __call__(self, data: str | list[str]) -> ModelResponse:
        return self._run(self._request(data))  # type: ignore[no-any-return]

    async def acall(self, data: str | list[str]) -> ModelResponse:
        return await self._arun(self._request(data))  # type: ignore[no-any-return]

    def _call_once(self, data: str | list[str], *, timeout: float | None = None) -> ModelResponse:
        return self._once(self._request(data), timeout)  # type: ignore[no-any-return]

    async def _acall_once(
        self, data: str | list[str], *, timeout: float | None = None
    ) -> ModelResponse:
        return await self._aonce(self._request(data), timeout)  # type: ignore[no-any-return]


def _parse_embeddings(
    payload: Any, headers: Mapping[str, str], endpoint: _http.Endpoint, req: _Request
) -> ModelResponse:
    try:
        items = sorted(payload["data"], key=lambda item: item.get("index", 0))
        vectors = [item["embedding"] for item in items]
    except (KeyError, TypeError, AttributeError):
        raise _invalid(endpoint, "an embeddings answer without data[].embedding", payload) from None
    resp = ModelResponse()
    resp.response_type = "text_embedding"
    resp.data = vectors[0] if req.extra and vectors else vectors
    resp.metadata["usage"] = payload.get("usage")
    resp.metadata["request_id"] = headers.get("x-request-id")
    return resp


# -- moderation --------------------------------------------------------------------------------
@register("moderation", "openai")
class OpenAIModeration(OpenAIModel, ModerationModel):
    """Moderation: data is ``{"safe": bool, "results": ...}`` (a list for a list input)."""

    def __init__(
        self,
        model_id: str,
        *,
        base_url: str | None = None,
        organization: str | None = None,
        project: str | None = None,
        max_retries: int = _DEFAULT_RETRIES,
        timeout: float | None = None,
        clock: Clock | None = None,
    ) -> None:
        self._set_common(model_id, base_url, organization, project, max_retries, timeout, clock)
        self._initialize()

    def _request(self, data: str | list[Any]) -> _Request:
        if not isinstance(data, (str, list)) or not data:
            raise TypeError(f"data must be a non-empty str or list, got {data!r:.80}")
        body = {"model": self.model_id, "input": data}
        return _Request(
            "/moderations", orjson.dumps(body), _parse_moderation, extra=isinstance(data, str)
        )

    def __call__(self, data: str | list[Any]) -> ModelResponse:
        return self._run(self._request(data))  # type: ignore[no-any-return]

    async def acall(self, data: str | list[Any]) -> ModelResponse:
        return await self._arun(self._request(data))  # type: ignore[no-any-return]

    def _call_once(self, data: str | list[Any], *, timeout: float | None = None) -> ModelResponse:
        return self._once(self._request(data), timeout)  # type: ignore[no-any-return]

    async def _acall_once(
        self, data: str | list[Any], *, timeout: float | None = None
    ) -> ModelResponse:
        return await self._aonce(self._request(data), timeout)  # type: ignore[no-any-return]


def _parse_moderation(
    payload: Any, headers: Mapping[str, str], endpoint: _http.Endpoint, req: _Request
) -> ModelResponse:
    try:
        results = payload["results"]
        flagged = any(bool(result["flagged"]) for result in results)
    except (KeyError, TypeError):
        raise _invalid(endpoint, "a moderation answer without results[].flagged", payload) from None
    resp = ModelResponse()
    resp.response_type = "moderation"
    resp.data = Metadata(safe=not flagged, results=results[0] if req.extra else results)
    resp.metadata["request_id"] = headers.get("x-request-id")
    return resp


# -- speech ------------------------------------------------------------------------------------
@register("text_to_speech", "openai")
class OpenAITextToSpeech(OpenAIModel, TextToSpeechModel):
    """Text to speech: data is the audio bytes (``response_type`` ``audio_generation``)."""

    sampling_run_params: dict[str, Any]

    def __init__(
        self,
        model_id: str,
        *,
        voice: str = "alloy",
        speed: float | None = None,
        base_url: str | None = None,
        organization: str | None = None,
        project: str | None = None,
        max_retries: int = _DEFAULT_RETRIES,
        timeout: float | None = None,
        clock: Clock | None = None,
    ) -> None:
        self._set_common(model_id, base_url, organization, project, max_retries, timeout, clock)
        self.sampling_run_params = {"voice": voice, "speed": speed}
        self._initialize()

    def _initialize(self) -> None:
        super()._initialize()
        if getattr(self, "sampling_run_params", None) is None:
            self.sampling_run_params = {"voice": "alloy", "speed": None}
        run = _check_keys("sampling_run_params", self.sampling_run_params, ("voice", "speed"))
        check_str("voice", run.get("voice"), optional=False)
        check_number("speed", run.get("speed"), minimum=0.25, maximum=4.0)

    def _request(self, data: str, prompt: str | None, response_format: str | None) -> _Request:
        check_str("data", data, optional=False)
        check_str("prompt", prompt)
        check_str("response_format", response_format)
        body: dict[str, Any] = {"model": self.model_id, "input": data}
        body.update((k, v) for k, v in self.sampling_run_params.items() if v is not None)
        if prompt is not None:
            body["instructions"] = prompt
        if response_format is not None:
            body["response_format"] = response_format
        return _Request("/audio/speech", orjson.dumps(body), _parse_speech, raw=True)

    def __call__(
        self, data: str, *, prompt: str | None = None, response_format: str | None = None
    ) -> ModelResponse:
        return self._run(self._request(data, prompt, response_format))  # type: ignore[no-any-return]

    async def acall(
        self, data: str, *, prompt: str | None = None, response_format: str | None = None
    ) -> ModelResponse:
        req = self._request(data, prompt, response_format)
        return await self._arun(req)  # type: ignore[no-any-return]

    def _call_once(
        self,
        data: str,
        *,
        prompt: str | None = None,
        response_format: str | None = None,
        timeout: float | None = None,
    ) -> ModelResponse:
        req = self._request(data, prompt, response_format)
        return self._once(req, timeout)  # type: ignore[no-any-return]

    async def _acall_once(
        self,
        data: str,
        *,
        prompt: str | None = None,
        response_format: str | None = None,
        timeout: float | None = None,
    ) -> ModelResponse:
        req = self._request(data, prompt, response_format)
        return await self._aonce(req, timeout)  # type: ignore[no-any-return]


def _parse_speech(
    payload: Any, headers: Mapping[str, str], endpoint: _http.Endpoint, req: _Request
) -> ModelResponse:
    resp = ModelResponse()
    resp.response_type = "audio_generation"
    resp.data = payload
    resp.metadata["content_type"] = headers.get("content-type")
    resp.metadata["request_id"] = headers.get("x-request-id")
    return resp


_TEXT_FORMATS = ("text", "srt", "vtt")
_TRANSCRIPT_FORMATS = ("json", "verbose_json", *_TEXT_FORMATS)


@register("speech_to_text", "openai")
class OpenAISpeechToText(OpenAIModel, SpeechToTextModel):
    """Transcription: data is ``{"text": ...}`` plus ``words``/``segments`` when asked for.

    The audio is bytes, a path, or a binary file object.
    """

    sampling_run_params: dict[str, Any]

    def __init__(
        self,
        model_id: str,
        *,
        temperature: float | None = None,
        base_url: str | None = None,
        organization: str | None = None,
        project: str | None = None,
        max_retries: int = _DEFAULT_RETRIES,
        timeout: float | None = None,
        clock: Clock | None = None,
    ) -> None:
        self._set_common(model_id, base_url, organization, project, max_retries, timeout, clock)
        self.sampling_run_params = {"temperature": temperature}
        self._initialize()

    def _initialize(self) -> None:
        super()._initialize()
        if getattr(self, "sampling_run_params", None) is None:
            self.sampling_run_params = {"temperature": None}
        run = _check_keys("sampling_run_params", self.sampling_run_params, ("temperature",))
        check_number("temperature", run.get("temperature"), minimum=0, maximum=1)

    def _request(
        self,
        data: AudioInput,
        response_format: str,
        timestamp_granularities: list[str] | None,
        prompt: str | None,
        language: str | None,
    ) -> _Request:
        filename, audio = _read_audio(data)
        if response_format not in _TRANSCRIPT_FORMATS:
            raise ValueError(
                f"response_format must be one of {list(_TRANSCRIPT_FORMATS)}, "
                f"got {response_format!r}"
            )
        check_str("prompt", prompt)
        check_str("language", language)
        fields: list[tuple[str, Any]] = [
            ("file", (filename, audio, "application/octet-stream")),
            ("model", self.model_id),
            ("response_format", response_format),
        ]
        temperature = self.sampling_run_params.get("temperature")
        if temperature is not None:
            fields.append(("temperature", str(temperature)))
        if prompt is not None:
            fields.append(("prompt", prompt))
        if language is not None:
            fields.append(("language", language))
        if timestamp_granularities is not None:
            if not isinstance(timestamp_granularities, list) or not set(
                timestamp_granularities
            ) <= {"word", "segment"}:
                raise ValueError(
                    "timestamp_granularities must be a list drawn from ['word', 'segment'], "
                    f"got {timestamp_granularities!r}"
                )
            fields.extend(("timestamp_granularities[]", g) for g in timestamp_granularities)
        body, content_type = _http.encode_multipart(fields)
        return _Request(
            "/audio/transcriptions",
            body,
            _parse_transcript,
            content_type=content_type,
            raw=True,
            extra=response_format,
        )

    def __call__(
        self,
        data: AudioInput,
        *,
        response_format: str = "json",
        timestamp_granularities: list[str] | None = None,
        prompt: str | None = None,
        language: str | None = None,
    ) -> ModelResponse:
        req = self._request(data, response_format, timestamp_granularities, prompt, language)
        return self._run(req)  # type: ignore[no-any-return]

    async def acall(
        self,
        data: AudioInput,
        *,
        response_format: str = "json",
        timestamp_granularities: list[str] | None = None,
        prompt: str | None = None,
        language: str | None = None,
    ) -> ModelResponse:
        req = self._request(data, response_format, timestamp_granularities, prompt, language)
        return await self._arun(req)  # type: ignore[no-any-return]

    def _call_once(
        self,
        data: AudioInput,
        *,
        response_format: str = "json",
        timestamp_granularities: list[str] | None = None,
        prompt: str | None = None,
        language: str | None = None,
        timeout: float | None = None,
    ) -> ModelResponse:
        req = self._request(data, response_format, timestamp_granularities, prompt, language)
        return self._once(req, timeout)  # type: ignore[no-any-return]

    async def _acall_once(
        self,
        data: AudioInput,
        *,
        response_format: str = "json",
        timestamp_granularities: list[str] | None = None,
        prompt: str | None = None,
        language: str | None = None,
        timeout: float | None = None,
    ) -> ModelResponse:
        req = self._request(data, response_format, timestamp_granularities, prompt, language)
        return await self._aonce(req, timeout)  # type: ignore[no-any-return]


def _read_audio(data: Any) -> tuple[str, bytes]:
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


def _parse_transcript(
    payload: Any, headers: Mapping[str, str], endpoint: _http.Endpoint, req: _Request
) -> ModelResponse:
    text = payload.decode("utf-8", "replace")
    transcript = Metadata()
    usage = None
    if req.extra in _TEXT_FORMATS:
        transcript["text"] = text
    else:
        try:
            decoded = orjson.loads(text)
            transcript["text"] = decoded["text"]
        except (orjson.JSONDecodeError, KeyError, TypeError):
            raise _invalid(endpoint, "a transcription answer without text", text[:500]) from None
        for key in ("language", "duration", "words", "segments"):
            if decoded.get(key) is not None:
                transcript[key] = decoded[key]
        usage = decoded.get("usage")
    resp = ModelResponse()
    resp.response_type = "transcript"
    resp.data = transcript
    resp.metadata["usage"] = usage
    resp.metadata["request_id"] = headers.get("x-request-id")
    return resp


# -- images ------------------------------------------------------------------------------------
_IMAGE_PARAMS = ("size", "quality", "background", "moderation")


@register("text_to_image", "openai")
class OpenAITextToImage(OpenAIModel, TextToImageModel):
    """Image generation: data is a URL or base64 string (a list when ``n > 1``)."""

    sampling_run_params: dict[str, Any]

    def __init__(
        self,
        model_id: str,
        *,
        size: str | None = None,
        quality: str | None = None,
        background: str | None = None,
        moderation: str | None = None,
        base_url: str | None = None,
        organization: str | None = None,
        project: str | None = None,
        max_retries: int = _DEFAULT_RETRIES,
        timeout: float | None = None,
        clock: Clock | None = None,
    ) -> None:
        self._set_common(model_id, base_url, organization, project, max_retries, timeout, clock)
        run = {"size": size, "quality": quality, "background": background}
        if moderation is not None:
            run["moderation"] = moderation
        self.sampling_run_params = run
        self._initialize()

    def _initialize(self) -> None:
        super()._initialize()
        if getattr(self, "sampling_run_params", None) is None:
            self.sampling_run_params = {"size": None, "quality": None, "background": None}
        run = _check_keys("sampling_run_params", self.sampling_run_params, _IMAGE_PARAMS)
        for name in _IMAGE_PARAMS:
            check_str(name, run.get(name))

    def _request(self, prompt: str, response_format: str | None, n: int) -> _Request:
        check_str("prompt", prompt, optional=False)
        check_int("n", n, minimum=1)
        body: dict[str, Any] = {"model": self.model_id, "prompt": prompt, "n": n}
        body.update((k, v) for k, v in self.sampling_run_params.items() if v is not None)
        if response_format is not None:
            if response_format not in ("url", "base64", "b64_json"):
                raise ValueError(
                    f"response_format must be 'url' or 'base64', got {response_format!r}"
                )
            body["response_format"] = "url" if response_format == "url" else "b64_json"
        return _Request("/images/generations", orjson.dumps(body), _parse_images)

    def __call__(
        self, prompt: str, *, response_format: str | None = None, n: int = 1
    ) -> ModelResponse:
        return self._run(self._request(prompt, response_format, n))  # type: ignore[no-any-return]

    async def acall(
        self, prompt: str, *, response_format: str | None = None, n: int = 1
    ) -> ModelResponse:
        req = self._request(prompt, response_format, n)
        return await self._arun(req)  # type: ignore[no-any-return]

    def _call_once(
        self,
        prompt: str,
        *,
        response_format: str | None = None,
        n: int = 1,
        timeout: float | None = None,
    ) -> ModelResponse:
        req = self._request(prompt, response_format, n)
        return self._once(req, timeout)  # type: ignore[no-any-return]

    async def _acall_once(
        self,
        prompt: str,
        *,
        response_format: str | None = None,
        n: int = 1,
        timeout: float | None = None,
    ) -> ModelResponse:
        req = self._request(prompt, response_format, n)
        return await self._aonce(req, timeout)  # type: ignore[no-any-return]


def _parse_images(
    payload: Any, headers: Mapping[str, str], endpoint: _http.Endpoint, req: _Request
) -> ModelResponse:
    try:
        images = [item.get("url") or item["b64_json"] for item in payload["data"]]
    except (KeyError, TypeError, AttributeError):
        raise _invalid(endpoint, "an images answer without data[].url/b64_json", payload) from None
    resp = ModelResponse()
    resp.response_type = "image_generation"
    resp.data = images[0] if len(images) == 1 else images
    resp.metadata["usage"] = payload.get("usage")
    resp.metadata["request_id"] = headers.get("x-request-id")
    return resp
