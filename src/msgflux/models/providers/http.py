"""What every HTTP provider shares, whatever its wire format.

:class:`HTTPModel` holds the settings (model id, ``api_key=`` or the key from the environment,
base URL, per-attempt timeouts and stream bounds, byte limits, retries) and turns a canonical
:class:`~msgflux.models.request.Request` into an attempt. A wire adapter (``openai.py``,
``anthropic.py``, ...) subclasses it and supplies three things: how to authenticate
(:meth:`HTTPModel._auth_headers`), how to refine error statuses
(:meth:`HTTPModel._classify`), and :meth:`HTTPModel._send_kind` / :meth:`_asend_kind`: the
request in its format, the answer back in the canonical one.

Keys are read when a call is made (``api_key=`` wins over ``<PROVIDER>_API_KEY``), never
serialized, never in ``repr``; a missing key is an :class:`AuthenticationError` naming the
variable, which a gateway treats like any other failed deployment.

Every model has two call paths. ``model(...)`` / ``await model.acall(...)`` are for standalone
use and retry transient errors (``max_retries``, honouring ``Retry-After``); ``_call_once`` /
``_acall_once`` (msgflux arguments) and :meth:`HTTPModel.send` / :meth:`HTTPModel.asend` (a
request) make exactly one attempt and are what a gateway calls, so retries are never doubled.

A request that carries its client's own form (:class:`~msgflux.models.native.Native`) in an
API family the upstream speaks (:attr:`HTTPModel.families`) takes the *native lane*: its body
goes to :meth:`HTTPModel._native_path` as it is, with this model's id and key, and the answer
comes back as a :class:`~msgflux.models.native.NativeAnswer` or
:class:`~msgflux.models.native.NativeStream`. Any other request is translated by the adapter
(``_send_kind``).
"""

from __future__ import annotations

import dataclasses
import os
import re
from typing import Any, ClassVar

from msgflux import _secrets, _transport
from msgflux._time import Clock, as_clock
from msgflux._transport import SSE, Endpoint, Framing, Limits, StreamTimeouts
from msgflux._transport.endpoint import DEFAULT_LIMITS
from msgflux.exceptions import APIStatusError, AuthenticationError
from msgflux.formats import family
from msgflux.models._checks import check_int, check_str, check_timeout, type_name
from msgflux.models.base import BaseModel
from msgflux.models.native import NativeAnswer, NativeStream
from msgflux.models.request import BUILDERS, KINDS, Request
from msgflux.retry import acall_with_retries, call_with_retries

__all__ = ["DEFAULT_RETRIES", "HTTPModel", "ProviderSpec", "check_keys"]

DEFAULT_RETRIES = 2


@dataclasses.dataclass(frozen=True)
class ProviderSpec:
    """What tells one provider from another: where it lives and how it is configured.

    ``ProviderSpec("together", "https://api.together.xyz/v1")`` reads ``TOGETHER_API_KEY``
    and lets ``TOGETHER_BASE_URL`` (or ``base_url=``) move it elsewhere. The wire details are
    defaults that a model may override (``max_tokens_field=``, ``structured_output=``).
    """

    name: str
    default_base_url: str | None
    api_key_required: bool = True
    """Local servers (vLLM, Ollama) work without a key; hosted APIs refuse the call."""
    max_tokens_field: str = "max_tokens"
    """``"max_tokens"``, ``"max_completion_tokens"`` (OpenAI's reasoning models accept only
    that), or ``"auto"``: ``max_completion_tokens`` on api.openai.com, ``max_tokens`` elsewhere."""
    structured_output: str = "json_schema"
    """``"json_schema"`` (OpenAI's strict form) or ``"json_object"`` (``{"type": "json_object",
    "schema": ...}``, what llama.cpp's server takes)."""
    stream_usage: bool = True
    """Ask for usage in the last stream chunk (``stream_options.include_usage``)."""
    vendor_fields: bool = True
    """Send the fields other vendors put in the canonical messages (Anthropic's thinking blocks
    and ``cache_control``, Gemini's ``extra_content``, ...) as they are; False for APIs that
    refuse fields they do not define (OpenAI, Azure), which then get the portable messages."""
    responses: bool = False
    """The upstream also takes OpenAI's Responses API (``POST {base}/responses``) as it is: a
    Responses request then takes the native lane (OpenAI, Azure, Groq, vLLM), where other
    servers get it translated to chat completions."""
    api_key_env: str = dataclasses.field(init=False)
    base_url_env: str = dataclasses.field(init=False)

    def __post_init__(self) -> None:
        if not re.fullmatch(r"[a-z][a-z0-9_]*", self.name):
            raise ValueError(f"ProviderSpec name must be lower-case snake_case, got {self.name!r}")
        object.__setattr__(self, "api_key_env", f"{self.name.upper()}_API_KEY")
        object.__setattr__(self, "base_url_env", f"{self.name.upper()}_BASE_URL")


