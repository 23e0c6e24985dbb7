"""AWS Bedrock through the library, against the fake Bedrock runtime of
:mod:`tests.upstream_cloud` (which verifies every request's SigV4 signature with botocore).

boto3's own ``bedrock-runtime`` client is the reference: pointed at the same fake, it sends
the same requests field for field, and it parses the fake's answers and event streams (so the
fake's framing is AWS's). Credentials: static keys with and without a session token, a
profile, botocore's chain from the environment and from a container role (refreshed before it
expires), a refreshable provider on a manual clock (refreshed in a thread, once, for
concurrent async calls), a Bedrock API key. Secrets never show in errors or reprs.
"""

from __future__ import annotations

import asyncio
import base64
import copy
import datetime
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import orjson
import pytest
from botocore.credentials import RefreshableCredentials
from botocore.exceptions import ClientError, EventStreamError

import msgflux as mf
from msgflux._time import ManualClock
from msgflux.exceptions import (
    AuthenticationError,
    ContentPolicyError,
    ContextWindowExceededError,
    InternalServerError,
    PermissionDeniedError,
    RateLimitError,
    RequestTimeoutError,
)
from msgflux.models.providers.bedrock import BedrockChatCompletion
from msgflux.pricing import price_of
from tests.upstream import Reply, Upstream
from tests.upstream_cloud import isolate

CLAUDE = "anthropic.claude-3-5-sonnet-20240620-v1:0"
PROFILE_ARN = (
    "arn:aws:bedrock:us-east-1:123456789012:inference-profile/"
    "us.anthropic.claude-3-5-sonnet-20240620-v1:0"
)
KEY_ID = "AKIDTESTKEY0001"
SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYzEXAMPLEKEY"
TOKEN = "IQoJb3JpZ2luX2VjEXAMPLE-session-token-value"
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather in a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    },
}
PNG = (
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg"
    "=="
)


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    isolate(monkeypatch, tmp_path)


@pytest.fixture
def up(upstream: Upstream) -> Upstream:
    upstream.cloud.add_aws_key(KEY_ID, SECRET, TOKEN)
    return upstream


def bedrock(up: Upstream, model: str = CLAUDE, **kwargs: Any) -> BedrockChatCompletion:
    options: dict[str, Any] = {
        "aws_region_name": "us-east-1",
        "aws_access_key_id": KEY_ID,
        "aws_secret_access_key": SECRET,
        "aws_session_token": TOKEN,
        "base_url": up.url,
        "max_retries": 0,
        **kwargs,
    }
    return mf.Model.chat_completion(f"bedrock/{model}", **options)  # type: ignore[no-any-return]


def verified(up: Upstream) -> None:
    """Every request the fake got was signed right and is one Bedrock would accept."""
    assert [r.invalid for r in up.requests] == [None] * len(up.requests)


@pytest.fixture
def boto(up: Upstream) -> Iterator[Any]:
    """boto3's own client, pointed at the fake."""
    client = boto3.client(
        "bedrock-runtime",
        region_name="us-east-1",
        endpoint_url=up.url,
        aws_access_key_id=KEY_ID,
        aws_secret_access_key=SECRET,
        aws_session_token=TOKEN,
    )
    yield client
    client.close()


def signed_headers(up: Upstream, index: int) -> list[str]:
    auth = up.requests[index].headers["authorization"]
    return auth.split("SignedHeaders=")[1].split(",")[0].split(";")


# -- chat -----------------------------------------------------------------------------------------
def test_chat_through_converse_signed_with_sigv4(up: Upstream) -> None:
    model = bedrock(up, temperature=0.3)
    answer = model(messages="Who was Frank Rosenblatt?")
    assert answer.data == f"Hello from {CLAUDE}"
    assert answer.metadata["usage"] == {
        "prompt_tokens": 4,
        "completion_tokens": 3,
        "total_tokens": 7,
    }
    assert answer.metadata["request_id"] == "req-1"
    rec = up.last
    assert rec.route == "converse" and rec.model == CLAUDE
    assert rec.json["inferenceConfig"] == {"maxTokens": 512, "temperature": 0.3}
    assert up.cloud.signed_with == [KEY_ID]
    assert rec.headers["x-amz-security-token"] == TOKEN
    verified(up)


