"""Azure OpenAI: the OpenAI wire format at Azure's URLs, with Azure's auth and content filter.

>>> model = Model.chat_completion("azure/my-gpt4o-deployment", resource="my-resource")
>>> model(messages="Who was Frank Rosenblatt?").consume()  # doctest: +SKIP

The model id is the **deployment** name. Where calls go: ``base_url=``, else
``https://{resource}.openai.azure.com`` from ``resource=``, else ``AZURE_BASE_URL``. Two URL
forms: with a dated ``api_version`` (default ``2024-10-21``, the current GA version) calls go to
``/openai/deployments/{deployment}/chat/completions?api-version=...``; with
``api_version="v1"`` (or a base URL ending in ``/openai/v1``) to ``/openai/v1/chat/completions``
with the deployment as the body's ``model``. Auth: ``AZURE_API_KEY`` (or ``api_key=``) as the
``api-key`` header, or ``azure_ad_token=`` (a Microsoft Entra token, or a callable returning
a fresh one) as ``Authorization: Bearer``; tokens are never serialized.

Every model type Azure serves: chat, embeddings, speech, transcription, images (Azure has no
moderation endpoint: its content filter is built in). The content filter: a prompt refused
with 400 ``code: content_filter`` and an answer stopped with ``finish_reason:
"content_filter"`` (whole or streamed) both raise :class:`~msgflux.exceptions.ContentPolicyError`;
the annotations (``prompt_filter_results``, ``content_filter_results``) stay in ``raw``.
"""

from __future__ import annotations

import inspect
import os
import re
from collections.abc import Callable
from typing import Any, ClassVar
from urllib.parse import quote

from msgflux._transport import AsyncEventStream, Endpoint, EventStream, Response
from msgflux.exceptions import APIStatusError, ContentPolicyError
from msgflux.models.chat import ChatStream
from msgflux.models.providers.http import ProviderSpec
from msgflux.models.providers.openai import (
    OpenAIChatCompletion,
    OpenAIModel,
    OpenAISpeechToText,
    OpenAITextEmbedder,
    OpenAITextToImage,
    OpenAITextToSpeech,
    classify_openai_error,
)
from msgflux.models.registry import register
from msgflux.models.request import Request
from msgflux.models.response import ModelResponse, ModelStreamResponse, metadata_of

__all__ = [
    "AZURE",
    "DEFAULT_API_VERSION",
    "AzureChatCompletion",
    "AzureModel",
    "AzureSpeechToText",
    "AzureTextEmbedder",
    "AzureTextToImage",
    "AzureTextToSpeech",
    "classify_azure_error",
]

AZURE = ProviderSpec("azure", None, vendor_fields=False, responses=True)
DEFAULT_API_VERSION = "2024-10-21"
V1 = "v1"
_VERSION = re.compile(r"\d{4}-\d{2}-\d{2}(-preview)?|v1")
_RESOURCE = re.compile(r"[A-Za-z0-9][A-Za-z0-9-]{0,62}")

Token = str | Callable[[], str]


def classify_azure_error(status: int, body: Any) -> type[APIStatusError] | None:
    """Azure's content filter (400 ``code: content_filter``, ``innererror``
    ``ResponsibleAIPolicyViolation``), then the OpenAI-family wording."""
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict):
        inner = error.get("innererror")
        if error.get("code") == "content_filter" or (
            isinstance(inner, dict) and inner.get("code") == "ResponsibleAIPolicyViolation"
        ):
            return ContentPolicyError
    return classify_openai_error(status, body)


def _filtered(who: tuple[str | None, str | None], choice: Any) -> ContentPolicyError:
    results = choice.get("content_filter_results") if isinstance(choice, dict) else None
    return ContentPolicyError(
        "Azure's content filter stopped the answer (finish_reason content_filter)",
        provider=who[0],
        model_id=who[1],
        body=results,
    )


