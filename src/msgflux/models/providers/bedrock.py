"""AWS Bedrock: every model through the Converse API, Claude's own API on the native lane, and
Titan and Cohere embeddings (the ``[aws]`` extra: botocore signs the requests).

>>> model = Model.chat_completion("bedrock/anthropic.claude-3-5-haiku-20241022-v1:0",
...                               aws_region_name="us-east-1")
>>> model(messages="Who was Frank Rosenblatt?").consume()  # doctest: +SKIP

The model id is a Bedrock model id, an inference profile (``us.anthropic.claude-...``) or its
ARN. Calls go to ``https://bedrock-runtime.{region}.amazonaws.com`` (``aws_region_name=``,
else ``AWS_REGION``/``AWS_DEFAULT_REGION``, else the profile's region), or to ``base_url=`` /
``BEDROCK_BASE_URL`` / ``AWS_ENDPOINT_URL_BEDROCK_RUNTIME``. Credentials and signing:
:mod:`msgflux.models.providers.aws` (per-deployment keys, a profile, a Bedrock API key, or
botocore's chain; refreshed before they expire).

A chat request goes through Converse (``/model/{id}/converse``, ``/converse-stream`` in AWS's
binary event stream), translated by :mod:`msgflux.formats.bedrock`. A Messages API request
(the server's ``/v1/messages``, Claude Code) to a Claude model takes the native lane:
``InvokeModel``/``InvokeModelWithResponseStream`` with the client's Messages body as it was
sent (``anthropic_version: bedrock-2023-05-31`` in it, its betas as ``anthropic_beta``), the
answer relayed as Claude's own events. Errors: ``ThrottlingException`` is a
:class:`~msgflux.exceptions.RateLimitError`, an unavailable or not-ready model an
:class:`~msgflux.exceptions.InternalServerError` (retried, then fallen back), a too-long input
a :class:`~msgflux.exceptions.ContextWindowExceededError`, ``AccessDeniedException`` a
:class:`~msgflux.exceptions.PermissionDeniedError`, a guardrail that intervened a
:class:`~msgflux.exceptions.ContentPolicyError`.
"""

from __future__ import annotations

import base64
import functools
import os
import re
from collections.abc import Mapping
from typing import Any, ClassVar
from urllib.parse import quote

import orjson

from msgflux import _transport
from msgflux._transport import EVENT_STREAM, Endpoint, Framing, Response
from msgflux._transport.eventstream import MEDIA_TYPE
from msgflux.exceptions import APIStatusError
from msgflux.formats import MESSAGES
from msgflux.formats.anthropic.betas import BEDROCK_BETAS
from msgflux.formats.bedrock import (
    ConverseEvents,
    InvokeDecoder,
    classify_bedrock_error,
    invoke_body,
    is_anthropic,
    to_completion,
    to_converse,
)
from msgflux.formats.common import Who, bad, loads, unsupported
from msgflux.models._checks import check_int, check_str
from msgflux.models.native import NativeAnswer, NativeStream
from msgflux.models.providers.aws import AWSAuth
from msgflux.models.providers.betas import noted_betas
from msgflux.models.providers.http import DEFAULT_RETRIES, HTTPModel, ProviderSpec, check_keys
from msgflux.models.providers.vendor import VendorChatModel
from msgflux.models.registry import register
from msgflux.models.request import EMBEDDINGS, Request
from msgflux.models.response import ModelResponse
from msgflux.models.types import ChatCompletionModel, TextEmbedderModel
from msgflux.models.views import view_of_payload

__all__ = ["BEDROCK", "BedrockChatCompletion", "BedrockModel", "BedrockTextEmbedder"]

BEDROCK = ProviderSpec("bedrock", None, api_key_required=False)
COUNT_TIMEOUT = 60.0
"""Seconds a ``CountTokens`` call may take when the model sets no ``timeout``."""
_GEO_PREFIX = re.compile(r"^(?:us|eu|apac|jp|au|ca|us-gov|global)\.")
"""The geography of a cross-region inference profile (``us.anthropic.claude-...``)."""
_ENDPOINT_ENV = "AWS_ENDPOINT_URL_BEDROCK_RUNTIME"
_CLIENT_PARAMS = ("base_url", "aws_region_name", "aws_profile")


