"""Google Vertex AI through the library, against the fake Vertex and the fake Google token
endpoint of :mod:`tests.upstream_cloud`.

google-auth's real flows run: a service account made here (an RSA key from ``cryptography``)
whose JSON key's ``token_uri`` points at the fake, which checks the signed JWT and issues
tokens; the fake Vertex takes only those tokens, unexpired. Gemini and Claude on Vertex,
whole and streamed, sync and async, translated and on their native lanes; the token cached,
refreshed before it expires on a manual clock, once for concurrent async calls, in a thread
while the event loop keeps running; Application Default Credentials; embeddings; errors in
Google's shape and Anthropic's; no private key or token in errors.
"""

from __future__ import annotations

import asyncio
import datetime
import json
import time
from pathlib import Path
from typing import Any

import orjson
import pytest

import msgflux as mf
from msgflux._time import ManualClock
from msgflux.exceptions import (
    AuthenticationError,
    ContextWindowExceededError,
    InternalServerError,
    RateLimitError,
)
from msgflux.models.providers.vertex import VertexChatCompletion
from msgflux.pricing import price_of
from tests.upstream import Reply, Upstream
from tests.upstream_cloud import ServiceAccount, isolate

GEMINI = "gemini-2.5-flash"
CLAUDE = "claude-sonnet-4@20250514"
PROJECT = "test-project"


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    isolate(monkeypatch, tmp_path)


@pytest.fixture
def account(upstream: Upstream) -> ServiceAccount:
    return upstream.cloud.add_service_account(f"{upstream.url}/token", PROJECT)


def vertex(up: Upstream, account: ServiceAccount, model: str = GEMINI, **kwargs: Any) -> Any:
    options = {
        "vertex_credentials": account.info,
        "vertex_location": "us-east5",
        "base_url": up.url,
        "max_retries": 0,
        **kwargs,
    }
    return mf.Model.chat_completion(f"vertex/{model}", **options)


def verified(up: Upstream) -> None:
    assert [r.invalid for r in up.requests] == [None] * len(up.requests)


def path(publisher: str, model: str, method: str, location: str = "us-east5") -> str:
    return (
        f"/v1/projects/{PROJECT}/locations/{location}/publishers/{publisher}/models/"
        f"{model}:{method}"
    )


# -- Gemini and Claude ----------------------------------------------------------------------------
def test_gemini_through_generate_content(upstream: Upstream, account: ServiceAccount) -> None:
    model = vertex(upstream, account, temperature=0.4)
    answer = model(messages="Who was Frank Rosenblatt?")
    assert answer.data == f"Hello from {GEMINI}"
    rec = upstream.last
    assert rec.path == path("google", GEMINI, "generateContent")
    assert rec.json["generationConfig"] == {"maxOutputTokens": 512, "temperature": 0.4}
    assert rec.headers["authorization"].startswith("Bearer ya29.fake-")
    assert list(model(messages="hi", stream=True)) == ["Hello", " from", f" {GEMINI}"]
    assert (upstream.last.path, upstream.last.query) == (
        path("google", GEMINI, "streamGenerateContent"),
        {"alt": "sse"},
    )
    assert upstream.cloud.token_requests == 1  # the token is cached
    verified(upstream)


def test_claude_through_raw_predict(upstream: Upstream, account: ServiceAccount) -> None:
    model = vertex(upstream, account, model=CLAUDE, reasoning_effort="low")
    upstream.script(Reply(text="Rosenblatt built the perceptron.", reasoning="Recall."))
    answer = model(messages="Who was Frank Rosenblatt?")
    assert answer.data.answer == "Rosenblatt built the perceptron."
    rec = upstream.last
    assert rec.path == path("anthropic", CLAUDE, "rawPredict")
    assert rec.json["anthropic_version"] == "vertex-2023-10-16" and "model" not in rec.json
    assert rec.json["thinking"] == {"type": "enabled", "budget_tokens": 1024}
    stream = model(messages="hi", stream=True)
    assert "".join(stream) == f"Hello from {CLAUDE}"
    assert upstream.last.path == path("anthropic", CLAUDE, "streamRawPredict")
    assert upstream.last.json["stream"] is True
    verified(upstream)


