"""Google Vertex AI: Gemini (``generateContent``), Claude (``rawPredict``) and text embeddings
(``predict``), with Google Cloud credentials (the ``[gcp]`` extra: google-auth).

>>> model = Model.chat_completion("vertex/gemini-2.5-flash", vertex_project="my-project")
>>> model(messages="Who was Frank Rosenblatt?").consume()  # doctest: +SKIP

The model's publisher is ``publisher=`` (``google``, ``anthropic``), else ``anthropic`` for a
``claude-...`` model and ``google`` for the rest. Calls go to
``https://{location}-aiplatform.googleapis.com/v1/projects/{project}/locations/{location}/
publishers/{publisher}/models/{model}:{method}`` (``aiplatform.googleapis.com`` for the
``global`` location), or under ``base_url=`` / ``VERTEX_BASE_URL``. ``vertex_location`` (else
``VERTEXAI_LOCATION``/``GOOGLE_CLOUD_LOCATION``, else ``us-central1``) and ``vertex_project``
(else ``VERTEXAI_PROJECT``/``GOOGLE_CLOUD_PROJECT``, else the credentials' project).
Credentials: :mod:`msgflux.models.providers.gcp` (``vertex_credentials``: a service account
JSON as a dict, text or path; else Application Default Credentials), sent as a Bearer token
refreshed before it expires.

Gemini speaks the Gemini API's format (:mod:`msgflux.formats.gemini`): a Gemini request
takes the native lane, any other is translated. Claude speaks the Messages API with
``anthropic_version: vertex-2023-10-16`` in the body and the model in the URL
(``rawPredict``, ``streamRawPredict`` in SSE): a Messages API request (Claude Code) takes the
native lane as its client sent it (its ``anthropic-beta`` header passed on, without the betas
Vertex refuses, such as Claude Code's ``claude-code-20250219``), any other is
translated by :mod:`msgflux.formats.anthropic`. Errors in Google's shape or Anthropic's are
both classified.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping
from typing import Any, ClassVar
from urllib.parse import quote

import orjson

from msgflux import _transport
from msgflux._transport import Endpoint, Response
from msgflux.exceptions import APIStatusError
from msgflux.formats import GEMINI as GEMINI_FAMILY
from msgflux.formats import MESSAGES
from msgflux.formats.anthropic import (
    DEFAULT_VERSION,
    AnthropicEvents,
    classify_anthropic_error,
    json_tool,
    to_anthropic,
)
from msgflux.formats.anthropic import to_completion as anthropic_completion
from msgflux.formats.anthropic.betas import VERTEX_BETAS, kept_betas
from msgflux.formats.common import bad, int_of, loads, unsupported
from msgflux.formats.gemini import (
    GeminiEvents,
    classify_gemini_error,
    refine,
    to_gemini,
)
from msgflux.formats.gemini import to_completion as gemini_completion
from msgflux.models._checks import check_int, check_number, check_str
from msgflux.models.native import NativeAnswer, NativeStream
from msgflux.models.providers.betas import noted_betas
from msgflux.models.providers.gcp import GCPAuth
from msgflux.models.providers.http import DEFAULT_RETRIES, HTTPModel, ProviderSpec, check_keys
from msgflux.models.providers.vendor import VendorChatModel
from msgflux.models.registry import register
from msgflux.models.request import EMBEDDINGS, Request
from msgflux.models.response import ModelResponse
from msgflux.models.types import ChatCompletionModel, TextEmbedderModel
from msgflux.models.views import view_of_payload

__all__ = [
    "VERTEX",
    "VERTEX_VERSION",
    "VertexChatCompletion",
    "VertexModel",
    "VertexTextEmbedder",
    "classify_vertex_error",
]

VERTEX = ProviderSpec("vertex", None, api_key_required=False)
VERTEX_VERSION = "vertex-2023-10-16"
"""The ``anthropic_version`` Claude on Vertex takes (in the body)."""
DEFAULT_LOCATION = "us-central1"
LOCATION_ENVS = ("VERTEXAI_LOCATION", "VERTEX_LOCATION", "GOOGLE_CLOUD_LOCATION")
PUBLISHERS = ("google", "anthropic")
_LOCATION = re.compile(r"[a-z0-9][a-z0-9-]*")
_CLIENT_PARAMS = ("base_url", "vertex_project", "vertex_location")


def classify_vertex_error(status: int, body: Any) -> type[APIStatusError] | None:
    """An error in Anthropic's shape (Claude's own, through ``rawPredict``) or Google's (the
    platform's: quota, auth, a Gemini model's)."""
    if isinstance(body, dict) and body.get("type") == "error":
        return classify_anthropic_error(status, body)
    return classify_gemini_error(status, body)


class VertexModel(HTTPModel):
    """What every Vertex model type shares: URLs, Google Cloud auth and error classification."""

    spec: ClassVar[ProviderSpec] = VERTEX
    client_params: ClassVar[tuple[str, ...]] = _CLIENT_PARAMS
    secret_params: ClassVar[tuple[str, ...]] = ("vertex_credentials",)

    _gcp: GCPAuth
    _vertex_credentials: Any

    def _initialize(self) -> None:
        params = getattr(self, "sampling_params", None) or {}
        location = params.get("vertex_location")
        if location is not None and not (
            isinstance(location, str) and _LOCATION.fullmatch(location)
        ):
            raise ValueError(
                f"vertex_location must be a Google Cloud location like 'us-central1', got "
                f"{location!r}"
            )
        super()._initialize()
        for name in _CLIENT_PARAMS:
            self.sampling_params.setdefault(name, None)
        if "_gcp" not in self.__dict__:  # after from_serialized: Application Default Credentials
            self._gcp = GCPAuth(
                credentials=self.__dict__.pop("_vertex_credentials", None),
                project=self.sampling_params.get("vertex_project"),
                clock=self._clock,
            )

    @classmethod
    def describe_credentials(cls, params: Mapping[str, Any], resolve: bool = True) -> str:
        """Where a deployment with these constructor arguments takes its credentials from
        (``msgflux config check``): loaded when ``resolve`` (which may call a metadata
        service), never shown."""
        auth = GCPAuth(
            credentials=params.get("vertex_credentials"), project=params.get("vertex_project")
        )
        return auth.describe(resolve)

    def credential_source(self) -> str:
        """Where this model's credentials come from (never the credentials)."""
        return self._gcp.source()

    def location(self) -> str:
        """``vertex_location``, else the environment's, else ``us-central1``."""
        given = self.sampling_params.get("vertex_location")
        if given:
            return str(given)
        for name in LOCATION_ENVS:
            if os.environ.get(name):
                return os.environ[name]
        return DEFAULT_LOCATION

    def base_url(self) -> str | None:
        """``base_url=``, else ``VERTEX_BASE_URL``, else the location's Vertex AI host."""
        location = self.location()
        host = "aiplatform.googleapis.com"
        return (
            self.sampling_params.get("base_url")
            or os.environ.get(VERTEX.base_url_env)
            or f"https://{host if location == 'global' else f'{location}-{host}'}"
        )

    @classmethod
    def _classify(cls, status: int, body: Any) -> type[APIStatusError] | None:
        return classify_vertex_error(status, body)

    def _publisher(self) -> str:
        return "google"

    def _model_path(self, method: str) -> str:
        project = self._gcp.project()
        if project is None:
            raise ValueError(
                "Vertex AI needs a project: pass vertex_project='my-project' or set "
                "VERTEXAI_PROJECT (or use credentials that name one)"
            )
        model = quote(self.model_id, safe="@.-_")
        return (
            f"/v1/projects/{quote(project, safe='')}/locations/{self.location()}"
            f"/publishers/{self._publisher()}/models/{model}:{method}"
        )

    def _endpoint(self, path: str, query: str = "") -> Endpoint:
        """The endpoint for ``path`` with the current access token (call after
        ``prepare``/``aprepare``)."""
        token = self._gcp.token()
        base = self.base_url() or ""
        cache_key = path + query
        cached = self._endpoints.get(cache_key)
        if cached is not None and cached[0] == token and cached[1] == base:
            return cached[2]
        endpoint = Endpoint(
            base.rstrip("/") + path + query,
            {"Content-Type": "application/json", "Authorization": f"Bearer {token}"},
            provider=self.provider,
            model_id=self.model_id,
            secret=token,
            limits=self._limits,
            classify=self._classify,
        )
        if len(self._endpoints) >= 64:
            self._endpoints.clear()  # old tokens' endpoints
        self._endpoints[cache_key] = (token, base, endpoint)
        return endpoint