class BedrockModel(HTTPModel):
    """What every Bedrock model type shares: URLs, AWS auth and error classification."""

    spec: ClassVar[ProviderSpec] = BEDROCK
    client_params: ClassVar[tuple[str, ...]] = _CLIENT_PARAMS
    secret_params: ClassVar[tuple[str, ...]] = (
        "api_key",
        "aws_secret_access_key",
        "aws_session_token",
    )

    _aws: AWSAuth

    def _auth(self, auth: dict[str, Any]) -> None:
        """Keep the constructor's AWS arguments (secrets never serialized)."""
        self._aws = AWSAuth(
            api_key=auth.get("api_key"),
            access_key_id=auth.get("aws_access_key_id"),
            secret_access_key=auth.get("aws_secret_access_key"),
            session_token=auth.get("aws_session_token"),
            profile=auth.get("aws_profile"),
            region=auth.get("aws_region_name"),
            credentials=auth.get("aws_credentials"),
        )

    def _initialize(self) -> None:
        params = getattr(self, "sampling_params", None) or {}
        if "_aws" not in self.__dict__:  # rebuilt after from_serialized: the chain or profile
            self._auth(
                {
                    "aws_profile": params.get("aws_profile"),
                    "aws_region_name": params.get("aws_region_name"),
                }
            )
        if self._aws.region is None:
            raise ValueError(
                "Bedrock needs a region (its URL and its signatures name it): pass "
                "aws_region_name='us-east-1' or set AWS_REGION"
            )
        super()._initialize()
        for name in _CLIENT_PARAMS:
            self.sampling_params.setdefault(name, None)

    @classmethod
    def describe_credentials(cls, params: Mapping[str, Any], resolve: bool = True) -> str:
        """Where a deployment with these constructor arguments takes its credentials from
        (``msgflux config check``), botocore's chain resolved when ``resolve`` (which may call
        a metadata service), never showing a secret."""
        auth = AWSAuth(
            api_key=params.get("api_key"),
            access_key_id=params.get("aws_access_key_id"),
            secret_access_key=params.get("aws_secret_access_key"),
            session_token=params.get("aws_session_token"),
            profile=params.get("aws_profile"),
            region=params.get("aws_region_name"),
        )
        return auth.describe(resolve)

    @staticmethod
    def _url_from_env() -> str | None:
        return os.environ.get(BEDROCK.base_url_env) or os.environ.get(_ENDPOINT_ENV) or None

    def base_url(self) -> str | None:
        """``base_url=``, else ``BEDROCK_BASE_URL`` / ``AWS_ENDPOINT_URL_BEDROCK_RUNTIME``,
        else the region's Bedrock runtime."""
        region = self._aws.region
        return (
            self.sampling_params.get("base_url")
            or self._url_from_env()
            or (f"https://bedrock-runtime.{region}.amazonaws.com" if region else None)
        )

    def credential_source(self) -> str:
        """Where this model's credentials come from (never the credentials)."""
        return self._aws.source()

    @classmethod
    def _classify(cls, status: int, body: Any) -> type[APIStatusError] | None:
        return classify_bedrock_error(status, body)

    def _model_path(self, method: str) -> str:
        return f"/model/{quote(self.model_id, safe='')}/{method}"

    def _endpoint(self, path: str, query: str = "") -> Endpoint:
        """The endpoint for ``path``: a Bedrock API key as Bearer, else SigV4-signed."""
        bearer = self._aws.bearer()
        base = self.base_url() or ""
        cache_key = path + query
        cached = self._endpoints.get(cache_key)
        if cached is not None and cached[0] == bearer and cached[1] == base:
            return cached[2]
        headers = {"Content-Type": "application/json"}
        if bearer is not None:
            headers["Authorization"] = f"Bearer {bearer}"
        endpoint = Endpoint(
            base.rstrip("/") + path + query,
            headers,
            provider=self.provider,
            model_id=self.model_id,
            secret=bearer,
            limits=self._limits,
            classify=self._classify,
            sign=None if bearer is not None else self._aws.sign,
        )
        self._endpoints[cache_key] = (bearer, base, endpoint)
        return endpoint


