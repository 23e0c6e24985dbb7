"""Response bodies read within a byte budget, decompressed by us, never by the HTTP library.

The HTTP libraries would inflate a gzip body in one go: a 4 MB gzip bomb becomes 4 GB before
anyone can count it. Here both clients hand over the raw bytes, :class:`Inflater` decodes them
in slices of at most :data:`SLICE` bytes (zlib's ``max_length``), and the decoded total is
checked against the budget after every slice, so memory stays bounded whatever arrives.

We ask for ``gzip, deflate`` only; any other ``Content-Encoding`` is a validation error.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator

__all__ = [
    "ACCEPT_ENCODING",
    "DEFAULT_MAX_RESPONSE_BYTES",
    "SLICE",
    "BodyTooLarge",
    "Inflater",
    "UnsupportedEncoding",
]

DEFAULT_MAX_RESPONSE_BYTES = 64 << 20
"""64 MiB: no real answer comes near it (an embedding batch of 2,048 vectors is ~25 MB)."""

SLICE = 1 << 16
ACCEPT_ENCODING = "gzip, deflate"


class BodyTooLarge(Exception):
    def __init__(self, limit: int) -> None:
        super().__init__(f"the answer is over {limit} bytes (decompressed)")
        self.limit = limit


class UnsupportedEncoding(Exception):
    def __init__(self, encoding: str) -> None:
        super().__init__(
            f"unsupported Content-Encoding {encoding!r} (we asked for gzip or deflate)"
        )
        self.encoding = encoding


class Inflater:
    """Decodes one body's ``Content-Encoding`` incrementally and counts the decoded bytes."""

    __slots__ = ("_deflate_raw", "_z", "limit", "total")

    def __init__(self, encoding: str | None, limit: int) -> None:
        self.limit = limit
        self.total = 0
        self._deflate_raw = False
        enc = (encoding or "").strip().lower()
        if enc in ("", "identity"):
            self._z: zlib._Decompress | None = None
        elif enc in ("gzip", "x-gzip"):
            self._z = zlib.decompressobj(16 + zlib.MAX_WBITS)
        elif enc == "deflate":
            self._z = zlib.decompressobj()
            self._deflate_raw = True  # may still turn out to be raw deflate
        else:
            raise UnsupportedEncoding(enc)

    def feed(self, raw: bytes) -> Iterator[bytes]:
        """The decoded slices of ``raw`` (raises :class:`BodyTooLarge`, ``zlib.error``)."""
        z = self._z
        if z is None:
            self._count(len(raw))
            if raw:
                yield raw
            return
        data = raw
        while data:
            try:
                out = z.decompress(data, SLICE)
            except zlib.error:
                if not self._deflate_raw or self.total:
                    raise
                # "deflate" without the zlib wrapper: some servers send that.
                self._z = z = zlib.decompressobj(-zlib.MAX_WBITS)
                self._deflate_raw = False
                out = z.decompress(data, SLICE)
            self._deflate_raw = False
            data = z.unconsumed_tail
            if out:
                self._count(len(out))
                yield out

    def flush(self) -> bytes:
        if self._z is None:
            return b""
        out = self._z.flush(SLICE)
        self._count(len(out))
        return out

    def _count(self, n: int) -> None:
        self.total += n
        if self.total > self.limit:
            raise BodyTooLarge(self.limit)
