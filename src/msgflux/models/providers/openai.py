"""The OpenAI wire format: the adapter every OpenAI-compatible provider uses.

The canonical request *is* an OpenAI request, so the adapter's work is small: merge the
model's construction defaults under the call's fields, name the model, express what the server
accepts differently (``max_tokens`` vs ``max_completion_tokens``, the structured-output form),
send it, and check the answer's shape (:mod:`msgflux.models.chat`, :mod:`msgflux.models.views`).
A provider's module (``together.py``, ``vllm.py``, ...) only names its :class:`ProviderSpec`.

>>> model = Model.chat_completion("openai/gpt-4.1-nano", temperature=0)
>>> model(messages="Who was Frank Rosenblatt?", max_tokens=50).consume()  # doctest: +SKIP
'Frank Rosenblatt was an American psychologist ...'
"""

from __future__ import annotations

from typing import Any, ClassVar

import orjson

from msgflux import _transport
from msgflux._time import Clock
from msgflux._transport import AsyncEventStream, Endpoint, EventStream, Response
from msgflux.exceptions import APIStatusError
from msgflux.formats import CHAT as CHAT_FAMILY
from msgflux.formats import RESPONSES
from msgflux.formats.openai_chat import (
    VENDOR_MESSAGE_FIELDS,
    classify_openai_error,
    without_vendor_fields,
)
from msgflux.formats.policy import Translation
from msgflux.models._checks import check_int, check_number, check_stop, check_str
from msgflux.models.chat import (
    ChatStream,
    achat_pairs,
    chat_pairs,
    check_completion,
    completion_view,
)
from msgflux.models.providers.http import DEFAULT_RETRIES, HTTPModel, ProviderSpec, check_keys
from msgflux.models.registry import register
from msgflux.models.request import (
    CHAT,
    EMBEDDINGS,
    IMAGES,
    MODERATIONS,
    SPEECH,
    TRANSCRIPTIONS,
    Request,
)
from msgflux.models.response import ModelResponse, ModelStreamResponse, metadata_of
from msgflux.models.types import (
    ChatCompletionModel,
    ModerationModel,
    SpeechToTextModel,
    TextEmbedderModel,
    TextToImageModel,
    TextToSpeechModel,
)
from msgflux.models.views import view_of

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
    "classify_openai_error",
]

OPENAI = ProviderSpec(
    "openai",
    "https://api.openai.com/v1",
    max_tokens_field="auto",
    vendor_fields=False,
    responses=True,
)

PATHS = {
    CHAT: "/chat/completions",
    EMBEDDINGS: "/embeddings",
    MODERATIONS: "/moderations",
    SPEECH: "/audio/speech",
    TRANSCRIPTIONS: "/audio/transcriptions",
    IMAGES: "/images/generations",
}


