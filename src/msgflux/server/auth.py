"""Client keys: who is calling, and which gateways they may use.

A key arrives as ``Authorization: Bearer <key>`` (what the OpenAI SDKs send), ``api-key:
<key>`` (Azure's header) or ``x-api-key: <key>`` (Anthropic's, what its SDKs and Claude Code
send). The server keeps only the SHA-256 of each key and compares the
digest of what arrived against every configured digest with :func:`hmac.compare_digest`,
always all of them, so neither the key's content nor which key matched shows in the timing.
Keys are registered with :mod:`msgflux._secrets` when the config is loaded, so an echo of one
is masked in every error and log line; the server never logs, echoes or measures a key.

With no keys configured every request is the :data:`ANONYMOUS` principal (allowed everything):
the server then binds only to loopback unless ``--no-auth`` is given (see ``lifecycle``).

Keys issued at run time (virtual keys, :mod:`.vkeys`) are looked up after the config's, by
digest, in the process's :class:`~.directory.Directory`; a config key's name always wins over
a virtual key of the same name.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
from collections.abc import Sequence
from typing import TYPE_CHECKING

from msgflux.server.config import KeySpec
from msgflux.server.key_limits import NO_LIMITS, KeyLimits

if TYPE_CHECKING:
    from msgflux.server.directory import Directory

__all__ = ["ANONYMOUS", "KeyRing", "Principal", "credential"]


@dataclasses.dataclass(frozen=True)
class Principal:
    """The caller: a key's name and the gateways it may use (None: all)."""

    name: str
    models: frozenset[str] | None
    limits: KeyLimits = NO_LIMITS
    admin: bool = False
    """May call ``/admin/*`` and ``/metrics``."""

    def allows(self, gateway: str) -> bool:
        return self.models is None or gateway in self.models


ANONYMOUS = Principal("anonymous", None)

_BEARER = b"bearer "


def credential(headers: Sequence[tuple[bytes, bytes]]) -> bytes | None:
    """The key in ``Authorization: Bearer`` (first), ``api-key`` or ``x-api-key``, else None."""
    api_key = None
    for name, value in headers:
        if name == b"authorization":
            if value[:7].lower() == _BEARER:
                return value[7:].strip()
            return None
        if name == b"api-key" or name == b"x-api-key":
            api_key = value.strip()
    return api_key


class KeyRing:
    """The configured keys, then the virtual keys of ``directory`` (see the module
    docstring)."""

    __slots__ = ("_entries", "_names", "directory", "enabled")

    def __init__(self, keys: Sequence[KeySpec], directory: Directory | None = None) -> None:
        self._entries = tuple(
            (k.digest, Principal(k.name, k.models, k.limits, k.admin)) for k in keys
        )
        self._names = frozenset(k.name for k in keys)
        self.enabled = bool(self._entries)
        self.directory = directory
        """The virtual keys (None: none are served)."""

    def _find(self, token: bytes) -> Principal | None:
        digest = hashlib.sha256(token).digest()
        found: Principal | None = None
        for expected, principal in self._entries:
            if hmac.compare_digest(digest, expected):
                found = principal
        directory = self.directory
        if found is None and directory is not None:
            found = directory.lookup(digest)
            if found is not None and found.name in self._names:
                return None
        return found

    def unknown(self, headers: Sequence[tuple[bytes, bytes]]) -> bool:
        """A key was sent that no config key and no virtual key of this process's copy has
        (one created a moment ago elsewhere may be it: refresh the copy before refusing)."""
        directory = self.directory
        if not self.enabled or directory is None or not directory.store.shared:
            return False
        token = credential(headers)
        if not token:
            return False
        digest = hashlib.sha256(token).digest()
        if directory.knows(digest):
            return False
        return not any(hmac.compare_digest(digest, expected) for expected, _ in self._entries)

    async def refresh(self) -> None:
        """Bring the virtual keys up to date with their store (see :meth:`unknown`)."""
        if self.directory is not None:
            await self.directory.refresh()

    def authenticate(self, headers: Sequence[tuple[bytes, bytes]]) -> Principal | None:
        """The principal for these request headers; None when the key is missing or wrong."""
        if not self.enabled:
            return ANONYMOUS
        token = credential(headers)
        if not token:
            return None
        return self._find(token)