def test_streams_sync_and_async(up: Upstream) -> None:
    model = bedrock(up)
    up.script([Reply(chunks=["Hel", "lo"]), Reply(chunks=["a", "b", "c"])])
    stream = model(messages="hi", stream=True)
    assert list(stream) == ["Hel", "lo"]
    assert stream.metadata["finish_reason"] == "stop"
    assert stream.metadata["usage"]["completion_tokens"] == 2

    async def run() -> list[str]:
        stream = await model.acall(messages="hi", stream=True)
        return [piece async for piece in stream.consume()]

    assert asyncio.run(run()) == ["a", "b", "c"]
    assert [r.route for r in up.requests] == ["converse_stream", "converse_stream"]
    verified(up)


def test_tools_images_and_reasoning(up: Upstream) -> None:
    model = bedrock(up, reasoning_effort="low")
    up.script(
        Reply(
            tool_calls=[{"name": "get_weather", "arguments": {"city": "Rio"}}],
            reasoning="Rio, then.",
        )
    )
    messages = [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "Weather where this photo is?"},
                {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}},
            ],
        }
    ]
    answer = model(messages=messages, tool_schemas=[WEATHER])
    assert answer.response_type == "reasoning_tool_call"
    (call,) = answer.data.answer
    assert (call.name, call.arguments) == ("get_weather", {"city": "Rio"})
    sent = up.last.json
    assert sent["additionalModelRequestFields"] == {
        "thinking": {"type": "enabled", "budget_tokens": 1024}
    }
    assert sent["messages"][0]["content"][1] == {
        "image": {"format": "png", "source": {"bytes": PNG}}
    }
    up.script(Reply(tool_calls=[{"name": "get_weather", "arguments": {"city": "Oslo"}}]))
    stream = model(messages="weather in Oslo?", tool_schemas=[WEATHER], stream=True)
    (calls,) = list(stream)
    assert calls[0].arguments == {"city": "Oslo"}
    verified(up)


def test_usage_with_cache_read_and_write_tokens_whole_and_streamed(up: Upstream) -> None:
    cache = {"cacheReadInputTokens": 40, "cacheWriteInputTokens": 10}
    up.script([Reply(usage=cache), Reply(usage=cache, chunks=["a", "b"])])
    model = bedrock(up)
    expected = {
        "prompt_tokens": 54,
        "completion_tokens": 3,
        "total_tokens": 57,
        "prompt_tokens_details": {"cached_tokens": 40},
        "cache_read_input_tokens": 40,
        "cache_creation_input_tokens": 10,
    }
    answer = model(messages="Who was Frank Rosenblatt?")
    assert answer.metadata["usage"] == expected
    stream = model(messages="Who was Frank Rosenblatt?", stream=True)
    assert list(stream) == ["a", "b"]
    assert stream.metadata["usage"] == {**expected, "completion_tokens": 2, "total_tokens": 56}
    verified(up)


def test_an_inference_profile_arn_is_the_model_id(up: Upstream) -> None:
    model = bedrock(up, model=PROFILE_ARN)
    assert model(messages="hi").data == f"Hello from {PROFILE_ARN}"
    assert up.last.model == PROFILE_ARN
    verified(up)


# -- boto3, the reference -------------------------------------------------------------------------
def as_boto3(body: dict[str, Any]) -> dict[str, Any]:
    """A Converse body as boto3's parameters (blobs as bytes, not base64)."""
    params = copy.deepcopy(body)
    for message in params["messages"]:
        for block in message["content"]:
            for kind in ("image", "document"):
                if kind in block:
                    block[kind]["source"]["bytes"] = base64.b64decode(
                        block[kind]["source"]["bytes"]
                    )
    return params


@pytest.mark.parametrize("model_id", [CLAUDE, PROFILE_ARN])
def test_boto3_sends_the_same_converse_request(up: Upstream, boto: Any, model_id: str) -> None:
    model = bedrock(up, model=model_id, max_tokens=64, temperature=0.5, top_k=20)
    messages = [
        {"role": "system", "content": "Be brief."},
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "What is this?"},
                {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}},
            ],
        },
    ]
    model(messages=messages, tool_schemas=[WEATHER], stop=["END"])
    ours = up.last
    theirs_answer = boto.converse(modelId=model_id, **as_boto3(ours.json))
    theirs = up.last
    assert theirs.json == ours.json
    assert theirs.path == ours.path and theirs.query == ours.query
    assert signed_headers(up, -1) == signed_headers(up, -2)
    # boto3 parses the fake's answer as Bedrock's
    assert theirs_answer["output"]["message"]["content"][0]["text"] == f"Hello from {model_id}"
    assert theirs_answer["stopReason"] == "end_turn"
    verified(up)