class OpenAIModel(HTTPModel):
    """The OpenAI wire format for every model type: one send path, the body per kind."""

    spec: ClassVar[ProviderSpec] = OPENAI
    provider = "openai"
    client_params: ClassVar[tuple[str, ...]] = ("organization", "project", "base_url")
    run_params: ClassVar[dict[str, Any]] = {}
    """The construction defaults this model type accepts (``sampling_run_params``) and their
    values when not given."""

    _defaults: dict[str, Any]

    def _set(
        self,
        model_id: str,
        run: dict[str, Any],
        *,
        api_key: str | None,
        base_url: str | None,
        organization: str | None,
        project: str | None,
        clock: Clock | None,
        **options: Any,
    ) -> None:
        self._configure(
            model_id,
            api_key=api_key,
            base_url=base_url,
            clock=clock,
            client={"organization": organization, "project": project},
            run=run,
            **options,
        )
        self._initialize()

    def _initialize(self) -> None:
        super()._initialize()
        self.sampling_params.setdefault("organization", None)
        self.sampling_params.setdefault("project", None)
        if not getattr(self, "sampling_run_params", None):
            self.sampling_run_params = dict(self.run_params)
        run = check_keys("sampling_run_params", self.sampling_run_params, tuple(self.run_params))
        self._defaults = {k: v for k, v in self._check_run(run).items() if v is not None}

    def _check_run(self, run: dict[str, Any]) -> dict[str, Any]:
        """Validate ``sampling_run_params``; returns the OpenAI fields they send."""
        return run

    def _base_headers(self) -> dict[str, str]:
        params = self.sampling_params
        headers = {}
        if params.get("organization"):
            headers["OpenAI-Organization"] = params["organization"]
        if params.get("project"):
            headers["OpenAI-Project"] = params["project"]
        return headers

    @classmethod
    def _classify(cls, status: int, body: Any) -> type[APIStatusError] | None:
        return classify_openai_error(status, body)

    # -- the wire ----------------------------------------------------------------------------
    def wire(self, req: Request) -> dict[str, Any]:
        """The JSON body this model sends for ``req`` (its defaults under the call's fields)."""
        body = {**self._defaults, **req.body}
        body["model"] = self.model_id
        return body

    def _encode(self, req: Request, ep: Endpoint) -> tuple[bytes, Endpoint]:
        if req.kind == TRANSCRIPTIONS:
            return _multipart(self.wire(req), req, ep)
        try:
            return orjson.dumps(self.wire(req)), ep
        except TypeError as exc:
            raise TypeError(f"the request must be JSON-serializable: {exc}") from None

    def _who(self) -> tuple[str, str]:
        return self.provider, self.model_id

    def _send_kind(self, req: Request) -> Any:
        ep = self._prepared(self._endpoint(PATHS[req.kind]), req)
        data, ep = self._encode(req, ep)
        if req.stream:
            events = _transport.post_stream(ep, data, self._stream_timeouts(req))
            stream, state = self._stream(events)
            stream.set_pairs(chat_pairs(events, state))
            return stream
        return self._view(req, _transport.post(ep, data, self._attempt_timeout(req)))

    async def _asend_kind(self, req: Request) -> Any:
        ep = self._prepared(self._endpoint(PATHS[req.kind]), req)
        data, ep = self._encode(req, ep)
        if req.stream:
            events = await _transport.apost_stream(ep, data, self._stream_timeouts(req))
            stream, state = self._stream(events)
            stream.set_pairs(achat_pairs(events, state))
            return stream
        return self._view(req, await _transport.apost(ep, data, self._attempt_timeout(req)))

    def _view(self, req: Request, resp: Response) -> ModelResponse:
        who = self._who()
        if req.kind != CHAT:
            return view_of(req, resp.content, resp.headers, who)
        try:
            payload = orjson.loads(resp.content)
        except orjson.JSONDecodeError as exc:
            raise _bad_json(who, resp.content, exc) from None
        return completion_view(check_completion(payload, who), req, who, resp.headers)

    def _stream(
        self, events: EventStream | AsyncEventStream
    ) -> tuple[ModelStreamResponse, ChatStream]:
        stream = ModelStreamResponse()
        metadata_of(stream)["request_id"] = events.headers.get("x-request-id")
        return stream, ChatStream(stream, self._who())


def _bad_json(who: tuple[str, str], content: bytes, exc: Exception) -> Exception:
    from msgflux.exceptions import APIResponseValidationError

    return APIResponseValidationError(
        f"the answer is not valid JSON: {exc}",
        provider=who[0],
        model_id=who[1],
        body=content[:500].decode("utf-8", "replace"),
    )


def _multipart(body: dict[str, Any], req: Request, ep: Endpoint) -> tuple[bytes, Endpoint]:
    assert req.file is not None
    filename, audio = req.file
    fields: list[tuple[str, Any]] = [("file", (filename, audio, "application/octet-stream"))]
    for name, value in body.items():
        if name == "timestamp_granularities":
            fields.extend(("timestamp_granularities[]", str(g)) for g in value)
        else:
            fields.append((name, value if isinstance(value, str) else orjson.dumps(value).decode()))
    data, content_type = _transport.encode_multipart(fields)
    return data, ep.with_headers({"Content-Type": content_type})


