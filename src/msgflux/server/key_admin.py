"""The operations on virtual keys, each written to the audit record: create, update, rotate,
revoke (and reads). The HTTP API (:mod:`.admin_keys`) and ``msgflux keys ... --config`` both
drive this class, so a change made either way is the same change with the same audit entry.

Every change is a compare-and-set on the store (:mod:`.keystore`), retried a few times when
another admin changed the key meanwhile, and then applied to this process's copy at once
(:meth:`.directory.Directory.refresh`). An audit entry says who (the admin key's name), what
(the action and the changed fields, fingerprints for secrets) and when; never a secret.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from typing import Any

from msgflux._time import Clock
from msgflux.server import vkeys
from msgflux.server.directory import Directory
from msgflux.server.keystore import KeyStore
from msgflux.server.vkeys import Conflict, KeyChangeError, NotFound, VirtualKey

__all__ = ["ATTEMPTS", "KeyAdmin", "describe"]

ATTEMPTS = 5
"""Compare-and-set tries before a change gives up (409) under concurrent changes."""


def describe(changes: Mapping[str, Any]) -> dict[str, Any]:
    """The changed fields as the audit (and the API) show them: plain JSON, never a secret."""
    out: dict[str, Any] = {}
    for key, value in changes.items():
        if key == "models":
            out[key] = "*" if value is None else sorted(value)
        elif key == "budget":
            out[key] = None if value is None else {"usd": value.usd, "period": value.period}
        elif key == "metadata":
            out[key] = dict(value)
        else:
            out[key] = value
    return out


class KeyAdmin:
    """Virtual key operations on ``directory``'s store (see the module docstring).

    ``config_keys`` are the names the config file defines: they cannot be taken, and are
    read-only here.
    """

    def __init__(self, directory: Directory, clock: Clock | None = None) -> None:
        self.directory = directory
        self.clock = clock or directory.clock

    @property
    def store(self) -> KeyStore:
        return self.directory.store

    async def get(self, name: str) -> VirtualKey:
        record = await self.store.get(name)
        if record is None:
            raise NotFound(f"no virtual key named {name!r}")
        return record

    async def records(self) -> list[VirtualKey]:
        _, records = await self.store.load()
        return sorted(records, key=lambda r: r.name)

    async def create(
        self,
        actor: str,
        body: Mapping[str, Any],
        gateways: Collection[str],
        config_keys: Collection[str],
    ) -> tuple[VirtualKey, str]:
        """A new key: the record and its secret, which is never shown again."""
        now = self.clock.time()
        changes = vkeys.parse_changes(body, gateways, now, creating=True)
        name = changes["name"]
        if name in config_keys:
            raise Conflict(f"{name!r} is a key of the config file", "name")
        secret = vkeys.new_secret()  # masked by its form (msgflux._secrets)
        digest = vkeys.digest_of(secret)
        record = vkeys.create(changes, digest, now)
        entry = self._entry(actor, "create", name, now, describe(changes))
        entry["fingerprint"] = vkeys.fingerprint(digest)
        if not await self.store.write(record, None, entry):
            raise Conflict(f"a virtual key named {name!r} exists", "name")
        await self.directory.refresh()
        return record, secret

    async def update(
        self,
        actor: str,
        name: str,
        body: Mapping[str, Any],
        gateways: Collection[str],
        config_keys: Collection[str],
    ) -> VirtualKey:
        self._writable(name, config_keys)
        changes = vkeys.parse_changes(body, gateways, self.clock.time(), creating=False)
        return await self._change(
            actor, name, "update", describe(changes), lambda r, now: vkeys.update(r, changes, now)
        )

    async def rotate(
        self, actor: str, name: str, body: Mapping[str, Any], config_keys: Collection[str]
    ) -> tuple[VirtualKey, str, float]:
        """A new secret for ``name`` (returned once); the old one works ``grace_seconds``
        more. Returns the record, the secret and the grace in seconds."""
        self._writable(name, config_keys)
        extra = set(body) - {"grace_seconds"}
        if extra:
            raise KeyChangeError("unknown field; accepted: grace_seconds", sorted(extra)[0])
        grace = vkeys.parse_grace(body.get("grace_seconds"))
        secret = vkeys.new_secret()  # masked by its form (msgflux._secrets)
        digest = vkeys.digest_of(secret)
        record = await self._change(
            actor,
            name,
            "rotate",
            {"grace_seconds": grace},
            lambda r, now: vkeys.rotate(r, digest, now, grace),
        )
        return record, secret, grace

    async def revoke(self, actor: str, name: str, config_keys: Collection[str]) -> VirtualKey:
        self._writable(name, config_keys)
        return await self._change(actor, name, "revoke", {}, vkeys.revoke)

    # -- plumbing --------------------------------------------------------------------------------
    @staticmethod
    def _writable(name: str, config_keys: Collection[str]) -> None:
        if name in config_keys:
            raise Conflict(
                f"{name!r} is defined in the config file (read-only here); edit the file and "
                "reload to change it"
            )

    def _entry(
        self, actor: str, action: str, name: str, now: float, changes: dict[str, Any]
    ) -> dict[str, Any]:
        return {
            "at": now,
            "at_utc": vkeys.iso(now),
            "actor": actor,
            "action": action,
            "key": name,
            "changes": changes,
        }

    async def _change(
        self,
        actor: str,
        name: str,
        action: str,
        changes: dict[str, Any],
        apply: Callable[[VirtualKey, float], VirtualKey],
    ) -> VirtualKey:
        for _ in range(ATTEMPTS):
            current = await self.get(name)
            now = self.clock.time()
            record = apply(current, now)
            entry = self._entry(actor, action, name, now, dict(changes))
            if record.digest != current.digest:
                entry["fingerprint"] = vkeys.fingerprint(record.digest)
                entry["previous_fingerprint"] = vkeys.fingerprint(current.digest)
            if await self.store.write(record, current, entry):
                await self.directory.refresh()
                return record
        raise Conflict(f"the key {name!r} kept changing meanwhile; try again")

    async def audit(self, limit: int) -> list[dict[str, Any]]:
        return await self.store.audit(limit)