def test_boto3_sends_the_same_converse_stream_request_with_documents_tools_and_cache_points(
    up: Upstream, boto: Any
) -> None:
    """A document, a cache point, a tool call and its result, a forced tool choice, vendor
    fields: botocore validates every parameter against Bedrock's service model before it
    sends, then sends what we sent."""
    pdf = base64.b64encode(b"%PDF-1.4\n%%EOF\n").decode()
    model = bedrock(up, max_tokens=100, top_p=0.9, stop="STOP")
    messages = [
        {"role": "system", "content": "Be brief."},
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "Read it.", "cache_control": {"type": "ephemeral"}},
                {
                    "type": "file",
                    "file": {
                        "filename": "q3.pdf",
                        "file_data": f"data:application/pdf;base64,{pdf}",
                    },
                },
            ],
        },
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "tu-1",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city": "Rio"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "tu-1", "content": "sunny"},
    ]
    stream = model(
        messages=messages,
        tool_schemas=[WEATHER],
        tool_choice="required",
        stream=True,
        extra_body={"guardrailConfig": {"guardrailIdentifier": "g-1", "guardrailVersion": "1"}},
    )
    list(stream)
    ours = up.last
    assert ours.route == "converse_stream"
    sent = ours.json
    assert sent["toolConfig"]["toolChoice"] == {"any": {}}
    assert sent["messages"][0]["content"][1] == {"cachePoint": {"type": "default"}}
    assert sent["messages"][0]["content"][2]["document"]["format"] == "pdf"
    assert sent["inferenceConfig"] == {"maxTokens": 100, "topP": 0.9, "stopSequences": ["STOP"]}
    response = boto.converse_stream(modelId=CLAUDE, **as_boto3(sent))
    list(response["stream"])
    theirs = up.last
    assert theirs.route == "converse_stream"
    assert theirs.json == ours.json and theirs.path == ours.path
    assert signed_headers(up, -1) == signed_headers(up, -2)
    verified(up)


def test_boto3_reads_the_fakes_event_streams(up: Upstream, boto: Any) -> None:
    """botocore's event-stream parser reads the frames the fake encodes with our encoder."""
    client = boto
    up.script(Reply(chunks=["Hel", "lo"], reasoning="hm"))
    response = client.converse_stream(
        modelId=CLAUDE, messages=[{"role": "user", "content": [{"text": "hi"}]}]
    )
    events = list(response["stream"])
    texts = [
        e["contentBlockDelta"]["delta"].get("text") for e in events if "contentBlockDelta" in e
    ]
    assert "".join(t for t in texts if t) == "Hello"
    assert events[-1]["metadata"]["usage"]["outputTokens"] == 3
    up.script(Reply(stream_error="throttlingException", cut_after=1))
    response = client.converse_stream(
        modelId=CLAUDE, messages=[{"role": "user", "content": [{"text": "hi"}]}]
    )
    with pytest.raises(EventStreamError, match="throttlingException"):
        list(response["stream"])
    response["stream"].close()
    body = {"max_tokens": 9, "messages": [{"role": "user", "content": "hi"}]}
    response = client.invoke_model_with_response_stream(
        modelId=CLAUDE, body=orjson.dumps({"anthropic_version": "bedrock-2023-05-31", **body})
    )
    kinds = [orjson.loads(e["chunk"]["bytes"])["type"] for e in response["body"]]
    assert kinds[0] == "message_start" and kinds[-1] == "message_stop"
    verified(up)