class _FilteredStream(ChatStream):
    """A chat stream that raises :class:`ContentPolicyError` when Azure's filter stopped it
    (checked when the stream ends, so reading each chunk costs nothing more)."""

    __slots__ = ()

    def finish(self) -> Any:
        if self.finish_reason == "content_filter":
            raise _filtered(self.who, None)
        return super().finish()


class AzureModel(OpenAIModel):
    """What every Azure model type shares: URLs, auth and error classification.

    Subclasses put it before the OpenAI model class of their type, which does the rest.
    """

    spec: ClassVar[ProviderSpec] = AZURE
    provider = "azure"
    client_params: ClassVar[tuple[str, ...]] = ("resource", "api_version", "base_url")

    _ad_token: Token | None
    _azure: tuple[str | None, str, Token | None]
    _paths: dict[str, tuple[str, str]]

    def __init__(
        self,
        model_id: str,
        *,
        resource: str | None = None,
        api_version: str = DEFAULT_API_VERSION,
        azure_ad_token: Token | None = None,
        **kwargs: Any,
    ) -> None:
        """``model_id`` is the deployment; the other keywords are the OpenAI model type's
        (``max_tokens``, ``temperature``, ``api_key``, ``base_url``, ``timeout``, ...)."""
        self._azure = (resource, api_version, azure_ad_token)
        super().__init__(model_id, **kwargs)  # type: ignore[call-arg]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "__init__" not in cls.__dict__:
            setattr(cls, "__init__", _constructor(cls))  # noqa: B010

    def _set(
        self,
        model_id: str,
        run: dict[str, Any],
        *,
        api_key: str | None,
        base_url: str | None,
        organization: str | None,
        project: str | None,
        clock: Any,
        **options: Any,
    ) -> None:
        if organization is not None or project is not None:
            raise TypeError("Azure OpenAI takes no organization or project (pass resource=)")
        resource, api_version, token = self._azure
        del self._azure
        if token is not None and not (isinstance(token, str) or callable(token)):
            raise TypeError("azure_ad_token must be a str or a callable returning one")
        self._ad_token = token
        self._configure(
            model_id,
            api_key=api_key,
            base_url=base_url,
            clock=clock,
            client={"resource": resource, "api_version": api_version},
            run=run,
            **options,
        )
        self._initialize()

    def _initialize(self) -> None:
        params = getattr(self, "sampling_params", None) or {}
        version = params.get("api_version") or DEFAULT_API_VERSION
        if not isinstance(version, str) or not _VERSION.fullmatch(version):
            raise ValueError(
                f"api_version must be a dated version like {DEFAULT_API_VERSION!r} (or "
                f"'2025-04-01-preview') or 'v1', got {version!r}"
            )
        resource = params.get("resource")
        if resource is not None and not (
            isinstance(resource, str) and _RESOURCE.fullmatch(resource)
        ):
            raise ValueError(
                f"resource must be an Azure resource name (letters, digits, '-'), got {resource!r}"
            )
        if resource is None and not params.get("base_url") and not os.environ.get("AZURE_BASE_URL"):
            raise ValueError(
                "Azure needs to know where the resource is: pass resource='my-resource' "
                "(https://my-resource.openai.azure.com), base_url='https://...' "
                "or set AZURE_BASE_URL"
            )
        super()._initialize()
        # The OpenAI base adds organization/project, which an Azure resource has not.
        self.sampling_params.pop("organization", None)
        self.sampling_params.pop("project", None)
        self.sampling_params["api_version"] = version
        self.sampling_params.setdefault("resource", None)
        if "_ad_token" not in self.__dict__:
            self._ad_token = None
        self._paths = {}

    def base_url(self) -> str | None:
        """``base_url=``, else the ``resource=``'s URL, else ``AZURE_BASE_URL``."""
        params = self.sampling_params
        resource = params.get("resource")
        return (
            params.get("base_url")
            or (f"https://{resource}.openai.azure.com" if resource else None)
            or os.environ.get(AZURE.base_url_env)
            or None
        )

    def _key(self) -> str | None:
        token = self._ad_token
        if token is None:
            return super()._key()
        value = token() if callable(token) else token
        if not isinstance(value, str) or not value:
            raise TypeError("azure_ad_token must give a non-empty str")
        return value

    def _auth_headers(self, key: str | None) -> dict[str, str]:
        if key is None:
            return {}
        if self._ad_token is not None:
            return {"Authorization": f"Bearer {key}"}
        return {"api-key": key}

    def _base_headers(self) -> dict[str, str]:
        return {}

    @classmethod
    def _classify(cls, status: int, body: Any) -> type[APIStatusError] | None:
        return classify_azure_error(status, body)

    def _endpoint(self, path: str, query: str = "") -> Endpoint:
        """The OpenAI ``path`` at its Azure URL (the deployment's, or the v1 API's)."""
        base = (self.base_url() or "").rstrip("/")
        key = base + path
        where = self._paths.get(key)
        if where is None:
            version = self.sampling_params["api_version"]
            if base.endswith("/openai/v1"):
                where = (path, "")
            else:
                root = "" if base.endswith("/openai") else "/openai"
                if version == V1:
                    where = (f"{root}/v1{path}", "")
                elif path == "/responses":  # one route for every deployment (model in the body)
                    where = (f"{root}/responses", f"?api-version={version}")
                else:
                    deployment = quote(self.model_id, safe="")
                    where = (f"{root}/deployments/{deployment}{path}", f"?api-version={version}")
            self._paths[key] = where
        return super()._endpoint(*where)


