"""The Gemini API (``generateContent``, ``streamGenerateContent?alt=sse``, ``embedContent``,
``batchEmbedContents``).

>>> model = Model.chat_completion("gemini/gemini-2.5-flash", max_tokens=256)
>>> model(messages="Who was Frank Rosenblatt?").consume()  # doctest: +SKIP

``GEMINI_API_KEY`` (or ``api_key=``) is sent as ``x-goog-api-key``; ``GEMINI_BASE_URL`` (or
``base_url=``) is the API root (``https://generativelanguage.googleapis.com``) and
``api_version=`` the path's version (default ``v1beta``; a root that already ends in ``/v1``,
``/v1beta`` or ``/v1alpha`` is used as it is).

A Gemini request (``gateway.complete(body, api="gemini")``) goes upstream as the client sent
it: every field, only the model (in the URL) and the key changed. Any other request is
translated by :mod:`msgflux.formats.gemini` (what maps to what is said there), and the answer
back: a bad key (400 ``API_KEY_INVALID``) is an :class:`~msgflux.exceptions.AuthenticationError`,
``RetryInfo.retryDelay`` is ``retry_after``.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar
from urllib.parse import quote

import orjson

from msgflux import _transport
from msgflux._transport import Response
from msgflux.exceptions import APIStatusError
from msgflux.formats import GEMINI as GEMINI_FAMILY
from msgflux.formats.common import Who, bad, int_of, loads, unsupported
from msgflux.formats.gemini import (
    FINISH_REASONS,
    NAME,
    GeminiEvents,
    classify_gemini_error,
    gemini_schema,
    refine,
    retry_delay,
    to_completion,
    to_gemini,
)
from msgflux.models._checks import check_int, check_str
from msgflux.models.native import NativeAnswer, NativeStream
from msgflux.models.providers.http import DEFAULT_RETRIES, HTTPModel, ProviderSpec, check_keys
from msgflux.models.providers.vendor import VendorChatModel
from msgflux.models.registry import register
from msgflux.models.request import EMBEDDINGS, Request
from msgflux.models.response import ModelResponse
from msgflux.models.types import ChatCompletionModel, TextEmbedderModel
from msgflux.models.views import view_of_payload

__all__ = [
    "DEFAULT_API_VERSION",
    "FINISH_REASONS",
    "GEMINI",
    "GeminiChatCompletion",
    "GeminiTextEmbedder",
    "classify_gemini_error",
    "gemini_schema",
    "retry_delay",
]

GEMINI = ProviderSpec("gemini", "https://generativelanguage.googleapis.com")
DEFAULT_API_VERSION = "v1beta"
_VERSIONS = ("/v1", "/v1beta", "/v1alpha")


def _obj(value: Any, who: Who, what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise bad(who, f"{what} must be an object", value)
    return value


# -- the models --------------------------------------------------------------------------------
def _model_path(model: HTTPModel, method: str) -> str:
    base = (model.base_url() or "").rstrip("/")
    prefix = "" if base.endswith(_VERSIONS) else "/" + str(model.sampling_params["api_version"])
    name = model.model_id.removeprefix("models/")
    resource = name if "/" in name else "models/" + quote(name, safe="")
    return f"{prefix}/{resource}:{method}"


@register("chat_completion", "gemini")
class GeminiChatCompletion(VendorChatModel, ChatCompletionModel):
    """Gemini through ``generateContent``; see the module docstring for what maps to what.

    >>> model = Model.chat_completion("gemini/gemini-2.5-flash", reasoning_effort="low")
    >>> model(messages="What is 17 * 23?").data.think  # doctest: +SKIP
    """

    spec = GEMINI
    families: ClassVar[frozenset[str]] = frozenset((GEMINI_FAMILY,))
    client_params: ClassVar[tuple[str, ...]] = ("base_url", "api_version")
    client_defaults: ClassVar[dict[str, Any]] = {"api_version": DEFAULT_API_VERSION}
    structured_outputs: ClassVar[tuple[str, ...]] = ("response_schema", "json_schema")

    def __init__(
        self,
        model_id: str,
        *,
        max_tokens: int | None = 512,
        temperature: float | None = None,
        top_p: float | None = None,
        top_k: int | None = None,
        stop: str | list[str] | None = None,
        reasoning_effort: str | None = None,
        api_version: str = DEFAULT_API_VERSION,
        api_key: str | None = None,
        base_url: str | None = None,
        max_retries: int = DEFAULT_RETRIES,
        timeout: float | None = None,
        first_chunk_timeout: float | None = None,
        idle_timeout: float | None = None,
        max_response_bytes: int | None = None,
        max_event_bytes: int | None = None,
        structured_output: str | None = None,
        clock: Any = None,
    ) -> None:
        run = {
            "max_tokens": max_tokens,
            "temperature": temperature,
            "top_p": top_p,
            "top_k": top_k,
            "stop": list(stop) if isinstance(stop, tuple) else stop,
            "reasoning_effort": reasoning_effort,
        }
        self._setup(
            model_id,
            run,
            {"api_version": api_version},
            api_key=api_key,
            base_url=base_url,
            clock=clock,
            max_retries=max_retries,
            timeout=timeout,
            first_chunk_timeout=first_chunk_timeout,
            idle_timeout=idle_timeout,
            max_response_bytes=max_response_bytes,
            max_event_bytes=max_event_bytes,
            structured_output=structured_output,
        )

    def _auth_headers(self, key: str | None) -> dict[str, str]:
        return {} if key is None else {"x-goog-api-key": key}

    @classmethod
    def _classify(cls, status: int, body: Any) -> type[APIStatusError] | None:
        return classify_gemini_error(status, body)

    def _refine(self, exc: APIStatusError) -> None:
        refine(exc)

    def _path(self, req: Request) -> tuple[str, str]:
        return self._native_path(GEMINI_FAMILY, req.stream)

    def _native_body(self, req: Request) -> bytes:
        """The client's body without ``model`` and ``stream``: Gemini reads both from the URL
        (:meth:`_native_path`) and refuses ``stream`` in the body."""
        native = req.native
        assert native is not None
        body = native.body
        if "model" in body or "stream" in body:
            body = {k: v for k, v in body.items() if k not in ("model", "stream")}
        return orjson.dumps(body)

    def _send_native(self, req: Request) -> NativeAnswer | NativeStream:
        try:
            return super()._send_native(req)
        except APIStatusError as exc:
            refine(exc)
            raise

    async def _asend_native(self, req: Request) -> NativeAnswer | NativeStream:
        try:
            return await super()._asend_native(req)
        except APIStatusError as exc:
            refine(exc)
            raise

    def _native_path(self, family: str, stream: bool) -> tuple[str, str]:
        if stream:
            return _model_path(self, "streamGenerateContent"), "?alt=sse"
        return _model_path(self, "generateContent"), ""

    def wire(self, req: Request) -> dict[str, Any]:
        """The ``generateContent`` body for ``req`` (:func:`msgflux.formats.gemini.to_gemini`)."""
        return to_gemini(
            self.fields(req),
            model_id=self.model_id,
            ctx=self.translation(req),
            structured_output=self.structured_output,
        )

    def completion(self, payload: Any, req: Request) -> dict[str, Any]:
        """The canonical completion of a ``generateContent`` answer."""
        return to_completion(payload, self._who())

    def translator(self, req: Request) -> GeminiEvents:
        options = req.body.get("stream_options")
        include_usage = not (isinstance(options, dict) and options.get("include_usage") is False)
        return GeminiEvents(self._who(), include_usage)


@register("text_embedder", "gemini")
class GeminiTextEmbedder(HTTPModel, TextEmbedderModel):
    """Text embeddings: one text through ``embedContent``, a list through
    ``batchEmbedContents``. ``dimensions`` -> ``outputDimensionality``, ``task_type`` ->
    ``taskType`` (``RETRIEVAL_QUERY``, ``SEMANTIC_SIMILARITY``, ...). Gemini reports no usage
    for embeddings; ``metadata.usage`` estimates it as one token per four characters.

    >>> Model.text_embedder("gemini/gemini-embedding-001", dimensions=768)("hi")  # doctest: +SKIP
    """

    spec = GEMINI
    client_params: ClassVar[tuple[str, ...]] = ("base_url", "api_version")
    run_params: ClassVar[dict[str, Any]] = {"dimensions": None, "task_type": None}

    def __init__(
        self,
        model_id: str,
        *,
        dimensions: int | None = None,
        task_type: str | None = None,
        api_version: str = DEFAULT_API_VERSION,
        api_key: str | None = None,
        base_url: str | None = None,
        max_retries: int = DEFAULT_RETRIES,
        timeout: float | None = None,
        clock: Any = None,
    ) -> None:
        self._configure(
            model_id,
            api_key=api_key,
            base_url=base_url,
            clock=clock,
            client={"api_version": api_version},
            run={"dimensions": dimensions, "task_type": task_type},
            max_retries=max_retries,
            timeout=timeout,
        )
        self._initialize()

    def _initialize(self) -> None:
        if not getattr(self, "sampling_run_params", None):
            self.sampling_run_params = dict(self.run_params)
        super()._initialize()
        if self.sampling_params.get("api_version") is None:
            self.sampling_params["api_version"] = DEFAULT_API_VERSION
        run = check_keys("sampling_run_params", self.sampling_run_params, tuple(self.run_params))
        check_int("dimensions", run.get("dimensions"), minimum=1, optional=True)
        check_str("task_type", run.get("task_type"))

    def _auth_headers(self, key: str | None) -> dict[str, str]:
        return {} if key is None else {"x-goog-api-key": key}

    @classmethod
    def _classify(cls, status: int, body: Any) -> type[APIStatusError] | None:
        return classify_gemini_error(status, body)

    def wire(self, req: Request) -> dict[str, Any]:
        """The ``embedContent`` body (one text) or ``batchEmbedContents`` body (a list)."""
        if req.kind != EMBEDDINGS:
            raise unsupported(NAME, f"serve {req.kind} requests here")
        body = req.body
        run = self.sampling_run_params
        dimensions = body.get("dimensions", run.get("dimensions"))
        task = body.get("task_type", run.get("task_type"))
        extra: dict[str, Any] = {}
        if dimensions is not None:
            extra["outputDimensionality"] = dimensions
        if task is not None:
            extra["taskType"] = task
        if body.get("title") is not None:
            extra["title"] = body["title"]
        data = body["input"]
        if isinstance(data, str):
            return {"content": {"parts": [{"text": data}]}, **extra}
        model = "models/" + self.model_id.removeprefix("models/")
        return {
            "requests": [
                {"model": model, "content": {"parts": [{"text": text}]}, **extra} for text in data
            ]
        }

    def _send_kind(self, req: Request) -> Any:
        data = orjson.dumps(self.wire(req))
        single = isinstance(req.body["input"], str)
        path = _model_path(self, "embedContent" if single else "batchEmbedContents")
        ep = self._prepared(self._endpoint(path), req)
        try:
            resp = _transport.post(ep, data, self._attempt_timeout(req))
        except APIStatusError as exc:
            refine(exc)
            raise
        return self._view(req, resp)

    async def _asend_kind(self, req: Request) -> Any:
        data = orjson.dumps(self.wire(req))
        single = isinstance(req.body["input"], str)
        path = _model_path(self, "embedContent" if single else "batchEmbedContents")
        ep = self._prepared(self._endpoint(path), req)
        try:
            resp = await _transport.apost(ep, data, self._attempt_timeout(req))
        except APIStatusError as exc:
            refine(exc)
            raise
        return self._view(req, resp)

    def _view(self, req: Request, resp: Response) -> ModelResponse:
        who = (self.provider, self.model_id)
        payload = _obj(loads(resp.content, who), who, "an embeddings answer")
        data = req.body["input"]
        texts = [data] if isinstance(data, str) else list(data)
        items = [payload["embedding"]] if "embedding" in payload else payload.get("embeddings")
        if not isinstance(items, list):
            raise bad(who, "a batchEmbedContents answer needs an embeddings list", payload)
        if len(items) != len(texts):
            raise bad(who, f"{len(items)} embeddings for {len(texts)} texts", payload)
        vectors = [_obj(item, who, "an embedding").get("values") for item in items]
        meta = payload.get("usageMetadata")
        tokens = (
            int_of(meta.get("promptTokenCount"), who, "promptTokenCount")
            if isinstance(meta, dict)
            else sum(math.ceil(len(t) / 4) for t in texts)
        )
        canonical = {
            "object": "list",
            "data": [
                {"object": "embedding", "index": i, "embedding": v} for i, v in enumerate(vectors)
            ],
            "model": self.model_id,
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        }
        return view_of_payload(req, canonical, resp.headers, who)
