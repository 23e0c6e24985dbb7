"""Redis URLs, read so that no part of a password can reach a message.

Standard URL parsers split ``redis://:pa/ss#word@host:6379/0`` at the ``/`` or ``#`` inside
the password and report part of it as the host or the fragment. Here the credentials are
everything between ``://`` and the *last* ``@`` before the query, whatever they contain; they
are registered with :mod:`msgflux._secrets` (so no error or log can show them), and the URL
handed to the Redis clients carries them percent-encoded, which both clients decode.

A Redis Cluster is named by ``redis+cluster://`` (``rediss+cluster://`` over TLS) and one or
more of its nodes, ``redis+cluster://:pw@10.0.0.1:7000,10.0.0.2:7000``: any reachable node
tells where the others are (:mod:`.cluster`). Query options (``?ssl_ca_certs=/path/ca.pem``
to trust a private CA, ``ssl_cert_reqs``...) apply to every node.
"""

from __future__ import annotations

import dataclasses
import re
from urllib.parse import quote, unquote

from msgflux import _secrets

__all__ = ["SCHEMES", "RedisURL", "parse_url"]

SCHEMES = ("redis://", "rediss://", "unix://", "redis+cluster://", "rediss+cluster://")


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
    def cluster(self) -> bool:
        """A Redis Cluster (``redis+cluster://``, ``rediss+cluster://``)."""
        return self.scheme.endswith("+cluster")

    @property
    def seeds(self) -> list[tuple[str, int]]:
        """The cluster nodes the URL names, as (host, port)."""
        out = []
        for part in self.location.partition("/")[0].split(","):
            host, _, port = part.strip().rpartition(":")
            out.append((host.strip("[]"), int(port)))
        return out

    def node(self, host: str, port: int) -> str:
        """The URL of one cluster node, for the clients (credentials and options kept)."""
        scheme = self.scheme.removesuffix("+cluster")
        bracketed = f"[{host}]" if ":" in host else host
        return _join(scheme, self.username, self.password, f"{bracketed}:{port}", self.query)

    @property
    def redacted(self) -> str:
        return f"{self.scheme}://{self.location}"

    @property
    def normalized(self) -> str:
        """The URL for redis-py (of a cluster: its first node's, see :meth:`node`)."""
        if self.cluster:
            return self.node(*self.seeds[0])
        return _join(self.scheme, self.username, self.password, self.location, self.query)

    def __repr__(self) -> str:
        return f"RedisURL({self.redacted!r})"


def _join(
    scheme: str, username: str | None, password: str | None, location: str, query: str
) -> str:
    creds = ""
    if username is not None or password is not None:
        creds = quote(username or "", safe="")
        if password is not None:
            creds += ":" + quote(password, safe="")
        creds += "@"
    return f"{scheme}://{creds}{location}{f'?{query}' if query else ''}"


_SEED = re.compile(r"^(\[[0-9A-Fa-f:.]+\]|[^\s,/:\[\]]+):(\d{1,5})$")


def _check_seeds(location: str) -> None:
    nodes, _, db = location.partition("/")
    if db not in ("", "0"):
        raise ValueError(f"a Redis Cluster has only database 0, the URL names /{db}")
    for part in nodes.split(","):
        match = _SEED.match(part.strip())
        if match is None or not 0 < int(match.group(2)) < 65536:
            raise ValueError(
                f"a redis+cluster:// URL lists nodes as host:port[,host:port...], got {part!r}"
            )


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
    if scheme.endswith("+cluster"):
        _check_seeds(location)
    return RedisURL(scheme, username, password, location, query)