MAX_TOKENS_FIELDS = ("auto", "max_tokens", "max_completion_tokens")
STRUCTURED_OUTPUTS = ("json_schema", "json_object")


def check_keys(name: str, params: Any, accepted: tuple[str, ...]) -> dict[str, Any]:
    if not isinstance(params, dict):
        raise TypeError(f"{name} must be a dict, got {type_name(params)}")
    unknown = sorted(set(params) - set(accepted))
    if unknown:
        raise ValueError(f"{name} has unknown keys {unknown}; accepted: {list(accepted)}")
    return params


_OPTIONS = {
    "max_retries": DEFAULT_RETRIES,
    "timeout": None,
    "first_chunk_timeout": None,
    "idle_timeout": None,
    "max_response_bytes": None,
    "max_event_bytes": None,
    "max_tokens_field": None,
    "structured_output": None,
}
"""Settings kept as attributes and serialized when they differ from these defaults."""


class HTTPModel(BaseModel):
    """Settings, keys, URLs, attempts and retries of an HTTP provider; see the module docstring."""

    spec: ClassVar[ProviderSpec]
    provider = "http"
    supports_timeout: ClassVar[bool] = True
    canonical: ClassVar[bool] = True
    client_params: ClassVar[tuple[str, ...]] = ("base_url",)
    """What ``sampling_params`` may hold (msgflux's name for the client settings)."""
    structured_outputs: ClassVar[tuple[str, ...]] = STRUCTURED_OUTPUTS
    """The values ``structured_output=`` accepts (each wire format has its own forms)."""
    families: ClassVar[frozenset[str]] = frozenset()
    """The API families the upstream takes as they are (native lanes; see the module
    docstring); :meth:`_native_path` says where each goes."""
    secret_params: ClassVar[tuple[str, ...]] = ("api_key",)
    """Constructor arguments that hold secrets (a config file's values are registered with
    :mod:`msgflux._secrets` and masked in ``msgflux config check``)."""

    model_id: str
    sampling_params: dict[str, Any]
    sampling_run_params: dict[str, Any]
    max_retries: int = DEFAULT_RETRIES
    timeout: float | None = None
    first_chunk_timeout: float | None = None
    idle_timeout: float | None = None
    max_response_bytes: int | None = None
    max_event_bytes: int | None = None
    max_tokens_field: str | None = None
    structured_output: str | None = None

    _api_key: str | None
    _clock: Clock
    _endpoints: dict[str, tuple[str | None, str | None, Endpoint]]
    _forwarded: dict[tuple[Endpoint, tuple[tuple[str, str], ...]], Endpoint]
    _limits: Limits

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "spec" in cls.__dict__:
            cls.provider = cls.spec.name

    def _configure(
        self,
        model_id: str,
        *,
        api_key: str | None,
        base_url: str | None,
        clock: Clock | None,
        client: dict[str, Any] | None = None,
        run: dict[str, Any] | None = None,
        **options: Any,
    ) -> None:
        """Store the constructor's arguments (then :meth:`_initialize` validates them)."""
        self.model_id = model_id
        params: dict[str, Any] = dict(client or {})
        if base_url is not None:
            params["base_url"] = base_url
        self.sampling_params = params
        self.sampling_run_params = dict(run or {})
        for name, value in options.items():
            if name not in _OPTIONS:
                raise TypeError(f"unexpected option {name!r}")
            setattr(self, name, value)
        self._api_key = check_str("api_key", api_key)
        self._clock = as_clock(clock)

    def _initialize(self) -> None:
        """Validate the settings and prepare per-call state (also after ``from_serialized``)."""
        model_id = check_str("model_id", getattr(self, "model_id", None), optional=False)
        if not model_id.strip():
            raise ValueError("model_id must not be empty")
        if getattr(self, "sampling_params", None) is None:
            self.sampling_params = {}
        params = check_keys("sampling_params", self.sampling_params, self.client_params)
        for name in self.client_params:
            check_str(name, params.get(name))
        base_url = params.get("base_url")
        if base_url is not None and not base_url.startswith(("http://", "https://")):
            raise ValueError(f"base_url must start with http:// or https://, got {base_url!r}")
        check_int("max_retries", self.max_retries, minimum=0)
        if self.max_retries > 100:
            raise ValueError(f"max_retries must be between 0 and 100, got {self.max_retries}")
        for name in ("timeout", "first_chunk_timeout", "idle_timeout"):
            check_timeout(getattr(self, name), name)
        self._limits = Limits(
            self.max_response_bytes or DEFAULT_LIMITS.max_response_bytes,
            self.max_event_bytes or DEFAULT_LIMITS.max_event_bytes,
        )
        if self.max_tokens_field is not None and self.max_tokens_field not in MAX_TOKENS_FIELDS:
            raise ValueError(
                f"max_tokens_field must be one of {MAX_TOKENS_FIELDS}, "
                f"got {self.max_tokens_field!r}"
            )
        accepted = self.structured_outputs
        if self.structured_output is not None and self.structured_output not in accepted:
            raise ValueError(
                f"structured_output must be one of {accepted}, got {self.structured_output!r}"
            )
        spec = self.spec
        if self.base_url() is None:
            raise ValueError(
                f"provider {spec.name!r} has no default URL: pass base_url='http://...' "
                f"or set {spec.base_url_env}"
            )
        if "_api_key" not in self.__dict__:
            self._api_key = None
        _secrets.register(self._api_key)
        if "_clock" not in self.__dict__:
            self._clock = as_clock(None)
        self._endpoints = {}
        self._forwarded = {}

    def _serialize_state(self) -> dict[str, Any]:
        state = super()._serialize_state()
        for name, default in _OPTIONS.items():
            value = getattr(self, name)
            if value != default:
                state[name] = value
        return state

    def __repr__(self) -> str:
        return f"{type(self).__name__}(provider={self.provider!r}, model_id={self.model_id!r})"

    # -- wire details (overridden by adapters) -----------------------------------------------
    def _auth_headers(self, key: str | None) -> dict[str, str]:
        """Headers that authenticate a request with ``key`` (Bearer by default)."""
        return {} if key is None else {"Authorization": f"Bearer {key}"}

    def _base_headers(self) -> dict[str, str]:
        """Other fixed headers (OpenAI's organization, Anthropic's version, ...)."""
        return {}

    @classmethod
    def _classify(cls, status: int, body: Any) -> type[APIStatusError] | None:
        """A provider's refinement of an error status (None: the default class)."""
        return None

    def _send_kind(self, req: Request) -> Any:
        raise NotImplementedError(f"{type(self).__name__} does not send {req.kind} requests")

    async def _asend_kind(self, req: Request) -> Any:
        raise NotImplementedError(f"{type(self).__name__} does not send {req.kind} requests")

    # -- endpoints ---------------------------------------------------------------------------
    def base_url(self) -> str | None:
        """Where calls go now: ``base_url=``, else ``<PROVIDER>_BASE_URL``, else the default."""
        spec = self.spec
        return (
            self.sampling_params.get("base_url")
            or os.environ.get(spec.base_url_env)
            or spec.default_base_url
        )

    def _key(self) -> str | None:
        return self._api_key or os.environ.get(self.spec.api_key_env) or None

    def credential_source(self) -> str:
        """Where this model's credentials come from, never the credentials themselves:
        ``api_key``, ``environment (NAME)``, ``none needed`` (a local server), or
        ``missing: ...`` (every call would fail; ``msgflux config check`` says so)."""
        if self._api_key:
            return "api_key"
        env = self.spec.api_key_env
        if os.environ.get(env):
            return f"environment ({env})"
        if not self.spec.api_key_required:
            return "none needed"
        return f"missing: set the deployment's api_key or the {env} environment variable"

    def _endpoint(self, path: str, query: str = "") -> Endpoint:
        """The endpoint for ``path`` with the key and URL in force right now (cached)."""
        spec = self.spec
        key = self._key()
        base = self.base_url()
        cache_key = path + query
        cached = self._endpoints.get(cache_key)
        if cached is not None and cached[0] == key and cached[1] == base:
            return cached[2]
        if key is None and spec.api_key_required:
            raise AuthenticationError(
                f"no API key: give the deployment an api_key (api_key= in Python, api_key: in a "
                f"server config) or set the {spec.api_key_env} environment variable",
                provider=self.provider,
                model_id=self.model_id,
            )
        if base is None:
            raise ValueError(
                f"provider {spec.name!r} has no URL: pass base_url= or set {spec.base_url_env}"
            )
        headers = {"Content-Type": "application/json", **self._base_headers()}
        headers.update(self._auth_headers(key))
        endpoint = Endpoint(
            base.rstrip("/") + path + query,
            headers,
            provider=self.provider,
            model_id=self.model_id,
            secret=key,
            limits=self._limits,
            classify=self._classify,
        )
        self._endpoints[cache_key] = (key, base, endpoint)
        return endpoint

    def _prepared(self, endpoint: Endpoint, req: Request) -> Endpoint:
        """The endpoint with this request's own headers and byte caps, when it has any."""
        if req.extra_headers:
            endpoint = endpoint.with_headers(req.extra_headers)
        if req.max_response_bytes is not None or req.max_event_bytes is not None:
            limits = endpoint.limits
            endpoint = endpoint.with_limits(
                Limits(
                    req.max_response_bytes or limits.max_response_bytes,
                    req.max_event_bytes or limits.max_event_bytes,
                )
            )
        return endpoint

    def _stream_timeouts(self, req: Request) -> StreamTimeouts:
        """The bounds of a streamed attempt: the request's (a gateway sets them), else the
        model's, with ``timeout`` as the default of both gaps."""
        return StreamTimeouts.of(
            req.timeout if req.timeout is not None else self.timeout,
            req.first_chunk_timeout
            if req.first_chunk_timeout is not None
            else self.first_chunk_timeout,
            req.idle_timeout if req.idle_timeout is not None else self.idle_timeout,
            req.deadline,
        )

    def _attempt_timeout(self, req: Request) -> float | None:
        return req.timeout if req.timeout is not None else self.timeout

    # -- native lanes ------------------------------------------------------------------------
    def speaks(self, family: str) -> bool:
        return family in self.families

    def _native_path(self, family: str, stream: bool) -> tuple[str, str]:
        """``(path, query)`` under the base URL where a request of ``family`` goes as is."""
        raise NotImplementedError(f"{type(self).__name__} has no native lane for {family}")

    def _native_framing(self, family: str) -> Framing:
        """How the upstream frames a native stream of ``family`` (SSE; Bedrock wraps
        Claude's events in AWS's event stream)."""
        return SSE

    def _native_endpoint(self, req: Request) -> Endpoint:
        native = req.native
        assert native is not None
        ep = self._endpoint(*self._native_path(native.family, req.stream))
        if native.headers:
            ep = self._forwarding(ep, native.headers)
        return self._prepared(ep, req)

    def _forwarding(self, ep: Endpoint, headers: dict[str, str]) -> Endpoint:
        """``ep`` sending the client's own family headers too (cached: a client sends the same
        ones with every request)."""
        key = (ep, tuple(headers.items()))
        cache = self._forwarded
        cached = cache.get(key)
        if cached is None:
            if len(cache) >= 64:
                cache.clear()
            cached = cache[key] = ep.with_headers(headers)
        return cached

    def _native_body(self, req: Request) -> bytes:
        """The bytes a native lane sends: the client's body naming this model."""
        native = req.native
        assert native is not None
        return native.encoded(self.model_id)

    def _send_native(self, req: Request) -> NativeAnswer | NativeStream:
        native = req.native
        assert native is not None
        ep = self._native_endpoint(req)
        fam = family(native.family)
        who = (self.provider, self.model_id)
        data = self._native_body(req)
        if req.stream:
            framing = self._native_framing(native.family)
            events = _transport.post_stream(ep, data, self._stream_timeouts(req), framing)
            return NativeStream(events, fam, fam.relay(who, drop_usage=native.added_usage), who)
        return NativeAnswer(_transport.post(ep, data, self._attempt_timeout(req)), fam, who)

    async def _asend_native(self, req: Request) -> NativeAnswer | NativeStream:
        native = req.native
        assert native is not None
        ep = self._native_endpoint(req)
        fam = family(native.family)
        who = (self.provider, self.model_id)
        data = self._native_body(req)
        if req.stream:
            framing = self._native_framing(native.family)
            events = await _transport.apost_stream(ep, data, self._stream_timeouts(req), framing)
            return NativeStream(events, fam, fam.relay(who, drop_usage=native.added_usage), who)
        resp = await _transport.apost(ep, data, self._attempt_timeout(req))
        return NativeAnswer(resp, fam, who)

    # -- calls -------------------------------------------------------------------------------
    def request(self, *args: Any, **kwargs: Any) -> Request:
        """The canonical request for a call with these (msgflux-style) arguments."""
        return BUILDERS[KINDS[self.model_type]](*args, **kwargs)

    def send(self, req: Request) -> Any:
        """Exactly one attempt (what a gateway calls): the native lane when the request
        carries a family the upstream speaks, else the adapter's translation."""
        native = req.native
        if native is not None and self.speaks(native.family):
            return self._send_native(req)
        return self._send_kind(req)

    async def asend(self, req: Request) -> Any:
        native = req.native
        if native is not None and self.speaks(native.family):
            return await self._asend_native(req)
        return await self._asend_kind(req)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """One call, retrying transient errors ``max_retries`` times (see the module docstring)."""
        req = self.request(*args, **kwargs)
        if self.max_retries == 0:
            return self._send_kind(req)
        return call_with_retries(
            lambda: self._send_kind(req), max_retries=self.max_retries, clock=self._clock
        )

    async def acall(self, *args: Any, **kwargs: Any) -> Any:
        """Async form of ``__call__`` (a stream is then read with ``async for``)."""
        req = self.request(*args, **kwargs)
        if self.max_retries == 0:
            return await self._asend_kind(req)
        return await acall_with_retries(
            lambda: self._asend_kind(req), max_retries=self.max_retries, clock=self._clock
        )

    def _call_once(self, *args: Any, **kwargs: Any) -> Any:
        """Exactly one attempt, msgflux-style arguments (``timeout=`` bounds it)."""
        return self._send_kind(self.request(*args, **kwargs))

    async def _acall_once(self, *args: Any, **kwargs: Any) -> Any:
        return await self._asend_kind(self.request(*args, **kwargs))
