"""The virtual keys' Redis store and a process's copy of it, against a real ``redis-server``:
the compare-and-set write, the append-only audit stream, the write script loaded again where
it is missing, a polling copy that sees a revocation well within a second, and a copy that
keeps serving while Redis is away. The served tests are ``test_admin_keys_shared.py``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
import redis as redis_py

from msgflux._time import ManualClock
from msgflux.server import vkeys
from msgflux.server.auth import KeyRing
from msgflux.server.config import parse_config
from msgflux.server.directory import Directory
from msgflux.server.key_admin import KeyAdmin
from msgflux.server.keystore import MemoryKeyStore, RedisKeyStore
from tests.redis_server import RedisServer, running_redis

pytestmark = pytest.mark.redis

GATEWAYS = ("chat",)


@pytest.fixture
async def store(redis_server: RedisServer) -> AsyncIterator[RedisKeyStore]:
    redis_py.Redis.from_url(redis_server.url).flushall()
    s = RedisKeyStore(redis_server.url)
    yield s
    await s.aclose()


async def test_a_stale_write_is_refused_and_a_name_is_taken_once(store: RedisKeyStore) -> None:
    admin = KeyAdmin(Directory(store))
    record, _ = await admin.create("ops", {"name": "a", "models": "*"}, GATEWAYS, ())
    again = vkeys.create({"name": "a", "models": None}, vkeys.digest_of("mfx-x"), time.time())
    assert await store.write(again, None, {"action": "create"}) == 0  # the name exists
    changed = vkeys.update(record, {"rpm": 5}, time.time())
    assert await store.write(changed, record, {"action": "update"}) > 0
    stale = vkeys.update(record, {"rpm": 9}, time.time())  # read before that change
    assert await store.write(stale, record, {"action": "update"}) == 0
    stored = await store.get("a")
    assert stored is not None and stored.limits.rpm == 5


async def test_the_audit_stream_only_grows_and_holds_no_secret(
    store: RedisKeyStore, redis_server: RedisServer
) -> None:
    admin = KeyAdmin(Directory(store))
    _, first = await admin.create("alice", {"name": "a", "models": "*"}, GATEWAYS, ())
    _, second, _ = await admin.rotate("bob", "a", {"grace_seconds": 5}, ())
    await admin.revoke("carol", "a", ())
    raw = redis_py.Redis.from_url(redis_server.url)
    assert raw.xlen(RedisKeyStore.AUDIT) == 3
    entries = await store.audit(10)
    assert [e["action"] for e in entries] == ["revoke", "rotate", "create"]
    assert entries[0]["id"] > entries[1]["id"] > entries[2]["id"]  # stream ids: in order
    everything = str(raw.xrange(RedisKeyStore.AUDIT)) + str(raw.hgetall(RedisKeyStore.RECORDS))
    for secret in (first, second):
        assert secret not in everything and secret[4:20] not in everything
    assert await store.version() == 3


async def test_the_write_script_is_loaded_again_where_it_is_missing(
    store: RedisKeyStore, redis_server: RedisServer
) -> None:
    admin = KeyAdmin(Directory(store))
    await admin.create("ops", {"name": "a", "models": "*"}, GATEWAYS, ())
    redis_py.Redis.from_url(redis_server.url).script_flush()  # as on a just-promoted replica
    await admin.create("ops", {"name": "b", "models": "*"}, GATEWAYS, ())
    assert {r.name for r in await admin.records()} == {"a", "b"}


async def test_a_polling_copy_refuses_a_revoked_key_within_a_poll(
    redis_server: RedisServer,
) -> None:
    redis_py.Redis.from_url(redis_server.url).flushall()
    mine, theirs = RedisKeyStore(redis_server.url), RedisKeyStore(redis_server.url)
    other = Directory(theirs)  # another worker's copy, polling every 0.25 s
    other.start()
    try:
        admin = KeyAdmin(Directory(mine))
        _, secret = await admin.create("ops", {"name": "a", "models": "*"}, GATEWAYS, ())
        digest = vkeys.digest_of(secret)
        await other.refresh()
        assert other.lookup(digest) is not None
        await admin.revoke("ops", "a", ())
        revoked = time.monotonic()
        for _ in range(100):  # polled in steps of 10 ms, for at most a second
            if other.lookup(digest) is None:
                break
            await asyncio.sleep(0.01)
        assert other.lookup(digest) is None
        assert time.monotonic() - revoked < 1.0  # a poll (0.25 s) and a read; the issue: 1 s
    finally:
        await other.aclose()
        await mine.aclose()


async def test_a_copy_keeps_serving_while_redis_is_away(caplog: Any) -> None:
    with running_redis() as redis:
        store = RedisKeyStore(redis.url, timeout=0.2)
        directory = Directory(store)
        _, secret = await KeyAdmin(directory).create(
            "ops", {"name": "a", "models": "*"}, GATEWAYS, ()
        )
        digest = vkeys.digest_of(secret)
        redis.kill()
        with caplog.at_level(logging.WARNING, logger="msgflux.server"):
            await directory.refresh()  # never raises
            await directory.refresh()
        assert directory.lookup(digest) is not None  # the last copy
        warnings = [r for r in caplog.records if "cannot be read" in r.getMessage()]
        assert len(warnings) == 1 and "1 keys" in warnings[0].getMessage()  # once a minute
        redis.start()
        await directory.refresh()
        assert directory.lookup(digest) is None  # a new, empty Redis: the copy follows it
        await directory.aclose()


# -- a config key's name always wins --------------------------------------------------------------
async def test_a_virtual_key_named_like_a_config_key_is_refused() -> None:
    """A virtual key made before the config file got a key of the same name (by the CLI on
    the store, say) must not act as that config key: the config key wins, it is refused."""
    directory = Directory(MemoryKeyStore(), ManualClock())
    _, secret = await KeyAdmin(directory).create(
        "cli", {"name": "ops", "models": "*"}, GATEWAYS, ()
    )
    config = parse_config(
        "server: {keys: [{name: ops, key: sk-test-the-config-key-01, models: '*', admin: true}]}\n"
        "gateways: {chat: {models: [{model_name: a, model: openai_compatible/x, "
        "base_url: 'http://127.0.0.1:9/v1'}]}}\n",
        {},
    )
    ring = KeyRing(config.server.keys, directory)
    assert ring.authenticate([(b"authorization", f"Bearer {secret}".encode())]) is None
    admin = ring.authenticate([(b"authorization", b"Bearer sk-test-the-config-key-01")])
    assert admin is not None and admin.admin
