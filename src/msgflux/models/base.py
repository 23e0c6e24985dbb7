"""The contract every model meets, built-in or user-written.

A subclass sets ``provider`` and ``model_id`` (class or instance attributes), inherits a
model-type mixin for ``model_type``, and implements ``__call__(**kwargs)``. Nothing here
relies on ``BaseModel.__init__`` having run, so subclasses may define their own
``__init__`` without calling ``super().__init__()``, or none at all::

    class Echo(BaseModel, ChatCompletionModel):
        provider = "mock"
        model_id = "echo"

        def __call__(self, **kwargs):
            r = ModelResponse(); r.set_response_type("text_generation")
            r.add(kwargs["messages"]); return r
"""

from __future__ import annotations

import asyncio
import copy
from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:
    from msgflux.models.request import Request

__all__ = ["BaseModel"]


class BaseModel:
    """Base class of every model. See the module docstring for the contract."""

    msgflux_type: ClassVar[str] = "model"
    to_ignore: ClassVar[list[str]] = [
        "_api_key",
        "model",
        "processor",
        "client",
        "aclient",
        "_native_client",
        "_native_aclient",
        "chat_transport",
        "credential_resolver",
        "api_adapter",
        "api_mode_capabilities",
        "reasoning_codec",
        "_response_cache",
        "__call__",
        "acall",
    ]
    """Attributes never serialized (msgflux's list: clients, keys, caches)."""
    batch_support: ClassVar[bool] = False
    provider: str
    model_id: str
    model_type: str

    supports_timeout: ClassVar[bool] = False
    """True when ``_call_once``/``_acall_once`` accept ``timeout=`` and enforce it themselves."""

    canonical: ClassVar[bool] = False
    """True when :meth:`_send` takes the canonical request natively (built-in providers); a
    gateway then builds the request once and hands it to every such deployment."""

    def _initialize(self) -> None:
        """Rebuild runtime state after ``from_serialized``; optional."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError(f"{type(self).__name__} must implement __call__")

    async def acall(self, *args: Any, **kwargs: Any) -> Any:
        """Async call. The default runs ``__call__`` in a worker thread (never blocks the loop)."""
        return await asyncio.to_thread(self.__call__, *args, **kwargs)

    def _call_once(self, *args: Any, **kwargs: Any) -> Any:
        """Exactly one attempt, no retries of the model's own (what a gateway calls)."""
        return self(*args, **kwargs)

    async def _acall_once(self, *args: Any, **kwargs: Any) -> Any:
        """Async form of :meth:`_call_once`."""
        return await self.acall(*args, **kwargs)

    # -- the model contract (what a gateway calls) ----------------------------------------------
    def send(self, request: Request) -> Any:
        """Exactly one attempt of a :class:`~msgflux.models.request.Request`, no retries.

        Built-in providers override it (and :meth:`asend`). For a model that takes msgflux
        arguments only, the request is turned into them (``messages``, ``stream``,
        ``tool_schemas``, the other fields as keywords) and :meth:`_call_once` is called.
        """
        return self._call_once(**self._kwargs_for(request))

    async def asend(self, request: Request) -> Any:
        """Async form of :meth:`send`."""
        return await self._acall_once(**self._kwargs_for(request))

    def speaks(self, family: str) -> bool:
        """Whether the upstream takes requests of API ``family`` as they are (a native lane:
        see :mod:`msgflux.models.native`); False for models that take the canonical request."""
        return False

    async def acount_tokens(self, request: Request) -> Any:
        """The upstream's own count of ``request``'s input tokens, in its family's answer
        shape (``{"input_tokens": N}`` for the Messages API). Models whose upstream has no
        counting endpoint raise :class:`~msgflux.exceptions.UnsupportedFeatureError`."""
        from msgflux.exceptions import UnsupportedFeatureError

        raise UnsupportedFeatureError(
            f"{self.provider}/{self.model_id} has no token counting endpoint"
        )

    # msgflux's names for send/asend, kept working both ways: a subclass that overrides the
    # underscored name (older code) is what the public one calls.
    def _send(self, request: Request) -> Any:
        return self.send(request)

    async def _asend(self, request: Request) -> Any:
        return await self.asend(request)

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "_send" in cls.__dict__ and "send" not in cls.__dict__:
            cls.send = cls.__dict__["_send"]  # type: ignore[method-assign]
            del cls._send  # the inherited alias calls send
        if "_asend" in cls.__dict__ and "asend" not in cls.__dict__:
            cls.asend = cls.__dict__["_asend"]  # type: ignore[method-assign]
            del cls._asend

    def _kwargs_for(self, request: Request) -> dict[str, Any]:
        kwargs = request.msgflux_kwargs()
        if request.timeout is not None and self.supports_timeout:
            kwargs["timeout"] = request.timeout
        return kwargs

    def get_model_info(self) -> dict[str, str]:
        return {"model_id": self.model_id, "provider": self.provider}

    def instance_type(self) -> dict[str, str]:
        return {"model_type": self.model_type}

    def _serialize_state(self) -> dict[str, Any]:
        """The ``state`` part of :meth:`serialize`; providers override it. Never holds secrets."""
        state: dict[str, Any] = {"model_id": getattr(self, "model_id", None)}
        for name in ("sampling_params", "sampling_run_params"):
            value = getattr(self, name, None)
            if isinstance(value, dict):
                state[name] = copy.deepcopy(value)
        return state

    def serialize(self) -> dict[str, Any]:
        return {
            "msgflux_type": "model",
            "provider": self.provider,
            "model_type": self.model_type,
            "state": self._serialize_state(),
        }

    @classmethod
    def from_serialized(cls, state: dict[str, Any]) -> BaseModel:
        """Rebuild a model of this class from the ``state`` that :meth:`serialize` produced."""
        if not isinstance(state, dict):
            raise TypeError(f"state must be a dict, got {type(state).__name__}")
        obj = cls.__new__(cls)
        for key, value in state.items():
            setattr(obj, key, copy.deepcopy(value))
        obj._initialize()
        return obj

    def __repr__(self) -> str:
        provider = getattr(self, "provider", "?")
        model_id = getattr(self, "model_id", "?")
        return f"{type(self).__name__}(provider={provider!r}, model_id={model_id!r})"