async def test_async_both_publishers(upstream: Upstream, account: ServiceAccount) -> None:
    for model_id in (GEMINI, CLAUDE):
        model = vertex(upstream, account, model=model_id)
        assert (await model.acall(messages="hi")).data == f"Hello from {model_id}"
        stream = await model.acall(messages="hi", stream=True)
        assert "".join([piece async for piece in stream.consume()]) == f"Hello from {model_id}"
    verified(upstream)


def test_an_explicit_publisher_and_the_global_location(
    upstream: Upstream, account: ServiceAccount
) -> None:
    model = vertex(
        upstream, account, model="my-claude-alias", publisher="anthropic", vertex_location="global"
    )
    model(messages="hi")
    assert upstream.last.path == path("anthropic", "my-claude-alias", "rawPredict", "global")
    without_url = mf.Model.chat_completion("vertex/gemini-2.5-pro", vertex_location="global")
    assert without_url.base_url() == "https://aiplatform.googleapis.com"
    regional = mf.Model.chat_completion("vertex/gemini-2.5-pro", vertex_location="europe-west4")
    assert regional.base_url() == "https://europe-west4-aiplatform.googleapis.com"


def test_native_lanes_of_both_families_without_the_betas_vertex_refuses(
    upstream: Upstream, account: ServiceAccount
) -> None:
    claude = vertex(upstream, account, model=CLAUDE)
    gateway = mf.ModelGateway([{"model_name": "claude", "model": claude}])
    body = {
        "model": "claude",
        "max_tokens": 40,
        "context_management": {"edits": []},
        "messages": [{"role": "user", "content": "hi"}],
    }
    betas = "claude-code-20250219,context-management-2025-06-27"  # Vertex refuses the first
    answer = gateway.complete(body, api="messages", headers={"anthropic-beta": betas})
    assert orjson.loads(answer.json())["content"][0]["text"] == f"Hello from {CLAUDE}"
    rec = upstream.last
    assert rec.json == {
        "max_tokens": 40,
        "context_management": {"edits": []},
        "messages": [{"role": "user", "content": "hi"}],
        "anthropic_version": "vertex-2023-10-16",
    }
    assert rec.headers["anthropic-beta"] == "context-management-2025-06-27"
    assert answer.dropped == ["anthropic-beta"]  # x-msgflux-dropped on the server
    stream = gateway.complete({**body, "stream": True}, api="messages")
    assert [e["type"] for e in stream][-1] == "message_stop"
    assert upstream.last.json["stream"] is True
    gemini = mf.ModelGateway([{"model_name": "g", "model": vertex(upstream, account)}])
    contents = {"contents": [{"role": "user", "parts": [{"text": "hi"}]}], "safetySettings": []}
    answer = gemini.complete({"model": "g", **contents}, api="gemini")
    assert upstream.last.json == contents  # as the client sent it, no model
    assert orjson.loads(answer.json())["candidates"][0]["content"]["parts"][0]["text"]
    verified(upstream)


# -- credentials ----------------------------------------------------------------------------------
def test_the_token_is_refreshed_before_it_expires_on_the_models_clock(
    upstream: Upstream, account: ServiceAccount
) -> None:
    clock = ManualClock(datetime.datetime.now(datetime.timezone.utc))
    model = vertex(upstream, account, clock=clock)
    model(messages="hi")
    first = upstream.last.headers["authorization"]
    clock.advance(3600 - 400)  # 400 s left: still fresh
    model(messages="hi")
    assert upstream.cloud.token_requests == 1
    clock.advance(200)  # 200 s left: within the margin, refreshed before the call
    model(messages="hi")
    assert upstream.cloud.token_requests == 2
    assert upstream.last.headers["authorization"] != first
    verified(upstream)


