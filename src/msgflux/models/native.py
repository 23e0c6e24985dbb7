"""Native lanes: a request sent upstream as its client sent it, the answer relayed as it came.

When the deployment of an attempt speaks the request's API family (a Messages API request to
an ``anthropic`` deployment, a chat request to an OpenAI-wire one), nothing is translated:

* :class:`Native` is the request as it arrived: its body (every field, known to us or not),
  the family's own headers to pass on (``anthropic-beta``...), serialized once for every
  attempt with only ``model`` changed;
* :class:`NativeAnswer` is a whole answer: the upstream's bytes, read once for the usage and
  the finish reason, and :meth:`NativeAnswer.json` to name another model in them;
* :class:`NativeStream` is a stream: each upstream read's events relayed as they arrive, read
  on the way by the family's :class:`~msgflux.formats.Relay` (usage, content, errors, the
  end), with one await per upstream read whatever the number of events.

The gateway treats them like any answer (priming, settlement, cost, records); see
:mod:`msgflux.models.gateway.raw` for what a caller gets.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import orjson

from msgflux._transport import AsyncEventStream, EventStream, Response
from msgflux.exceptions import APIConnectionError
from msgflux.formats import Event, Family, Relay
from msgflux.formats.common import Who, loads
from msgflux.models.response import Metadata

__all__ = ["EndHook", "Native", "NativeAnswer", "NativeStream", "native_request"]

EndHook = Callable[[BaseException | None, bool], BaseException | None]
"""Told once how a stream ended: ``(error or None, cancelled)``; returns the error to raise
instead (a broken committed stream becomes a :class:`~msgflux.exceptions.StreamInterruptedError`),
or None to raise the error as it is."""


class Native:
    """A request in its own API family, as the client sent it (see the module docstring).

    ``body`` holds every field the client sent, ``model`` included (the gateway's name);
    ``headers`` the family's own request headers to pass on (lower-case names).
    ``added_usage`` says the gateway asked for a stream's usage the client did not ask for
    (the relay then drops it): the one field a native lane may add.
    """

    __slots__ = ("_rest", "added_usage", "body", "family", "headers", "stream")

    def __init__(
        self,
        family: str,
        body: dict[str, Any],
        headers: Mapping[str, str] | None = None,
        *,
        added_usage: bool = False,
    ) -> None:
        self.family = family
        self.body = body
        self.headers = dict(headers) if headers else None
        self.stream = body.get("stream") is True
        self.added_usage = added_usage
        try:
            rest = orjson.dumps({k: v for k, v in body.items() if k != "model"})
        except TypeError as exc:  # nested deeper than the encoder allows, a non-str key...
            why = str(exc)
            if "Recursion" in why:
                why = "it nests deeper than 255 levels of arrays and objects"
            raise ValueError(f"the request body cannot be sent on: {why}") from None
        self._rest = rest[1:] if len(rest) > 2 else b"}"

    def encoded(self, model: str) -> bytes:
        """The body with ``model`` named, serialized (the rest was, once, at creation)."""
        head = b'{"model":' + orjson.dumps(model)
        rest = self._rest
        return head + (rest if rest == b"}" else b"," + rest)

    def with_fields(self, fields: Mapping[str, Any]) -> Native:
        """A copy whose body has ``fields`` set (a wrapper rewriting the request)."""
        return Native(
            self.family, {**self.body, **fields}, self.headers, added_usage=self.added_usage
        )

    def holds(self, *markers: bytes) -> bool:
        """Whether the serialized body holds any of ``markers`` (a cheap look before a walk)."""
        rest = self._rest
        return any(marker in rest for marker in markers)

    def __repr__(self) -> str:
        return f"Native({self.family!r}, stream={self.stream})"


def native_request(
    family: Family, payload: dict[str, Any], headers: Mapping[str, str] | None = None
) -> Native:
    """The :class:`Native` of a client's ``payload`` in ``family`` (its own ``headers``, the
    family's to pass on, picked from all the request's)."""
    body, added_usage = family.native_body(payload)
    forwarded = None
    if headers:
        names = family.forward_headers
        forwarded = {k: v for k, v in headers.items() if k in names}
    return Native(family.name, body, forwarded, added_usage=added_usage)


class NativeAnswer:
    """A whole answer as the upstream sent it; ``metadata`` holds ``usage`` (canonical),
    ``finish_reason`` and ``request_id`` like any answer's."""

    __slots__ = ("content", "family", "metadata", "payload", "response_type")

    def __init__(self, resp: Response, family: Family, who: Who) -> None:
        self.content = resp.content
        self.family = family
        payload = self.payload = loads(resp.content, who)
        usage, finish = family.read_answer(payload, who)
        self.metadata = Metadata(
            usage=usage,
            finish_reason=finish,
            request_id=resp.headers.get(family.request_id_header),
        )
        self.response_type = "native"

    def json(self, model: str | None = None) -> bytes:
        """The answer's JSON, naming ``model`` (None: as the upstream named it); the rest of
        the upstream's bytes as they came."""
        if model is None:
            return self.content
        return self.family.renamed_answer(self.content, model)


