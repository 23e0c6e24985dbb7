"""The embedded llama.cpp model behind ``msgflux serve``: its answers come out in the exact OpenAI
schema (ids, ``created``, ``usage``, ``finish_reason``), JSON and SSE, after a failed upstream."""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator

import orjson
import pytest

from tests.server.harness import Served, start
from tests.upstream import closed_port_url

pytestmark = [
    pytest.mark.local,
    pytest.mark.skipif(
        importlib.util.find_spec("llama_cpp") is None, reason="needs the [local] extra"
    ),
]

BODY = {
    "model": "chat",
    "messages": [{"role": "user", "content": "Say hi."}],
    "max_tokens": 8,
    "temperature": 0,
}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    config = {
        "gateways": {
            "chat": {
                "models": [
                    {"model_name": "cloud", "model": "openai_compatible/x",
                     "base_url": closed_port_url()},
                    {"model_name": "offline", "model": "local/smollm2-135m-instruct"},
                ]
            }
        }
    }  # fmt: skip
    served = start(tmp_path_factory.mktemp("local"), config, timeout=120)
    try:
        yield served
    finally:
        served.stop()


def test_a_local_answer_has_the_openai_schema(server: Served) -> None:
    with server.client(timeout=120) as http:
        resp = http.post("/v1/chat/completions", json=BODY)
    assert resp.status_code == 200, resp.text
    assert resp.headers["x-msgflux-deployment"] == "offline"
    assert resp.headers["x-msgflux-fallbacks"] == "cloud"
    data = resp.json()
    assert data["id"].startswith("chatcmpl-") and data["object"] == "chat.completion"
    assert isinstance(data["created"], int) and data["model"] == "chat"
    choice = data["choices"][0]
    assert choice["index"] == 0 and choice["finish_reason"] in ("stop", "length")
    assert choice["message"]["role"] == "assistant" and choice["message"]["content"]
    usage = data["usage"]
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"] > 0


def test_a_local_stream_has_the_openai_chunk_schema(server: Served) -> None:
    body = {**BODY, "stream": True, "stream_options": {"include_usage": True}}
    with server.client(timeout=120) as http:
        resp = http.post("/v1/chat/completions", json=body)
    assert resp.status_code == 200
    blocks = [b[len("data: ") :] for b in resp.text.split("\n\n") if b.startswith("data: ")]
    assert blocks[-1] == "[DONE]"
    chunks = [orjson.loads(b) for b in blocks[:-1]]
    assert len({c["id"] for c in chunks}) == 1
    assert all(c["object"] == "chat.completion.chunk" and c["model"] == "chat" for c in chunks)
    assert all(isinstance(c["created"], int) for c in chunks)
    finishes = [c["choices"][0]["finish_reason"] for c in chunks if c["choices"]]
    assert finishes[-1] in ("stop", "length") and all(f is None for f in finishes[:-1])
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["completion_tokens"] > 0
