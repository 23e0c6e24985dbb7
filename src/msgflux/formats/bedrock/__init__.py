"""AWS Bedrock's wire formats, both ways, with no I/O.

* the Converse API (``/model/{id}/converse``, ``/converse-stream``), every model's common
  form: :mod:`.request_encode` (canonical -> a Converse body) and :mod:`.request_decode` (a
  Converse body -> canonical); :mod:`.answer` (answers both ways, usage, stop reasons,
  guardrails); :mod:`.stream_decode` (``converse-stream`` events -> canonical chunks);
* Claude's own API on Bedrock (``InvokeModel``, ``InvokeModelWithResponseStream``), the native
  lane of a Messages API request: :mod:`.invoke`;
* errors: :mod:`.errors` (AWS error types, exceptions inside an event stream).

Bedrock is not a family a client speaks to the gateway (no endpoint takes Converse), so there
is no :class:`~msgflux.formats.Family` here: the Bedrock provider translates the canonical
request into Converse, and relays Claude's native Messages API through :mod:`.invoke`.
"""

from __future__ import annotations

from msgflux.formats.bedrock.answer import (
    FINISH_REASONS,
    STOP_REASONS,
    content_of,
    converse_usage,
    finish_of,
    to_completion,
    to_converse_answer,
    token_usage,
)
from msgflux.formats.bedrock.errors import (
    ERROR_STATUS,
    aws_error_type,
    classify_bedrock_error,
    stream_exception,
)
from msgflux.formats.bedrock.invoke import (
    BEDROCK_BETAS,
    BEDROCK_VERSION,
    BETA_ALIASES,
    InvokeDecoder,
    bedrock_betas,
    invoke_body,
)
from msgflux.formats.bedrock.request_decode import from_converse
from msgflux.formats.bedrock.request_encode import (
    CONVERSE_FIELDS,
    NAME,
    converse_messages,
    is_anthropic,
    to_converse,
)
from msgflux.formats.bedrock.stream_decode import ConverseEvents

__all__ = [
    "BEDROCK_BETAS",
    "BEDROCK_VERSION",
    "BETA_ALIASES",
    "CONVERSE_FIELDS",
    "ERROR_STATUS",
    "FINISH_REASONS",
    "NAME",
    "STOP_REASONS",
    "ConverseEvents",
    "InvokeDecoder",
    "aws_error_type",
    "bedrock_betas",
    "classify_bedrock_error",
    "content_of",
    "converse_messages",
    "converse_usage",
    "finish_of",
    "from_converse",
    "invoke_body",
    "is_anthropic",
    "stream_exception",
    "to_completion",
    "to_converse",
    "to_converse_answer",
    "token_usage",
]
