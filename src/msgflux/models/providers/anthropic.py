"""The Anthropic Messages API (``POST /v1/messages``).

>>> model = Model.chat_completion("anthropic/claude-sonnet-4-5", max_tokens=256)
>>> model(messages="Who was Frank Rosenblatt?").consume()  # doctest: +SKIP

``ANTHROPIC_API_KEY`` (or ``api_key=``) is sent as ``x-api-key``; ``ANTHROPIC_BASE_URL`` (or
``base_url=``) is the API root, as the official SDK reads it (``https://api.anthropic.com``;
a root ending in ``/v1`` works too). ``anthropic_version=`` is the ``anthropic-version``
header (default ``2023-06-01``, which every deployment accepts).

A Messages API request (the server's ``/v1/messages``, ``gateway.complete(body,
api="messages")``) goes upstream as the client sent it: every field, the client's
``anthropic-version`` and ``anthropic-beta``, only ``model`` and the key changed. Any other
request is translated by :mod:`msgflux.formats.anthropic` (what maps to what is said there),
and the answer back.
"""

from __future__ import annotations

from typing import Any, ClassVar

import orjson

from msgflux import _transport
from msgflux.exceptions import APIStatusError
from msgflux.formats import MESSAGES
from msgflux.formats.anthropic import (
    DEFAULT_VERSION,
    FINISH_REASONS,
    NO_SAMPLING_VERSIONS,
    AnthropicEvents,
    classify_anthropic_error,
    json_tool,
    to_anthropic,
    to_completion,
)
from msgflux.models.providers.http import DEFAULT_RETRIES, ProviderSpec
from msgflux.models.providers.vendor import VendorChatModel
from msgflux.models.registry import register
from msgflux.models.request import Request
from msgflux.models.types import ChatCompletionModel

__all__ = [
    "ANTHROPIC",
    "DEFAULT_VERSION",
    "FINISH_REASONS",
    "AnthropicChatCompletion",
    "classify_anthropic_error",
]

ANTHROPIC = ProviderSpec("anthropic", "https://api.anthropic.com")
COUNT_TIMEOUT = 60.0
"""Seconds a ``count_tokens`` call may take when the model sets no ``timeout``."""


@register("chat_completion", "anthropic")
class AnthropicChatCompletion(VendorChatModel, ChatCompletionModel):
    """Claude through the Messages API; see the module docstring for what maps to what.

    ``response_type`` is ``text_generation``, ``tool_call``, ``structured`` or, with extended
    thinking (``reasoning_effort=`` or ``thinking={...}`` per call), ``reasoning_<type>``.

    >>> model = Model.chat_completion("anthropic/claude-haiku-4-5", reasoning_effort="low")
    >>> model(messages="What is 17 * 23?").data.think  # doctest: +SKIP
    """

    spec = ANTHROPIC
    families: ClassVar[frozenset[str]] = frozenset((MESSAGES,))
    client_params: ClassVar[tuple[str, ...]] = ("base_url", "anthropic_version")
    client_defaults: ClassVar[dict[str, Any]] = {"anthropic_version": DEFAULT_VERSION}
    structured_outputs: ClassVar[tuple[str, ...]] = ("native", "tool")
    request_id_header = "request-id"
    max_temperature = 1.0

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
        anthropic_version: str = DEFAULT_VERSION,
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
            {"anthropic_version": anthropic_version},
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

    def _initialize(self) -> None:
        super()._initialize()
        version = self.sampling_params["anthropic_version"]
        sampling = [n for n in ("temperature", "top_p", "top_k") if n in self._defaults]
        if version in NO_SAMPLING_VERSIONS and sampling:
            raise ValueError(
                f"anthropic_version {version!r} takes no {'/'.join(sampling)}: drop them or "
                f"use anthropic_version={DEFAULT_VERSION!r}"
            )

    def _auth_headers(self, key: str | None) -> dict[str, str]:
        return {} if key is None else {"x-api-key": key}

    def _base_headers(self) -> dict[str, str]:
        return {"anthropic-version": str(self.sampling_params["anthropic_version"])}

    @classmethod
    def _classify(cls, status: int, body: Any) -> type[APIStatusError] | None:
        return classify_anthropic_error(status, body)

    def _path(self, req: Request) -> tuple[str, str]:
        return self._native_path(MESSAGES, req.stream)

    def _native_path(self, family: str, stream: bool) -> tuple[str, str]:
        base = (self.base_url() or "").rstrip("/")
        return ("/messages" if base.endswith("/v1") else "/v1/messages"), ""

    def wire(self, req: Request) -> dict[str, Any]:
        """The Messages API body for ``req`` (:func:`msgflux.formats.anthropic.to_anthropic`)."""
        return to_anthropic(
            self.fields(req),
            model_id=self.model_id,
            stream=req.stream,
            ctx=self.translation(req),
            version=str(self.sampling_params["anthropic_version"]),
            structured_output=self.structured_output,
        )

    def completion(self, payload: Any, req: Request) -> dict[str, Any]:
        """The canonical completion of a Messages API answer."""
        return to_completion(payload, self._who(), json_tool=self._json_tool(req))

    def translator(self, req: Request) -> AnthropicEvents:
        options = req.body.get("stream_options")
        include_usage = not (isinstance(options, dict) and options.get("include_usage") is False)
        return AnthropicEvents(self._who(), self._json_tool(req), include_usage)

    def _json_tool(self, req: Request) -> bool:
        return (
            "response_format" in req.body
            and json_tool(req.body, self.structured_output) is not None
        )

    async def acount_tokens(self, request: Request) -> Any:
        """Anthropic's ``/v1/messages/count_tokens`` for a Messages API request (its body as
        the client sent it, this model's id): the upstream's JSON answer."""
        native = request.native
        if native is None or native.family != MESSAGES:
            return await super().acount_tokens(request)
        path, query = self._native_path(MESSAGES, False)
        ep = self._endpoint(path + "/count_tokens", query)
        if native.headers:
            ep = self._forwarding(ep, native.headers)
        timeout = self.timeout if self.timeout is not None else COUNT_TIMEOUT
        resp = await _transport.apost(ep, native.encoded(self.model_id), timeout)
        return orjson.loads(resp.content)
