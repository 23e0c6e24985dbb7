"""The Redis state store on a real Redis Cluster: 3 primaries and 3 replicas started here.

The store contract runs on it; a store follows ``MOVED``, loads its Lua on the node that
answers ``NOSCRIPT``, and a primary killed under load (its replica promoted) loses no call:
the local fallback serves the seconds in between and the store shares state again after.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Iterator
from typing import Any

import pytest
import redis

from msgflux.models.gateway import Breaker, ModelGateway, Policy, RedisState
from msgflux.models.gateway.redis.cluster import Connector, key_slot, parse_slots
from msgflux.models.gateway.redis.url import parse_url
from msgflux.models.gateway.state import FAILURE, Settlement
from msgflux.models.model import Model
from tests.redis_cluster import RedisCluster, running_cluster
from tests.store_contract import T0, StoreContract
from tests.upstream import Reply, Upstream

pytestmark = pytest.mark.redis

_namespaces = iter(range(1, 1_000_000))


def fresh_namespace() -> str:
    return f"cl-{os.getpid()}-{next(_namespaces)}"


@pytest.fixture(scope="module")
def cluster() -> Iterator[RedisCluster]:
    with running_cluster() as c:
        yield c


@pytest.fixture
def store(cluster: RedisCluster) -> Iterator[RedisState]:
    s = RedisState(cluster.url, namespace=fresh_namespace(), timeout=1.0)
    yield s
    s.close()


class TestClusterStoreContract(StoreContract):
    """Everything the memory store promises, the store keeps on a Redis Cluster."""


# -- URLs and the slot map (no server) -------------------------------------------------------------
def test_cluster_urls_name_their_nodes_and_hide_the_password() -> None:
    url = parse_url("rediss+cluster://:s3cr/t@10.0.0.1:7000,[::1]:7001?ssl_ca_certs=/ca.pem")
    assert url.cluster and url.seeds == [("10.0.0.1", 7000), ("::1", 7001)]
    assert url.redacted == "rediss+cluster://10.0.0.1:7000,[::1]:7001"
    assert url.node("10.0.0.3", 7002) == "rediss://:s3cr%2Ft@10.0.0.3:7002?ssl_ca_certs=/ca.pem"
    for bad in ("redis+cluster://h:7000/1", "redis+cluster://h", "redis+cluster://h:1,:2"):
        with pytest.raises(ValueError, match=r"[Cc]luster|host"):
            parse_url(bad)
    assert "s3cr" not in repr(url)


def test_slot_map_parsing_fills_an_empty_host_with_the_asked_node() -> None:
    reply = [[0, 5460, [b"", 7000, b"id"]], [5461, 16383, [b"10.0.0.2", 7001, b"id2"]]]
    assert parse_slots(reply, ("10.0.0.1", 7000)) == [
        (0, 5460, ("10.0.0.1", 7000)),
        (5461, 16383, ("10.0.0.2", 7001)),
    ]
    assert key_slot("{msgflux}:s:a") == key_slot("{msgflux}:l:b")  # one namespace, one slot


# -- on the cluster -------------------------------------------------------------------------------
def test_every_key_of_a_namespace_is_on_the_node_of_its_slot(
    store: RedisState, cluster: RedisCluster
) -> None:
    p = Policy("x", "mock", "m", breaker=Breaker(), rpm=5, max_concurrency=5)
    store.settle(Settlement(p, store.admit([p], T0), FAILURE, T0))
    keys = store.keys()
    assert len(keys) >= 2 and len({key_slot(k) for k in keys}) == 1
    direct = redis.Redis(port=cluster.primary_of(keys[0]).port)
    assert set(keys) <= {k.decode() for k in direct.keys("*")}
    direct.close()


def test_a_moved_answer_is_followed(cluster: RedisCluster) -> None:
    connector = Connector(parse_url(cluster.url), 1.0)
    key = f"{{{fresh_namespace()}}}:x"
    pipe = connector.pipe(key)
    assert pipe.call("SET", key, "1") == b"OK"
    topology = connector.topology
    assert topology is not None
    right = topology.known(key_slot(key))
    wrong = next(("127.0.0.1", n.port) for n in cluster.nodes if n is not cluster.primary_of(key))
    topology._slots[key_slot(key)] = wrong  # as if the slot had moved since we asked
    assert pipe.call("GET", key) == b"1"  # MOVED, followed at once
    assert topology.known(key_slot(key)) == right  # and remembered
    connector.close()


def test_scripts_are_loaded_on_the_node_that_lacks_them(
    store: RedisState, cluster: RedisCluster
) -> None:
    store.redis._functions = False  # scripts (EVALSHA), as where functions are unavailable
    p = Policy("x", "mock", "m", breaker=Breaker(failure_threshold=2))
    store.settle(Settlement(p, store.admit([p], T0), FAILURE, T0))
    node = cluster.primary_of(f"{{{store.namespace}}}:")
    direct = redis.Redis(port=node.port)
    direct.script_flush()  # what a restarted or newly promoted node looks like
    direct.close()
    store.settle(Settlement(p, store.admit([p], T0), FAILURE, T0))
    assert store.healthy
    assert store.admit([p], T0 + 1).index == -1  # the breaker opened: both failures counted


async def test_the_async_path_shares_state_on_the_cluster(cluster: RedisCluster) -> None:
    ns = fresh_namespace()
    a, b = RedisState(cluster.url, namespace=ns), RedisState(cluster.url, namespace=ns)
    p = Policy("x", "mock", "m", breaker=Breaker(failure_threshold=2, open_for=30))
    for s in (a, b):
        adm = await s.aadmit([p], T0)
        assert isinstance(adm.token, str)
        await s.asettle(Settlement(p, adm, FAILURE, T0))
    assert (await b.aadmit([p], T0 + 1)).index == -1
    for s in (a, b):
        await s.aclose()
        s.close()


# -- a primary killed under load ------------------------------------------------------------------
def _wait_healthy(store: RedisState, deadline: float) -> None:
    while not store.healthy and time.monotonic() < deadline:
        time.sleep(0.05)


def test_a_failover_under_load_loses_no_call() -> None:
    with running_cluster() as cluster, Upstream() as up:
        os.environ.setdefault("OPENAI_API_KEY", "sk-test-openai-key")
        ns = fresh_namespace()
        store = RedisState(cluster.url, namespace=ns, timeout=0.2, retry_interval=0.1)
        primary = Model.chat_completion("openai/m0", base_url=up.base_url)
        backup = Model.chat_completion("openai/m1", base_url=up.base_url)
        gateway = ModelGateway(
            [
                {"model_name": "primary", "model": primary, "rpm": 100_000},
                {"model_name": "backup", "model": backup},
            ],
            breaker=Breaker(failure_threshold=3, failure_rate=None, open_for=60),
            state=store,
        )
        up.set_default(Reply(status=500), model="m0")
        results: list[Any] = []

        async def load(stop: asyncio.Event) -> None:
            async def one() -> None:
                while not stop.is_set():
                    try:
                        answer = await gateway.acall(messages="hi")
                        results.append((answer.metadata or {})["gateway"]["model_name"])
                    except Exception as exc:  # a lost call
                        results.append(exc)

            await asyncio.gather(*(one() for _ in range(8)))

        async def main() -> tuple[float, float]:
            stop = asyncio.Event()
            task = asyncio.ensure_future(load(stop))
            await asyncio.sleep(0.5)
            old = await asyncio.to_thread(cluster.kill_primary_of, f"{{{ns}}}:")
            killed = time.monotonic()
            await asyncio.to_thread(cluster.wait_promoted, f"{{{ns}}}:", old)
            promoted = time.monotonic()
            await asyncio.to_thread(_wait_healthy, store, promoted + 10)
            await asyncio.sleep(0.5)  # calls shared through the new primary
            stop.set()
            await task
            return killed, promoted

        killed, promoted = asyncio.run(main())
        lost = [r for r in results if isinstance(r, Exception)]
        assert not lost, lost[:3]
        assert len(results) > 50 and set(results) == {"backup"}
        assert store.healthy and store.info()["outages"] >= 1
        assert promoted - killed < 15
        # The breaker the fallback learnt is the shared one again, on the promoted primary.
        primary_policy = Policy("primary", "openai", "m0", breaker=Breaker())
        assert store.snapshot([primary_policy], time.time())[0]["breaker"] == "open"
        gateway.close()
        store.close()


async def test_stored_responses_spread_over_the_cluster(cluster: RedisCluster) -> None:
    """The Responses API's store (``server.state``): each owner's records in its own slot,
    on whichever node serves it."""
    from msgflux.server.responses_store import RedisResponses

    store = RedisResponses(cluster.url)
    owners = [f"team-{i}" for i in range(12)]
    for owner in owners:
        await store.put(owner, "resp_1", {"id": "resp_1", "owner": owner})
    nodes = {cluster.primary_of(RedisResponses._key(o, "resp_1")).port for o in owners}
    assert len(nodes) > 1  # the owners' records really are on different nodes
    for owner in owners:
        assert await store.get(owner, "resp_1") == {"id": "resp_1", "owner": owner}
    assert await store.get("someone-else", "resp_1") is None
    assert await store.delete(owners[0], "resp_1")
    assert await store.get(owners[0], "resp_1") is None
    await store.aclose()