# -- chat --------------------------------------------------------------------------------------
_MODALITIES = ("text", "audio")
_TOOL_TYPES = ("function", "custom")
"""The tool types OpenAI's chat API defines (an Anthropic server tool has no form here)."""
_VENDOR_FIELDS = ("top_k", "thinking", "output_config")
"""Canonical fields other vendors read that OpenAI and Azure refuse."""
_VENDOR_MARKERS = tuple(f'"{name}":'.encode() for name in (*VENDOR_MESSAGE_FIELDS, "extra_content"))


@register("chat_completion", "openai")
class OpenAIChatCompletion(OpenAIModel, ChatCompletionModel):
    """Chat completions: text, streams, tool calls, structured output, reasoning.

    ``response_type`` is ``text_generation``, ``tool_call`` (data: a list of
    :class:`~msgflux.models.tool_call.ToolCall`) or ``structured`` (data: an instance of the
    ``generation_schema``); when the provider also returns reasoning it is
    ``reasoning_<type>`` and data is ``{"answer": ..., "think": reasoning}``.

    Any OpenAI field may be given per call and wins over the construction defaults:
    ``model(messages="Hi", temperature=0, max_tokens=50, seed=7)``; ``extra_body=`` and
    ``extra_headers=`` pass vendor fields and headers.

    >>> model = Model.chat_completion("openai/gpt-4.1-nano", max_tokens=256)
    >>> model(messages="Hi", system_prompt="Be brief").consume()  # doctest: +SKIP
    """

    families: ClassVar[frozenset[str]] = frozenset((CHAT_FAMILY,))
    run_params: ClassVar[dict[str, Any]] = {
        "max_tokens": 512,
        "temperature": None,
        "top_p": None,
        "modalities": ["text"],
        "audio": None,
        "stop": None,
        "reasoning_effort": None,
    }

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
        api_key: str | None = None,
        base_url: str | None = None,
        organization: str | None = None,
        project: str | None = None,
        max_retries: int = DEFAULT_RETRIES,
        timeout: float | None = None,
        first_chunk_timeout: float | None = None,
        idle_timeout: float | None = None,
        max_response_bytes: int | None = None,
        max_event_bytes: int | None = None,
        max_tokens_field: str | None = None,
        structured_output: str | None = None,
        clock: Clock | None = None,
    ) -> None:
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
        self._set(
            model_id,
            run,
            api_key=api_key,
            base_url=base_url,
            organization=organization,
            project=project,
            clock=clock,
            max_retries=max_retries,
            timeout=timeout,
            first_chunk_timeout=first_chunk_timeout,
            idle_timeout=idle_timeout,
            max_response_bytes=max_response_bytes,
            max_event_bytes=max_event_bytes,
            max_tokens_field=max_tokens_field,
            structured_output=structured_output,
        )

    def _initialize(self) -> None:
        if getattr(self, "sampling_run_params", None) is None:
            self.sampling_run_params = {
                k: v for k, v in self.run_params.items() if k not in ("stop", "reasoning_effort")
            }
        super()._initialize()

    def _check_run(self, run: dict[str, Any]) -> dict[str, Any]:
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
        check_str("reasoning_effort", run.get("reasoning_effort"))
        fields = dict(run)
        if modalities == ["text"]:
            fields.pop("modalities", None)
        return fields

    def _max_tokens_field(self) -> str:
        field = self.max_tokens_field or self.spec.max_tokens_field
        if field == "auto":
            base = self.base_url() or ""
            return "max_completion_tokens" if "api.openai.com" in base else "max_tokens"
        return field

    def speaks(self, family: str) -> bool:
        return family == CHAT_FAMILY or (family == RESPONSES and self.spec.responses)

    def _native_path(self, family: str, stream: bool) -> tuple[str, str]:
        return ("/responses" if family == RESPONSES else PATHS[CHAT]), ""

    def _native_body(self, req: Request) -> bytes:
        """The client's body; for APIs that refuse fields they do not define (OpenAI, Azure),
        without what other vendors put in a conversation (a Claude answer's thinking blocks,
        cache marks): a chat begun on Claude then goes on here. Looked for in the serialized
        body first, so a body without them costs a few byte scans."""
        native = req.native
        assert native is not None
        if (
            self.spec.vendor_fields
            or native.family != CHAT_FAMILY
            or not native.holds(*_VENDOR_MARKERS)
        ):
            return native.encoded(self.model_id)
        body = without_vendor_fields(native.body, req.translation, self.provider)
        return orjson.dumps({**body, "model": self.model_id})

    def _portable(self, body: dict[str, Any], ctx: Translation) -> dict[str, Any]:
        """``body`` without what this server cannot take: other vendors' fields (OpenAI and
        Azure refuse fields they do not define) and tool types it lacks, lost through
        ``ctx``."""
        tools = body.get("tools")
        if type(tools) is list and any(
            type(t) is dict and t.get("type") not in _TOOL_TYPES for t in tools
        ):
            kept = []
            for i, tool in enumerate(tools):
                kind = tool.get("type") if type(tool) is dict else None
                if kind in _TOOL_TYPES:
                    kept.append(tool)
                else:
                    ctx.lose("builtin_tools", f"tools[{i}]", self.provider, f"run a {kind!r} tool")
            body = (
                {**body, "tools": kept} if kept else {k: v for k, v in body.items() if k != "tools"}
            )
        if not self.spec.vendor_fields:
            body = without_vendor_fields(body, ctx, self.provider)
            for name in _VENDOR_FIELDS:
                if name in body:
                    ctx.lose(name, name, self.provider, f"take {name}")
                    body = {k: v for k, v in body.items() if k != name}
        return body

    def wire(self, req: Request) -> dict[str, Any]:
        """The JSON body sent for ``req``: construction defaults under the call's fields, the
        token limit under the name this server reads, structured output in the form it takes."""
        call = req.body
        defaults = self._defaults
        if "max_tokens" in call or "max_completion_tokens" in call:
            defaults = {k: v for k, v in defaults.items() if k != "max_tokens"}
        body = {**defaults, **call}
        if req.translation is not None or not self.spec.vendor_fields or "tools" in body:
            body = self._portable(body, req.translation or Translation())
        body["model"] = self.model_id
        field = self._max_tokens_field()
        other = "max_tokens" if field == "max_completion_tokens" else "max_completion_tokens"
        if other in body and field not in body:
            body[field] = body.pop(other)
        if (
            req.schema is not None
            and (self.structured_output or self.spec.structured_output) == "json_object"
        ):
            body["response_format"] = {"type": "json_object", "schema": req.schema.json_schema}
        if req.stream:
            body["stream"] = True
            if self.spec.stream_usage and "stream_options" not in body:
                body["stream_options"] = {"include_usage": True}
        return body


