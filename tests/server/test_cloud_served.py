"""Bedrock and Vertex deployments behind a real ``msgflux serve``, against the fake clouds of
:mod:`tests.upstream_cloud`: OpenAI chat clients answered by Claude on Bedrock (Converse) and
Gemini on Vertex, Anthropic clients by Claude on Bedrock through its own API (the native
lane), a throttled Bedrock falling back to Vertex; and ``msgflux config check`` naming each
deployment's credential source without showing a secret."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anthropic
import openai
import pytest

from tests.server.harness import SERVER_KEY, Served, run_cli, start, write_config
from tests.upstream import Reply, Upstream

CLAUDE = "anthropic.claude-3-5-sonnet-20240620-v1:0"
GEMINI = "gemini-2.5-flash"
KEY_ID = "AKIDSERVED000001"
SECRET = "served-aws-secret-access-key-value"
WRONG = "served-wrong-aws-secret-value"
SESSION = "served-aws-session-token-value"
ASK: Any = [{"role": "user", "content": "Who was Frank Rosenblatt?"}]


class Env:
    def __init__(self, server: Served, up: Upstream, config: dict[str, Any], env: dict[str, str]):
        self.server = server
        self.up = up
        self.config = config
        self.env = env


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    directory = tmp_path_factory.mktemp("cloud")
    up = Upstream().start()
    up.cloud.add_aws_key(KEY_ID, SECRET)
    account = up.cloud.add_service_account(f"{up.url}/token")
    key_file = directory / "service-account.json"
    key_file.write_text(json.dumps(account.info))
    bedrock = {
        "model_name": "bedrock",
        "model": f"bedrock/{CLAUDE}",
        "aws_region_name": "us-east-1",
        "aws_access_key_id": "${AWS_KEY_ID}",
        "aws_secret_access_key": "${AWS_SECRET}",
        "base_url": up.url,
        "max_retries": 0,
    }
    vertex = {
        "model_name": "vertex",
        "model": f"vertex/{GEMINI}",
        "vertex_credentials": str(key_file),
        "vertex_location": "us-central1",
        "base_url": up.url,
    }
    config = {
        "server": {"keys": [{"name": "k", "key": "${CLIENT_KEY}", "models": "*"}]},
        "gateways": {
            "claude": {"models": [bedrock]},
            "gemini": {"models": [vertex]},
            "cloud": {"breaker": False, "models": [bedrock, vertex]},
            "refused": {
                "models": [
                    {
                        **bedrock,
                        "aws_secret_access_key": "${AWS_WRONG}",
                        "aws_session_token": "${AWS_SESSION}",
                    }
                ]
            },
        },
    }
    extra = {
        "AWS_KEY_ID": KEY_ID,
        "AWS_SECRET": SECRET,
        "AWS_WRONG": WRONG,
        "AWS_SESSION": SESSION,
        "AWS_EC2_METADATA_DISABLED": "true",
        "NO_GCE_CHECK": "true",
    }
    server = start(directory, config, env=extra)
    try:
        yield Env(server, up, config, extra)
    finally:
        server.stop()
        up.stop()


def valid(up: Upstream) -> None:
    assert [r.invalid for r in up.requests] == [None] * len(up.requests)


def test_openai_clients_are_answered_by_bedrock_and_vertex(env: Env) -> None:
    env.up.reset()
    client = openai.OpenAI(base_url=env.server.base_url, api_key=SERVER_KEY, max_retries=0)
    answer = client.chat.completions.create(model="claude", messages=ASK)
    assert answer.choices[0].message.content == f"Hello from {CLAUDE}"
    assert answer.model == "claude" and answer.usage is not None
    chunks = client.chat.completions.create(model="claude", messages=ASK, stream=True)
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == (
        f"Hello from {CLAUDE}"
    )
    answer = client.chat.completions.create(model="gemini", messages=ASK)
    assert answer.choices[0].message.content == f"Hello from {GEMINI}"
    assert [r.route for r in env.up.requests] == [
        "converse",
        "converse_stream",
        "vertex_generate_content",
    ]
    valid(env.up)


def test_anthropic_clients_take_the_native_lane_to_bedrock(env: Env) -> None:
    env.up.reset()
    client = anthropic.Anthropic(base_url=env.server.url, api_key=SERVER_KEY, max_retries=0)
    raw = client.messages.with_raw_response.create(
        model="claude",
        max_tokens=64,
        messages=ASK,
        extra_body={"context_management": {"edits": []}},
        extra_headers={"anthropic-beta": "context-management-2025-06-27,claude-code-20250219"},
    )
    message = raw.parse()
    assert message.content[0].text == f"Hello from {CLAUDE}"  # type: ignore[union-attr]
    assert raw.headers["x-msgflux-dropped"] == "anthropic-beta"  # Bedrock refuses claude-code
    assert message.model == "claude"
    rec = env.up.last
    assert rec.route == "invoke"
    assert rec.json["anthropic_version"] == "bedrock-2023-05-31"
    assert rec.json["context_management"] == {"edits": []}
    assert rec.json["anthropic_beta"] == ["context-management-2025-06-27"]
    with client.messages.stream(model="claude", max_tokens=64, messages=ASK) as stream:
        assert "".join(stream.text_stream) == f"Hello from {CLAUDE}"
    assert env.up.last.route == "invoke_stream"
    valid(env.up)


def test_a_throttled_bedrock_falls_back_to_vertex(env: Env) -> None:
    env.up.reset()
    env.up.set_default(Reply(status=429), model=CLAUDE)
    try:
        client = openai.OpenAI(base_url=env.server.base_url, api_key=SERVER_KEY, max_retries=0)
        raw = client.chat.completions.with_raw_response.create(model="cloud", messages=ASK)
        assert raw.parse().choices[0].message.content == f"Hello from {GEMINI}"
        assert raw.headers["x-msgflux-deployment"] == "vertex"
        assert raw.headers["x-msgflux-fallbacks"] == "bedrock"
    finally:
        env.up.set_default(None, model=CLAUDE)


def test_a_refused_signature_shows_no_secret_to_the_client_or_in_the_log(env: Env) -> None:
    """Bedrock's signature mismatch echoes the signed headers (the session token among them):
    neither the client's error nor the server's log shows a secret."""
    env.up.reset()
    client = openai.OpenAI(base_url=env.server.base_url, api_key=SERVER_KEY, max_retries=0)
    with pytest.raises(openai.APIStatusError) as info:
        client.chat.completions.create(model="refused", messages=ASK)
    assert env.up.last.invalid == "auth: signature"
    assert "x-amz-security-token:" in env.up.cloud.last_mismatch
    seen = f"{info.value} {info.value.response.text} {env.server.log()}"
    for secret in (WRONG, SESSION, SECRET, "Signature="):
        assert secret not in seen
    with pytest.raises(openai.APIStatusError) as info:
        list(client.chat.completions.create(model="refused", messages=ASK, stream=True))
    assert SESSION not in f"{info.value.response.text} {env.server.log()}"


def test_config_check_names_credential_sources_without_secrets(env: Env, tmp_path: Path) -> None:
    path = write_config(tmp_path, env.config)
    done = run_cli("config", "check", str(path), env=env.env)
    assert done.returncode == 0 and "config OK" in done.stderr, done.stderr
    out = done.stdout
    assert "credentials: aws_access_key_id/aws_secret_access_key (static keys)" in out
    assert "credentials: 'vertex_credentials (the file " in out
    assert "loaded (service_account " in out
    assert SECRET not in out and "PRIVATE KEY" not in out
    assert WRONG not in out and SESSION not in out
    assert "aws_secret_access_key and aws_session_token (static" in out  # YAML folds the line
    assert "aws_secret_access_key: '***'" in out
