"""Redis URLs, read so that no part of a password can reach a message.

Standard URL parsers split ``redis://:pa/ss#word@host:6379/0`` at the ``/`` or ``#`` inside
the password and report part of it as the host or the fragment. Here the credentials are
everything between ``://`` and the *last* ``@`` before the query, whatever they contain; they
are registered with :mod:`msgflux._secrets` (so no error or log can show them), and the URL
handed to the Redis clients carries them percent-encoded, which both clients decode.
"""

from __future__ import annotations

import dataclasses
from urllib.parse import quote, unquote

from msgflux import _secrets

__all__ = ["SCHEMES", "RedisURL", "parse_url"]

SCHEMES = ("redis://", "rediss://", "unix://")


@dataclasses.dataclass(frozen=True)
class RedisURL:
    """A parsed Redis URL: ``redacted`` is safe to show; ``normalized`` is for the clients."""

    scheme: str
    username: str | None
    password: str | None
    location: str
    """``host[:port][/db]``, or the socket path for ``unix://``."""
    query: str

    @property
    def redacted(self) -> str:
        return f"{self.scheme}://{self.location}"

    @property
    def normalized(self) -> str:
        creds = ""
        if self.username is not None or self.password is not None:
            creds = quote(self.username or "", safe="")
            if self.password is not None:
                creds += ":" + quote(self.password, safe="")
            creds += "@"
        query = f"?{self.query}" if self.query else ""
        return f"{self.scheme}://{creds}{self.location}{query}"

    def __repr__(self) -> str:
        return f"RedisURL({self.redacted!r})"


def parse_url(url: str) -> RedisURL:
    """Split ``url`` (see the module docstring); raises ValueError without showing secrets."""
    scheme, sep, rest = url.partition("://")
    if not sep or f"{scheme}://" not in SCHEMES:
        raise ValueError(
            f"the Redis URL must start with one of {', '.join(SCHEMES)}, got {scheme or '?'}://..."
        )
    at = rest.rfind("@")
    username = password = None
    location, _, query = rest[at + 1 :].partition("?")
    if at >= 0:
        creds = rest[:at]
        user, colon, secret = creds.partition(":")
        username = unquote(user) or None
        if colon:
            password = unquote(secret)
            _secrets.register(password)
            _secrets.register(secret)
    if not location or (scheme != "unix" and location.startswith("/")):
        raise ValueError(f"the Redis URL {scheme}://... has no host (password hidden)")
    return RedisURL(scheme, username, password, location, query)
