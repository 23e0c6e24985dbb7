"""The memory store against the shared store contract, plus the plain-data round trip."""

from __future__ import annotations

import pytest

from msgflux.models.gateway import MemoryStore, StateStore
from msgflux.models.gateway.state import (
    FAILURE,
    DeploymentState,
    Settlement,
    admit_first,
    resolve_store,
)
from tests.store_contract import T0, StoreContract, policy


class TestMemoryStore(StoreContract):
    @pytest.fixture
    def store(self) -> MemoryStore:
        return MemoryStore()


def test_memory_store_meets_the_protocol() -> None:
    assert isinstance(MemoryStore(), StateStore)


def test_state_round_trips_through_plain_data() -> None:
    store = MemoryStore()
    p = policy(rpm=5, tpm=100, max_concurrency=2)
    adm = store.admit([p], T0)
    store.settle(Settlement(p, adm, FAILURE, T0, tokens=7))
    st = store.state(p)
    data = st.to_dict()
    import json

    assert json.loads(json.dumps(data)) == data
    assert DeploymentState.from_dict(data) == st


def test_admit_first_is_a_pure_function_of_its_inputs() -> None:
    states: dict[str, DeploymentState] = {}

    def state_of(p: object) -> DeploymentState:
        return states.setdefault(p.key, DeploymentState())  # type: ignore[attr-defined]

    a = policy("a", rpm=1)
    b = policy("b")
    assert admit_first(state_of, [a, b], T0).index == 0
    second = admit_first(state_of, [a, b], T0)
    assert second.index == 1 and second.skips[0].reason == "rpm limit"
    assert list(states["a|mock/m-a"].requests) == [T0]


def test_resolve_store() -> None:
    assert isinstance(resolve_store(None), MemoryStore)
    store = MemoryStore()
    assert resolve_store(store) is store
    with pytest.raises(ValueError, match="redis://"):
        resolve_store("memcached://x")
    with pytest.raises(TypeError, match="StateStore"):
        resolve_store(object())