def _invoke_framing(who: Who) -> Framing:
    return Framing(MEDIA_TYPE, functools.partial(_invoke_decoder, who=who))


def _invoke_decoder(limit: int, who: Who) -> InvokeDecoder:
    return InvokeDecoder(limit, who)


@register("chat_completion", "bedrock")
class BedrockChatCompletion(BedrockModel, VendorChatModel, ChatCompletionModel):
    """Any Bedrock chat model through Converse; Claude also through its own API on the native
    Messages lane. See the module docstring.

    >>> model = Model.chat_completion("bedrock/amazon.nova-lite-v1:0", aws_region_name="us-east-1")
    >>> model(messages="What is 17 * 23?").data  # doctest: +SKIP
    """

    families: ClassVar[frozenset[str]] = frozenset((MESSAGES,))
    stream_framing: ClassVar[Framing] = EVENT_STREAM
    request_id_header = "x-amzn-requestid"

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
        aws_region_name: str | None = None,
        aws_access_key_id: str | None = None,
        aws_secret_access_key: str | None = None,
        aws_session_token: str | None = None,
        aws_profile: str | None = None,
        aws_credentials: Any = None,
        api_key: str | None = None,
        base_url: str | None = None,
        max_retries: int = DEFAULT_RETRIES,
        timeout: float | None = None,
        first_chunk_timeout: float | None = None,
        idle_timeout: float | None = None,
        max_response_bytes: int | None = None,
        max_event_bytes: int | None = None,
        clock: Any = None,
    ) -> None:
        self._auth(
            {
                "api_key": api_key,
                "aws_access_key_id": aws_access_key_id,
                "aws_secret_access_key": aws_secret_access_key,
                "aws_session_token": aws_session_token,
                "aws_profile": aws_profile,
                "aws_region_name": aws_region_name,
                "aws_credentials": aws_credentials,
            }
        )
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
            {"aws_region_name": aws_region_name, "aws_profile": aws_profile},
            api_key=None,
            base_url=base_url,
            clock=clock,
            max_retries=max_retries,
            timeout=timeout,
            first_chunk_timeout=first_chunk_timeout,
            idle_timeout=idle_timeout,
            max_response_bytes=max_response_bytes,
            max_event_bytes=max_event_bytes,
        )

    # -- Converse ------------------------------------------------------------------------------
    def _path(self, req: Request) -> tuple[str, str]:
        return self._model_path("converse-stream" if req.stream else "converse"), ""

    def wire(self, req: Request) -> dict[str, Any]:
        """The Converse body for ``req`` (:func:`msgflux.formats.bedrock.to_converse`)."""
        return to_converse(self.fields(req), model_id=self.model_id, ctx=self.translation(req))

    def completion(self, payload: Any, req: Request) -> dict[str, Any]:
        """The canonical completion of a Converse answer."""
        return to_completion(payload, self._who())

    def translator(self, req: Request) -> ConverseEvents:
        options = req.body.get("stream_options")
        include_usage = not (isinstance(options, dict) and options.get("include_usage") is False)
        return ConverseEvents(self._who(), include_usage)

    def _send_kind(self, req: Request) -> Any:
        self._aws.prepare()
        return super()._send_kind(req)

    async def _asend_kind(self, req: Request) -> Any:
        await self._aws.aprepare()
        return await super()._asend_kind(req)

    # -- Claude's own API: the native Messages lane ----------------------------------------
    def speaks(self, family: str) -> bool:
        return family == MESSAGES and is_anthropic(self.model_id)

    def _native_path(self, family: str, stream: bool) -> tuple[str, str]:
        return self._model_path("invoke-with-response-stream" if stream else "invoke"), ""

    def _native_framing(self, family: str) -> Framing:
        return _invoke_framing(self._who())

    def _native_endpoint(self, req: Request) -> Endpoint:
        """The invoke endpoint (the client's Messages headers go in the body, not upstream)."""
        ep = self._endpoint(*self._native_path(MESSAGES, req.stream))
        if not req.stream:
            ep = self._forwarding(ep, {"Accept": "application/json"})
        return self._prepared(ep, req)

    def _native_body(self, req: Request) -> bytes:
        native = req.native
        assert native is not None
        return invoke_body(native.body, native.headers)

    def _send_native(self, req: Request) -> NativeAnswer | NativeStream:
        self._aws.prepare()
        return noted_betas(super()._send_native(req), req, BEDROCK_BETAS)

    async def _asend_native(self, req: Request) -> NativeAnswer | NativeStream:
        await self._aws.aprepare()
        return noted_betas(await super()._asend_native(req), req, BEDROCK_BETAS)

    async def acount_tokens(self, request: Request) -> Any:
        """Bedrock's ``CountTokens`` for a Messages API request to Claude (the body as
        ``InvokeModel`` would take it), answered in Anthropic's shape (``{"input_tokens"}``).
        It takes a foundation model id: an inference profile's geography prefix is dropped."""
        native = request.native
        if native is None or native.family != MESSAGES or not self.speaks(MESSAGES):
            return await super().acount_tokens(request)
        model = _GEO_PREFIX.sub("", self.model_id)
        if model.startswith("arn:"):
            return await super().acount_tokens(request)
        body = {"max_tokens": 1, **native.body}
        invoke = base64.b64encode(invoke_body(body, native.headers)).decode()
        data = orjson.dumps({"input": {"invokeModel": {"body": invoke}}})
        await self._aws.aprepare()
        ep = self._endpoint(f"/model/{quote(model, safe='')}/count-tokens")
        timeout = self.timeout if self.timeout is not None else COUNT_TIMEOUT
        resp = await _transport.apost(ep, data, timeout)
        payload = loads(resp.content, self._who())
        count = payload.get("inputTokens") if isinstance(payload, dict) else None
        if not isinstance(count, int):
            raise bad(self._who(), "a CountTokens answer needs an int inputTokens", payload)
        return {"input_tokens": count}


