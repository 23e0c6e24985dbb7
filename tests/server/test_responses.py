"""OpenAI's Responses API on a real ``msgflux serve``, with the official ``openai`` SDK.

* native lane: an ``openai`` (or ``azure``) deployment gets the client's body as sent, at its
  ``/responses``; the answer and the stream come back as the upstream sent them;
* translated lanes: a chat-only deployment and an Anthropic one answer the same requests
  (create, stream, function tools round-tripped, structured output);
* stored conversations: ``previous_response_id`` passed through to the upstream that stored
  it, rebuilt from the store for any other; retrieve, delete and ``input_items``; an unknown
  id is a 404 that calls no deployment; one key never reads another's;
* the server's duties as on chat: errors in the Responses shape, a stream broken after its
  first event ends with a terminal event, a fallback that the client never sees, budgets.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx2 as httpx
import openai
import orjson
import pydantic
import pytest

from msgflux._transport import SSEDecoder
from tests.server.harness import UPSTREAM_KEY, Served, start
from tests.upstream import Reply, ToolCallSpec, Upstream

NODE_DIR = Path(__file__).parent / "node"
KEY_A = "sk-test-responses-a-0123456789"
KEY_B = "sk-test-responses-b-0123456789"
KEY_POOR = "sk-test-responses-poor-0123456"
WEATHER = {
    "type": "function",
    "name": "get_weather",
    "description": "The weather in a city.",
    "parameters": {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
        "additionalProperties": False,
    },
    "strict": True,
}


class Env:
    def __init__(
        self, server: Served, oa: Upstream, chat: Upstream, an: Upstream, az: Upstream
    ) -> None:
        self.server = server
        self.oa = oa
        self.chat = chat
        self.an = an
        self.az = az

    def client(self, key: str = KEY_A) -> openai.OpenAI:
        return openai.OpenAI(base_url=self.server.base_url, api_key=key, max_retries=0)

    def post(self, body: dict[str, Any], key: str = KEY_A) -> httpx.Response:
        return httpx.post(
            self.server.base_url + "/responses",
            content=orjson.dumps(body),
            headers={"authorization": f"Bearer {key}"},
            timeout=30,
        )


def _dep(name: str, model: str, base_url: str, **extra: Any) -> dict[str, Any]:
    return {
        "model_name": name,
        "model": model,
        "base_url": base_url,
        "api_key": "${UPSTREAM_KEY}",
        **extra,
    }


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    oa, chat, an, az = (Upstream().start() for _ in range(4))
    keys = [
        {"name": "team-a", "key": KEY_A, "models": "*"},
        {"name": "team-b", "key": KEY_B, "models": "*"},
        {"name": "poor", "key": KEY_POOR, "models": "*", "budget": {"usd": 0.01, "period": "day"}},
    ]
    price = {"input_per_mtok": 10_000.0, "output_per_mtok": 10_000.0}
    config = {
        "server": {"keys": keys},
        "gateways": {
            "native": {"breaker": False, "models": [_dep("oa", "openai/gpt-up", oa.base_url)]},
            "azure": {
                "models": [_dep("az", "azure/gpt-deploy", az.url, api_version="2025-04-01-preview")]
            },
            "chat-only": {
                "breaker": False,
                "models": [_dep("chat", "openai_compatible/up-model", chat.base_url)],
            },
            "claude": {"models": [_dep("an", "anthropic/claude-up", an.url)]},
            "fallback": {
                "breaker": False,
                "models": [
                    _dep("primary", "openai/gpt-primary", oa.base_url),
                    _dep("secondary", "openai_compatible/up-model", chat.base_url),
                ],
            },
            "priced": {"models": [_dep("oa", "openai/gpt-up", oa.base_url, price=price)]},
        },
    }
    server = start(tmp_path_factory.mktemp("responses"), config)
    try:
        yield Env(server, oa, chat, an, az)
    finally:
        server.stop()
        for up in (oa, chat, an, az):
            up.stop()


@pytest.fixture(autouse=True)
def fresh(env: Env) -> None:
    for up in (env.oa, env.chat, env.an, env.az):
        up.reset()


def _events(data: bytes) -> list[tuple[str, dict[str, Any]]]:
    decoder = SSEDecoder(1 << 20)
    return [(name or "", orjson.loads(raw)) for name, raw in decoder.feed(data) + decoder.end()]


# -- native lane ---------------------------------------------------------------------------------
def test_a_responses_body_reaches_an_openai_upstream_as_sent(env: Env) -> None:
    body = {
        "model": "native",
        "input": [{"role": "developer", "content": "Be brief."}, {"role": "user", "content": "Hi"}],
        "tools": [WEATHER, {"type": "web_search"}],
        "include": ["reasoning.encrypted_content"],
        "reasoning": {"effort": "low", "summary": "auto"},
        "store": False,
        "prompt_cache_key": "conversation-7",
        "client_metadata": {"origin": "codex"},
    }
    resp = env.post(body)
    assert resp.status_code == 200, resp.text
    rec = env.oa.last
    assert rec.path == "/v1/responses" and rec.invalid is None
    assert rec.json == {**body, "model": "gpt-up"}
    assert rec.headers["authorization"] == f"Bearer {UPSTREAM_KEY}"
    answer = resp.json()
    assert answer["model"] == "native" and answer["object"] == "response"
    assert resp.headers["x-msgflux-deployment"] == "oa"
    assert resp.headers["x-msgflux-attempts"] == "1"


def test_a_native_answer_comes_back_byte_for_byte(env: Env) -> None:
    answer = (
        b'{"id":"resp_abc","object":"response","created_at":1,"status":"completed",'
        b'"model":"gpt-up-2026-01-01","output":[{"id":"msg_1","type":"message","role":'
        b'"assistant","status":"completed","content":[{"type":"output_text","text":"Hi \\u00e9",'
        b'"annotations":[]}]}],"usage":{"input_tokens":3,"output_tokens":2,"total_tokens":5},'
        b'"x_extra":[1.50]}'
    )
    env.oa.script([Reply(body=answer, content_type="application/json")])
    resp = env.post({"model": "native", "input": "Hi", "store": False})
    assert resp.content == answer.replace(b'"model":"gpt-up-2026-01-01"', b'"model":"native"')


def test_the_sdk_streams_a_native_response(env: Env) -> None:
    client = env.client()
    with client.responses.stream(model="native", input="Hi", store=False) as stream:
        kinds = [event.type for event in stream]
        final = stream.get_final_response()
    assert kinds[0] == "response.created" and kinds[-1] == "response.completed"
    assert final.output_text == "Hello from gpt-up" and final.model == "native"
    assert env.oa.last.json["stream"] is True


def test_an_azure_deployment_takes_responses_at_its_resource_route(env: Env) -> None:
    out = env.client().responses.create(model="azure", input="Hi", store=False)
    assert out.output_text == "Hello from gpt-deploy" and out.model == "azure"
    rec = env.az.last
    assert rec.path == "/openai/responses" and rec.query["api-version"] == "2025-04-01-preview"
    assert rec.headers["api-key"] == UPSTREAM_KEY and rec.json["model"] == "gpt-deploy"


# -- translated lanes ----------------------------------------------------------------------------
@pytest.mark.parametrize("model", ["chat-only", "claude"])
def test_the_sdk_creates_and_streams_on_a_translated_lane(env: Env, model: str) -> None:
    client = env.client()
    out = client.responses.create(model=model, instructions="Be brief.", input="Hi")
    assert out.status == "completed" and out.model == model
    assert out.output_text.startswith("Hello from ")
    assert out.usage is not None and out.usage.output_tokens > 0
    upstream = env.chat if model == "chat-only" else env.an
    sent = upstream.last.json
    if model == "chat-only":
        assert sent["messages"][0] == {"role": "system", "content": "Be brief."}
    else:
        assert "Be brief." in str(sent["system"])
    with client.responses.stream(model=model, input="Hi", store=False) as stream:
        deltas = [e.delta for e in stream if e.type == "response.output_text.delta"]
        final = stream.get_final_response()
    assert "".join(deltas) == final.output_text and final.output_text.startswith("Hello from ")


@pytest.mark.parametrize("model", ["native", "chat-only", "claude"])
def test_a_function_tool_round_trips(env: Env, model: str) -> None:
    upstream = {"native": env.oa, "chat-only": env.chat, "claude": env.an}[model]
    upstream.script(
        [
            Reply(tool_calls=[ToolCallSpec("get_weather", {"city": "Paris"}, id="call_1")]),
            Reply(text="Sunny in Paris."),
        ]
    )
    client = env.client()
    first = client.responses.create(model=model, input="Weather in Paris?", tools=[WEATHER])
    calls = [item for item in first.output if item.type == "function_call"]
    assert len(calls) == 1 and calls[0].name == "get_weather"
    assert orjson.loads(calls[0].arguments) == {"city": "Paris"}
    second = client.responses.create(
        model=model,
        tools=[WEATHER],
        input=[
            {"role": "user", "content": "Weather in Paris?"},
            *[item.model_dump(exclude_none=True) for item in first.output],
            {"type": "function_call_output", "call_id": calls[0].call_id, "output": "22C, sun"},
        ],
    )
    assert second.output_text == "Sunny in Paris."
    sent = upstream.last.json
    assert upstream.last.invalid is None
    assert "22C, sun" in orjson.dumps(sent).decode()


class City(pydantic.BaseModel):
    name: str
    population: int


@pytest.mark.parametrize("model", ["native", "chat-only"])
def test_structured_output_parses(env: Env, model: str) -> None:
    upstream = env.oa if model == "native" else env.chat
    upstream.script(Reply(structured={"name": "Paris", "population": 2_100_000}))
    parsed = env.client().responses.parse(model=model, input="Paris?", text_format=City)
    assert parsed.output_parsed == City(name="Paris", population=2_100_000)
    sent = upstream.last.json
    if model == "chat-only":
        assert sent["response_format"]["type"] == "json_schema"
    else:
        assert sent["text"]["format"]["type"] == "json_schema"


# -- stored conversations ------------------------------------------------------------------------
def test_previous_response_id_is_passed_to_the_upstream_that_stored_it(env: Env) -> None:
    client = env.client()
    first = client.responses.create(model="native", input="My name is Ada.")
    second = client.responses.create(
        model="native", input="What is my name?", previous_response_id=first.id
    )
    assert second.output_text == "Hello from gpt-up"
    sent = env.oa.last.json
    assert sent["previous_response_id"] == first.id and sent["input"] == "What is my name?"


@pytest.mark.parametrize("model", ["chat-only", "claude"])
def test_previous_response_id_rebuilds_the_conversation_on_a_translated_lane(
    env: Env, model: str
) -> None:
    client = env.client()
    first = client.responses.create(model=model, input="My name is Ada.")
    second = client.responses.create(
        model=model, input="What is my name?", previous_response_id=first.id
    )
    third = client.responses.create(model=model, input="Spell it.", previous_response_id=second.id)
    assert third.status == "completed"
    sent = (env.chat if model == "chat-only" else env.an).last.json
    said = orjson.dumps(sent["messages"]).decode()
    for text in ("My name is Ada.", "What is my name?", "Spell it.", first.output_text):
        assert text in said
    assert [m["role"] for m in sent["messages"]] == [
        "user",
        "assistant",
        "user",
        "assistant",
        "user",
    ]


def test_a_conversation_moves_from_a_translated_lane_to_a_native_one_rebuilt(env: Env) -> None:
    client = env.client()
    first = client.responses.create(model="chat-only", input="My name is Ada.")
    client.responses.create(model="native", input="And?", previous_response_id=first.id)
    sent = env.oa.last.json
    assert "previous_response_id" not in sent  # OpenAI never saw that one
    said = orjson.dumps(sent["input"]).decode()
    assert "My name is Ada." in said and first.output_text in said and "And?" in said


def test_retrieve_list_input_items_and_delete(env: Env) -> None:
    client = env.client()
    created = client.responses.create(
        model="chat-only", input=[{"role": "user", "content": "Hi there"}], metadata={"t": "1"}
    )
    fetched = client.responses.retrieve(created.id)
    assert fetched.id == created.id and fetched.output_text == created.output_text
    items = client.responses.input_items.list(created.id)
    texts = [part.text for item in items.data for part in getattr(item, "content", [])]
    assert texts == ["Hi there"]
    client.responses.delete(created.id)
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(created.id)
    with pytest.raises(openai.NotFoundError):
        client.responses.delete(created.id)


def test_store_false_keeps_nothing(env: Env) -> None:
    client = env.client()
    created = client.responses.create(model="chat-only", input="Hi", store=False)
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(created.id)


def test_an_unknown_previous_response_is_a_404_that_calls_no_deployment(env: Env) -> None:
    resp = env.post({"model": "chat-only", "input": "Hi", "previous_response_id": "resp_nope"})
    assert resp.status_code == 404
    error = resp.json()["error"]
    assert error["code"] == "previous_response_not_found"
    assert error["param"] == "previous_response_id" and "resp_nope" in error["message"]
    assert env.chat.count() == 0
    assert env.post({"model": "chat-only", "input": "Hi"}).status_code == 200


def test_one_key_never_sees_another_keys_responses(env: Env) -> None:
    mine = env.client(KEY_A).responses.create(model="chat-only", input="secret plans")
    other = env.client(KEY_B)
    with pytest.raises(openai.NotFoundError):
        other.responses.retrieve(mine.id)
    with pytest.raises(openai.NotFoundError):
        other.responses.input_items.list(mine.id)
    with pytest.raises(openai.NotFoundError):
        other.responses.create(model="chat-only", input="go on", previous_response_id=mine.id)
    with pytest.raises(openai.NotFoundError):
        other.responses.delete(mine.id)
    assert env.client(KEY_A).responses.retrieve(mine.id).id == mine.id


# -- the server's duties -------------------------------------------------------------------------
def test_errors_come_in_the_responses_shape(env: Env) -> None:
    bad = env.post({"model": "chat-only", "input": 42})
    assert bad.status_code == 400
    error = bad.json()["error"]
    assert error["type"] == "invalid_request_error" and "input" in error["message"]
    unknown = env.post({"model": "nope", "input": "Hi"})
    assert unknown.status_code == 404 and unknown.json()["error"]["message"]
    env.chat.script(Reply(status=401, error="bad key"))
    refused = env.post({"model": "chat-only", "input": "Hi"})
    assert refused.status_code >= 400 and "error" in refused.json()
    assert UPSTREAM_KEY not in refused.text


@pytest.mark.parametrize("model", ["native", "chat-only"])
def test_a_stream_broken_after_its_first_event_ends_with_a_terminal_event(
    env: Env, model: str
) -> None:
    upstream = env.oa if model == "native" else env.chat
    upstream.script(Reply(chunks=["Hel", "lo", " there", "!"], cut_after=2))
    started = time.monotonic()
    resp = env.post({"model": model, "input": "Hi", "stream": True, "store": False})
    assert time.monotonic() - started < 10
    events = _events(resp.content)
    assert events[0][0] == "response.created"
    assert events[-1][0] in ("response.failed", "error")
    numbers = [data["sequence_number"] for _, data in events]
    assert numbers == sorted(numbers)


def test_the_primary_dies_before_its_first_event_and_the_client_sees_one_clean_stream(
    env: Env,
) -> None:
    env.oa.script(Reply(drop="before_headers"), model="gpt-primary")
    resp = env.post({"model": "fallback", "input": "Hi", "stream": True, "store": False})
    assert resp.status_code == 200
    assert resp.headers["x-msgflux-deployment"] == "secondary"
    events = _events(resp.content)
    kinds = [name for name, _ in events]
    assert kinds.count("response.created") == 1 and kinds[-1] == "response.completed"
    assert [data["sequence_number"] for _, data in events] == list(range(len(events)))
    assert events[-1][1]["response"]["output"][0]["content"][0]["text"] == "Hello from up-model"


def test_spend_on_responses_counts_against_the_keys_budget(env: Env) -> None:
    first = env.post({"model": "priced", "input": "Hi", "store": False}, key=KEY_POOR)
    assert first.status_code == 200
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        refused = env.post({"model": "priced", "input": "Hi", "store": False}, key=KEY_POOR)
        if refused.status_code == 429:
            break
        time.sleep(0.05)
    assert refused.status_code == 429
    assert refused.json()["error"]["code"] == "budget_exceeded"


def test_the_access_log_and_headers_name_the_responses_endpoint(env: Env) -> None:
    resp = env.post({"model": "chat-only", "input": "Hi", "store": False})
    assert resp.headers["x-msgflux-deployment"] == "chat"
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        lines = [
            orjson.loads(line)
            for line in env.server.log().splitlines()
            if line.startswith("{") and '"/v1/responses"' in line
        ]
        if lines:
            break
        time.sleep(0.05)
    assert lines and lines[-1]["status"] == 200 and lines[-1]["key"] == "team-a"


# -- the npm package -----------------------------------------------------------------------------
@pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed")
@pytest.mark.parametrize("model", ["native", "chat-only", "claude"])
def test_the_openai_npm_package_on_every_lane(env: Env, model: str) -> None:
    if not (NODE_DIR / "node_modules" / "openai").is_dir():
        pytest.fail("run `make node-deps` (npm ci --prefix tests/server/node) first")
    upstream = {"native": env.oa, "chat-only": env.chat, "claude": env.an}[model]
    upstream.script(
        [
            Reply(),
            Reply(),
            Reply(),
            Reply(tool_calls=[ToolCallSpec("get_weather", {"city": "Paris"}, id="call_9")]),
            Reply(text="22C it is."),
        ]
    )
    result = subprocess.run(
        ["node", str(NODE_DIR / "responses.mjs"), env.server.base_url, KEY_A, model],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    out = orjson.loads(result.stdout)
    assert out["text"].startswith("Hello from ") and out["model"] == model
    assert out["continued"] == "completed"
    assert out["streamed"] == out["final"] and out["final"].startswith("Hello from ")
    assert out["call"] == {"name": "get_weather", "arguments": {"city": "Paris"}}
    assert out["afterTool"] == "22C it is."
    assert out["retrieved"] is True and out["items"] == 1 and out["afterDelete"] == 404
