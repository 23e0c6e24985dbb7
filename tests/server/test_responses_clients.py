"""The field's Python frameworks on the Responses API of a real ``msgflux serve``, each with
a function tool it runs itself, through the native lane (an ``openai`` deployment) and a
translated one (a chat-only deployment):

* the OpenAI Agents SDK in its default mode (the Responses API, the default client);
* pydantic-ai's ``OpenAIResponsesModel``;
* LangChain's ``ChatOpenAI(use_responses_api=True)``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import httpx2
import pytest

from tests.server.harness import Served, start
from tests.upstream import Reply, ToolCallSpec, Upstream

KEY = "sk-test-frameworks-0123456789"
os.environ.setdefault("OPENAI_AGENTS_DISABLE_TRACING", "1")  # no export to api.openai.com


class Env:
    def __init__(self, server: Served, oa: Upstream, chat: Upstream) -> None:
        self.server = server
        self.oa = oa
        self.chat = chat

    def upstream(self, model: str) -> Upstream:
        return self.oa if model == "native" else self.chat


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    with Upstream() as oa, Upstream() as chat:

        def gateway(model: str, url: str) -> dict[str, Any]:
            dep = {"model_name": "d", "model": model, "base_url": url, "api_key": "${UPSTREAM_KEY}"}
            return {"breaker": False, "models": [dep]}

        config = {
            "server": {"keys": [{"name": "apps", "key": KEY, "models": "*"}]},
            "gateways": {
                "native": gateway("openai/gpt-up", oa.base_url),
                "chat-only": gateway("openai_compatible/up-model", chat.base_url),
            },
        }
        server = start(tmp_path_factory.mktemp("frameworks"), config)
        try:
            yield Env(server, oa, chat)
        finally:
            server.stop()


@pytest.fixture(autouse=True)
def fresh(env: Env) -> None:
    env.oa.reset()
    env.chat.reset()


def _script_tool_then_answer(up: Upstream) -> None:
    up.script(
        [
            Reply(tool_calls=[ToolCallSpec("get_weather", {"city": "Paris"}, id="call_7")]),
            Reply(text="It is 22C in Paris."),
        ]
    )


def _tool_output_reached(up: Upstream) -> None:
    last = up.last
    assert last.invalid is None, last.invalid
    assert "22C and sunny in Paris" in last.body.decode()
    assert all(r.invalid is None for r in up.requests)


LANES = ["native", "chat-only"]


@pytest.mark.parametrize("model", LANES)
async def test_the_openai_agents_sdk_in_its_default_mode(env: Env, model: str) -> None:
    import agents
    from openai import AsyncOpenAI

    agents.set_tracing_disabled(True)
    client = AsyncOpenAI(base_url=env.server.base_url, api_key=KEY, max_retries=0)
    agents.set_default_openai_client(client, use_for_tracing=False)
    agents.set_default_openai_api("responses")

    @agents.function_tool
    def get_weather(city: str) -> str:
        """The weather in a city."""
        return f"22C and sunny in {city}"

    _script_tool_then_answer(env.upstream(model))
    agent = agents.Agent(name="weather", instructions="Use tools.", tools=[get_weather])
    agent.model = model
    try:
        result = await agents.Runner.run(agent, "Weather in Paris?")
    finally:
        await client.close()
    assert result.final_output == "It is 22C in Paris."
    _tool_output_reached(env.upstream(model))
    if model == "native":
        assert env.oa.last.path == "/v1/responses"


@pytest.mark.parametrize("model", LANES)
async def test_pydantic_ai_openai_responses_model(env: Env, model: str) -> None:
    from pydantic_ai import Agent
    from pydantic_ai.models.openai import OpenAIResponsesModel
    from pydantic_ai.providers.openai import OpenAIProvider

    provider = OpenAIProvider(base_url=env.server.base_url, api_key=KEY)
    agent = Agent(OpenAIResponsesModel(model, provider=provider))

    @agent.tool_plain
    def get_weather(city: str) -> str:
        """The weather in a city."""
        return f"22C and sunny in {city}"

    _script_tool_then_answer(env.upstream(model))
    async with agent:
        result = await agent.run("Weather in Paris?")
    assert result.output == "It is 22C in Paris."
    _tool_output_reached(env.upstream(model))


@pytest.mark.parametrize("model", LANES)
async def test_langchain_chat_openai_on_the_responses_api(env: Env, model: str) -> None:
    from langchain_core.messages import HumanMessage, ToolMessage
    from langchain_core.tools import tool
    from langchain_openai import ChatOpenAI

    @tool
    def get_weather(city: str) -> str:
        """The weather in a city."""
        return f"22C and sunny in {city}"

    async with httpx2.AsyncClient() as http:  # its own (LangChain caches one per URL)
        llm = ChatOpenAI(
            model=model,
            base_url=env.server.base_url,
            api_key=KEY,  # type: ignore[arg-type]
            use_responses_api=True,
            max_retries=0,
            http_async_client=http,
        ).bind_tools([get_weather])
        _script_tool_then_answer(env.upstream(model))
        messages: list[Any] = [HumanMessage("Weather in Paris?")]
        first = await llm.ainvoke(messages)
        assert [call["name"] for call in first.tool_calls] == ["get_weather"]
        call = first.tool_calls[0]
        tool_output = ToolMessage(get_weather.invoke(call["args"]), tool_call_id=call["id"])
        messages += [first, tool_output]
        second = await llm.ainvoke(messages)
    assert second.text == "It is 22C in Paris."
    _tool_output_reached(env.upstream(model))
