"""Drop-in compatibility with today's msgflux ModelGateway (and its registry and BaseModel).

msgflux's own tests (tests/models/test_gateway.py and friends) are run unchanged from a
scratch folder as a check; these are ours, for every behaviour they rely on: the
``fallback=`` policy, descriptions, the ``"provider/model_id"`` shorthand, the model setters,
the routed context methods, msgflux's patch points for time (``utc_now``, ``datetime``), the
serialized form, the phrases users match on, ``model_registry``/``register_model``.
"""

from __future__ import annotations

import warnings
from datetime import datetime, time, timezone
from typing import Any
from unittest.mock import patch

import pytest

from msgflux import Model
from msgflux.exceptions import ModelRouterError
from msgflux.models.base import BaseModel
from msgflux.models.compaction import ContextTokenEstimate, ModelCompaction
from msgflux.models.gateway import ModelGateway
from msgflux.models.registry import model_registry, register_model
from msgflux.models.response import ModelResponse
from msgflux.models.types import ChatCompletionModel, TextEmbedderModel


class Mock(BaseModel, ChatCompletionModel):
    """msgflux-style: ``__init__`` without super(), setters that return self."""

    provider = "mock"

    def __init__(self, model_id: str, *, fail: bool = False, capacity: int | None = None) -> None:
        self.model_id = model_id
        self.fail = fail
        self.calls = 0
        self.reasoning_effort: str | None = None
        self.speed: str | None = None
        self.context_capacity = capacity
        self.native: list[bool] = []

    def __call__(self, **kwargs: Any) -> ModelResponse:
        self.calls += 1
        if self.fail:
            raise RuntimeError(f"{self.model_id} failed")
        response = ModelResponse()
        response.set_response_type("text_generation")
        response.add(f"from {self.model_id}")
        return response

    def set_reasoning_effort(self, value: str | None) -> Mock:
        self.reasoning_effort = value
        return self

    def set_speed(self, value: str | None) -> Mock:
        self.speed = value
        return self

    def count_context_tokens(self, **kwargs: Any) -> ContextTokenEstimate:
        if self.fail:
            raise RuntimeError("cannot count")
        return ContextTokenEstimate(input_tokens=7, source="heuristic")

    async def acount_context_tokens(self, **kwargs: Any) -> ContextTokenEstimate:
        return self.count_context_tokens(**kwargs)

    def compact_context(
        self, messages: Any, *, system_prompt: Any = None, native: bool = True
    ) -> ModelCompaction:
        self.native.append(native)
        return ModelCompaction(
            format="provider" if native else "messages",
            items=[{"role": "system", "content": self.model_id}],
            provider=self.provider,
            model_id=self.model_id,
        )

    def serialize(self) -> dict[str, Any]:
        return {"model_id": self.model_id, "provider": self.provider, "custom": True}


class Bare(BaseModel, ChatCompletionModel):
    provider = "mock"
    model_id = "bare"

    def __call__(self, **kwargs: Any) -> Any:
        return ModelResponse()


def deployments(*models: Mock, **extra: dict[str, Any]) -> list[dict[str, Any]]:
    return [{"model_name": m.model_id, "model": m, **extra.get(m.model_id, {})} for m in models]


# -- construction --------------------------------------------------------------------------------
def test_basic_attributes_msgflux_reads() -> None:
    gateway = ModelGateway(deployments(Mock("a"), Mock("b")))
    assert gateway.current_model_index == 0
    assert gateway.fallback is True
    assert gateway.model_descriptions == {"a": None, "b": None}
    assert gateway.raw_time_constraints is None and gateway.parsed_time_constraints == {}
    assert gateway.batch_support is False


@pytest.mark.parametrize(
    ("models", "error", "phrase"),
    [
        ([], TypeError, "`models` must be a non-empty list"),
        ("x", TypeError, "`models` must be a non-empty list"),
        ([{"model_name": "a", "model": Bare()}, "x"], TypeError, "requires a list of dicts"),
        ([{"model": Bare()}], ValueError, "missing required key `model_name`"),
        ([{"model_name": "a"}], ValueError, "missing required key `model`"),
        (
            [{"model_name": "a", "model": "no-slash"}],
            TypeError,
            "does not inherit from `BaseModel`",
        ),
        ([{"model_name": "a", "model": 3}], TypeError, "must inherit from `BaseModel`"),
    ],
)
def test_construction_errors_carry_msgflux_phrases(models: Any, error: type, phrase: str) -> None:
    with pytest.raises(error, match=phrase):
        ModelGateway(models)


