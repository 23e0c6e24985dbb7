"""Virtual keys without a server: the pure rules (what a change may hold, which digest is
accepted when) and the process's directory over a memory store, on a :class:`ManualClock`.

The served tests (``test_admin_keys*.py``) cannot move a server's clock; expiry and grace
periods are tested here to the second, and there with short real times.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from msgflux._time import ManualClock
from msgflux.server import vkeys
from msgflux.server.directory import Directory
from msgflux.server.key_admin import KeyAdmin
from msgflux.server.key_limits import Budget
from msgflux.server.keystore import MemoryKeyStore, encode
from msgflux.server.vkeys import Conflict, KeyChangeError, NotFound, VirtualKey

GATEWAYS = ("chat", "embed")
NOW = 1_767_225_600.0  # 2026-01-01T00:00:00Z


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"models": "*"}, "name"),
        ({"name": "bad name", "models": "*"}, "name"),
        ({"name": "a"}, "models"),
        ({"name": "a", "models": []}, "models"),
        ({"name": "a", "models": ["chat", "nope"]}, "models[1]"),
        ({"name": "a", "models": "*", "rpm": 0}, "rpm"),
        ({"name": "a", "models": "*", "tpm": "lots"}, "tpm"),
        ({"name": "a", "models": "*", "max_concurrency": True}, "max_concurrency"),
        ({"name": "a", "models": "*", "budget": {"usd": 5}}, "budget.period"),
        ({"name": "a", "models": "*", "budget": {"usd": -1, "period": "day"}}, "budget.usd"),
        ({"name": "a", "models": "*", "budget": {"usd": 1, "period": "year"}}, "budget.period"),
        ({"name": "a", "models": "*", "expires_at": "tomorrow"}, "expires_at"),
        ({"name": "a", "models": "*", "expires_at": NOW - 1}, "expires_at"),
        ({"name": "a", "models": "*", "expires_at": 1e300}, "expires_at"),  # no date names it
        ({"name": "a", "models": "*", "expires_at": -1e300}, "expires_at"),
        ({"name": "a", "models": "*", "expires_at": "9999-12-31T23:59:59-05:00"}, "expires_at"),
        ({"name": "a", "models": "*", "metadata": ["team"]}, "metadata"),
        ({"name": "a", "models": "*", "metadata": {"team": 7}}, "metadata.team"),
        ({"name": "a", "models": "*", "rpn": 5}, "rpn"),
    ],
)
def test_a_bad_create_names_its_field(body: dict[str, Any], field: str) -> None:
    with pytest.raises(KeyChangeError) as info:
        vkeys.parse_changes(body, GATEWAYS, NOW, creating=True)
    assert info.value.field == field
    assert info.value.status == 400


def test_an_update_may_clear_limits_and_takes_no_name() -> None:
    changes = vkeys.parse_changes(
        {"rpm": None, "budget": None, "expires_at": "2026-02-01T00:00:00Z"},
        GATEWAYS,
        NOW,
        creating=False,
    )
    assert changes == {"rpm": None, "budget": None, "expires_at": NOW + 31 * 86400}
    with pytest.raises(KeyChangeError) as info:
        vkeys.parse_changes({"name": "x"}, GATEWAYS, NOW, creating=False)
    assert info.value.field == "name"
    with pytest.raises(KeyChangeError, match="nothing to change"):
        vkeys.parse_changes({}, GATEWAYS, NOW, creating=False)


def _record(**changes: Any) -> tuple[VirtualKey, str]:
    body = {"name": "team-a", "models": ["chat"], **changes}
    secret = vkeys.new_secret()
    parsed = vkeys.parse_changes(body, GATEWAYS, NOW, creating=True)
    return vkeys.create(parsed, vkeys.digest_of(secret), NOW), secret


def test_the_stored_form_round_trips_and_holds_no_secret() -> None:
    record, secret = _record(
        rpm=5, budget={"usd": 2.5, "period": "week"}, metadata={"team": "a"}, expires_at=NOW + 60
    )
    assert record.limits.budget == Budget(2.5, "week")
    again = VirtualKey.from_json(record.to_json())
    assert again == record
    assert encode(again) == encode(record)
    for shown in (encode(record).decode(), str(record.public(NOW))):
        assert secret not in shown and secret[4:20] not in shown
    assert record.public(NOW)["fingerprint"] == record.digest[:4].hex()


def test_expiry_grace_and_revocation_to_the_second() -> None:
    record, first = _record(expires_at=NOW + 100)
    d1 = vkeys.digest_of(first)
    assert record.accepts(d1, NOW) and record.accepts(d1, NOW + 99.9)
    assert not record.accepts(d1, NOW + 100) and record.status(NOW + 100) == "expired"

    second = vkeys.new_secret()
    d2 = vkeys.digest_of(second)
    rotated = vkeys.rotate(record, d2, NOW + 10, grace=30)
    assert rotated.accepts(d2, NOW + 10) and rotated.accepts(d1, NOW + 39.9)
    assert not rotated.accepts(d1, NOW + 40)
    assert not rotated.accepts(vkeys.digest_of("mfx-something-else"), NOW + 10)

    revoked = vkeys.revoke(rotated, NOW + 20)
    assert revoked.status(NOW + 20) == "revoked"
    assert not revoked.accepts(d2, NOW + 20) and not revoked.accepts(d1, NOW + 20)
    with pytest.raises(Conflict):
        vkeys.revoke(revoked, NOW + 21)
    with pytest.raises(Conflict):
        vkeys.rotate(revoked, d1, NOW + 21, 0)


def test_a_rotation_without_grace_drops_the_old_secret_at_once() -> None:
    record, first = _record()
    rotated = vkeys.rotate(record, vkeys.digest_of(vkeys.new_secret()), NOW, grace=0)
    assert not rotated.accepts(vkeys.digest_of(first), NOW)
    assert rotated.previous == ()


# -- the directory and the admin operations on a manual clock ----------------------------------
@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def admin(clock: ManualClock) -> KeyAdmin:
    return KeyAdmin(Directory(MemoryKeyStore(), clock))


async def test_directory_follows_create_rotate_expire_and_revoke(
    admin: KeyAdmin, clock: ManualClock
) -> None:
    directory = admin.directory
    _, secret = await admin.create(
        "ops", {"name": "a", "models": ["chat"], "expires_at": clock.time() + 3600}, GATEWAYS, ()
    )
    principal = directory.lookup(vkeys.digest_of(secret))
    assert principal is not None and principal.name == "a" and not principal.admin
    assert principal.allows("chat") and not principal.allows("embed")

    _, new = (await admin.rotate("ops", "a", {"grace_seconds": 60}, ()))[:2]
    assert directory.lookup(vkeys.digest_of(new)) is not None
    clock.advance(59)
    assert directory.lookup(vkeys.digest_of(secret)) is not None  # within its grace
    clock.advance(1)
    assert directory.lookup(vkeys.digest_of(secret)) is None
    assert directory.lookup(vkeys.digest_of(new)) is not None

    clock.advance(3600)  # past expires_at
    assert directory.lookup(vkeys.digest_of(new)) is None
    updated = await admin.update(
        "ops", "a", {"expires_at": clock.time() + 10, "rpm": 7}, GATEWAYS, ()
    )
    assert updated.limits.rpm == 7
    principal = directory.lookup(vkeys.digest_of(new))
    assert principal is not None and principal.limits.rpm == 7

    await admin.revoke("ops", "a", ())
    assert directory.lookup(vkeys.digest_of(new)) is None
    assert directory.record("a") is not None and directory.record("a").status(clock.time()) == (
        "revoked"
    )


async def test_the_audit_says_who_what_and_when_and_never_a_secret(
    admin: KeyAdmin, clock: ManualClock
) -> None:
    _, first = await admin.create("alice", {"name": "a", "models": "*"}, GATEWAYS, ())
    clock.advance(5)
    _, second, _ = await admin.rotate("bob", "a", {}, ())
    clock.advance(5)
    await admin.update("alice", "a", {"metadata": {"team": "x"}}, GATEWAYS, ())
    await admin.revoke("carol", "a", ())
    entries = await admin.audit(10)
    assert [(e["actor"], e["action"]) for e in entries] == [
        ("carol", "revoke"),
        ("alice", "update"),
        ("bob", "rotate"),
        ("alice", "create"),
    ]
    assert entries[2]["changes"] == {"grace_seconds": vkeys.DEFAULT_GRACE}
    assert entries[2]["previous_fingerprint"] == entries[3]["fingerprint"]
    assert entries[3]["at"] + 5 == entries[2]["at"]
    text = str(entries)
    for secret in (first, second):
        assert secret not in text and secret[4:16] not in text


async def test_names_are_unique_and_config_keys_read_only(admin: KeyAdmin) -> None:
    await admin.create("ops", {"name": "a", "models": "*"}, GATEWAYS, ("cfg",))
    with pytest.raises(Conflict) as taken:
        await admin.create("ops", {"name": "a", "models": "*"}, GATEWAYS, ("cfg",))
    assert taken.value.field == "name"
    with pytest.raises(Conflict):
        await admin.create("ops", {"name": "cfg", "models": "*"}, GATEWAYS, ("cfg",))
    with pytest.raises(Conflict, match="config file"):
        await admin.revoke("ops", "cfg", ("cfg",))
    with pytest.raises(NotFound):
        await admin.rotate("ops", "missing", {}, ())


class _SlowReads(MemoryKeyStore):
    """Yields after each read, so two changes read the same record before either writes."""

    writes = 0

    async def get(self, name: str) -> VirtualKey | None:
        record = await super().get(name)
        await asyncio.sleep(0)
        return record

    async def write(self, record: VirtualKey, expected: Any, entry: Any) -> int:
        self.writes += 1
        return await super().write(record, expected, entry)


async def test_a_concurrent_change_is_never_lost(clock: ManualClock) -> None:
    store = _SlowReads()
    admin = KeyAdmin(Directory(store, clock))
    await admin.create("ops", {"name": "a", "models": "*"}, GATEWAYS, ())
    await asyncio.gather(
        admin.update("x", "a", {"rpm": 5}, GATEWAYS, ()),
        admin.update("y", "a", {"metadata": {"team": "t"}}, GATEWAYS, ()),
    )
    record = await admin.get("a")
    assert record.limits.rpm == 5 and dict(record.metadata) == {"team": "t"}
    assert store.writes == 1 + 3  # the create, both updates, and the one that lost retried


async def test_a_copy_refresh_started_after_a_miss_sees_the_change(clock: ManualClock) -> None:
    """Two directories on one store (two processes): the second knows the first's key once it
    refreshed, and a refresh asked for while one is under way runs again after it."""
    store = MemoryKeyStore()
    mine, other = Directory(store, clock), Directory(store, clock)
    await other.refresh()
    _, secret = await KeyAdmin(mine).create("ops", {"name": "a", "models": "*"}, GATEWAYS, ())
    digest = vkeys.digest_of(secret)
    assert other.lookup(digest) is None and not other.knows(digest)
    await asyncio.gather(other.refresh(), other.refresh())
    assert other.lookup(digest) is not None


async def test_a_reload_parses_only_the_records_that_changed(clock: ManualClock) -> None:
    """Every change reloads every record in every process: the unchanged ones are reused (the
    same objects, the same principals), so a change costs about one record, not all of them."""
    store = MemoryKeyStore()
    admin = KeyAdmin(Directory(store, clock))
    secrets = {}
    for name in ("a", "b", "c"):
        secrets[name] = (await admin.create("ops", {"name": name, "models": "*"}, GATEWAYS, ()))[1]
    _, before = await store.load()
    principal_b = admin.directory.lookup(vkeys.digest_of(secrets["b"]))
    await admin.update("ops", "a", {"rpm": 3}, GATEWAYS, ())
    _, after = await store.load()
    old, new = {r.name: r for r in before}, {r.name: r for r in after}
    assert new["b"] is old["b"] and new["c"] is old["c"] and new["a"] is not old["a"]
    assert admin.directory.lookup(vkeys.digest_of(secrets["b"])) is principal_b
    changed = admin.directory.lookup(vkeys.digest_of(secrets["a"]))
    assert changed is not None and changed.limits.rpm == 3


async def test_a_new_store_replaces_the_copy(clock: ManualClock) -> None:
    """``server.state`` changed by a reload: the keys of the old store stop working, the new
    store's work once read."""
    old, new = MemoryKeyStore(), MemoryKeyStore()
    directory = Directory(old, clock)
    _, before = await KeyAdmin(directory).create("ops", {"name": "a", "models": "*"}, GATEWAYS, ())
    _, after = await KeyAdmin(Directory(new, clock)).create(
        "ops", {"name": "b", "models": "*"}, GATEWAYS, ()
    )
    directory.use(new)
    assert directory.lookup(vkeys.digest_of(before)) is None
    await directory.refresh()
    assert directory.lookup(vkeys.digest_of(after)) is not None
    assert directory.lookup(vkeys.digest_of(before)) is None
    await directory.aclose()