# -- the other model types ---------------------------------------------------------------------
def _common(
    api_key: str | None,
    base_url: str | None,
    organization: str | None,
    project: str | None,
    max_retries: int,
    timeout: float | None,
    clock: Clock | None,
) -> dict[str, Any]:
    return {
        "api_key": api_key,
        "base_url": base_url,
        "organization": organization,
        "project": project,
        "max_retries": max_retries,
        "timeout": timeout,
        "clock": clock,
    }


@register("text_embedder", "openai")
class OpenAITextEmbedder(OpenAIModel, TextEmbedderModel):
    """Text embeddings: ``model("text")`` gives one vector, ``model(["a", "b"])`` a list."""

    run_params: ClassVar[dict[str, Any]] = {"dimensions": None}

    def __init__(
        self,
        model_id: str,
        *,
        dimensions: int | None = None,
        api_key: str | None = None,
        base_url: str | None = None,
        organization: str | None = None,
        project: str | None = None,
        max_retries: int = DEFAULT_RETRIES,
        timeout: float | None = None,
        clock: Clock | None = None,
    ) -> None:
        common = _common(api_key, base_url, organization, project, max_retries, timeout, clock)
        self._set(model_id, {"dimensions": dimensions}, **common)

    def _check_run(self, run: dict[str, Any]) -> dict[str, Any]:
        check_int("dimensions", run.get("dimensions"), minimum=1, optional=True)
        return run


