"""API families: one pure module each, both directions, no I/O.

A request arrives in one family (OpenAI Chat, Anthropic Messages, ...). When the deployment
that answers speaks it, the request goes upstream as the client sent it and the answer comes
back as the upstream sent it (a *native lane*: the family's :class:`Relay` only reads what
the gateway needs on the way). When it does not, the request is translated into the canonical
form (the OpenAI chat body, :mod:`msgflux.models.request`), from there into the deployment's
family by its provider, and the answer back the same way (a *translated lane*); what cannot
be expressed follows :mod:`.policy`.

Families (:func:`family` looks one up by name):

* ``chat``: OpenAI Chat Completions (:mod:`.openai_chat`), the canonical family;
* ``messages``: Anthropic's Messages API (:mod:`.anthropic`);
* ``gemini``: Gemini's ``generateContent`` (:mod:`.gemini`);
* ``responses``: OpenAI's Responses API (:mod:`.openai_responses`).

Each is a :class:`Family`: what the server and the gateway call, whatever the family. Adding
one is a module here and a row in :data:`FAMILIES` (``docs/extending.md``).
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import Any, ClassVar, Protocol

from msgflux.formats.common import Who, rename_model
from msgflux.formats.policy import Translation

__all__ = [
    "CHAT",
    "FAMILIES",
    "GEMINI",
    "MESSAGES",
    "RESPONSES",
    "Decoder",
    "Event",
    "Family",
    "Relay",
    "StreamOut",
    "family",
]

CHAT = "chat"
MESSAGES = "messages"
GEMINI = "gemini"
RESPONSES = "responses"

Event = tuple["str | None", bytes]
"""One SSE event: its ``event:`` name (None when absent) and its data."""


class Relay(Protocol):
    """Reads a native stream for what the gateway needs, event by event, and relays it.

    :meth:`feed` returns the event's data to relay (None: drop it) and whether it carried
    content (what moves the stream's first-chunk and idle bounds); it raises the typed error
    of an in-stream error event. ``usage`` (canonical, OpenAI-shaped) and ``finish_reason``
    are the latest seen; ``done`` turns true at the family's logical end (``[DONE]``,
    ``message_stop``). Once ``model`` is set, the events :meth:`feed` returns name it where
    the upstream named its own, the rest of the bytes left as they are; :meth:`renamed` does
    the same for an event fed before. ``texts``, when set to a list (a tracer records
    content), collects the answer's text pieces as they pass.
    """

    usage: dict[str, Any] | None
    finish_reason: str | None
    done: bool
    texts: list[str] | None
    model: str | None

    def feed(self, event: str | None, data: bytes) -> tuple[bytes | None, bool]: ...

    def renamed(self, event: str | None, data: bytes, model: str) -> bytes: ...

    def text_of(self, event: str | None, data: bytes) -> str | None:
        """The answer text an event carries, if any (for ``texts``)."""
        ...

    def error(self, exc: BaseException) -> bytes:
        """The event that ends this stream broken after what was relayed (continuing it:
        a Responses stream's ``response.failed`` names its response and next number)."""
        ...


class StreamOut(Protocol):
    """Canonical chunks as one family's SSE events, chunk by chunk (bytes to write)."""

    def feed(self, chunk: dict[str, Any]) -> bytes: ...

    def end(self) -> bytes:
        """What ends a complete stream."""
        ...

    def error(self, exc: BaseException) -> bytes:
        """The event that ends a stream broken after its first chunk."""
        ...


class Decoder(Protocol):
    """A native stream's canonical chunks, event by event (what :meth:`Family.decoder` gives).

    :meth:`feed` returns the chunks of one event (often none), each paired with a view hint
    its reader may ignore; ``done`` turns true at the family's logical end; :meth:`end`
    returns the chunks that close the stream (its usage) once the events are over.
    """

    done: bool

    def feed(self, event: str | None, data: bytes) -> list[tuple[dict[str, Any], Any]]: ...

    def end(self) -> list[dict[str, Any]]: ...


class Family:
    """One API family: what the gateway and the server need of it (see the module docstring).

    Subclasses set the class attributes and implement the methods; each is a thin entry into
    the family's module, which holds the translation itself.
    """

    name: ClassVar[str]
    forward_headers: ClassVar[tuple[str, ...]] = ()
    """Request headers of the family's own (lower-case) that a native lane passes upstream."""
    request_id_header: ClassVar[str] = "x-request-id"
    """The response header where the family's upstreams put their request id."""

    # -- native lanes --------------------------------------------------------------------------
    def native_body(self, payload: dict[str, Any]) -> tuple[dict[str, Any], bool]:
        """``(body, added_usage)``: the body a native lane sends for the client's ``payload``,
        the same unless the gateway must ask for what it accounts (a chat stream's usage)."""
        return payload, False

    def relay(self, who: Who, *, drop_usage: bool = False) -> Relay:
        """The relay of one native stream (``drop_usage``: the gateway asked for the usage
        event the client did not, so the relay drops it)."""
        raise NotImplementedError

    def read_answer(self, payload: Any, who: Who) -> tuple[dict[str, Any] | None, str | None]:
        """``(canonical usage, finish reason)`` of a native JSON answer; raises the typed
        error when it is not one."""
        raise NotImplementedError

    def completion(self, payload: Any, who: Who) -> dict[str, Any]:
        """The canonical completion of a native JSON answer (what a response cache keeps);
        raises the typed error when it is not one."""
        raise NotImplementedError

    def decoder(self, who: Who) -> Decoder:
        """The canonical chunks of a native stream of this family (what a response cache
        keeps of a stream it relayed)."""
        raise NotImplementedError

    model_key: ClassVar[str] = "model"
    """The top-level field of an answer that names the model."""

    def rename_answer(self, payload: dict[str, Any], model: str) -> None:
        """Name ``model`` in a JSON answer (in place)."""
        payload[self.model_key] = model

    def renamed_answer(self, content: bytes, model: str) -> bytes:
        """A JSON answer's text naming ``model``, the rest of the upstream's bytes kept."""
        return rename_model(content, model, {}, self.model_key)

    # -- translated lanes ----------------------------------------------------------------------
    def to_canonical(
        self, payload: Any, ctx: Translation, headers: Mapping[str, str] | None = None
    ) -> dict[str, Any]:
        """The canonical chat body (``model`` and ``stream`` as the client sent them) for a
        request of this family; a malformed field raises ``ValueError``/``TypeError``."""
        raise NotImplementedError

    def answer(
        self, completion: dict[str, Any], model: str, request: Mapping[str, Any] | None = None
    ) -> dict[str, Any]:
        """This family's answer for a canonical completion (``request``: the client's body in
        this family, for a family whose answer echoes it or names its tools)."""
        raise NotImplementedError

    def stream(
        self, model: str, usage: bool = True, request: Mapping[str, Any] | None = None
    ) -> StreamOut:
        """This family's events for a canonical chunk stream (``usage``: the client asked for
        the usage, where the family makes it optional; ``request`` as for :meth:`answer`)."""
        raise NotImplementedError

    # -- errors --------------------------------------------------------------------------------
    def error(
        self,
        status: int,
        message: str,
        *,
        type: str | None = None,
        param: str | None = None,
        code: str | None = None,
    ) -> tuple[int, bytes]:
        """``(status, body)`` of an error response in this family's shape (``type``,
        ``param`` and ``code`` as OpenAI's error names them; a family uses what it has)."""
        raise NotImplementedError


FAMILIES: dict[str, str] = {
    CHAT: "msgflux.formats.openai_chat",
    MESSAGES: "msgflux.formats.anthropic",
    GEMINI: "msgflux.formats.gemini",
    RESPONSES: "msgflux.formats.openai_responses",
}
"""Family name -> the module whose ``FAMILY`` it is (imported when first asked for)."""

_loaded: dict[str, Family] = {}


def family(name: str) -> Family:
    """The :class:`Family` called ``name`` (``ValueError`` naming the known ones)."""
    found = _loaded.get(name)
    if found is None:
        module = FAMILIES.get(name)
        if module is None:
            raise ValueError(f"unknown API family {name!r}; known: {', '.join(FAMILIES)}")
        found = _loaded[name] = importlib.import_module(module).FAMILY
    return found
