"""The Responses API's errors, both ways.

An HTTP error has OpenAI's body (``{"error": {"message", "type", "param", "code"}}``, as for
chat, :func:`error_body`). Inside a 200 the API says it two more ways: a response whose
``status`` is ``"failed"`` (its ``error.code`` says why: ``rate_limit_exceeded``,
``server_error``, ``invalid_prompt``...) and an ``error`` stream event (``code``,
``message``, ``param``). :func:`response_error` and :func:`event_error` make either the typed
error of its code (:data:`CODE_STATUS`), so the gateway classifies it like an HTTP status;
:func:`error_event` writes one.
"""

from __future__ import annotations

from typing import Any

import orjson

from msgflux._secrets import scrub
from msgflux._transport import status_error
from msgflux.exceptions import APIStatusError, ContentPolicyError
from msgflux.formats.common import Who
from msgflux.formats.openai_chat import classify_openai_error, error_body, error_type

__all__ = [
    "CODE_STATUS",
    "classify_responses_error",
    "error_body",
    "error_event",
    "error_type",
    "event_error",
    "response_error",
]

CODE_STATUS = {
    "rate_limit_exceeded": 429,
    "insufficient_quota": 429,
    "server_error": 500,
    "vector_store_timeout": 504,
    "context_length_exceeded": 400,
    "invalid_prompt": 400,
    "invalid_request_error": 400,
    "bio_policy": 400,
    "misalignment_policy_violation": 400,
    "data_residency_mismatch": 400,
}
"""``error.code`` -> the HTTP status it stands for (an image error, ``invalid_image*`` or
``image_*``, is a 400; an unknown code a 500)."""

_POLICY_CODES = frozenset(
    ("bio_policy", "misalignment_policy_violation", "image_content_policy_violation")
)


def _status(code: Any) -> int:
    if not isinstance(code, str):
        return 500
    status = CODE_STATUS.get(code)
    if status is not None:
        return status
    return 400 if "image" in code else 500


def classify_responses_error(status: int, body: Any) -> type[APIStatusError] | None:
    """The Responses API's policy codes (a content policy stopped the answer), then the
    OpenAI-family wording of a 400 (context window, content filter)."""
    error = body.get("error") if isinstance(body, dict) else None
    code = error.get("code") if isinstance(error, dict) else None
    if code in _POLICY_CODES:
        return ContentPolicyError
    return classify_openai_error(status, body)


def _typed(error: dict[str, Any], who: Who) -> APIStatusError:
    return status_error(
        _status(error.get("code")),
        orjson.dumps({"error": error}),
        None,
        provider=who[0],
        model_id=who[1],
        classify=classify_responses_error,
    )


def error_event(
    message: str, code: str | None = None, param: str | None = None, sequence_number: int = 0
) -> bytes:
    """An ``error`` SSE event (the message scrubbed of every key the process knows); its
    ``sequence_number`` is 0 when it is the stream's first and last event."""
    data = {
        "type": "error",
        "sequence_number": sequence_number,
        "code": code,
        "message": scrub(message),
        "param": param,
    }
    return b"event: error\ndata: " + orjson.dumps(data) + b"\n\n"


def response_error(response: dict[str, Any], who: Who) -> APIStatusError:
    """The typed error of a response whose ``status`` is ``"failed"``."""
    error = response.get("error")
    if not isinstance(error, dict):
        error = {"code": "server_error", "message": "the response failed without an error"}
    return _typed(error, who)


def event_error(event: dict[str, Any], who: Who) -> APIStatusError:
    """The typed error of an ``error`` stream event (its fields are the error's)."""
    error = {k: v for k, v in event.items() if k not in ("type", "sequence_number")}
    nested = error.get("error")
    return _typed(nested if isinstance(nested, dict) else error, who)