@register("text_embedder", "bedrock")
class BedrockTextEmbedder(BedrockModel, TextEmbedderModel):
    """Text embeddings through ``InvokeModel``: Amazon Titan (``amazon.titan-embed-text-v2:0``,
    one text per call: a list is one call per text; ``dimensions`` and ``normalize``) and
    Cohere (``cohere.embed-english-v3``, ``cohere.embed-v4:0``: a list in one call;
    ``input_type``, default ``search_document``; ``dimensions`` as ``output_dimension`` on
    v4). Usage is Bedrock's input token count.

    >>> embedder = Model.text_embedder("bedrock/amazon.titan-embed-text-v2:0", dimensions=256)
    >>> embedder("hi").data  # doctest: +SKIP
    """

    run_params: ClassVar[dict[str, Any]] = {
        "dimensions": None,
        "normalize": None,
        "input_type": None,
    }

    def __init__(
        self,
        model_id: str,
        *,
        dimensions: int | None = None,
        normalize: bool | None = None,
        input_type: str | None = None,
        aws_region_name: str | None = None,
        aws_access_key_id: str | None = None,
        aws_secret_access_key: str | None = None,
        aws_session_token: str | None = None,
        aws_profile: str | None = None,
        aws_credentials: Any = None,
        api_key: str | None = None,
        base_url: str | None = None,
        max_retries: int = DEFAULT_RETRIES,
        timeout: float | None = None,
        clock: Any = None,
    ) -> None:
        self._auth(
            {
                "api_key": api_key,
                "aws_access_key_id": aws_access_key_id,
                "aws_secret_access_key": aws_secret_access_key,
                "aws_session_token": aws_session_token,
                "aws_profile": aws_profile,
                "aws_region_name": aws_region_name,
                "aws_credentials": aws_credentials,
            }
        )
        self._configure(
            model_id,
            api_key=None,
            base_url=base_url,
            clock=clock,
            client={"aws_region_name": aws_region_name, "aws_profile": aws_profile},
            run={"dimensions": dimensions, "normalize": normalize, "input_type": input_type},
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
        check_str("input_type", run.get("input_type"))
        normalize = run.get("normalize")
        if normalize is not None and not isinstance(normalize, bool):
            raise TypeError(f"normalize must be a bool or None, got {normalize!r}")

    @property
    def _cohere(self) -> bool:
        """Cohere's body (a list of texts in one call), else Titan's (one text per call)."""
        return "cohere." in self.model_id

    def wire(self, req: Request) -> list[dict[str, Any]]:
        """The ``InvokeModel`` bodies: one per text for Titan, one for every text for Cohere."""
        if req.kind != EMBEDDINGS:
            raise unsupported("bedrock", f"serve {req.kind} requests here")
        body = req.body
        run = self.sampling_run_params
        dimensions = body.get("dimensions", run.get("dimensions"))
        data = body["input"]
        texts = [data] if isinstance(data, str) else list(data)
        if self._cohere:
            out: dict[str, Any] = {
                "texts": texts,
                "input_type": body.get("input_type", run.get("input_type")) or "search_document",
                "embedding_types": ["float"],
            }
            if dimensions is not None:
                out["output_dimension"] = dimensions
            return [out]
        extra: dict[str, Any] = {}
        if dimensions is not None:
            extra["dimensions"] = dimensions
        normalize = body.get("normalize", run.get("normalize"))
        if normalize is not None:
            extra["normalize"] = normalize
        return [{"inputText": text, **extra} for text in texts]

    def _prepared_endpoint(self, req: Request) -> Endpoint:
        ep = self._forwarding(
            self._endpoint(self._model_path("invoke")), {"Accept": "application/json"}
        )
        return self._prepared(ep, req)

    def _send_kind(self, req: Request) -> Any:
        bodies = self.wire(req)
        self._aws.prepare()
        ep = self._prepared_endpoint(req)
        answers = [
            _transport.post(ep, orjson.dumps(body), self._attempt_timeout(req)) for body in bodies
        ]
        return self._view(req, answers)

    async def _asend_kind(self, req: Request) -> Any:
        bodies = self.wire(req)
        await self._aws.aprepare()
        ep = self._prepared_endpoint(req)
        answers = [
            await _transport.apost(ep, orjson.dumps(body), self._attempt_timeout(req))
            for body in bodies
        ]
        return self._view(req, answers)

    def _view(self, req: Request, answers: list[Response]) -> ModelResponse:
        who = (self.provider, self.model_id)
        vectors: list[Any] = []
        tokens = 0
        for resp in answers:
            payload = loads(resp.content, who)
            if not isinstance(payload, dict):
                raise bad(who, "an embeddings answer must be a JSON object", payload)
            counted = resp.headers.get("x-amzn-bedrock-input-token-count")
            if self._cohere:
                found = payload.get("embeddings")
                if isinstance(found, dict):
                    found = found.get("float")
                if not isinstance(found, list):
                    raise bad(who, "a Cohere answer needs an embeddings list", payload)
                vectors.extend(found)
            else:
                vector = payload.get("embedding")
                if not isinstance(vector, list):
                    raise bad(who, "a Titan answer needs an embedding list", payload)
                vectors.append(vector)
                counted = counted or payload.get("inputTextTokenCount")
            text = str(counted or "")
            tokens += int(text) if text.isdigit() else 0
        data = req.body["input"]
        expected = 1 if isinstance(data, str) else len(data)
        if len(vectors) != expected:
            raise bad(who, f"{len(vectors)} embeddings for {expected} texts")
        canonical = {
            "object": "list",
            "data": [
                {"object": "embedding", "index": i, "embedding": v} for i, v in enumerate(vectors)
            ],
            "model": self.model_id,
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        }
        return view_of_payload(req, canonical, answers[-1].headers, who)