@register("moderation", "openai")
class OpenAIModeration(OpenAIModel, ModerationModel):
    """Moderation: data is ``{"safe": bool, "results": ...}`` (a list for a list input)."""

    def __init__(
        self,
        model_id: str,
        *,
        api_key: str | None = None,
        base_url: str | None = None,
        organization: str | None = None,
        project: str | None = None,
        max_retries: int = DEFAULT_RETRIES,
        timeout: float | None = None,
        clock: Clock | None = None,
    ) -> None:
        common = _common(api_key, base_url, organization, project, max_retries, timeout, clock)
        self._set(model_id, {}, **common)

    def _serialize_state(self) -> dict[str, Any]:
        state = super()._serialize_state()
        state.pop("sampling_run_params", None)
        return state


@register("text_to_speech", "openai")
class OpenAITextToSpeech(OpenAIModel, TextToSpeechModel):
    """Text to speech: data is the audio bytes (``response_type`` ``audio_generation``)."""

    run_params: ClassVar[dict[str, Any]] = {"voice": "alloy", "speed": None}

    def __init__(
        self,
        model_id: str,
        *,
        voice: str = "alloy",
        speed: float | None = None,
        api_key: str | None = None,
        base_url: str | None = None,
        organization: str | None = None,
        project: str | None = None,
        max_retries: int = DEFAULT_RETRIES,
        timeout: float | None = None,
        clock: Clock | None = None,
    ) -> None:
        common = _common(api_key, base_url, organization, project, max_retries, timeout, clock)
        self._set(model_id, {"voice": voice, "speed": speed}, **common)

    def _check_run(self, run: dict[str, Any]) -> dict[str, Any]:
        check_str("voice", run.get("voice"), optional=False)
        check_number("speed", run.get("speed"), minimum=0.25, maximum=4.0)
        return run


@register("speech_to_text", "openai")
class OpenAISpeechToText(OpenAIModel, SpeechToTextModel):
    """Transcription: data is ``{"text": ...}`` plus ``words``/``segments`` when asked for.

    The audio is bytes, a path, or a binary file object.
    """

    run_params: ClassVar[dict[str, Any]] = {"temperature": None}

    def __init__(
        self,
        model_id: str,
        *,
        temperature: float | None = None,
        api_key: str | None = None,
        base_url: str | None = None,
        organization: str | None = None,
        project: str | None = None,
        max_retries: int = DEFAULT_RETRIES,
        timeout: float | None = None,
        clock: Clock | None = None,
    ) -> None:
        common = _common(api_key, base_url, organization, project, max_retries, timeout, clock)
        self._set(model_id, {"temperature": temperature}, **common)

    def _check_run(self, run: dict[str, Any]) -> dict[str, Any]:
        check_number("temperature", run.get("temperature"), minimum=0, maximum=1)
        return run


_IMAGE_PARAMS = ("size", "quality", "background", "moderation")


@register("text_to_image", "openai")
class OpenAITextToImage(OpenAIModel, TextToImageModel):
    """Image generation: data is a URL or base64 string (a list when ``n > 1``)."""

    run_params: ClassVar[dict[str, Any]] = {
        "size": None,
        "quality": None,
        "background": None,
        "moderation": None,
    }

    def __init__(
        self,
        model_id: str,
        *,
        size: str | None = None,
        quality: str | None = None,
        background: str | None = None,
        moderation: str | None = None,
        api_key: str | None = None,
        base_url: str | None = None,
        organization: str | None = None,
        project: str | None = None,
        max_retries: int = DEFAULT_RETRIES,
        timeout: float | None = None,
        clock: Clock | None = None,
    ) -> None:
        run = {"size": size, "quality": quality, "background": background}
        if moderation is not None:
            run["moderation"] = moderation
        common = _common(api_key, base_url, organization, project, max_retries, timeout, clock)
        self._set(model_id, run, **common)

    def _initialize(self) -> None:
        if getattr(self, "sampling_run_params", None) is None:
            self.sampling_run_params = {"size": None, "quality": None, "background": None}
        super()._initialize()

    def _check_run(self, run: dict[str, Any]) -> dict[str, Any]:
        for name in _IMAGE_PARAMS:
            check_str(name, run.get(name))
        return run
