"""The response cache on a real ``msgflux serve`` (``gateways.<name>.cache``): every answer
says ``x-msgflux-cache`` (and its ``age`` on a hit); a hit is replayed in the client's family,
read by the official SDKs (OpenAI chat and Responses, Anthropic Messages); the client's
``Cache-Control``; key limits (rpm applies to hits, tpm and budgets never count them); the
metrics and the access log; the config's mistakes named.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import anthropic
import httpx2 as httpx
import openai
import orjson
import pytest

from msgflux.server.config_build import build_config
from msgflux.server.config_checks import ConfigError
from tests.server.harness import SERVER_KEY, UPSTREAM_KEY, Served, start
from tests.upstream import Reply, Upstream

ASK: Any = [{"role": "user", "content": "Who was Frank Rosenblatt?"}]
RPM_KEY = "sk-cache-rpm-key-000001"
TPM_KEY = "sk-cache-tpm-key-000001"
CONC_KEY = "sk-cache-conc-key-00001"
ADMIN_KEY = "sk-cache-admin-key-00001"
PRICE = {"input_per_mtok": 1.0, "output_per_mtok": 1.0}


class Env:
    def __init__(self, server: Served, up: Upstream) -> None:
        self.server = server
        self.up = up

    def post(self, path: str, body: dict[str, Any], key: str = SERVER_KEY, **headers: str) -> Any:
        return httpx.post(
            self.server.base_url + path,
            content=orjson.dumps(body),
            headers={"authorization": f"Bearer {key}", **headers},
            timeout=30,
        )

    def chat(self, text: str, key: str = SERVER_KEY, **headers: str) -> Any:
        body = {"model": "chat", "temperature": 0, "messages": [{"role": "user", "content": text}]}
        return self.post("/chat/completions", body, key, **headers)

    def openai(self) -> openai.OpenAI:
        return openai.OpenAI(base_url=self.server.base_url, api_key=SERVER_KEY, max_retries=0)

    def lines(self) -> list[dict[str, Any]]:
        return [json.loads(x) for x in self.server.log().splitlines() if x.startswith("{")]


def _dep(name: str, model: str, url: str, **extra: Any) -> dict[str, Any]:
    return {
        "model_name": name,
        "model": model,
        "base_url": url,
        "api_key": "${UPSTREAM_KEY}",
        **extra,
    }


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    up = Upstream().start()
    up.set_default(
        Reply(usage={"prompt_tokens": 75, "completion_tokens": 75, "total_tokens": 150}),
        model="m-limits",
    )
    config = {
        "server": {
            "keys": [
                {"name": "k", "key": "${CLIENT_KEY}", "models": "*"},
                {"name": "rpm", "key": RPM_KEY, "models": "*", "rpm": 3},
                {"name": "conc", "key": CONC_KEY, "models": "*", "max_concurrency": 1},
                {
                    "name": "tpm",
                    "key": TPM_KEY,
                    "models": "*",
                    "tpm": 100,
                    "budget": {"usd": 0.0001, "period": "day"},
                },
                {"name": "admin", "key": ADMIN_KEY, "models": "*", "admin": True},
            ]
        },
        "gateways": {
            "chat": {"cache": {"ttl": 600}, "models": [_dep("oa", "openai/up-model", up.base_url)]},
            # This SDK speaks an API version without sampling parameters: every request of
            # it samples, so only `cache_sampled` caches them.
            "claude": {
                "cache": {"cache_sampled": True},
                "models": [_dep("an", "anthropic/claude-up", up.url)],
            },
            "limits": {
                "cache": {"store": "memory", "max_bytes": 1 << 20},
                "models": [_dep("lim", "openai/m-limits", up.base_url, price=PRICE)],
            },
            "plain": {"models": [_dep("oa", "openai/up-model", up.base_url)]},
        },
    }
    server = start(tmp_path_factory.mktemp("cache"), config)
    try:
        yield Env(server, up)
    finally:
        server.stop()
        up.stop()


def test_every_answer_says_hit_miss_or_bypass_and_a_hit_its_age(env: Env) -> None:
    before = env.up.count()
    first = env.chat("verdicts")
    second = env.chat("verdicts")
    assert first.status_code == second.status_code == 200
    assert first.headers["x-msgflux-cache"] == "miss" and "age" not in first.headers
    assert second.headers["x-msgflux-cache"] == "hit" and int(second.headers["age"]) >= 0
    assert second.headers["x-msgflux-attempts"] == "0"
    assert second.headers["x-msgflux-deployment"] == "oa"
    assert second.json()["choices"] == first.json()["choices"]
    assert second.json()["model"] == "chat"
    sampled = env.post("/chat/completions", {"model": "chat", "messages": ASK})
    assert sampled.headers["x-msgflux-cache"] == "bypass"
    plain = env.post("/chat/completions", {"model": "plain", "messages": ASK, "temperature": 0})
    assert "x-msgflux-cache" not in plain.headers  # a gateway without a cache says nothing
    assert env.up.count() == before + 3


def test_the_openai_sdk_reads_a_replayed_chat_stream(env: Env) -> None:
    client = env.openai()

    def read() -> tuple[str, Any, str]:
        raw = client.chat.completions.with_raw_response.create(
            model="chat",
            messages=[{"role": "user", "content": "stream me"}],
            temperature=0,
            stream=True,
            stream_options={"include_usage": True},
        )
        chunks = list(raw.parse())
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        return text, chunks[-1].usage, raw.headers["x-msgflux-cache"]

    missed, hit = read(), read()
    assert (missed[2], hit[2]) == ("miss", "hit")
    assert hit[0] == missed[0] == "Hello from up-model"
    assert hit[1] is not None and hit[1].completion_tokens == missed[1].completion_tokens > 0


def test_the_openai_sdk_reads_a_replayed_responses_stream(env: Env) -> None:
    client = env.openai()

    def read() -> tuple[str, Any]:
        with client.responses.stream(model="chat", input="respond", temperature=0) as stream:
            deltas = "".join(e.delta for e in stream if e.type == "response.output_text.delta")
            final = stream.get_final_response()
        assert final.output_text == deltas
        return deltas, final

    before = env.up.count()
    (text, first), (again, second) = read(), read()
    assert text == again == "Hello from up-model"
    assert second.id != first.id and second.usage is not None and second.usage.output_tokens > 0
    assert env.up.count() == before + 1
    follow = client.responses.create(
        model="chat", input="and then?", previous_response_id=second.id
    )
    assert follow.output_text  # a hit is stored like any response: it can be continued


def test_the_anthropic_sdk_reads_a_replayed_messages_stream(env: Env) -> None:
    client = anthropic.Anthropic(base_url=env.server.url, api_key=SERVER_KEY, max_retries=0)

    def read() -> Any:
        with client.messages.stream(
            model="claude", max_tokens=64, messages=[{"role": "user", "content": "hi"}]
        ) as stream:
            return stream.get_final_message()

    before = env.up.count()
    first, second = read(), read()
    assert second.content[0].text == first.content[0].text == "Hello from claude-up"
    assert second.usage.output_tokens == first.usage.output_tokens > 0
    assert second.stop_reason == "end_turn" and second.id != first.id
    assert env.up.count() == before + 1
    whole = client.messages.with_raw_response.create(
        model="claude", max_tokens=64, messages=[{"role": "user", "content": "hi"}]
    )
    assert whole.headers["x-msgflux-cache"] == "hit"
    assert whole.parse().content[0].text == "Hello from claude-up"


def test_no_cache_answers_from_upstream_and_refreshes_the_entry(env: Env) -> None:
    env.chat("refresh me")
    env.up.script([Reply(text="fresh")], model="up-model")
    fresh = env.chat("refresh me", **{"cache-control": "no-cache"})
    assert fresh.headers["x-msgflux-cache"] == "bypass"
    assert fresh.json()["choices"][0]["message"]["content"] == "fresh"
    hit = env.chat("refresh me")
    assert hit.headers["x-msgflux-cache"] == "hit"
    assert hit.json()["choices"][0]["message"]["content"] == "fresh"


def test_no_store_keeps_nothing_and_max_age_refuses_older_entries(env: Env) -> None:
    assert (
        env.chat("ephemeral", **{"cache-control": "no-store"}).headers["x-msgflux-cache"] == "miss"
    )
    assert env.chat("ephemeral").headers["x-msgflux-cache"] == "miss"
    assert (
        env.chat("ephemeral", **{"cache-control": "max-age=600"}).headers["x-msgflux-cache"]
        == "hit"
    )
    time.sleep(1.05)
    stale = env.chat("ephemeral", **{"cache-control": "max-age=1"})
    assert stale.headers["x-msgflux-cache"] == "miss"
    again = env.chat("ephemeral", **{"cache-control": "max-age=1, no-transform"})
    assert again.headers["x-msgflux-cache"] == "hit" and again.headers["age"] == "0"


def test_a_malformed_cache_control_is_a_400_naming_it(env: Env) -> None:
    before = env.up.count()
    resp = env.chat("bad header", **{"cache-control": "max-age=soon"})
    assert resp.status_code == 400 and "max-age" in resp.json()["error"]["message"]
    assert env.up.count() == before


def test_rpm_applies_to_hits(env: Env) -> None:
    body = {"model": "limits", "temperature": 0, "messages": [{"role": "user", "content": "rpm"}]}
    codes = [env.post("/chat/completions", body, RPM_KEY).status_code for _ in range(4)]
    assert codes == [200, 200, 200, 429]  # one miss, two hits, then the fourth request


def test_max_concurrency_applies_to_hits(env: Env) -> None:
    def ask(text: str) -> Any:
        body = {
            "model": "limits",
            "temperature": 0,
            "messages": [{"role": "user", "content": text}],
        }
        return env.post("/chat/completions", body, CONC_KEY)

    assert ask("in flight").headers["x-msgflux-cache"] == "miss"
    usage = {"prompt_tokens": 5, "completion_tokens": 5, "total_tokens": 10}
    env.up.script([Reply(delay=1.0, usage=usage)], model="m-limits")
    before = env.up.count()
    with ThreadPoolExecutor(1) as pool:
        slow = pool.submit(ask, "a slow miss")  # holds the key's one slot for a second
        assert env.up.wait_for(lambda up: up.count() > before, timeout=5)
        busy = ask("in flight")  # would hit, but the key has a request in flight already
        assert busy.status_code == 429 and "max_concurrency" in busy.json()["error"]["message"]
        assert slow.result().status_code == 200
    hit = ask("in flight")
    assert hit.status_code == 200 and hit.headers["x-msgflux-cache"] == "hit"
    assert env.up.count() == before + 1


def test_a_key_past_its_tpm_and_budget_still_gets_cached_answers(env: Env) -> None:
    def ask(text: str) -> Any:
        body = {
            "model": "limits",
            "temperature": 0,
            "messages": [{"role": "user", "content": text}],
        }
        return env.post("/chat/completions", body, TPM_KEY)

    first = ask("spend")  # 150 tokens, $0.00015: past the key's tpm (100) and budget ($0.0001)
    assert first.status_code == 200 and first.headers["x-msgflux-cache"] == "miss"
    before = env.up.count()
    hits = [ask("spend") for _ in range(3)]  # nothing spent: still served, from the cache
    assert [(h.status_code, h.headers["x-msgflux-cache"]) for h in hits] == [(200, "hit")] * 3
    refused = ask("something new")  # a miss would spend: the key's own 429
    assert refused.status_code == 429
    assert refused.json()["error"]["code"] in ("budget_exceeded", "rate_limit_exceeded")
    assert env.up.count() == before


def test_only_if_cached_answers_from_the_cache_or_504(env: Env) -> None:
    before = env.up.count()
    missing = env.chat("only cached", **{"cache-control": "only-if-cached"})
    assert missing.status_code == 504 and env.up.count() == before
    env.chat("only cached")
    hit = env.chat("only cached", **{"cache-control": "only-if-cached"})
    assert hit.status_code == 200 and hit.headers["x-msgflux-cache"] == "hit"


def test_the_metrics_and_the_access_log_count_the_cache(env: Env) -> None:
    env.chat("metrics")
    env.chat("metrics")
    text = httpx.get(
        env.server.url + "/metrics", headers={"authorization": f"Bearer {ADMIN_KEY}"}, timeout=30
    ).text
    hits = [
        line for line in text.splitlines() if line.startswith("msgflux_gateway_cache_hits_total")
    ]
    assert any('gateway="chat"' in line and float(line.split()[-1]) >= 1 for line in hits)
    assert "msgflux_gateway_cache_misses_total" in text
    assert "msgflux_gateway_cache_stored_bytes" in text
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        lines = [x for x in env.lines() if x["gateway"] == "chat"]
        if lines and lines[-1]["cache"] == "hit":
            break
        time.sleep(0.02)
    last = lines[-1]
    assert last["cache"] == "hit" and last["attempts"] == 0 and last["cost"] == 0.0
    assert UPSTREAM_KEY not in env.server.log()


# -- the config --------------------------------------------------------------------------------
def _config(cache: Any, server: dict[str, Any] | None = None) -> dict[str, Any]:
    dep = {"model_name": "d", "model": "openai/m", "base_url": "http://127.0.0.1:9/v1"}
    return {
        "gateways": {"g": {"cache": cache, "models": [dep]}},
        **({"server": server} if server else {}),
    }


@pytest.mark.parametrize(
    ("cache", "path"),
    [
        ({"store": "redis"}, "gateways.g.cache.store"),
        ({"store": "memcached://x"}, "gateways.g.cache.store"),
        ({"ttl": 0}, "gateways.g.cache.ttl"),
        ({"tll": 10}, "gateways.g.cache.tll"),
        ({"store": "redis://x:6379", "max_bytes": 10}, "gateways.g.cache.max_bytes"),
        ({"cache_sampled": "yes"}, "gateways.g.cache.cache_sampled"),
        ("lots", "gateways.g.cache"),
    ],
)
def test_a_cache_mistake_in_the_config_names_its_path(cache: Any, path: str) -> None:
    with pytest.raises(ConfigError) as info:
        build_config(_config(cache))
    assert info.value.path == path


def test_redis_means_server_state() -> None:
    config = build_config(
        _config({"store": "redis", "ttl": 60}, {"state": "redis://127.0.0.1:1/0"})
    )
    assert config.gateways["g"].options["cache"] == {"store": "redis", "ttl": 60.0}


def test_a_reload_keeps_the_memory_cache_and_its_keys_cover_the_new_deployments() -> None:
    from msgflux.server.runtime import build_runtime

    config = build_config(_config({"ttl": 60}))
    first = build_runtime(config)
    again = build_runtime(config, previous=first)
    cache = first.routes["g"].gateway.cache
    assert cache is not None and again.routes["g"].gateway.cache is not None
    assert again.routes["g"].gateway.cache.store is cache.store  # the answers survive a reload
    cache.store.put("k", b"entry", 60)
    first.close()  # the old runtime closing leaves the carried store alone
    assert again.caches["g"] is cache.store and cache.store.get("k") == b"entry"
    resized = build_runtime(build_config(_config({"max_bytes": 1024})), previous=again)
    assert resized.caches["g"] is not cache.store
    for runtime in (again, resized):
        runtime.close()