async def test_an_async_refresh_is_single_flight_and_never_blocks_the_loop(
    upstream: Upstream, account: ServiceAccount
) -> None:
    upstream.cloud.token_delay = 0.3
    model = vertex(upstream, account)
    ticks = 0
    stop = False

    async def ticker() -> None:
        nonlocal ticks
        while not stop:
            ticks += 1
            await asyncio.sleep(0.01)

    task = asyncio.ensure_future(ticker())
    started = time.monotonic()
    answers = await asyncio.gather(*(model.acall(messages="hi") for _ in range(10)))
    stop = True
    await task
    assert len(answers) == 10 and upstream.cloud.token_requests == 1
    assert ticks >= 0.2 / 0.01 * 0.5  # the loop ran while the token was being fetched
    assert time.monotonic() - started >= 0.3
    verified(upstream)


def test_credentials_as_json_text_a_file_and_adc(
    upstream: Upstream, account: ServiceAccount, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    text = json.dumps(account.info)
    assert vertex(upstream, account, vertex_credentials=text)(messages="hi").data
    key_file = tmp_path / "sa.json"
    key_file.write_text(text)
    from_file = vertex(upstream, account, vertex_credentials=str(key_file))
    assert from_file(messages="hi").data
    assert from_file.credential_source() == f"vertex_credentials (the file {key_file})"
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(key_file))
    adc = mf.Model.chat_completion(
        f"vertex/{GEMINI}", vertex_location="us-east5", base_url=upstream.url
    )
    assert adc(messages="hi").data  # the project comes from the credentials
    assert upstream.last.path == path("google", GEMINI, "generateContent")
    assert adc.credential_source().startswith("Application Default Credentials")
    described = VertexChatCompletion.describe_credentials({})
    assert described.endswith(f"loaded (service_account {account.email})")
    verified(upstream)


def test_workload_identity_through_the_metadata_server(
    upstream: Upstream, monkeypatch: pytest.MonkeyPatch
) -> None:
    """GKE workload identity, Cloud Run, GCE: Application Default Credentials find no file and
    ask the metadata server (google-auth's ping, the project, the account, its token)."""
    from google.auth.compute_engine import _metadata

    host = upstream.url.removeprefix("http://")
    monkeypatch.delenv("NO_GCE_CHECK")
    monkeypatch.setattr(_metadata, "_NO_GCE_CHECK", False)
    # google-auth reads GCE_METADATA_HOST once, when imported: the host it set then, too
    monkeypatch.setenv("GCE_METADATA_HOST", host)
    monkeypatch.setattr(_metadata, "_GCE_METADATA_HOST", host)
    monkeypatch.setenv("GCE_METADATA_IP", host)
    model = mf.Model.chat_completion(
        f"vertex/{GEMINI}", vertex_location="us-east5", base_url=upstream.url
    )
    assert model(messages="hi").data == f"Hello from {GEMINI}"
    assert model(messages="again").data
    asked = upstream.cloud.gce_requests
    assert asked[0] == "/" and asked.count("/computeMetadata/v1/project/project-id") == 1
    assert sum(p.endswith("/token") for p in asked) == 1  # the token is cached
    assert upstream.last.path == (
        f"/v1/projects/{upstream.cloud.gce_project}/locations/us-east5/publishers/google/"
        f"models/{GEMINI}:generateContent"
    )
    described = VertexChatCompletion.describe_credentials({})
    assert described.endswith("loaded (the metadata server's account default)"), described
    verified(upstream)


