"""Virtual keys: client keys issued, changed, rotated and revoked at run time, no YAML edit.

A virtual key is a record: its name, the SHA-256 of its secret (the secret is shown once, when
the key is created or rotated, and never stored), the gateways it may use, its limits (a
config key's ``rpm``, ``tpm``, ``max_concurrency`` and ``budget``, :mod:`.key_limits`), an
optional expiry, free-form metadata (team, owner...) and, after a rotation, the digests of its
previous secrets with the time each stops working (the grace period). Revoking keeps the
record, so listings and the audit still show it, and refuses the key from then on.

This module is the pure part: the record, what a change may hold (each mistake a
:class:`KeyChangeError` naming the field, as the config file's do), and whether a presented
digest is accepted at a given time, which the caller passes. Where records live:
:mod:`.keystore`; how a process keeps them at hand: :mod:`.directory`; the operations and their
audit: :mod:`.key_admin`; the HTTP API: :mod:`.admin_keys`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import math
import re
import secrets
from collections.abc import Collection, Mapping
from datetime import datetime, timezone
from types import MappingProxyType
from typing import Any

from msgflux.server.config_checks import ConfigError, only_keys
from msgflux.server.key_limits import NO_LIMITS, Budget, KeyLimits, parse_key_limits

__all__ = [
    "DEFAULT_GRACE",
    "EDITABLE",
    "MAX_GRACE",
    "SECRET_PREFIX",
    "Conflict",
    "KeyChangeError",
    "NotFound",
    "VirtualKey",
    "create",
    "digest_of",
    "fingerprint",
    "iso",
    "new_secret",
    "parse_changes",
    "parse_grace",
    "parse_name",
    "revoke",
    "rotate",
    "update",
]

SECRET_PREFIX = "mfx-"
"""Every issued secret starts with it (easy to recognise in a leaked config or a scanner)."""
DEFAULT_GRACE = 3600.0
"""Seconds a rotated-out secret keeps working unless the rotation says otherwise."""
MAX_GRACE = 30 * 86400.0
EDITABLE = ("models", "rpm", "tpm", "max_concurrency", "budget", "expires_at", "metadata")
"""What an update may change (the name and the secret are changed only by rotation)."""
MAX_METADATA = 32
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:@-]{0,63}$")
_META_KEY = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")


class KeyChangeError(ValueError):
    """A change that cannot be made; ``field`` names the part of the request at fault."""

    status = 400
    code = "invalid_value"

    def __init__(self, message: str, field: str | None = None) -> None:
        self.message = message
        self.field = field
        super().__init__(f"{field}: {message}" if field else message)


class NotFound(KeyChangeError):
    status = 404
    code = "key_not_found"


class Conflict(KeyChangeError):
    """The name is taken, the key is read-only (config file) or revoked, or it changed
    meanwhile."""

    status = 409
    code = "conflict"


@dataclasses.dataclass(frozen=True)
class VirtualKey:
    """One virtual key (see the module docstring). Times are epoch seconds."""

    name: str
    digest: bytes
    models: frozenset[str] | None
    """Gateway names it may use; None: every gateway."""
    limits: KeyLimits = NO_LIMITS
    expires_at: float | None = None
    metadata: Mapping[str, str] = dataclasses.field(default_factory=lambda: MappingProxyType({}))
    created_at: float = 0.0
    updated_at: float = 0.0
    revoked_at: float | None = None
    previous: tuple[tuple[bytes, float], ...] = ()
    """Rotated-out digests and the time each stops being accepted."""

    def status(self, now: float) -> str:
        """``active``, ``expired`` or ``revoked``."""
        if self.revoked_at is not None:
            return "revoked"
        if self.expires_at is not None and now >= self.expires_at:
            return "expired"
        return "active"

    def accepts(self, digest: bytes, now: float) -> bool:
        """Is a secret with this SHA-256 ``digest`` good at ``now``: the current one, or a
        previous one within its grace period, of a key neither revoked nor expired."""
        if self.status(now) != "active":
            return False
        if hmac.compare_digest(digest, self.digest):
            return True
        return any(hmac.compare_digest(digest, d) and now < until for d, until in self.previous)

    def digests(self) -> list[bytes]:
        """Every digest this record may accept (the current one first)."""
        return [self.digest, *(d for d, _ in self.previous)]

    # -- the stored form (no secret: digests only) -----------------------------------------------
    def to_json(self) -> dict[str, Any]:
        limits = self.limits
        return {
            "name": self.name,
            "digest": self.digest.hex(),
            "models": None if self.models is None else sorted(self.models),
            "rpm": limits.rpm,
            "tpm": limits.tpm,
            "max_concurrency": limits.max_concurrency,
            "budget": _budget_json(limits.budget),
            "expires_at": self.expires_at,
            "metadata": dict(self.metadata),
            "created_at": self.created_at,
            "updated_at": self.updated_at,
            "revoked_at": self.revoked_at,
            "previous": [[d.hex(), until] for d, until in self.previous],
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> VirtualKey:
        budget = data.get("budget")
        limits = KeyLimits(
            data.get("rpm"),
            data.get("tpm"),
            data.get("max_concurrency"),
            Budget(float(budget["usd"]), str(budget["period"])) if budget else None,
        )
        models = data.get("models")
        return cls(
            name=str(data["name"]),
            digest=bytes.fromhex(data["digest"]),
            models=None if models is None else frozenset(models),
            limits=limits if limits.active else NO_LIMITS,
            expires_at=data.get("expires_at"),
            metadata=MappingProxyType(dict(data.get("metadata") or {})),
            created_at=float(data.get("created_at") or 0.0),
            updated_at=float(data.get("updated_at") or 0.0),
            revoked_at=data.get("revoked_at"),
            previous=tuple((bytes.fromhex(d), float(u)) for d, u in data.get("previous") or ()),
        )

    # -- what the API shows -----------------------------------------------------------------------
    def public(self, now: float) -> dict[str, Any]:
        """The record as the admin API shows it: no digest, only a short fingerprint of it."""
        limits = self.limits
        return {
            "name": self.name,
            "source": "api",
            "read_only": False,
            "status": self.status(now),
            "fingerprint": fingerprint(self.digest),
            "models": "*" if self.models is None else sorted(self.models),
            "rpm": limits.rpm,
            "tpm": limits.tpm,
            "max_concurrency": limits.max_concurrency,
            "budget": _budget_json(limits.budget),
            "expires_at": self.expires_at,
            "expires_at_utc": iso(self.expires_at),
            "metadata": dict(self.metadata),
            "created_at": self.created_at,
            "updated_at": self.updated_at,
            "revoked_at": self.revoked_at,
            "grace": [
                {"fingerprint": fingerprint(d), "until": until, "until_utc": iso(until)}
                for d, until in self.previous
                if until > now
            ],
        }


def _budget_json(budget: Budget | None) -> dict[str, Any] | None:
    return None if budget is None else {"usd": budget.usd, "period": budget.period}


def new_secret() -> str:
    """A fresh secret: ``mfx-`` and 256 random bits."""
    return SECRET_PREFIX + secrets.token_urlsafe(32)


def digest_of(secret: str) -> bytes:
    return hashlib.sha256(secret.encode()).digest()


def fingerprint(digest: bytes) -> str:
    """Eight hex digits of the digest: enough to tell keys apart, nothing to guess from."""
    return digest[:4].hex()


LATEST = 253402300799.0
"""9999-12-31T23:59:59Z: the last moment an ISO time can name (``expires_at`` up to it)."""


def iso(epoch: float | None) -> str | None:
    if epoch is None:
        return None
    if not 0 <= epoch <= LATEST:  # never stored (see _expiry); shown as it is
        return repr(epoch)
    return datetime.fromtimestamp(epoch, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


# -- reading a change -----------------------------------------------------------------------------
def parse_name(value: Any, field: str = "name") -> str:
    if not isinstance(value, str) or not _NAME.match(value):
        raise KeyChangeError(
            "must be 1-64 characters among letters, digits and '_.:@-', starting with a letter "
            f"or digit, got {value!r}",
            field,
        )
    return value


def _models(value: Any, gateways: Collection[str]) -> frozenset[str] | None:
    if value == "*":
        return None
    if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
        raise KeyChangeError('must be "*" or a non-empty list of gateway names', "models")
    for i, name in enumerate(value):
        if name not in gateways:
            raise KeyChangeError(
                f"unknown gateway {name!r}; configured: {', '.join(sorted(gateways)) or 'none'}",
                f"models[{i}]",
            )
    return frozenset(value)


def _expiry(value: Any, now: float) -> float | None:
    if value is None:
        return None
    if isinstance(value, str):
        try:
            moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise KeyChangeError(
                f"must be epoch seconds or an ISO-8601 time such as 2026-01-31T00:00:00Z, "
                f"got {value!r}",
                "expires_at",
            ) from None
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=timezone.utc)
        when = moment.timestamp()
    elif isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        when = float(value)
    else:
        raise KeyChangeError(
            f"must be epoch seconds, an ISO-8601 time or null, got {value!r}", "expires_at"
        )
    if when <= now:
        raise KeyChangeError(f"{iso(when)} is not in the future", "expires_at")
    if when > LATEST:
        raise KeyChangeError("must be at most 9999-12-31T23:59:59Z", "expires_at")
    return when


def _metadata(value: Any) -> Mapping[str, str]:
    if not isinstance(value, dict):
        raise KeyChangeError("must be a mapping of short strings (team, owner...)", "metadata")
    if len(value) > MAX_METADATA:
        raise KeyChangeError(f"holds at most {MAX_METADATA} entries", "metadata")
    out = {}
    for key, item in value.items():
        if not isinstance(key, str) or not _META_KEY.match(key):
            raise KeyChangeError("keys are 1-64 of letters, digits and '_.:-'", f"metadata.{key}")
        if not isinstance(item, str) or len(item) > 256:
            raise KeyChangeError("must be a string of at most 256 characters", f"metadata.{key}")
        out[key] = item
    return MappingProxyType(out)


def parse_changes(
    body: Mapping[str, Any], gateways: Collection[str], now: float, *, creating: bool
) -> dict[str, Any]:
    """The validated fields of a create (``name`` too) or update body: each present field of
    :data:`EDITABLE` as the record holds it. ``null`` clears a limit, the expiry or metadata."""
    accepted = ("name", *EDITABLE) if creating else EDITABLE
    try:
        only_keys(body, accepted, "")
    except ConfigError as exc:
        raise KeyChangeError(exc.message, exc.path) from None
    out: dict[str, Any] = {}
    if creating:
        out["name"] = parse_name(body.get("name"))
        if "models" not in body:
            raise KeyChangeError('required: "*" or a list of gateway names', "models")
    if "models" in body:
        out["models"] = _models(body["models"], gateways)
    limit_fields = [k for k in ("rpm", "tpm", "max_concurrency", "budget") if k in body]
    if limit_fields:
        try:
            limits = parse_key_limits(body, "")
        except ConfigError as exc:
            raise KeyChangeError(exc.message, exc.path.lstrip(".")) from None
        for k in limit_fields:
            out[k] = getattr(limits, k)
    if "expires_at" in body:
        out["expires_at"] = _expiry(body["expires_at"], now)
    if "metadata" in body:
        out["metadata"] = _metadata(body["metadata"] if body["metadata"] is not None else {})
    if not creating and not out:
        raise KeyChangeError(f"nothing to change; send any of {', '.join(EDITABLE)}")
    return out


def parse_grace(value: Any) -> float:
    """Seconds a rotated-out secret keeps working (``grace_seconds``; 0: none)."""
    if value is None:
        return DEFAULT_GRACE
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise KeyChangeError(f"must be a number of seconds, got {value!r}", "grace_seconds")
    if not 0 <= value <= MAX_GRACE:
        raise KeyChangeError(f"must be between 0 and {MAX_GRACE:g}, got {value}", "grace_seconds")
    return float(value)


# -- the transitions (pure: the caller passes the time) ------------------------------------------
def _limits(record_limits: KeyLimits, changes: Mapping[str, Any]) -> KeyLimits:
    values = {k: changes.get(k, getattr(record_limits, k)) for k in ("rpm", "tpm")}
    values["max_concurrency"] = changes.get("max_concurrency", record_limits.max_concurrency)
    values["budget"] = changes.get("budget", record_limits.budget)
    limits = KeyLimits(**values)
    return limits if limits.active else NO_LIMITS


def create(changes: Mapping[str, Any], digest: bytes, now: float) -> VirtualKey:
    """A new record from :func:`parse_changes` ``(creating=True)``."""
    return VirtualKey(
        name=changes["name"],
        digest=digest,
        models=changes["models"],
        limits=_limits(NO_LIMITS, changes),
        expires_at=changes.get("expires_at"),
        metadata=changes.get("metadata", MappingProxyType({})),
        created_at=now,
        updated_at=now,
    )


def _live(record: VirtualKey, now: float) -> tuple[tuple[bytes, float], ...]:
    return tuple((d, until) for d, until in record.previous if until > now)


def update(record: VirtualKey, changes: Mapping[str, Any], now: float) -> VirtualKey:
    if record.revoked_at is not None:
        raise Conflict(f"the key {record.name!r} is revoked; create a new one")
    return dataclasses.replace(
        record,
        models=changes.get("models", record.models),
        limits=_limits(record.limits, changes),
        expires_at=changes.get("expires_at", record.expires_at),
        metadata=changes.get("metadata", record.metadata),
        updated_at=now,
        previous=_live(record, now),
    )


def rotate(record: VirtualKey, digest: bytes, now: float, grace: float) -> VirtualKey:
    """A new current secret; the old one keeps working until ``now + grace``."""
    if record.revoked_at is not None:
        raise Conflict(f"the key {record.name!r} is revoked; create a new one")
    kept = _live(record, now)
    if grace > 0:
        kept = (*kept, (record.digest, now + grace))
    return dataclasses.replace(record, digest=digest, updated_at=now, previous=kept)


def revoke(record: VirtualKey, now: float) -> VirtualKey:
    """Refused from now on, every secret of it (grace periods end too)."""
    if record.revoked_at is not None:
        raise Conflict(f"the key {record.name!r} is already revoked")
    return dataclasses.replace(record, revoked_at=now, updated_at=now, previous=())