def test_boto3_sends_the_same_invoke_requests_as_the_native_lane_whole_and_streamed(
    up: Upstream, boto: Any
) -> None:
    gateway = mf.ModelGateway([{"model_name": "claude", "model": bedrock(up)}])
    body = {"model": "claude", "max_tokens": 20, "messages": [{"role": "user", "content": "hi"}]}
    answer = gateway.complete(body, api="messages")
    ours = up.last
    boto.invoke_model(
        modelId=CLAUDE, body=ours.body, contentType="application/json", accept="application/json"
    )
    theirs = up.last
    assert ours.route == theirs.route == "invoke"
    assert ours.json == theirs.json and ours.path == theirs.path
    assert signed_headers(up, -1) == signed_headers(up, -2)
    assert orjson.loads(answer.json())["content"][0]["text"] == f"Hello from {CLAUDE}"
    stream = gateway.complete({**body, "stream": True}, api="messages")
    assert [e["type"] for e in stream][-1] == "message_stop"
    ours = up.last
    response = boto.invoke_model_with_response_stream(
        modelId=CLAUDE, body=ours.body, contentType="application/json"
    )
    list(response["body"])
    theirs = up.last
    assert ours.route == theirs.route == "invoke_stream"
    assert ours.json == theirs.json and ours.path == theirs.path
    assert signed_headers(up, -1) == signed_headers(up, -2)
    verified(up)
    refused = {**orjson.loads(ours.body), "anthropic_beta": ["claude-code-20250219"]}
    with pytest.raises(ClientError, match="invalid beta flag"):  # what Bedrock answers
        boto.invoke_model(modelId=CLAUDE, body=orjson.dumps(refused))


# -- the native Messages lane (Claude's own API) --------------------------------------------------
CLAUDE_CODE_BODY: dict[str, Any] = {
    "model": "claude-gateway",
    "max_tokens": 4096,
    "stream": True,
    "thinking": {"type": "adaptive"},
    "context_management": {"edits": [{"type": "clear_thinking_20251015", "keep": "all"}]},
    "output_config": {"effort": "high"},
    "system": [{"type": "text", "text": "You are Claude Code."}],
    "messages": [
        {"role": "user", "content": "say hi"},
        {"role": "system", "content": "a reminder"},
    ],
    "metadata": {"user_id": "u-1"},
}


def test_a_messages_request_takes_the_native_lane_with_its_fields_intact(up: Upstream) -> None:
    gateway = mf.ModelGateway([{"model_name": "claude", "model": bedrock(up)}])
    headers = {"anthropic-beta": "claude-code-20250219,fine-grained-tool-streaming-2025-05-14"}
    # claude-code-20250219 is Anthropic's own: Bedrock would refuse it (invalid beta flag)
    stream = gateway.complete(CLAUDE_CODE_BODY, api="messages", headers=headers)
    events = list(stream)
    assert events[0]["type"] == "message_start" and events[-1]["type"] == "message_stop"
    text = "".join(e["delta"]["text"] for e in events if e["type"] == "content_block_delta")
    assert text == f"Hello from {CLAUDE}"
    rec = up.last
    assert rec.route == "invoke_stream"
    sent = rec.json
    for field in ("thinking", "context_management", "output_config", "system", "metadata"):
        assert sent[field] == CLAUDE_CODE_BODY[field]
    assert sent["messages"] == CLAUDE_CODE_BODY["messages"]
    assert sent["anthropic_version"] == "bedrock-2023-05-31"
    assert sent["anthropic_beta"] == ["fine-grained-tool-streaming-2025-05-14"]
    assert "model" not in sent and "stream" not in sent
    assert "anthropic-beta" not in rec.headers  # betas go in the body on Bedrock
    assert stream.dropped == ["anthropic-beta"]  # x-msgflux-dropped on the server
    assert stream.metadata["usage"]["completion_tokens"] == 3
    verified(up)


async def test_the_native_lane_async_whole_and_streamed(up: Upstream) -> None:
    gateway = mf.ModelGateway([{"model_name": "claude", "model": bedrock(up)}])
    body = {"model": "claude", "max_tokens": 30, "messages": [{"role": "user", "content": "hi"}]}
    answer = await gateway.acomplete(body, api="messages")
    assert orjson.loads(answer.json("claude"))["model"] == "claude"
    assert up.last.route == "invoke"
    up.script(Reply(chunks=["x", "y"]))
    stream = await gateway.acomplete({**body, "stream": True}, api="messages")
    deltas = [e["delta"]["text"] async for e in stream if e["type"] == "content_block_delta"]
    assert deltas == ["x", "y"]
    assert up.last.route == "invoke_stream"
    verified(up)


