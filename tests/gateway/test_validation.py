"""ModelGateway construction: the error types msgflux documents, with messages naming fields."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from msgflux.models.base import BaseModel
from msgflux.models.gateway import ModelGateway
from msgflux.models.types import ChatCompletionModel
from tests.fakes import Embedder, Scripted, SyncOnly


def two() -> list[dict[str, Any]]:
    return [
        {"model_name": "a", "model": Scripted("a")},
        {"model_name": "b", "model": Scripted("b")},
    ]


@pytest.mark.parametrize("models", [None, [], {}, "x", ({"model_name": "a"},)])
def test_models_must_be_a_non_empty_list(models: Any) -> None:
    with pytest.raises(TypeError, match="non-empty list"):
        ModelGateway(models)


def test_element_not_a_dict_is_type_error() -> None:
    with pytest.raises(TypeError, match="list of dicts"):
        ModelGateway([{"model_name": "a", "model": Scripted("a")}, "b"])  # type: ignore[list-item]


@pytest.mark.parametrize("missing", ["model_name", "model"])
def test_missing_required_key_is_value_error(missing: str) -> None:
    spec = {"model_name": "a", "model": Scripted("a")}
    del spec[missing]
    with pytest.raises(ValueError, match=missing):
        ModelGateway([spec])


def test_unknown_key_names_it_and_the_accepted_keys() -> None:
    spec = {"model_name": "a", "model": Scripted("a"), "time_constraint": []}
    with pytest.raises(ValueError, match="time_constraint") as info:
        ModelGateway([spec])
    assert "accepted keys" in str(info.value)
    assert "time_constraints" in str(info.value)


def test_duplicate_model_name_is_value_error() -> None:
    with pytest.raises(ValueError, match="Duplicate model name found: `a`"):
        ModelGateway([{"model_name": "a", "model": Scripted("a")}] * 2)


@pytest.mark.parametrize("name", ["", 3, None])
def test_model_name_must_be_non_empty_str(name: Any) -> None:
    with pytest.raises(TypeError, match="model_name"):
        ModelGateway([{"model_name": name, "model": Scripted("a")}])


def test_model_not_a_base_model_is_type_error() -> None:
    with pytest.raises(TypeError, match="BaseModel"):
        ModelGateway([{"model_name": "a", "model": object()}])


def test_models_of_different_types_is_type_error() -> None:
    with pytest.raises(TypeError, match="must be of the same `model_type`"):
        ModelGateway(
            [{"model_name": "a", "model": Scripted("a")}, {"model_name": "b", "model": Embedder()}]
        )


@pytest.mark.parametrize("attr", ["model_type", "model_id", "provider"])
def test_model_without_identity_attribute_is_attribute_error(attr: str) -> None:
    class Partial(BaseModel):
        def __call__(self, **kwargs: Any) -> Any:
            return None

    obj = Partial()
    for name, value in {"model_type": "chat_completion", "model_id": "m", "provider": "p"}.items():
        if name != attr:
            setattr(obj, name, value)
    with pytest.raises(AttributeError, match=attr):
        ModelGateway([{"model_name": "a", "model": obj}])


@pytest.mark.parametrize(
    "windows",
    [[("25:00", "07:00")], [("7:70", "08:00")], [("23:00", "24:00")], [("aa:bb", "07:00")]],
)
def test_bad_time_format_is_value_error(windows: Any) -> None:
    with pytest.raises(ValueError, match="HH:MM"):
        ModelGateway([{"model_name": "a", "model": Scripted("a"), "time_constraints": windows}])


@pytest.mark.parametrize("windows", ["23:00-07:00", [("23:00",)], [(23, 7)]])
def test_bad_time_constraint_structure_is_type_error(windows: Any) -> None:
    with pytest.raises(TypeError, match="time_constraints"):
        ModelGateway([{"model_name": "a", "model": Scripted("a"), "time_constraints": windows}])


def test_unknown_timezone_is_value_error() -> None:
    with pytest.raises(ValueError, match="Mars/Olympus"):
        ModelGateway(two(), timezone="Mars/Olympus")


def test_single_deployment_works_and_warns(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="msgflux.gateway"):
        gateway = ModelGateway([{"model_name": "only", "model": SyncOnly()}])
    assert "fallback cannot help" in caplog.text
    assert gateway(messages="hi").consume() == "sync-only: hi"


@pytest.mark.parametrize(
    ("option", "value", "error"),
    [
        ("max_retries", -1, ValueError),
        ("max_retries", "2", TypeError),
        ("max_attempts", 0, ValueError),
        ("timeout", 0, ValueError),
        ("deadline", "soon", TypeError),
        ("mid_stream", "resume", ValueError),
        ("fallback_on", 3, TypeError),
        ("on_success", "print", TypeError),
        ("backoff_cap", -1, ValueError),
    ],
)
def test_bad_options_name_the_field(option: str, value: Any, error: type[Exception]) -> None:
    with pytest.raises(error, match=option):
        ModelGateway(two(), **{option: value})


def test_model_preference_naming_no_deployment_lists_the_names() -> None:
    gateway = ModelGateway(two())
    with pytest.raises(ValueError, match=r"Unknown model `c`\. Available models: a, b"):
        gateway(model_preference="c", messages="hi")


def test_documented_attributes() -> None:
    models = two()
    gateway = ModelGateway(models)
    assert gateway.models == [m["model"] for m in models]
    assert gateway.model_names == ["a", "b"]
    assert gateway.model_type == "chat_completion"
    assert gateway.get_model_info() == [
        {"model_id": "a", "provider": "fake"},
        {"model_id": "b", "provider": "fake"},
    ]


def test_user_model_styles_are_accepted() -> None:
    class NoInit(BaseModel, ChatCompletionModel):
        provider = "mock"
        model_id = "no-init"

        def __call__(self, **kwargs: Any) -> Any:
            raise RuntimeError("x")

    class InitWithoutSuper(BaseModel, ChatCompletionModel):
        provider = "mock"

        def __init__(self, model_id: str) -> None:
            self.model_id = model_id

        def __call__(self, **kwargs: Any) -> Any:
            return "ok"

    gateway = ModelGateway(
        [
            {"model_name": "a", "model": NoInit()},
            {"model_name": "b", "model": InitWithoutSuper("m")},
        ]
    )
    assert gateway(messages="hi") == "ok"


def test_single_digit_hours_are_accepted_as_in_msgflux() -> None:
    gateway = ModelGateway(
        [{"model_name": "a", "model": Scripted("a"), "time_constraints": [("7:00", "8:05")]}]
    )
    assert gateway.raw_time_constraints == {"a": [("7:00", "8:05")]}
    start, end = gateway.parsed_time_constraints["a"][0]
    assert (start.hour, start.minute, end.hour, end.minute) == (7, 0, 8, 5)


# -- the caller's keywords -----------------------------------------------------------------------
def _http_gateway(base_url: str) -> ModelGateway:
    from msgflux import Model

    return ModelGateway(
        [
            {
                "model_name": "a",
                "model": Model.chat_completion("openai_compatible/m", base_url=base_url),
            },
            {
                "model_name": "b",
                "model": Model.chat_completion("openai_compatible/n", base_url=base_url),
            },
        ]
    )


async def test_a_mistyped_keyword_fails_at_once_naming_it_never_at_the_deployments() -> None:
    from tests.upstream import Upstream

    with Upstream() as up:
        gateway = _http_gateway(up.base_url)
        for call in (
            lambda: gateway(messages="hi", temprature=0),
            lambda: gateway(messages="hi", stream=True, temprature=0),
        ):
            with pytest.raises(TypeError, match="did you mean 'temperature'"):
                call()
        with pytest.raises(TypeError, match="max_token"):
            await gateway.acall(messages="hi", max_token=5)
        assert up.count() == 0
        deployments = gateway.stats()["deployments"]
        assert all(d["calls"] == 0 and d["failures"] == {} for d in deployments.values())
        # Vendor fields go in extra_body; the raw path passes any field through.
        gateway(messages="hi", extra_body={"top_k": 3})
        assert up.last.json["top_k"] == 3
        gateway.complete(
            {"model": "x", "messages": [{"role": "user", "content": "hi"}], "top_k": 4}
        )
        assert up.last.json["top_k"] == 4