def test_duplicates_mixed_types_and_missing_attributes() -> None:
    with pytest.raises(ValueError, match="Duplicate model name"):
        ModelGateway([{"model_name": "a", "model": Bare()}, {"model_name": "a", "model": Bare()}])

    class Embed(BaseModel, TextEmbedderModel):
        provider, model_id = "mock", "e"

    with pytest.raises(TypeError, match="must be of the same `model_type`"):
        ModelGateway([{"model_name": "a", "model": Bare()}, {"model_name": "e", "model": Embed()}])
    for attr in ("model_type", "model_id", "provider"):
        model = Mock("m")
        setattr(model, attr, None)
        with pytest.raises(AttributeError, match=f"does not have a valid `{attr}`"):
            ModelGateway([{"model_name": "m", "model": model}])


def test_fallback_must_be_a_bool() -> None:
    with pytest.raises(TypeError, match="`fallback` must be a bool"):
        ModelGateway(deployments(Mock("a")), fallback="yes")  # type: ignore[arg-type]


def test_a_provider_model_string_is_built_with_model_chat_completion() -> None:
    built = Mock("gpt-5.6-luna")
    with patch("msgflux.models.gateway.Model.chat_completion", return_value=built) as factory:
        gateway = ModelGateway(
            [{"model_name": "fast", "model": "openai/gpt-5.6-luna", "description": "  Fast.  "}]
        )
    factory.assert_called_once_with("openai/gpt-5.6-luna")
    assert gateway.models == [built]
    assert gateway.get_model_description("fast") == "Fast."


@pytest.mark.parametrize("bad", ["", "   ", 42])
def test_descriptions_must_be_non_empty_strings(bad: Any) -> None:
    with pytest.raises(TypeError, match=r"description.*non-empty string"):
        ModelGateway([{"model_name": "a", "model": Mock("a"), "description": bad}])


def test_validate_model_name() -> None:
    gateway = ModelGateway(deployments(Mock("a"), Mock("b")))
    assert gateway.validate_model_name("a") == "a"
    with pytest.raises(ValueError, match=r"Unknown model `c`\. Available models: a, b\."):
        gateway.validate_model_name("c")
    with pytest.raises(TypeError, match="`model_name` must be a non-empty string"):
        gateway.validate_model_name("")


# -- routing -------------------------------------------------------------------------------------
def test_fallback_false_tries_only_the_selected_deployment() -> None:
    weak, strong = Mock("weak"), Mock("strong", fail=True)
    gateway = ModelGateway(deployments(weak, strong), fallback=False)
    with pytest.raises(ModelRouterError, match="All 1 available models failed"):
        gateway(model_preference="strong")
    assert (strong.calls, weak.calls) == (1, 0)
    first = Mock("first", fail=True)
    gateway = ModelGateway(deployments(first, Mock("second")), fallback=False)
    with pytest.raises(ModelRouterError, match="All 1 available models failed"):
        gateway()


async def test_fallback_false_on_the_async_path() -> None:
    weak, strong = Mock("weak"), Mock("strong", fail=True)
    gateway = ModelGateway(deployments(weak, strong), fallback=False)
    with pytest.raises(ModelRouterError, match="All 1 available models failed"):
        await gateway.acall(model_preference="strong")
    assert weak.calls == 0


def test_unknown_preference_raises_before_any_call() -> None:
    a = Mock("a")
    gateway = ModelGateway(deployments(a, Mock("b")))
    with pytest.raises(ValueError, match="Unknown model `missing`"):
        gateway(model_preference="missing")
    assert a.calls == 0


def test_calls_without_messages_and_with_extra_kwargs_reach_user_models() -> None:
    a = Mock("a")
    gateway = ModelGateway(deployments(a, Mock("b")))
    assert "a" in gateway().data
    gateway(temperature=0.7, max_tokens=100)
    assert a.calls == 2


def _at(hour: int) -> datetime:
    return datetime(2025, 1, 1, hour, 0, 0, tzinfo=timezone.utc)


def test_utc_now_is_msgflux_patch_point_for_time() -> None:
    a, b = Mock("a"), Mock("b")
    with patch("msgflux.models.gateway.utc_now", return_value=_at(10)):
        gateway = ModelGateway(deployments(a, b, a={"time_constraints": [("09:00", "17:00")]}))
        assert gateway._is_time_restricted("a") and not gateway._is_time_restricted("b")
        assert gateway().data == "from b"
    with patch("msgflux.models.gateway.utc_now", return_value=_at(8)):
        assert not gateway._is_time_restricted("a")
        assert gateway().data == "from a"


def test_patching_datetime_in_the_gateway_package_works_too() -> None:
    a, b = Mock("a"), Mock("b")
    gateway = ModelGateway(deployments(a, b, a={"time_constraints": [("22:00", "06:00")]}))
    with patch("msgflux.models.gateway.datetime") as fake:
        fake.now.return_value = _at(23)
        assert gateway().data == "from b"