def test_a_non_claude_model_translates_a_messages_request(up: Upstream) -> None:
    model = bedrock(up, model="amazon.nova-lite-v1:0")
    assert not model.speaks("messages")
    gateway = mf.ModelGateway([{"model_name": "nova", "model": model}])
    answer = gateway.complete(
        {"model": "nova", "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}]},
        api="messages",
    )
    assert orjson.loads(answer.json())["content"][0]["text"] == "Hello from amazon.nova-lite-v1:0"
    assert up.last.route == "converse"
    verified(up)


async def test_count_tokens_through_bedrocks_count_tokens(up: Upstream) -> None:
    model = bedrock(up, model="us." + CLAUDE)
    gateway = mf.ModelGateway([{"model_name": "claude", "model": model}])
    request = gateway.request(
        {"model": "claude", "messages": [{"role": "user", "content": "one two three"}]},
        api="messages",
    )
    assert await model.acount_tokens(request) == {"input_tokens": 3}
    assert up.last.route == "bedrock_count_tokens" and up.last.model == CLAUDE
    verified(up)


# -- credentials ----------------------------------------------------------------------------------
def test_a_wrong_secret_is_refused_and_no_secret_shows_not_even_in_the_echoed_signed_headers(
    up: Upstream,
) -> None:
    """AWS's signature mismatch answer echoes the canonical request it computed, the signed
    headers' values in it (the session token): scrubbed from the error, whole and streamed,
    sync and async."""
    model = bedrock(up, aws_secret_access_key="not-the-right-secret-value", aws_session_token=TOKEN)

    async def streamed() -> None:
        stream = await model.acall(messages="hi", stream=True)
        async for _ in stream.consume():
            pass

    calls = (
        lambda: model(messages="hi"),
        lambda: list(model(messages="hi", stream=True)),
        lambda: asyncio.run(streamed()),
    )
    for call in calls:
        with pytest.raises(AuthenticationError) as info:
            call()
        assert info.value.status_code == 403
        assert "signature we calculated does not match" in str(info.value)
        text = f"{info.value} {info.value!r} {info.value.body} {model!r} {model.serialize()}"
        assert "x-amz-security-token:" in text and "The String-to-Sign" in text  # echoed
        for secret in ("not-the-right-secret-value", TOKEN, "Signature="):
            assert secret not in text
        assert up.last.invalid == "auth: signature"


def test_the_session_token_is_required_when_the_keys_have_one(up: Upstream) -> None:
    with pytest.raises(AuthenticationError, match="security token"):
        bedrock(up, aws_session_token=None)(messages="hi")


def test_keys_from_the_environment_through_botocores_chain(
    up: Upstream, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", KEY_ID)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET)
    monkeypatch.setenv("AWS_SESSION_TOKEN", TOKEN)
    monkeypatch.setenv("AWS_REGION", "eu-west-1")
    model = mf.Model.chat_completion(f"bedrock/{CLAUDE}", base_url=up.url, max_retries=0)
    assert model(messages="hi").data
    assert "/eu-west-1/bedrock/aws4_request" in up.last.headers["authorization"]
    assert model.base_url() == up.url
    assert BedrockChatCompletion.describe_credentials({}) == "botocore's default chain: env"
    verified(up)


def test_a_profile_of_the_shared_files(
    up: Upstream, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "credentials").write_text(
        f"[work]\naws_access_key_id = {KEY_ID}\naws_secret_access_key = {SECRET}\n"
        f"aws_session_token = {TOKEN}\n"
    )
    (tmp_path / "config").write_text("[profile work]\nregion = ap-south-1\n")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "credentials"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "config"))
    model = mf.Model.chat_completion(f"bedrock/{CLAUDE}", aws_profile="work", base_url=up.url)
    assert model(messages="hi").data
    assert "/ap-south-1/bedrock/" in up.last.headers["authorization"]
    assert model.serialize()["state"]["sampling_params"]["aws_profile"] == "work"
    verified(up)
    with pytest.raises(ValueError, match="aws_profile 'nope'"):
        mf.Model.chat_completion(f"bedrock/{CLAUDE}", aws_profile="nope")


