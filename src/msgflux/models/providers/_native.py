"""What the native (not OpenAI-wire) chat adapters share: settings, one attempt, and the small
readers and writers of the canonical form.

:class:`NativeChatModel` is the half of ``anthropic.py`` and ``gemini.py`` that does not
depend on the vendor: the construction defaults (``max_tokens``, ``temperature``, ``top_p``,
``top_k``, ``stop``, ``reasoning_effort``) merged under each call's fields, the attempt itself
(translate first, so a request the vendor cannot express fails before anything is sent; then
post, or stream through a :class:`~msgflux.models.chat.Translator`), and the view. A vendor
module supplies the body (:meth:`NativeChatModel.wire`), the path, the canonical answer
(:meth:`NativeChatModel.completion`) and the stream translator.

:func:`check_portable` is the one place that decides which OpenAI fields a vendor without
them cannot express (``n > 1``, ``logprobs``, audio, ...): those raise
:class:`~msgflux.exceptions.UnsupportedFeatureError` before sending, so a gateway skips the
deployment for that call instead of getting a different answer than it asked for.
"""

from __future__ import annotations

import base64
import binascii
import time
from collections.abc import Mapping
from typing import Any, ClassVar

import orjson

from msgflux import _transport
from msgflux._transport import AsyncEventStream, EventStream, Response
from msgflux.exceptions import (
    APIResponseValidationError,
    APIStatusError,
    ContentPolicyError,
    UnsupportedFeatureError,
)
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
from msgflux.models.response import ModelResponse, ModelStreamResponse

__all__ = [
    "NativeChatModel",
    "bad",
    "check_portable",
    "chunk",
    "data_url",
    "loads",
    "loc",
    "tool_arguments",
    "unsupported",
]

Who = tuple[str, str]

CHAT_RUN_PARAMS: dict[str, Any] = {
    "max_tokens": 512,
    "temperature": None,
    "top_p": None,
    "top_k": None,
    "stop": None,
    "reasoning_effort": None,
}


def unsupported(provider: str, what: str) -> UnsupportedFeatureError:
    return UnsupportedFeatureError(f"{provider} cannot {what}")


def bad(who: Who, what: str, body: Any = None) -> APIResponseValidationError:
    if isinstance(body, (bytes, bytearray)):
        body = bytes(body[:500]).decode("utf-8", "replace")
    return APIResponseValidationError(what, provider=who[0], model_id=who[1], body=body)


def loads(content: bytes, who: Who) -> Any:
    try:
        return orjson.loads(content)
    except orjson.JSONDecodeError as exc:
        raise bad(who, f"the answer is not valid JSON: {exc}", content) from None


def policy_error(who: Who, what: str, body: Any) -> ContentPolicyError:
    return ContentPolicyError(what, provider=who[0], model_id=who[1], body=body)


# -- reading the canonical request --------------------------------------------------------------
_CHECKED = frozenset(
    (
        "n",
        "logprobs",
        "top_logprobs",
        "logit_bias",
        "modalities",
        "audio",
        "prediction",
        "web_search_options",
        "functions",
        "function_call",
        "presence_penalty",
        "frequency_penalty",
    )
)
_NEVER = {
    "audio": "produce audio",
    "prediction": "use predicted outputs (prediction)",
    "web_search_options": "take OpenAI's web_search_options",
    "functions": "take the legacy functions field (pass tools)",
    "function_call": "take the legacy function_call field (pass tool_choice)",
}


def check_portable(
    body: Mapping[str, Any], provider: str, *, choices: bool = False, penalties: bool = False
) -> None:
    """Raise :class:`UnsupportedFeatureError` for an OpenAI field ``provider`` cannot express
    (``choices``: it can return ``n`` choices; ``penalties``: it takes presence/frequency
    penalties). Fields that change nothing a caller reads (``seed``, ``store``, ``user``,
    ``metadata``, ``service_tier``) are the vendor module's to drop."""
    if _CHECKED.isdisjoint(body):
        return
    n = body.get("n")
    if n is not None and n != 1 and not choices:
        raise unsupported(provider, f"return n={n} choices (only n=1)")
    if body.get("logprobs") or body.get("top_logprobs"):
        raise unsupported(provider, "return logprobs")
    if body.get("logit_bias"):
        raise unsupported(provider, "take logit_bias")
    modalities = body.get("modalities")
    if modalities is not None and list(modalities) != ["text"]:
        raise unsupported(provider, f"produce the modalities {list(modalities)} (only text)")
    for name, what in _NEVER.items():
        if body.get(name) is not None:
            raise unsupported(provider, what)
    if not penalties:
        for name in ("presence_penalty", "frequency_penalty"):
            if body.get(name):
                raise unsupported(provider, f"take {name}")