@register("chat_completion", "vertex")
class VertexChatCompletion(VertexModel, VendorChatModel, ChatCompletionModel):
    """Gemini or Claude on Vertex AI; see the module docstring.

    >>> claude = Model.chat_completion("vertex/claude-sonnet-4@20250514", vertex_location="global")
    >>> claude(messages="What is 17 * 23?").data  # doctest: +SKIP
    """

    client_params: ClassVar[tuple[str, ...]] = (*_CLIENT_PARAMS, "publisher")
    structured_outputs: ClassVar[tuple[str, ...]] = (
        "native",
        "tool",
        "response_schema",
        "json_schema",
    )

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
        vertex_project: str | None = None,
        vertex_location: str | None = None,
        vertex_credentials: str | dict[str, Any] | None = None,
        publisher: str | None = None,
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
        self._vertex_credentials = vertex_credentials
        run = {
            "max_tokens": max_tokens,
            "temperature": temperature,
            "top_p": top_p,
            "top_k": top_k,
            "stop": list(stop) if isinstance(stop, tuple) else stop,
            "reasoning_effort": reasoning_effort,
        }
        client = {
            "vertex_project": vertex_project,
            "vertex_location": vertex_location,
            "publisher": publisher,
        }
        self._setup(
            model_id,
            run,
            client,
            api_key=None,
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

    def _initialize(self) -> None:
        super()._initialize()
        publisher = self.sampling_params.get("publisher")
        if publisher is not None and publisher not in PUBLISHERS:
            raise ValueError(f"publisher must be one of {PUBLISHERS}, got {publisher!r}")
        if self._claude:  # Claude's range is 0-1, Gemini's 0-2
            temperature = self.sampling_run_params.get("temperature")
            check_number("temperature", temperature, minimum=0, maximum=1.0)
        mode = self.structured_output
        allowed = ("native", "tool") if self._claude else ("response_schema", "json_schema")
        if mode is not None and mode not in allowed:
            raise ValueError(
                f"structured_output must be one of {allowed} for a {self._publisher()} model, "
                f"got {mode!r}"
            )

    @property
    def _claude(self) -> bool:
        return self._publisher() == "anthropic"

    def _publisher(self) -> str:
        given = self.sampling_params.get("publisher")
        if given:
            return str(given)
        return "anthropic" if self.model_id.startswith("claude") else "google"

    def _refine(self, exc: APIStatusError) -> None:
        refine(exc)

    # -- where requests go ----------------------------------------------------------------
    def speaks(self, family: str) -> bool:
        return family == (MESSAGES if self._claude else GEMINI_FAMILY)

    def _path(self, req: Request) -> tuple[str, str]:
        return self._native_path(MESSAGES if self._claude else GEMINI_FAMILY, req.stream)

    def _native_path(self, family: str, stream: bool) -> tuple[str, str]:
        if self._claude:
            return self._model_path("streamRawPredict" if stream else "rawPredict"), ""
        if stream:
            return self._model_path("streamGenerateContent"), "?alt=sse"
        return self._model_path("generateContent"), ""

    def _native_endpoint(self, req: Request) -> Endpoint:
        """The endpoint of a native request; Claude's ``anthropic-beta`` header passed on,
        without the betas Vertex would refuse (:mod:`msgflux.formats.anthropic.betas`)."""
        ep = self._endpoint(*self._native_path("", req.stream))
        native = req.native
        header = native.headers.get("anthropic-beta") if native and native.headers else None
        betas = kept_betas(header, VERTEX_BETAS)[0] if header and self._claude else None
        if betas:
            ep = self._forwarding(ep, {"anthropic-beta": ",".join(betas)})
        return self._prepared(ep, req)

    def _native_body(self, req: Request) -> bytes:
        """The client's body without ``model`` (the URL names it): Claude's with
        ``anthropic_version``, Gemini's without ``stream`` too (the method says it)."""
        native = req.native
        assert native is not None
        if self._claude:
            body = {k: v for k, v in native.body.items() if k != "model"}
            body["anthropic_version"] = VERTEX_VERSION
            return orjson.dumps(body)
        return orjson.dumps({k: v for k, v in native.body.items() if k not in ("model", "stream")})

    # -- translation ---------------------------------------------------------------------------
    def wire(self, req: Request) -> dict[str, Any]:
        """The ``rawPredict`` body (Claude) or ``generateContent`` body (Gemini) for ``req``."""
        if not self._claude:
            return to_gemini(
                self.fields(req),
                model_id=self.model_id,
                ctx=self.translation(req),
                structured_output=self.structured_output,
            )
        body = to_anthropic(
            self.fields(req),
            model_id=self.model_id,
            stream=req.stream,
            ctx=self.translation(req),
            version=DEFAULT_VERSION,
            structured_output=self.structured_output,
        )
        del body["model"]
        body["anthropic_version"] = VERTEX_VERSION
        return body

    def completion(self, payload: Any, req: Request) -> dict[str, Any]:
        if self._claude:
            return anthropic_completion(payload, self._who(), json_tool=self._json_tool(req))
        return gemini_completion(payload, self._who())

    def translator(self, req: Request) -> AnthropicEvents | GeminiEvents:
        options = req.body.get("stream_options")
        include_usage = not (isinstance(options, dict) and options.get("include_usage") is False)
        if self._claude:
            return AnthropicEvents(self._who(), self._json_tool(req), include_usage)
        return GeminiEvents(self._who(), include_usage)

    def _json_tool(self, req: Request) -> bool:
        return (
            "response_format" in req.body
            and json_tool(req.body, self.structured_output) is not None
        )

    # -- attempts: a fresh token first -------------------------------------------------------
    def _send_kind(self, req: Request) -> Any:
        self._gcp.prepare()
        return super()._send_kind(req)

    async def _asend_kind(self, req: Request) -> Any:
        await self._gcp.aprepare()
        return await super()._asend_kind(req)

    def _send_native(self, req: Request) -> NativeAnswer | NativeStream:
        self._gcp.prepare()
        try:
            answer = super()._send_native(req)
        except APIStatusError as exc:
            refine(exc)
            raise
        return noted_betas(answer, req, VERTEX_BETAS) if self._claude else answer

    async def _asend_native(self, req: Request) -> NativeAnswer | NativeStream:
        await self._gcp.aprepare()
        try:
            answer = await super()._asend_native(req)
        except APIStatusError as exc:
            refine(exc)
            raise
        return noted_betas(answer, req, VERTEX_BETAS) if self._claude else answer


@register("text_embedder", "vertex")
class VertexTextEmbedder(VertexModel, TextEmbedderModel):
    """Text embeddings through ``predict`` (``text-embedding-005``, ``gemini-embedding-001``,
    ``text-multilingual-embedding-002``...): ``dimensions`` -> ``outputDimensionality``,
    ``task_type`` (``RETRIEVAL_QUERY``, ``SEMANTIC_SIMILARITY``...) on each instance; usage is
    the sum of the predictions' ``statistics.token_count``.

    >>> embedder = Model.text_embedder("vertex/text-embedding-005", vertex_project="my-project")
    >>> embedder("hi").data  # doctest: +SKIP
    """

    run_params: ClassVar[dict[str, Any]] = {"dimensions": None, "task_type": None}

    def __init__(
        self,
        model_id: str,
        *,
        dimensions: int | None = None,
        task_type: str | None = None,
        vertex_project: str | None = None,
        vertex_location: str | None = None,
        vertex_credentials: str | dict[str, Any] | None = None,
        base_url: str | None = None,
        max_retries: int = DEFAULT_RETRIES,
        timeout: float | None = None,
        clock: Any = None,
    ) -> None:
        self._vertex_credentials = vertex_credentials
        self._configure(
            model_id,
            api_key=None,
            base_url=base_url,
            clock=clock,
            client={"vertex_project": vertex_project, "vertex_location": vertex_location},
            run={"dimensions": dimensions, "task_type": task_type},
            max_retries=max_retries,
            timeout=timeout,
        )
        self._initialize()

    def _initialize(self) -> None:
        if not getattr(self, "sampling_run_params", None):
            self.sampling_run_params = dict(self.run_params)
        super()._initialize()
        run = check_keys("sampling_run_params", self.sampling_run_params, tuple(self.run_params))
        check_int("dimensions", run.get("dimensions"), minimum=1, optional=True)
        check_str("task_type", run.get("task_type"))

    def wire(self, req: Request) -> dict[str, Any]:
        """The ``predict`` body: one instance per text."""
        if req.kind != EMBEDDINGS:
            raise unsupported("vertex", f"serve {req.kind} requests here")
        body = req.body
        run = self.sampling_run_params
        data = body["input"]
        task = body.get("task_type", run.get("task_type"))
        instance: dict[str, Any] = {} if task is None else {"task_type": task}
        instances = [
            {"content": text, **instance} for text in ([data] if isinstance(data, str) else data)
        ]
        out: dict[str, Any] = {"instances": instances}
        dimensions = body.get("dimensions", run.get("dimensions"))
        if dimensions is not None:
            out["parameters"] = {"outputDimensionality": dimensions}
        return out

    def _send_kind(self, req: Request) -> Any:
        data = orjson.dumps(self.wire(req))
        self._gcp.prepare()
        ep = self._prepared(self._endpoint(self._model_path("predict")), req)
        return self._view(req, _transport.post(ep, data, self._attempt_timeout(req)))

    async def _asend_kind(self, req: Request) -> Any:
        data = orjson.dumps(self.wire(req))
        await self._gcp.aprepare()
        ep = self._prepared(self._endpoint(self._model_path("predict")), req)
        return self._view(req, await _transport.apost(ep, data, self._attempt_timeout(req)))

    def _view(self, req: Request, resp: Response) -> ModelResponse:
        who = (self.provider, self.model_id)
        payload = loads(resp.content, who)
        predictions = payload.get("predictions") if isinstance(payload, dict) else None
        if not isinstance(predictions, list):
            raise bad(who, "a predict answer needs a predictions list", payload)
        data = req.body["input"]
        texts = [data] if isinstance(data, str) else list(data)
        if len(predictions) != len(texts):
            raise bad(who, f"{len(predictions)} embeddings for {len(texts)} texts", payload)
        vectors = []
        tokens = 0
        for item in predictions:
            embeddings = item.get("embeddings") if isinstance(item, dict) else None
            if not isinstance(embeddings, dict) or not isinstance(embeddings.get("values"), list):
                raise bad(who, "a prediction needs embeddings.values", item)
            vectors.append(embeddings["values"])
            stats = embeddings.get("statistics")
            counted = stats.get("token_count") if isinstance(stats, dict) else None
            if isinstance(counted, float) and counted.is_integer():
                counted = int(counted)
            tokens += int_of(counted, who, "token_count")
        if not tokens:
            tokens = sum(math.ceil(len(t) / 4) for t in texts)
        canonical = {
            "object": "list",
            "data": [
                {"object": "embedding", "index": i, "embedding": v} for i, v in enumerate(vectors)
            ],
            "model": self.model_id,
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        }
        return view_of_payload(req, canonical, resp.headers, who)