def test_a_container_role_is_refreshed_before_it_expires(
    up: Upstream, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The ECS/EKS container credentials endpoint, through botocore's chain: keys far from
    expiry are reused; keys in botocore's refresh window are refreshed before a call, so no
    call goes out with keys the service has already revoked."""
    monkeypatch.setenv("AWS_CONTAINER_CREDENTIALS_FULL_URI", f"{up.url}/aws/credentials")
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    up.cloud.container_lifetime = 3600
    model = mf.Model.chat_completion(f"bedrock/{CLAUDE}", base_url=up.url, max_retries=0)
    for _ in range(3):
        model(messages="hi")
    assert up.cloud.container_requests == 1
    up.cloud.container_lifetime = 14 * 60  # inside botocore's 15-minute advisory window
    fresh = mf.Model.chat_completion(f"bedrock/{CLAUDE}", base_url=up.url, max_retries=0)
    for _ in range(3):
        fresh(messages="hi")
    assert up.cloud.container_requests == 5  # its first fetch, then one refresh per call
    assert len(set(up.cloud.signed_with[3:])) == 3  # each call signed with the newest keys
    verified(up)


def test_an_instance_role_through_imdsv2(up: Upstream, monkeypatch: pytest.MonkeyPatch) -> None:
    """EC2's instance metadata service, through botocore's chain: IMDSv2's session token, the
    role's name, then its keys, fetched once and reused while they are far from expiry."""
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "false")
    monkeypatch.setenv("AWS_EC2_METADATA_SERVICE_ENDPOINT", up.url)
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    up.cloud.container_lifetime = 6 * 3600
    model = mf.Model.chat_completion(f"bedrock/{CLAUDE}", base_url=up.url, max_retries=0)
    for _ in range(3):
        assert model(messages="hi").data
    assert up.cloud.container_requests == 1 and len(up.cloud.imds_tokens) >= 1
    (key_id,) = set(up.cloud.signed_with)
    assert key_id.startswith("ASIAFAKE")
    assert BedrockChatCompletion.describe_credentials({}) == "botocore's default chain: iam-role"
    verified(up)


class Refreshes:
    """A refreshable credential provider on a manual clock: keys valid one hour, minted by
    the fake (the previous ones revoked), each refresh noting its thread."""

    def __init__(self, up: Upstream, clock: ManualClock) -> None:
        self.up = up
        self.clock = clock
        self.threads: list[str] = []
        self.barrier = threading.Event()

    def metadata(self) -> dict[str, str]:
        self.threads.append(threading.current_thread().name)
        for key_id in list(self.up.cloud.aws_keys):
            if key_id.startswith("ASIA"):
                self.up.cloud.revoke_aws_key(key_id)
        key_id, secret, token = self.up.cloud.mint_aws_key()
        expiry = self.clock.now() + datetime.timedelta(hours=1)
        return {
            "access_key": key_id,
            "secret_key": secret,
            "token": token,
            "expiry_time": expiry.isoformat(),
        }

    def credentials(self) -> RefreshableCredentials:
        first = self.metadata()
        self.threads.clear()
        return RefreshableCredentials(
            first["access_key"],
            first["secret_key"],
            first["token"],
            datetime.datetime.fromisoformat(first["expiry_time"]),
            self.metadata,
            "test-provider",
            time_fetcher=self.clock.now,
        )


def test_refreshable_credentials_on_a_manual_clock(up: Upstream) -> None:
    clock = ManualClock(datetime.datetime.now(datetime.timezone.utc))
    provider = Refreshes(up, clock)
    model = bedrock(
        up,
        aws_access_key_id=None,
        aws_secret_access_key=None,
        aws_session_token=None,
        aws_credentials=provider.credentials(),
    )
    model(messages="hi")
    clock.advance(40 * 60)  # 20 minutes left: not yet
    model(messages="hi")
    assert provider.threads == []
    clock.advance(10 * 60)  # 10 minutes left: refreshed before the call
    model(messages="hi")
    assert len(provider.threads) == 1
    signed = up.cloud.signed_with
    assert signed[0] == signed[1] != signed[2]
    verified(up)
    assert (
        model.credential_source()
        == "aws_credentials (a botocore credentials object: test-provider)"
    )


async def test_async_refresh_runs_in_a_thread_once_for_concurrent_calls(up: Upstream) -> None:
    clock = ManualClock(datetime.datetime.now(datetime.timezone.utc))
    provider = Refreshes(up, clock)
    model = bedrock(
        up,
        aws_access_key_id=None,
        aws_secret_access_key=None,
        aws_session_token=None,
        aws_credentials=provider.credentials(),
    )
    await model.acall(messages="hi")
    clock.advance(55 * 60)
    answers = await asyncio.gather(*(model.acall(messages="hi") for _ in range(10)))
    assert len(answers) == 10
    assert len(provider.threads) == 1 and provider.threads[0] != threading.current_thread().name
    assert len(set(up.cloud.signed_with[1:])) == 1
    verified(up)