def test_every_deployment_restricted_and_a_restricted_selection() -> None:
    window = {"time_constraints": [("09:00", "17:00")]}
    with patch("msgflux.models.gateway.utc_now", return_value=_at(10)):
        gateway = ModelGateway(deployments(Mock("a"), Mock("b"), a=window, b=window))
        with pytest.raises(ModelRouterError, match="No model available due to time constraints"):
            gateway()
        restricted = Mock("restricted")
        gateway = ModelGateway(
            deployments(restricted, Mock("other"), restricted=window), fallback=False
        )
        with pytest.raises(ModelRouterError, match="Selected model `restricted` is unavailable"):
            gateway(model_preference="restricted")
        assert restricted.calls == 0


def test_time_constraints_raw_and_parsed_forms() -> None:
    gateway = ModelGateway(
        deployments(
            Mock("a"), Mock("b"), a={"time_constraints": [("22:00", "06:00"), ("12:00", "12:30")]}
        )
    )
    assert gateway.raw_time_constraints == {"a": [("22:00", "06:00"), ("12:00", "12:30")]}
    assert gateway.parsed_time_constraints == {
        "a": [(time(22, 0), time(6, 0)), (time(12, 0), time(12, 30))]
    }


@pytest.mark.parametrize(
    ("value", "error", "phrase"),
    [
        ("not-a-list", TypeError, "must be a list of tuples"),
        (["not-a-tuple"], TypeError, "must be a tuple/list of two strings"),
        ([(9, 17)], TypeError, "must be strings"),
        ([("25:00", "06:00")], ValueError, "Invalid format in time"),
    ],
)
def test_time_constraint_errors_carry_msgflux_phrases(value: Any, error: type, phrase: str) -> None:
    with pytest.raises(error, match=phrase):
        ModelGateway([{"model_name": "a", "model": Mock("a"), "time_constraints": value}])


# -- settings forwarded to models ----------------------------------------------------------------
def test_set_reasoning_effort_and_speed_forward_and_return_the_gateway() -> None:
    fast, strong = Mock("fast"), Mock("strong")
    gateway = ModelGateway(deployments(fast, strong))
    assert gateway.set_reasoning_effort("high") is gateway
    assert (fast.reasoning_effort, strong.reasoning_effort) == ("high", "high")
    gateway.set_reasoning_effort("low", model_name="fast")
    assert (fast.reasoning_effort, strong.reasoning_effort) == ("low", "high")
    assert gateway.set_speed("ultrafast", model_name="strong") is gateway
    assert (fast.speed, strong.speed) == (None, "ultrafast")


@pytest.mark.parametrize("value", ["slow", "priority", "", 1, True])
def test_an_invalid_speed_changes_no_model(value: Any) -> None:
    model = Mock("a")
    gateway = ModelGateway(deployments(model, Mock("b")))
    with pytest.raises((TypeError, ValueError), match="`speed` must be"):
        gateway.set_speed(value)
    assert model.speed is None


@pytest.mark.parametrize("value", ["", "   ", 1, True])
def test_an_invalid_reasoning_effort_changes_no_model(value: Any) -> None:
    model = Mock("a")
    gateway = ModelGateway(deployments(model, Mock("b")))
    with pytest.raises(TypeError, match="non-empty string or None"):
        gateway.set_reasoning_effort(value)
    assert model.reasoning_effort is None


def test_a_model_without_the_setter_gets_a_warning() -> None:
    gateway = ModelGateway(
        [{"model_name": "bare", "model": Bare()}, {"model_name": "a", "model": Mock("a")}]
    )
    with pytest.warns(UserWarning, match="does not support"):
        gateway.set_speed("fast")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        gateway.set_speed(None)  # nothing to set: no warning


# -- context methods ---------------------------------------------------------------------------
def test_context_capacity_is_the_smallest_known() -> None:
    assert (
        ModelGateway(
            deployments(Mock("a", capacity=200_000), Mock("b", capacity=100_000))
        ).context_capacity
        == 100_000
    )
    assert (
        ModelGateway(deployments(Mock("a", capacity=100_000), Mock("b"))).context_capacity is None
    )


def test_compaction_is_forced_to_the_portable_form() -> None:
    first, second = Mock("a"), Mock("b")
    gateway = ModelGateway(deployments(first, second))
    compacted = gateway.compact_context([], native=True)
    assert isinstance(compacted, ModelCompaction) and compacted.format == "messages"
    assert (first.native, second.native) == ([False], [])
    assert compacted.to_view() == {
        "format": "messages",
        "items": [{"role": "system", "content": "a"}],
        "provider": "mock",
    }


