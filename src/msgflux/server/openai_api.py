"""OpenAI's API on the server: what its endpoints take and give back.

``POST /v1/chat/completions`` (the ``chat`` family: native to OpenAI-wire deployments,
translated for the others), ``/v1/embeddings``, ``/v1/moderations``, ``/v1/audio/speech``
(bytes back), ``/v1/audio/transcriptions`` (multipart in), ``/v1/images/generations``, and
``GET /v1/models`` / ``/v1/models/{id}``. The request path is :func:`.endpoints.handle`;
this module holds only what differs: how a multipart body is read and how an answer that is
not JSON is sent.
"""

from __future__ import annotations

from typing import Any

import orjson

from msgflux.models.gateway.raw import RawAnswer
from msgflux.models.request import (
    CHAT,
    EMBEDDINGS,
    IMAGES,
    MODERATIONS,
    SPEECH,
    TRANSCRIPTIONS,
)
from msgflux.server.asgi import JSON, Headers, Scope, Send, header, send_bytes, send_json
from msgflux.server.endpoints import Endpoint, authenticate
from msgflux.server.errors import HTTPError
from msgflux.server.multipart import parse_form
from msgflux.server.runtime import Runtime

__all__ = ["ENDPOINTS", "models"]

_AUDIO_TYPES = {
    "mp3": b"audio/mpeg",
    "opus": b"audio/opus",
    "aac": b"audio/aac",
    "flac": b"audio/flac",
    "wav": b"audio/wav",
    "pcm": b"audio/pcm",
}


def _parse_multipart(scope: Scope, body: bytes) -> tuple[dict[str, Any], tuple[str, bytes]]:
    """The form fields and the uploaded ``file`` of a multipart/form-data body."""
    ctype = header(scope, b"content-type") or b""
    if not ctype.lower().startswith(b"multipart/form-data"):
        raise HTTPError(400, "send the audio as multipart/form-data with a `file` field")
    fields: dict[str, Any] = {}
    file: tuple[str, bytes] | None = None
    for part in parse_form(ctype, body):
        name, data = part.name, part.data
        if name == "file":
            file = (part.filename or "audio", data)
        elif name in ("timestamp_granularities[]", "timestamp_granularities"):
            fields.setdefault("timestamp_granularities", []).append(data.decode())
        else:
            fields[name] = data.decode("utf-8", "replace")
    if file is None:
        raise HTTPError(400, "file is required: the audio to transcribe", param="file")
    if "temperature" in fields:
        try:
            fields["temperature"] = float(fields["temperature"])
        except ValueError:
            raise HTTPError(400, "temperature must be a number", param="temperature") from None
    return fields, file


async def _send_answer(
    send: Send, answer: RawAnswer, payload: dict[str, Any], headers: Headers
) -> None:
    """A non-chat answer: JSON naming the gateway, bytes with their audio type, text."""
    body = answer.body
    if isinstance(body, dict):
        if "model" in body:
            body["model"] = payload["model"]
        await send_bytes(send, 200, orjson.dumps(body), JSON, headers)
    elif isinstance(body, (bytes, bytearray)):
        meta = getattr(answer.response, "metadata", None) or {}
        ctype = meta.get("content_type") if isinstance(meta, dict) else None
        if isinstance(ctype, str) and ctype:
            content_type = ctype.encode()
        else:
            fmt = str(payload.get("response_format") or "mp3")
            content_type = _AUDIO_TYPES.get(fmt, b"application/octet-stream")
        await send_bytes(send, 200, bytes(body), content_type, headers)
    elif isinstance(body, str):
        await send_bytes(send, 200, body.encode(), b"text/plain; charset=utf-8", headers)
    else:
        await send_bytes(send, 200, orjson.dumps(body), JSON, headers)


ENDPOINTS = (
    Endpoint("/chat/completions", CHAT, "chat_completion"),
    Endpoint("/embeddings", EMBEDDINGS, "text_embedder", respond=_send_answer),
    Endpoint("/moderations", MODERATIONS, "moderation", respond=_send_answer),
    Endpoint("/audio/speech", SPEECH, "text_to_speech", respond=_send_answer),
    Endpoint(
        "/audio/transcriptions",
        TRANSCRIPTIONS,
        "speech_to_text",
        parse=_parse_multipart,
        respond=_send_answer,
    ),
    Endpoint("/images/generations", IMAGES, "text_to_image", respond=_send_answer),
)
"""OpenAI's model endpoints (without ``/v1``)."""


# -- the model list -----------------------------------------------------------------------------
async def models(runtime: Runtime, scope: Scope, send: Send, model_id: str | None) -> None:
    """``GET /v1/models`` (``model_id`` None) and ``GET /v1/models/{model_id}``: the gateways
    the key may use, as model cards."""
    principal = authenticate(runtime, scope)

    def card(name: str) -> dict[str, Any]:
        route = runtime.routes[name]
        return {
            "id": name,
            "object": "model",
            "created": runtime.loaded_at,
            "owned_by": "msgflux",
            "type": route.type,
        }

    if model_id is None:
        data = [card(n) for n in runtime.routes if principal.allows(n)]
        await send_json(send, 200, {"object": "list", "data": data})
        return
    if model_id not in runtime.routes:
        names = [n for n in runtime.routes if principal.allows(n)]
        raise HTTPError(
            404,
            f"The model `{model_id}` does not exist. Configured models: "
            f"{', '.join(names) or 'none'}",
            param="model",
            code="model_not_found",
        )
    if not principal.allows(model_id):
        raise HTTPError(403, f"this API key may not use the model `{model_id}`", code="forbidden")
    await send_json(send, 200, card(model_id))