def test_a_bedrock_api_key_is_a_bearer_token(up: Upstream, monkeypatch: pytest.MonkeyPatch) -> None:
    up.cloud.bedrock_api_keys.add("ABSKbedrock-api-key-value-1")
    model = mf.Model.chat_completion(
        f"bedrock/{CLAUDE}",
        api_key="ABSKbedrock-api-key-value-1",
        aws_region_name="us-east-1",
        base_url=up.url,
    )
    assert model(messages="hi").data
    assert up.last.headers["authorization"] == "Bearer ABSKbedrock-api-key-value-1"
    monkeypatch.setenv("AWS_BEARER_TOKEN_BEDROCK", "ABSKfrom-the-environment-2")
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    env_model = mf.Model.chat_completion(f"bedrock/{CLAUDE}", base_url=up.url, max_retries=0)
    with pytest.raises(AuthenticationError) as info:
        env_model(messages="hi")
    assert "ABSKfrom-the-environment-2" not in f"{info.value} {info.value!r}"
    up.cloud.bedrock_api_keys.add("ABSKfrom-the-environment-2")
    assert env_model(messages="hi").data
    assert env_model.credential_source().startswith("AWS_BEARER_TOKEN_BEDROCK")


def test_configuration_mistakes_name_the_setting() -> None:
    with pytest.raises(ValueError, match="region"):
        mf.Model.chat_completion(f"bedrock/{CLAUDE}")
    with pytest.raises(ValueError, match="go together"):
        mf.Model.chat_completion(
            f"bedrock/{CLAUDE}", aws_region_name="us-east-1", aws_access_key_id="AKID"
        )
    with pytest.raises(ValueError, match="not several"):
        mf.Model.chat_completion(
            f"bedrock/{CLAUDE}",
            aws_region_name="us-east-1",
            aws_profile="x",
            aws_access_key_id="AKID",
            aws_secret_access_key="s",
        )
    with pytest.raises(TypeError, match="aws_credentials"):
        mf.Model.chat_completion(
            f"bedrock/{CLAUDE}", aws_region_name="us-east-1", aws_credentials="x"
        )


def test_no_credentials_at_all_is_an_authentication_error(up: Upstream) -> None:
    model = mf.Model.chat_completion(
        f"bedrock/{CLAUDE}", aws_region_name="us-east-1", base_url=up.url
    )
    with pytest.raises(AuthenticationError, match="no AWS credentials"):
        model(messages="hi")
    assert up.count() == 0


def test_serialization_keeps_no_secret_and_restores_a_working_model(
    up: Upstream, monkeypatch: pytest.MonkeyPatch
) -> None:
    for model_type, call in (("chat_completion", "hi"), ("text_embedder", "hi")):
        model_id = CLAUDE if model_type == "chat_completion" else "amazon.titan-embed-text-v2:0"
        model = getattr(mf.Model, model_type)(
            f"bedrock/{model_id}",
            aws_region_name="us-east-1",
            aws_access_key_id=KEY_ID,
            aws_secret_access_key=SECRET,
            aws_session_token=TOKEN,
            base_url=up.url,
        )
        state = model.serialize()
        assert SECRET not in str(state) and TOKEN not in str(state) and SECRET not in repr(model)
        restored = mf.Model.from_serialized(state)
        assert type(restored) is type(model) and restored.serialize() == state
        # restored without its keys: botocore's chain gives them
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", KEY_ID)
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET)
        monkeypatch.setenv("AWS_SESSION_TOKEN", TOKEN)
        assert restored(call).data is not None
    verified(up)


# -- errors ---------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("reply", "cls"),
    [
        (Reply(status=429), RateLimitError),
        (Reply(status=429, error_type="ModelNotReadyException"), InternalServerError),
        (Reply(status=503), InternalServerError),
        (Reply(status=408), RequestTimeoutError),
        (
            Reply(status=400, error="Input is too long for requested model."),
            ContextWindowExceededError,
        ),
        (Reply(status=403, error="You don't have access to the model"), PermissionDeniedError),
    ],
    ids=[
        "ThrottlingException-RateLimitError",
        "ModelNotReadyException-transient",
        "ServiceUnavailableException-transient",
        "ModelTimeoutException-RequestTimeoutError",
        "ValidationException-too-long-ContextWindowExceededError",
        "AccessDeniedException-PermissionDeniedError",
    ],
)
def test_error_types_map_to_typed_errors(up: Upstream, reply: Reply, cls: type) -> None:
    up.script([reply, reply])
    with pytest.raises(cls) as info:
        bedrock(up)(messages="hi")
    assert type(info.value) is cls
    assert info.value.request_id == "req-1"
    with pytest.raises(cls):
        list(bedrock(up)(messages="hi", stream=True))


