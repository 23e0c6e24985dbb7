"""The canonical request type: :class:`Request` (an OpenAI body plus call options), its kinds
and :class:`Schema` (a ``generation_schema`` made ready to send).

Separate from the builders (:mod:`msgflux.models.request.builders`) and the checks: providers,
views and the gateway read this type on every call; only the entry points build one.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable
from typing import IO, TYPE_CHECKING, Any

if TYPE_CHECKING:
    from msgflux.formats.policy import Translation
    from msgflux.models.native import Native

__all__ = [
    "CHAT",
    "EMBEDDINGS",
    "IMAGES",
    "KINDS",
    "MODERATIONS",
    "SPEECH",
    "TRANSCRIPTIONS",
    "AudioInput",
    "Request",
    "Schema",
]

CHAT = "chat"
EMBEDDINGS = "embeddings"
MODERATIONS = "moderations"
SPEECH = "speech"
TRANSCRIPTIONS = "transcriptions"
IMAGES = "images"

KINDS: dict[str, str] = {
    "chat_completion": CHAT,
    "text_embedder": EMBEDDINGS,
    "moderation": MODERATIONS,
    "text_to_speech": SPEECH,
    "speech_to_text": TRANSCRIPTIONS,
    "text_to_image": IMAGES,
}
"""msgflux ``model_type`` -> request kind."""

AudioInput = bytes | bytearray | memoryview | str | os.PathLike[str] | IO[bytes]


@dataclasses.dataclass(frozen=True)
class Schema:
    """A ``generation_schema``: its JSON schema (root inlined) and the decoder of an answer."""

    name: str
    json_schema: dict[str, Any]
    decode: Callable[[str], Any]


@dataclasses.dataclass(slots=True)
class Request:
    """One call in canonical form (see the module docstring).

    ``body`` never holds ``model`` or ``stream``; ``schema`` is set when the caller asked for
    structured output with ``generation_schema`` (``response_format`` is then in ``body`` as a
    strict ``json_schema``; adapters may express it differently); ``file`` is the audio of a
    transcription; ``single`` says the caller passed one input rather than a list (embeddings,
    moderation), which shapes the msgflux view of the answer.
    """

    kind: str
    body: dict[str, Any]
    stream: bool = False
    timeout: float | None = None
    first_chunk_timeout: float | None = None
    idle_timeout: float | None = None
    extra_headers: dict[str, str] | None = None
    schema: Schema | None = None
    file: tuple[str, bytes] | None = None
    single: bool = False
    prefill: str | None = None
    """The assistant prefill the caller gave (the last message of ``body["messages"]``)."""
    deadline: float | None = None
    """Seconds the whole attempt may last, an open stream included (a gateway's deadline)."""
    max_response_bytes: int | None = None
    """Cap on the answer (a stream: all of it), decompressed; None: the model's own."""
    max_event_bytes: int | None = None
    """Cap on one SSE event; None: the model's own."""
    native: Native | None = None
    """The request as its client sent it, in its API family (a native lane sends that)."""
    translation: Translation | None = None
    """This attempt's translation policy and what it dropped (a gateway's, per attempt)."""
    native_for: dict[str, Native] | None = None
    """Another form of the client's request for some deployments, by ``model_name`` (the one
    whose upstream stored a conversation continues it there by id)."""

    def replace(self, **changes: Any) -> Request:
        return dataclasses.replace(self, **changes)

    def bounded(
        self,
        timeout: float | None,
        first_chunk_timeout: float | None,
        idle_timeout: float | None,
        max_response_bytes: int | None,
        max_event_bytes: int | None,
        deadline: float | None,
    ) -> Request:
        """A copy with other time and byte bounds (a gateway's, for one attempt); a plain
        copy, several times cheaper than :func:`dataclasses.replace` on this hot path."""
        new = Request(
            self.kind,
            self.body,
            self.stream,
            timeout,
            first_chunk_timeout,
            idle_timeout,
            self.extra_headers,
            self.schema,
            self.file,
            self.single,
            self.prefill,
            deadline,
            max_response_bytes,
            max_event_bytes,
            self.native,
            self.translation,
            self.native_for,
        )
        return new

    def with_body(self, **fields: Any) -> Request:
        return dataclasses.replace(self, body={**self.body, **fields})

    def with_fields(self, **fields: Any) -> Request:
        """A copy with ``fields`` set in what the deployments get: the client's own body (a
        native lane sends it as it is, in its family's names) and, for a chat request, the
        canonical one; another family's request is translated again from its new body."""
        native = self.native
        if native is None:
            return self.with_body(**fields)
        if native.family != CHAT:
            return dataclasses.replace(self, native=native.with_fields(fields))
        return dataclasses.replace(
            self, body={**self.body, **fields}, native=native.with_fields(fields)
        )

    def msgflux_kwargs(self) -> dict[str, Any]:
        """The call as msgflux-style keyword arguments, for models that only take those."""
        body = dict(self.body)
        out: dict[str, Any] = {}
        if self.kind == CHAT:
            out["messages"] = body.pop("messages")
            if "tools" in body:
                out["tool_schemas"] = body.pop("tools")
            if "tool_choice" in body:
                out["tool_choice"] = body.pop("tool_choice")
            if self.schema is not None:
                body.pop("response_format", None)
            out["stream"] = self.stream
        elif self.kind in (EMBEDDINGS, MODERATIONS, SPEECH):
            out["data"] = body.pop("input")
        elif self.kind == IMAGES:
            out["prompt"] = body.pop("prompt")
        elif self.kind == TRANSCRIPTIONS and self.file is not None:
            out["data"] = self.file[1]
        out.update(body)
        return out