async def test_context_methods_fall_back_like_calls() -> None:
    gateway = ModelGateway(deployments(Mock("a", fail=True), Mock("b")))
    assert gateway.count_context_tokens([]).input_tokens == 7
    assert (await gateway.acount_context_tokens([])).source == "heuristic"
    with pytest.raises(ModelRouterError, match="All 2 available models failed"):
        gateway.warmup_system_prompt(system_prompt="hi")  # neither model can warm up


# -- serialization -----------------------------------------------------------------------------
def test_serialize_keeps_descriptions_fallback_and_each_models_own_form() -> None:
    gateway = ModelGateway(
        deployments(
            Mock("a"),
            Mock("b"),
            a={"description": "Fast.", "time_constraints": [("09:00", "17:00")]},
        ),
        fallback=False,
    )
    state = gateway.serialize()["state"]
    assert state["fallback"] is False
    assert state["models"][0] == {
        "model_name": "a",
        "model": {"model_id": "a", "provider": "mock", "custom": True},
        "description": "Fast.",
        "time_constraints": [("09:00", "17:00")],
    }
    assert "fallback" not in ModelGateway(deployments(Mock("a"), Mock("b"))).serialize()["state"]


def test_from_serialized_builds_models_with_model_from_serialized() -> None:
    data = {
        "msgflux_type": "model_gateway",
        "state": {
            "models": [
                {"model_name": "weak", "model": {"model_id": "m1"}, "description": "W"},
                {"model_name": "strong", "model": {"model_id": "m2"}},
            ],
            "fallback": False,
        },
    }
    with patch(
        "msgflux.models.model.Model.from_serialized", side_effect=[Mock("m1"), Mock("m2")]
    ) as rebuild:
        gateway = ModelGateway.from_serialized(data)
    assert rebuild.call_count == 2 and gateway.model_names == ["weak", "strong"]
    assert gateway.fallback is False and gateway.model_descriptions == {"weak": "W", "strong": None}
    with pytest.raises(ValueError, match="Incorrect msgflux type"):
        ModelGateway.from_serialized({"msgflux_type": "wrong_type", "state": {}})
    with pytest.raises(ValueError, match="does not contain models"):
        ModelGateway.from_serialized({"msgflux_type": "model_gateway", "state": {"models": []}})


def test_model_from_serialized_takes_the_whole_dict_its_keys_or_its_state() -> None:
    model = Model.chat_completion(
        "openai/gpt-4.1-nano", temperature=0.5, base_url="http://127.0.0.1:9/v1"
    )
    data = model.serialize()
    for restored in (
        Model.from_serialized(data),
        Model.from_serialized(**data),
        Model.from_serialized(data["provider"], data["model_type"], data["state"]),
        Model.from_serialized(data["provider"], data["model_type"], data),
    ):
        assert restored.serialize() == data
    with pytest.raises(ValueError, match=r"pass the dict model\.serialize"):
        Model.from_serialized({"model_id": "x"})


# -- registry and BaseModel ---------------------------------------------------------------------
def test_register_model_makes_a_user_class_reachable_through_model_and_a_gateway() -> None:
    @register_model
    class Mine(BaseModel, ChatCompletionModel):
        provider = "mine_compat_test"

        def __init__(self, model_id: str) -> None:
            self.model_id = model_id

        def __call__(self, **kwargs: Any) -> ModelResponse:
            response = ModelResponse()
            response.add(f"mine says hi to {kwargs['messages']}")
            return response

    try:
        assert model_registry["chat_completion"]["mine_compat_test"] is Mine
        model = Model.chat_completion("mine_compat_test/x")
        assert isinstance(model, Mine)
        gateway = ModelGateway([{"model_name": "mine", "model": "mine_compat_test/x"}])
        assert gateway(messages="you").data == "mine says hi to you"
    finally:
        dict.__delitem__(model_registry["chat_completion"], "mine_compat_test")


def test_register_model_needs_model_type_and_provider() -> None:
    class NoType(BaseModel):
        provider = "p"

    with pytest.raises(ValueError, match="NoType must define `model_type` and `provider`"):
        register_model(NoType)


def test_model_registry_is_a_dict_of_dicts_of_classes() -> None:
    assert isinstance(model_registry, dict)
    assert "openai" in model_registry["chat_completion"]
    assert all(
        callable(cls) for by_provider in model_registry.values() for cls in by_provider.values()
    )


def test_base_model_to_ignore_lists_what_is_never_serialized() -> None:
    assert {
        "_api_key",
        "model",
        "processor",
        "client",
        "chat_transport",
        "credential_resolver",
    } <= set(BaseModel.to_ignore)