class NativeStream:
    """A stream relayed as the upstream sends it (see the module docstring).

    Read it with :meth:`aread` (async) or :meth:`read` (sync): each call gives the events of
    the upstream's next read that the relay kept, or None at the end. :meth:`afirst_chunk` /
    :meth:`first_chunk` wait for the first content (what a gateway commits on), keeping what
    they read for the reader. The stream's end (finished, broken, closed) is told once to the
    hook set with :meth:`on_end`.
    """

    __slots__ = (
        "__weakref__",
        "_end",
        "_events",
        "_head",
        "_outcome",
        "_over",
        "_pending",
        "_runner",
        "_started",
        "_tap",
        "family",
        "is_async",
        "metadata",
        "relay",
        "response_type",
        "who",
    )

    def __init__(
        self, events: AsyncEventStream | EventStream, family: Family, relay: Relay, who: Who
    ) -> None:
        self._events = events
        self.family = family
        self.relay = relay
        self.who = who
        self.is_async = isinstance(events, AsyncEventStream)
        self._head: list[Event] = []
        self._outcome: tuple[BaseException | None, bool] = (None, False)
        self._over = False
        self._pending: BaseException | None = None
        self._started = False
        self._end: EndHook | None = None
        self._runner: Callable[[Any], Any] | None = None
        self._tap: tuple[Callable[[str | None, bytes], None], Callable[[Any], None]] | None = None
        self.metadata = Metadata(
            usage=None,
            finish_reason=None,
            request_id=events.headers.get(family.request_id_header),
        )
        self.response_type = "native"

    def on_end(self, hook: EndHook) -> None:
        """Tell ``hook`` how the stream ends; at once if it already finished (a short answer
        can end within the reads that primed it)."""
        if self._over:
            hook(*self._outcome)
        else:
            self._end = hook

    def rename(self, model: str) -> None:
        """Name ``model`` in every event that names the model (those read already too)."""
        self.relay.model = model
        renamed = self.relay.renamed
        self._head = [(name, renamed(name, data, model)) for name, data in self._head]

    def capture_text(self) -> None:
        """Collect the answer's text in ``relay.texts`` (a tracer records content), the text
        of the events already read included."""
        relay = self.relay
        text_of = relay.text_of
        relay.texts = [t for name, data in self._head if (t := text_of(name, data))]

    def tap(
        self,
        see: Callable[[str | None, bytes], None],
        end: Callable[[BaseException | None], None],
    ) -> None:
        """Show ``see`` each event the relay reads (those read already first), and tell
        ``end`` once how the stream ended: None when it finished, else its error (a
        ``GeneratorExit`` when its reader left). What a response cache keeps of a stream it
        relays; neither may raise."""
        for name, data in self._head:
            see(name, data)
        if self._over:
            how, cancelled = self._outcome
            end(GeneratorExit() if cancelled else how)
        else:
            self._tap = (see, end)

    def bridge(self, run: Callable[[Any], Any]) -> None:
        """Make an async stream readable from sync code: ``run`` runs a coroutine on the
        event loop the stream belongs to (a gateway's private loop) and returns its result."""
        self._runner = run

    # -- what both paths share -----------------------------------------------------------------
    def _relayed(self, batch: list[Event]) -> list[Event]:
        relay = self.relay
        events = self._events
        out: list[Event] = []
        for name, data in batch:
            try:
                kept, content = relay.feed(name, data)
            except Exception as exc:
                if not out:
                    raise
                self._pending = exc  # the events before it go out first
                break
            if self._tap is not None:
                self._tap[0](name, data)
            if content:
                self._started = True
                events.content()
            if kept is not None:
                out.append((name, kept))
            if relay.done:
                break
        return out

    def _unfinished(self) -> BaseException | None:
        """The upstream's body ended: None when the answer had finished, else the error."""
        if self.relay.finish_reason is not None:
            return None
        who = self.who
        return APIConnectionError(
            "the stream ended before the model finished",
            provider=who[0],
            model_id=who[1],
        )

    def _finished(self, how: BaseException | None, cancelled: bool = False) -> BaseException | None:
        """Note the end (once): metadata complete, the hook told; returns the error to raise."""
        if self._over:
            return None
        self._over = True
        self._outcome = (how, cancelled)
        relay = self.relay
        meta = self.metadata
        meta["usage"] = relay.usage
        meta["finish_reason"] = relay.finish_reason
        hook, self._end = self._end, None
        error = None if hook is None else hook(how, cancelled)
        tap, self._tap = self._tap, None
        if tap is not None:
            tap[1](GeneratorExit() if cancelled else how)
        return error

    def _failed(self, exc: BaseException) -> BaseException:
        self._events.close()
        if not isinstance(exc, Exception):
            self._finished(None, True)
            return exc
        return self._finished(exc) or exc

    # -- async -------------------------------------------------------------------------------
    async def _apull(self) -> list[Event] | None:
        """The relayed events of the upstream's next reads (at least one), None at the end."""
        events = self._events
        assert isinstance(events, AsyncEventStream)
        try:
            while not self._over:
                if self._pending is not None:
                    raise self._pending
                batch = await events.read()
                if batch is None:
                    error = self._unfinished()
                    if error is not None:
                        raise error
                    self._finished(None)
                    return None
                out = self._relayed(batch)
                if self.relay.done:
                    await events.afinish()
                    self._finished(None)
                if out:
                    return out
            return None
        except BaseException as exc:
            error = self._failed(exc)
            if error is exc:
                raise
            raise error from exc

    async def afirst_chunk(self) -> bool:
        """Wait for the first content (False: the stream ended without any)."""
        while not self._started:
            batch = await self._apull()
            if batch is None:
                return False
            self._head += batch
        return True

    async def aread(self) -> list[Event] | None:
        """The next upstream read's relayed events, None at the end."""
        head = self._head
        if head:
            self._head = []
            return head
        return await self._apull()

    async def aclose(self) -> None:
        self.close()

    # -- sync --------------------------------------------------------------------------------
    def _pull(self) -> list[Event] | None:
        events = self._events
        if not isinstance(events, EventStream):
            run = self._runner
            if run is None:
                raise TypeError("this stream comes from an async call; read it with aread()")
            result: list[Event] | None = run(self._apull())
            return result
        try:
            while not self._over:
                if self._pending is not None:
                    raise self._pending
                batch = events.read()
                if batch is None:
                    error = self._unfinished()
                    if error is not None:
                        raise error
                    self._finished(None)
                    return None
                out = self._relayed(batch)
                if self.relay.done:
                    events.finish()
                    self._finished(None)
                if out:
                    return out
            return None
        except BaseException as exc:
            error = self._failed(exc)
            if error is exc:
                raise
            raise error from exc

    def first_chunk(self) -> bool:
        while not self._started:
            batch = self._pull()
            if batch is None:
                return False
            self._head += batch
        return True

    def read(self) -> list[Event] | None:
        head = self._head
        if head:
            self._head = []
            return head
        return self._pull()

    def close(self) -> None:
        """Stop reading and release the connection (the end hook hears a cancellation)."""
        self._head = []
        if not self._over:
            self._events.close()
            self._finished(None, True)

    def __repr__(self) -> str:
        return f"NativeStream({self.family.name!r}, {self.who[0]}/{self.who[1]})"
