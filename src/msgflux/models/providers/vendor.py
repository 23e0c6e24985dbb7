"""What the adapters of vendors with their own wire format share (Anthropic, Gemini).

:class:`VendorChatModel` is the half of ``anthropic.py`` and ``gemini.py`` that does not
depend on the vendor: the construction defaults (``max_tokens``, ``temperature``, ``top_p``,
``top_k``, ``stop``, ``reasoning_effort``) merged under each call's fields, and the attempt
itself (translate first, so a request the vendor cannot express fails before anything is
sent; then post, or stream through a :class:`~msgflux.models.chat.Translator`). A vendor
module supplies the body (:meth:`VendorChatModel.wire`, from its :mod:`msgflux.formats`
module), the path, the canonical answer (:meth:`VendorChatModel.completion`) and the stream
translator.
"""

from __future__ import annotations

from typing import Any, ClassVar

import orjson

from msgflux import _transport
from msgflux._transport import SSE, AsyncEventStream, EventStream, Framing, Response
from msgflux.exceptions import APIStatusError
from msgflux.formats.common import Who, loads, unsupported
from msgflux.formats.policy import Translation
from msgflux.models._checks import check_int, check_number, check_stop, check_str
from msgflux.models.chat import (
    ChatStream,
    Translator,
    atranslated_pairs,
    completion_view,
    translated_pairs,
)
from msgflux.models.providers.http import HTTPModel, check_keys
from msgflux.models.request import CHAT, Request
from msgflux.models.response import ModelResponse, ModelStreamResponse, metadata_of

__all__ = ["CHAT_RUN_PARAMS", "VendorChatModel"]

CHAT_RUN_PARAMS: dict[str, Any] = {
    "max_tokens": 512,
    "temperature": None,
    "top_p": None,
    "top_k": None,
    "stop": None,
    "reasoning_effort": None,
}


# -- the model ----------------------------------------------------------------------------------
class VendorChatModel(HTTPModel):
    """Settings, construction defaults and one attempt of a vendor chat adapter."""

    run_params: ClassVar[dict[str, Any]] = CHAT_RUN_PARAMS
    client_defaults: ClassVar[dict[str, Any]] = {}
    """Vendor client settings (``sampling_params``) and their defaults."""
    request_id_header: ClassVar[str] = "x-request-id"
    max_temperature: ClassVar[float] = 2.0
    stream_framing: ClassVar[Framing] = SSE
    """How the vendor frames a streamed answer (Bedrock: AWS's event stream)."""

    _defaults: dict[str, Any]

    def _setup(
        self,
        model_id: str,
        run: dict[str, Any],
        client: dict[str, Any],
        *,
        api_key: str | None,
        base_url: str | None,
        clock: Any,
        **options: Any,
    ) -> None:
        self._configure(
            model_id,
            api_key=api_key,
            base_url=base_url,
            clock=clock,
            client=client,
            run=run,
            **options,
        )
        self._initialize()

    def _initialize(self) -> None:
        if getattr(self, "sampling_run_params", None) is None:
            self.sampling_run_params = dict(self.run_params)
        super()._initialize()
        for name, default in self.client_defaults.items():
            if self.sampling_params.get(name) is None:
                self.sampling_params[name] = default
        run = check_keys("sampling_run_params", self.sampling_run_params, tuple(self.run_params))
        check_int("max_tokens", run.get("max_tokens"), minimum=1, optional=True)
        check_number("temperature", run.get("temperature"), minimum=0, maximum=self.max_temperature)
        check_number("top_p", run.get("top_p"), minimum=0, maximum=1)
        check_int("top_k", run.get("top_k"), minimum=1, optional=True)
        check_stop(run.get("stop"))
        check_str("reasoning_effort", run.get("reasoning_effort"))
        self._defaults = {k: v for k, v in run.items() if v is not None}

    def fields(self, req: Request) -> dict[str, Any]:
        """The call's fields over the construction defaults (a call's ``max_tokens`` or
        ``max_completion_tokens`` replaces the default ``max_tokens``)."""
        call = req.body
        defaults = self._defaults
        if "max_tokens" in call or "max_completion_tokens" in call:
            defaults = {k: v for k, v in defaults.items() if k != "max_tokens"}
        return {**defaults, **call}

    def _who(self) -> Who:
        return self.provider, self.model_id

    @staticmethod
    def translation(req: Request) -> Translation:
        """The attempt's translation policy (a gateway's), else the defaults."""
        return req.translation or Translation()

    # -- what a vendor module supplies ----------------------------------------------------------
    def wire(self, req: Request) -> dict[str, Any]:
        """The vendor's JSON body for ``req``; what it cannot express is lost through
        :meth:`translation` (refused: ``UnsupportedFeatureError``, before anything is sent)."""
        raise NotImplementedError

    def _path(self, req: Request) -> tuple[str, str]:
        """``(path, query)`` of ``req`` under the base URL."""
        raise NotImplementedError

    def completion(self, payload: Any, req: Request) -> dict[str, Any]:
        """The canonical OpenAI completion for the vendor's parsed answer."""
        raise NotImplementedError

    def translator(self, req: Request) -> Translator:
        raise NotImplementedError

    def _refine(self, exc: APIStatusError) -> None:
        """Complete an error status with what the vendor says in the body (Gemini's retry
        delay); the default adds nothing."""

    # -- one attempt -----------------------------------------------------------------------------
    def _encode(self, req: Request) -> bytes:
        if req.kind != CHAT:
            raise unsupported(self.provider, f"serve {req.kind} requests here")
        try:
            return orjson.dumps(self.wire(req))
        except TypeError as exc:
            raise TypeError(f"the request must be JSON-serializable: {exc}") from None

    def _send_kind(self, req: Request) -> Any:
        data = self._encode(req)
        ep = self._prepared(self._endpoint(*self._path(req)), req)
        try:
            if req.stream:
                events = _transport.post_stream(
                    ep, data, self._stream_timeouts(req), self.stream_framing
                )
                stream, state = self._open(events)
                stream.set_pairs(translated_pairs(events, state, self.translator(req)))
                return stream
            resp = _transport.post(ep, data, self._attempt_timeout(req))
        except APIStatusError as exc:
            self._refine(exc)
            raise
        return self._view(req, resp)

    async def _asend_kind(self, req: Request) -> Any:
        data = self._encode(req)
        ep = self._prepared(self._endpoint(*self._path(req)), req)
        try:
            if req.stream:
                events = await _transport.apost_stream(
                    ep, data, self._stream_timeouts(req), self.stream_framing
                )
                stream, state = self._open(events)
                stream.set_pairs(atranslated_pairs(events, state, self.translator(req)))
                return stream
            resp = await _transport.apost(ep, data, self._attempt_timeout(req))
        except APIStatusError as exc:
            self._refine(exc)
            raise
        return self._view(req, resp)

    def _open(
        self, events: EventStream | AsyncEventStream
    ) -> tuple[ModelStreamResponse, ChatStream]:
        stream = ModelStreamResponse()
        metadata_of(stream)["request_id"] = events.headers.get(self.request_id_header)
        return stream, ChatStream(stream, self._who())

    def _view(self, req: Request, resp: Response) -> ModelResponse:
        who = self._who()
        canonical = self.completion(loads(resp.content, who), req)
        view = completion_view(canonical, req, who)
        metadata_of(view)["request_id"] = resp.headers.get(self.request_id_header)
        return view