def _constructor(cls: type[AzureModel]) -> Callable[..., None]:
    """``AzureModel.__init__`` with the full signature of ``cls`` (the OpenAI model type's
    keywords without organization/project, plus Azure's), so ``help()``, IDEs and the server's
    config loader see every argument the model takes."""
    openai_init = next(
        k.__dict__["__init__"]
        for k in cls.__mro__
        if "__init__" in k.__dict__ and issubclass(k, OpenAIModel) and not issubclass(k, AzureModel)
    )
    azure = inspect.signature(AzureModel.__init__).parameters
    params = [
        p
        for p in inspect.signature(openai_init).parameters.values()
        if p.name not in ("organization", "project")
    ]
    at = next(i for i, p in enumerate(params) if p.name == "api_key")
    params[at:at] = [azure["resource"], azure["api_version"], azure["azure_ad_token"]]

    def __init__(self: AzureModel, model_id: str, **kwargs: Any) -> None:
        AzureModel.__init__(self, model_id, **kwargs)

    __init__.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
    __init__.__doc__ = AzureModel.__init__.__doc__
    __init__.__qualname__ = f"{cls.__name__}.__init__"
    return __init__


@register("chat_completion", "azure")
class AzureChatCompletion(AzureModel, OpenAIChatCompletion):
    """Azure OpenAI chat completions (everything :class:`OpenAIChatCompletion` does)."""

    def _view(self, req: Request, resp: Response) -> ModelResponse:
        view = super()._view(req, resp)
        choice = view.raw["choices"][0]
        if choice.get("finish_reason") == "content_filter":
            raise _filtered(self._who(), choice)
        return view

    def _stream(
        self, events: EventStream | AsyncEventStream
    ) -> tuple[ModelStreamResponse, ChatStream]:
        stream = ModelStreamResponse()
        metadata_of(stream)["request_id"] = events.headers.get("x-request-id")
        return stream, _FilteredStream(stream, self._who())


@register("text_embedder", "azure")
class AzureTextEmbedder(AzureModel, OpenAITextEmbedder):
    """Azure OpenAI embeddings."""


@register("text_to_speech", "azure")
class AzureTextToSpeech(AzureModel, OpenAITextToSpeech):
    """Azure OpenAI text to speech."""


@register("speech_to_text", "azure")
class AzureSpeechToText(AzureModel, OpenAISpeechToText):
    """Azure OpenAI transcription."""


@register("text_to_image", "azure")
class AzureTextToImage(AzureModel, OpenAITextToImage):
    """Azure OpenAI image generation."""