def test_unavailable_and_not_ready_models_are_transient_retried_then_answered(
    up: Upstream,
) -> None:
    up.script(
        [
            Reply(status=429, error_type="ModelNotReadyException"),
            Reply(status=503, error_type="ServiceUnavailableException"),
        ]
    )
    clock = ManualClock(datetime.datetime.now(datetime.timezone.utc))
    answer = bedrock(up, max_retries=2, clock=clock)(messages="hi")
    assert answer.data == f"Hello from {CLAUDE}"
    assert [r.route for r in up.requests] == ["converse"] * 3
    up.script(Reply(status=400, error_type="AccessDeniedException"))
    with pytest.raises(PermissionDeniedError):  # not transient: no retry
        bedrock(up, max_retries=2, clock=clock)(messages="hi")
    assert len(up.requests) == 4
    verified(up)


def test_an_exception_midstream_raises_its_typed_error(up: Upstream) -> None:
    up.script(
        Reply(chunks=["a", "b", "c"], cut_after=1, stream_error="serviceUnavailableException")
    )
    got: list[str] = []
    with pytest.raises(InternalServerError):
        for piece in bedrock(up)(messages="hi", stream=True):
            got.append(piece)
    assert got == ["a"]


def test_a_guardrail_that_intervened_is_a_content_policy_error(up: Upstream) -> None:
    up.script([Reply(finish_reason="guardrail_intervened")] * 2)
    with pytest.raises(ContentPolicyError) as info:
        bedrock(up)(messages="hi")
    assert info.value.body["trace"]["guardrail"]["actionReason"] == "Guardrail blocked."
    with pytest.raises(ContentPolicyError):
        list(bedrock(up)(messages="hi", stream=True))


# -- embeddings, prices ---------------------------------------------------------------------------
def test_titan_and_cohere_embeddings(up: Upstream) -> None:
    auth = {
        "aws_region_name": "us-east-1",
        "aws_access_key_id": KEY_ID,
        "aws_secret_access_key": SECRET,
        "aws_session_token": TOKEN,
        "base_url": up.url,
    }
    titan = mf.Model.text_embedder(
        "bedrock/amazon.titan-embed-text-v2:0", dimensions=4, normalize=True, **auth
    )
    answer = titan(["one two", "three"])
    assert [len(v) for v in answer.data] == [4, 4]
    assert answer.metadata["usage"] == {"prompt_tokens": 3, "total_tokens": 3}
    assert [r.json for r in up.requests] == [
        {"inputText": "one two", "dimensions": 4, "normalize": True},
        {"inputText": "three", "dimensions": 4, "normalize": True},
    ]
    cohere = mf.Model.text_embedder(
        "bedrock/cohere.embed-english-v3", input_type="search_query", **auth
    )
    answer = asyncio.run(cohere.acall(["a b c", "d"]))
    assert len(answer.data) == 2 and answer.metadata["usage"]["prompt_tokens"] == 4
    assert up.last.json == {
        "texts": ["a b c", "d"],
        "input_type": "search_query",
        "embedding_types": ["float"],
    }
    verified(up)


def test_prices_come_from_genai_prices() -> None:
    assert price_of("bedrock", CLAUDE) is not None
    assert price_of("bedrock", PROFILE_ARN) == price_of("bedrock", CLAUDE)
    assert price_of("bedrock", "amazon.titan-embed-text-v2:0") is not None
    assert price_of("bedrock", "no.such-model-v9") is None


def test_botocores_debug_log_shows_no_secret(
    up: Upstream, caplog: pytest.LogCaptureFixture
) -> None:
    """botocore's signer logs the canonical request (with the session token) at debug level."""
    with caplog.at_level("DEBUG", logger="botocore"):
        bedrock(up)(messages="hi")
    assert "CanonicalRequest" in caplog.text
    assert TOKEN not in caplog.text and SECRET not in caplog.text
