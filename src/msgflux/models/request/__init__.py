"""The canonical request: what one call asks for, in the OpenAI wire format every gateway speaks.

A :class:`Request` is an OpenAI request body (``messages``, ``temperature``, ``tools``, ...,
without ``model``: each deployment names its own) plus call options (stream, timeouts, extra
headers). msgflux-style arguments build it (:func:`chat_request` turns ``messages``,
``system_prompt``, ``prefilling``, ``generation_schema``, ``tool_schemas`` and ``tool_choice``
into OpenAI fields), an OpenAI JSON body builds it directly (:func:`from_openai`, what the
server uses), and every provider adapter translates it to its own wire format.

Validation happens here, once, before any attempt: a caller's mistake raises ``TypeError`` or
``ValueError`` naming the argument and what it accepts, and never counts against a
deployment. Fields this module does not know pass through untouched (vendor extensions).

>>> req = chat_request("Who was Frank Rosenblatt?", temperature=0.2, max_tokens=50, seed=7)
>>> req.body["messages"], req.body["max_tokens"]
([{'role': 'user', 'content': 'Who was Frank Rosenblatt?'}], 50)

The package is laid out by concern, every public name re-exported here:

* :mod:`~msgflux.models.request.canonical`: :class:`Request`, :class:`Schema` and the kinds;
* :mod:`~msgflux.models.request.builders`: the builders and :func:`from_openai`;
* :mod:`~msgflux.models.request.checks`: the field and call-option checks they share;
* :mod:`~msgflux.models.request.schema`: ``generation_schema`` -> (strict) JSON schema.
"""

from msgflux.models.request.builders import BUILDERS as BUILDERS
from msgflux.models.request.builders import TRANSCRIPT_FORMATS as TRANSCRIPT_FORMATS
from msgflux.models.request.builders import (
    chat_messages,
    chat_request,
    embeddings_request,
    from_openai,
    image_request,
    moderation_request,
    speech_request,
    transcription_request,
)
from msgflux.models.request.builders import read_audio as read_audio
from msgflux.models.request.canonical import (
    CHAT,
    EMBEDDINGS,
    IMAGES,
    KINDS,
    MODERATIONS,
    SPEECH,
    TRANSCRIPTIONS,
    Request,
    Schema,
)
from msgflux.models.request.canonical import AudioInput as AudioInput
from msgflux.models.request.schema import json_schema_format as json_schema_format
from msgflux.models.request.schema import schema_and_decoder, schema_of
from msgflux.models.request.schema import strict_schema as strict_schema

__all__ = [
    "CHAT",
    "EMBEDDINGS",
    "IMAGES",
    "KINDS",
    "MODERATIONS",
    "SPEECH",
    "TRANSCRIPTIONS",
    "Request",
    "Schema",
    "chat_messages",
    "chat_request",
    "embeddings_request",
    "from_openai",
    "image_request",
    "moderation_request",
    "schema_and_decoder",
    "schema_of",
    "speech_request",
    "transcription_request",
]