def test_workload_identity_federation_from_an_external_account_file(
    upstream: Upstream, tmp_path: Path
) -> None:
    """An ``external_account`` credentials file (workload identity federation, as from a CI
    or another cloud): google-auth reads the subject token from its file and exchanges it at
    the file's STS ``token_url``."""
    audience = (
        "//iam.googleapis.com/projects/1/locations/global/workloadIdentityPools/p/providers/q"
    )
    subject = tmp_path / "oidc-token"
    subject.write_text("federated-subject-token-value")
    upstream.cloud.federated_subjects["federated-subject-token-value"] = audience
    info = {
        "type": "external_account",
        "audience": audience,
        "subject_token_type": "urn:ietf:params:oauth:token-type:jwt",
        "token_url": f"{upstream.url}/sts/token",
        "credential_source": {"file": str(subject)},
    }
    config = tmp_path / "federation.json"
    config.write_text(json.dumps(info))
    model = mf.Model.chat_completion(
        f"vertex/{GEMINI}",
        vertex_credentials=str(config),
        vertex_project=PROJECT,
        base_url=upstream.url,
        max_retries=0,
    )
    assert model(messages="hi").data == f"Hello from {GEMINI}"
    assert model(messages="again").data and upstream.cloud.token_requests == 1
    described = VertexChatCompletion.describe_credentials({"vertex_credentials": info})
    assert described == (
        "vertex_credentials (external_account): loaded (workload identity federation)"
    )
    verified(upstream)
    upstream.cloud.federated_subjects.clear()  # the pool no longer trusts the subject
    refused = mf.Model.chat_completion(
        f"vertex/{GEMINI}", vertex_credentials=info, vertex_project=PROJECT, base_url=upstream.url
    )
    with pytest.raises(AuthenticationError, match="Invalid subject token"):
        refused(messages="hi")
    assert upstream.count() == 2  # refused before any call to Vertex