Where = str | tuple[Any, ...]
"""Where a value sits in the request, for error messages: ``(2, "content", 0)`` is
``messages[2]['content'][0]``. A tuple is formatted only when an error needs it, so the
translation of a valid request never pays for the words."""


def loc(where: Where) -> str:
    if isinstance(where, str):
        return where
    head, *rest = where
    return f"messages[{head}]" + "".join(f"[{p!r}]" for p in rest)


def data_url(url: str, where: Where) -> tuple[str, str] | None:
    """``(mime type, base64 data)`` of a ``data:`` URL, None for any other URL."""
    if not url.startswith("data:"):
        return None
    head, sep, data = url[5:].partition(",")
    mime, _, encoding = head.partition(";")
    if not sep or encoding != "base64" or not mime:
        raise ValueError(f"{loc(where)} must be a base64 data URL (data:<mime>;base64,...)")
    return mime, data


def tool_arguments(raw: Any, where: Where) -> dict[str, Any]:
    """An assistant tool call's ``function.arguments`` (a JSON object text) as a dict."""
    if type(raw) is dict:
        return raw
    if raw is None or raw == "":
        return {}
    if not isinstance(raw, str):
        raise TypeError(f"{loc(where)} must be a JSON object text, got {type(raw).__name__}")
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise ValueError(f"{loc(where)} is not valid JSON: {raw[:80]!r}") from None
    if not isinstance(value, dict):
        raise ValueError(f"{loc(where)} must be a JSON object, got {raw[:80]!r}")
    return value


def text_parts(content: Any, where: Where, provider: str) -> list[str]:
    """The texts of a system or tool message's content (a str or text parts)."""
    if content is None:
        return []
    if isinstance(content, str):
        return [content]
    texts = []
    for j, part in enumerate(content):
        if not isinstance(part, dict) or part.get("type") != "text":
            kind = part.get("type") if isinstance(part, dict) else type(part).__name__
            raise unsupported(provider, f"take a {kind!r} part in {loc(where)}[{j}] (only text)")
        text = part.get("text")
        if not isinstance(text, str):
            raise TypeError(f"{loc(where)}[{j}]['text'] must be a str")
        texts.append(text)
    return texts


def decode_base64(data: str, where: str) -> None:
    """Check that ``data`` is base64 (the vendor would refuse the request otherwise)."""
    try:
        base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError(f"{where} is not valid base64") from None


# -- writing the canonical answer ---------------------------------------------------------------
def chunk(
    ident: str,
    created: int,
    model: str,
    delta: dict[str, Any],
    finish: str | None = None,
    index: int = 0,
) -> dict[str, Any]:
    return {
        "id": ident,
        "object": "chat.completion.chunk",
        "created": created,
        "model": model,
        "choices": [{"index": index, "delta": delta, "finish_reason": finish}],
    }


def usage_chunk(ident: str, created: int, model: str, usage: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": ident,
        "object": "chat.completion.chunk",
        "created": created,
        "model": model,
        "choices": [],
        "usage": usage,
    }


def int_of(value: Any, who: Who, what: str) -> int:
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, int):
        raise bad(who, f"usage.{what} must be an int", value)
    return value


# -- the model ----------------------------------------------------------------------------------
class NativeChatModel(HTTPModel):
    """Settings, construction defaults and one attempt of a native chat adapter."""

    run_params: ClassVar[dict[str, Any]] = CHAT_RUN_PARAMS
    client_defaults: ClassVar[dict[str, Any]] = {}
    """Vendor client settings (``sampling_params``) and their defaults."""
    request_id_header: ClassVar[str] = "x-request-id"
    max_temperature: ClassVar[float] = 2.0

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

    # -- what a vendor module supplies ----------------------------------------------------------
    def wire(self, req: Request) -> dict[str, Any]:
        """The vendor's JSON body for ``req``; raises ``UnsupportedFeatureError`` for what it
        cannot express, before anything is sent."""
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
                events = _transport.post_stream(ep, data, self._stream_timeouts(req))
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
                events = await _transport.apost_stream(ep, data, self._stream_timeouts(req))
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
        stream.metadata["request_id"] = events.headers.get(self.request_id_header)
        return stream, ChatStream(stream, self._who())

    def _view(self, req: Request, resp: Response) -> ModelResponse:
        who = self._who()
        canonical = self.completion(loads(resp.content, who), req)
        view = completion_view(canonical, req, who)
        view.metadata["request_id"] = resp.headers.get(self.request_id_header)
        return view


def now() -> int:
    return int(time.time())
