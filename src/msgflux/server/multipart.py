"""``multipart/form-data`` bodies (``/v1/audio/transcriptions``), read in one linear pass with
a cap on the number of parts.

The standard library's ``email`` parser took seconds of the event loop for a 2.7 MB body of
40,000 tiny fields (every other request waited); a transcription needs a handful of parts.
Here each part costs a few ``bytes.find`` calls, a part head is at most :data:`MAX_PART_HEAD`
bytes, and the part after :data:`MAX_PARTS` stops the parse with a 413: the work a client can
cause is proportional to what a real request sends.
"""

from __future__ import annotations

import dataclasses
import re

from msgflux.server.errors import HTTPError

__all__ = ["MAX_PARTS", "MAX_PART_HEAD", "Part", "parse_form"]

MAX_PARTS = 64
MAX_PART_HEAD = 8192

_BOUNDARY = re.compile(rb'boundary=(?:"([^"]{1,70})"|([^\s;,"]{1,70}))', re.IGNORECASE)
_PARAM = re.compile(rb';\s*(name|filename)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s;"]+))', re.IGNORECASE)


@dataclasses.dataclass(frozen=True)
class Part:
    name: str
    filename: str | None
    data: bytes


def _invalid(what: str) -> HTTPError:
    return HTTPError(400, f"the multipart body is malformed: {what}", code="invalid_multipart")


def parse_form(content_type: bytes, body: bytes, max_parts: int = MAX_PARTS) -> list[Part]:
    """The parts of a form ``body`` whose ``Content-Type`` is ``content_type``. Raises
    :class:`HTTPError` (400) for a malformed body and (413) past ``max_parts`` parts."""
    found = _BOUNDARY.search(content_type)
    if found is None:
        raise _invalid("no boundary in the Content-Type")
    delimiter = b"--" + (found.group(1) or found.group(2))
    pos = body.find(delimiter)
    if pos < 0:
        raise _invalid("the boundary never occurs")
    parts: list[Part] = []
    separator = b"\r\n" + delimiter
    while True:
        after = pos + len(delimiter)
        tail = body[after : after + 2]
        if tail == b"--":
            return parts
        if tail != b"\r\n":
            raise _invalid("a boundary line is not followed by CRLF")
        if len(parts) == max_parts:
            raise HTTPError(
                413,
                f"the multipart body has over {max_parts} parts (a transcription needs a few)",
                code="too_many_parts",
            )
        start = after + 2
        head_end = body.find(b"\r\n\r\n", start, start + MAX_PART_HEAD + 4)
        if head_end < 0:
            raise _invalid(f"a part's headers are missing or over {MAX_PART_HEAD} bytes")
        end = body.find(separator, head_end + 4)
        if end < 0:
            raise _invalid("the last part is not closed by the boundary")
        parts.append(_part(body[start:head_end], body[head_end + 4 : end]))
        pos = end + 2


def _part(head: bytes, data: bytes) -> Part:
    disposition = None
    for line in head.split(b"\r\n"):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-disposition":
            disposition = value
    if disposition is None:
        raise _invalid("a part has no Content-Disposition")
    params: dict[bytes, str] = {}
    for key, quoted, bare in _PARAM.findall(disposition):
        raw = quoted.replace(b'\\"', b'"') if quoted else bare
        params[key.lower()] = raw.decode("utf-8", "replace")
    field = params.get(b"name")
    if not field:
        raise _invalid("a part has no name")
    return Part(field, params.get(b"filename"), data)