def test_the_project_and_location_from_the_environment(
    upstream: Upstream, account: ServiceAccount, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("VERTEXAI_PROJECT", "env-project")
    monkeypatch.setenv("VERTEXAI_LOCATION", "asia-northeast1")
    model = mf.Model.chat_completion(
        f"vertex/{GEMINI}", vertex_credentials=account.info, base_url=upstream.url
    )
    assert model(messages="hi").data
    assert upstream.last.path.startswith("/v1/projects/env-project/locations/asia-northeast1/")
    given = mf.Model.chat_completion(
        f"vertex/{GEMINI}",
        vertex_credentials=account.info,
        vertex_project="given-project",
        vertex_location="europe-west1",
        base_url=upstream.url,
    )
    assert given(messages="hi").data
    assert upstream.last.path.startswith("/v1/projects/given-project/locations/europe-west1/")
    monkeypatch.setenv("GOOGLE_CLOUD_LOCATION", "us-west1")
    monkeypatch.delenv("VERTEXAI_LOCATION")
    assert mf.Model.chat_completion(f"vertex/{GEMINI}").base_url() == (
        "https://us-west1-aiplatform.googleapis.com"
    )
    verified(upstream)


def test_a_refused_grant_is_an_authentication_error_without_the_key(
    upstream: Upstream, account: ServiceAccount
) -> None:
    stranger = dict(upstream.cloud.add_service_account(f"{upstream.url}/token", new_key=True).info)
    stranger["client_email"] = account.email  # signed with another account's key
    model = vertex(upstream, account, vertex_credentials=stranger)
    with pytest.raises(AuthenticationError, match="Invalid JWT Signature") as info:
        model(messages="hi")
    text = f"{info.value} {info.value!r} {model!r} {model.serialize()}"
    assert stranger["private_key"] not in text and "PRIVATE KEY" not in text
    assert upstream.count() == 0


def test_a_token_the_service_no_longer_takes_is_an_authentication_error(
    upstream: Upstream, account: ServiceAccount
) -> None:
    model = vertex(upstream, account)
    model(messages="hi")
    token = upstream.last.headers["authorization"][7:]
    upstream.cloud.tokens.clear()
    with pytest.raises(AuthenticationError) as info:
        model(messages="hi")
    assert info.value.status_code == 401 and token not in f"{info.value} {info.value!r}"


def test_configuration_mistakes_name_the_setting(upstream: Upstream) -> None:
    with pytest.raises(ValueError, match="publisher"):
        mf.Model.chat_completion(f"vertex/{GEMINI}", publisher="meta")
    with pytest.raises(ValueError, match="vertex_location"):
        mf.Model.chat_completion(f"vertex/{GEMINI}", vertex_location="US Central")
    with pytest.raises(ValueError, match="temperature"):
        mf.Model.chat_completion(f"vertex/{CLAUDE}", temperature=1.5)
    with pytest.raises(ValueError, match="structured_output"):
        mf.Model.chat_completion(f"vertex/{CLAUDE}", structured_output="response_schema")
    with pytest.raises(TypeError, match="vertex_credentials"):
        mf.Model.chat_completion(f"vertex/{GEMINI}", vertex_credentials=42)
    with pytest.raises(AuthenticationError, match="could not be loaded"):
        mf.Model.chat_completion(f"vertex/{GEMINI}", vertex_credentials={"type": "nope"})(
            messages="x"
        )
    no_project = {
        "type": "authorized_user",
        "client_id": "c",
        "client_secret": "s",
        "refresh_token": "r",
    }
    model = mf.Model.chat_completion(
        f"vertex/{GEMINI}", vertex_credentials=no_project, base_url=upstream.url
    )
    with pytest.raises(ValueError, match="vertex_project"):
        model._gcp._credentials = type("Token", (), {"token": "t", "expiry": None})()
        model(messages="x")


def test_serialization_keeps_no_secret_and_restores_a_working_model(
    upstream: Upstream, account: ServiceAccount, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    key_file = tmp_path / "sa.json"
    key_file.write_text(json.dumps(account.info))
    for model_type, model_id in (
        ("chat_completion", CLAUDE),
        ("text_embedder", "text-embedding-005"),
    ):
        model = getattr(mf.Model, model_type)(
            f"vertex/{model_id}",
            vertex_credentials=account.info,
            vertex_project=PROJECT,
            base_url=upstream.url,
        )
        state = model.serialize()
        assert "PRIVATE KEY" not in str(state)
        restored = mf.Model.from_serialized(state)
        assert type(restored) is type(model) and restored.serialize() == state
        assert restored.credential_source().startswith("Application Default Credentials")
        monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(key_file))
        assert restored("hi").data is not None
    verified(upstream)


# -- errors, embeddings, prices -------------------------------------------------------------------
@pytest.mark.parametrize(
    ("model_id", "reply", "cls"),
    [
        (GEMINI, Reply(status=429, retry_delay="7s"), RateLimitError),
        (GEMINI, Reply(status=503), InternalServerError),
        (
            GEMINI,
            Reply(status=400, error="The input token count exceeds the maximum number of tokens"),
            ContextWindowExceededError,
        ),
        (CLAUDE, Reply(status=529, error_type="overloaded_error"), InternalServerError),
        (CLAUDE, Reply(status=429), RateLimitError),
        (
            CLAUDE,
            Reply(status=400, error_type="invalid_request_error", error="prompt is too long"),
            ContextWindowExceededError,
        ),
    ],
)
def test_errors_in_either_shape(
    upstream: Upstream, account: ServiceAccount, model_id: str, reply: Reply, cls: type
) -> None:
    upstream.script(reply)
    with pytest.raises(cls) as info:
        vertex(upstream, account, model=model_id)(messages="hi")
    if reply.retry_delay:
        assert info.value.retry_after == 7.0


def test_embeddings_through_predict(upstream: Upstream, account: ServiceAccount) -> None:
    embedder = mf.Model.text_embedder(
        "vertex/text-embedding-005",
        vertex_credentials=account.info,
        base_url=upstream.url,
        dimensions=8,
        task_type="RETRIEVAL_QUERY",
    )
    answer = embedder(["one two", "three"])
    assert [len(v) for v in answer.data] == [8, 8]
    assert answer.metadata["usage"] == {"prompt_tokens": 3, "total_tokens": 3}
    assert upstream.last.json == {
        "instances": [
            {"content": "one two", "task_type": "RETRIEVAL_QUERY"},
            {"content": "three", "task_type": "RETRIEVAL_QUERY"},
        ],
        "parameters": {"outputDimensionality": 8},
    }
    assert upstream.last.path == path("google", "text-embedding-005", "predict", "us-central1")
    assert len(asyncio.run(embedder.acall("hi")).data) == 8
    verified(upstream)


def test_prices_come_from_genai_prices() -> None:
    assert price_of("vertex", GEMINI) is not None
    assert price_of("vertex", CLAUDE) is not None
    assert price_of("vertex", "no-such-model") is None
