"""JSON values, output references and their resolution."""

from __future__ import annotations

import datetime as dt
import enum

import pytest
from pydantic import BaseModel

from dynaflow import DynaflowError, MissingOutputKey, NotJSON, OutputRef
from dynaflow.values import REF_KEY, find_refs, resolve, to_json, with_refs_as_objects


class Color(enum.Enum):
    RED = "red"


class Point(BaseModel):
    x: int
    when: dt.date


def test_json_values_pass_through_and_tuples_become_lists() -> None:
    value = {"a": [1, 2.5, True, None, "s"], "b": (1, (2, 3)), "c": {"d": {}}}
    assert to_json(value, "input") == {
        "a": [1, 2.5, True, None, "s"],
        "b": [1, [2, 3]],
        "c": {"d": {}},
    }


def test_models_and_enums_become_their_json_form() -> None:
    value = {"p": Point(x=1, when=dt.date(2024, 1, 2)), "c": Color.RED}
    assert to_json(value, "input") == {"p": {"x": 1, "when": "2024-01-02"}, "c": "red"}


@pytest.mark.parametrize(
    ("value", "path", "type_name"),
    [
        ({"when": dt.datetime(2024, 1, 1)}, "['when']", "datetime"),
        ({"a": [1, {2, 3}]}, "['a'][1]", "set"),
        ({"a": {"b": object()}}, "['a']['b']", "object"),
        ({"n": b"bytes"}, "['n']", "bytes"),
    ],
)
def test_a_non_json_value_is_named_with_its_path_and_type(
    value: object, path: str, type_name: str
) -> None:
    with pytest.raises(NotJSON) as info:
        to_json(value, "output of Thing#3")
    message = str(info.value)
    assert message.startswith(f"output of Thing#3{path} ")
    assert type_name in message
    assert isinstance(info.value, DynaflowError)


def test_non_string_keys_and_non_finite_floats_are_rejected() -> None:
    with pytest.raises(NotJSON, match="key 1 of type int"):
        to_json({1: "x"}, "input")
    with pytest.raises(NotJSON, match="nan"):
        to_json({"x": float("nan")}, "input")
    with pytest.raises(NotJSON, match="inf"):
        to_json([float("inf")], "input")


def test_output_refs_build_key_paths_by_attribute_and_item() -> None:
    ref = OutputRef(3, "app.Create")
    assert ref.uuid.path == ("uuid",)
    assert ref["a"]["b"].path == ("a", "b")
    assert ref.a["b"][0] == OutputRef(3, "app.Create", ("a", "b", 0))
    assert ref["a"] != ref["b"]
    assert len({ref.a, ref["a"]}) == 1
    assert ref["a"]["b"].describe() == "app.Create#3 output['a']['b']"


def test_output_refs_cannot_be_assigned_tested_or_iterated_while_planning() -> None:
    ref = OutputRef(3, "app.Create")
    with pytest.raises(TypeError, match="cannot be assigned"):
        ref.uuid = "x"
    with pytest.raises(TypeError, match="cannot be assigned"):
        ref["uuid"] = "x"
    with pytest.raises(TypeError, match="no truth value"):
        bool(ref.uuid)
    with pytest.raises(TypeError, match="cannot be iterated"):
        list(ref.items)


def test_refs_encode_to_markers_and_back() -> None:
    ref = OutputRef(2, "app.Create", ("a", "b"))
    encoded = to_json({"x": [ref], "y": 1}, "input")
    assert encoded == {"x": [{REF_KEY: [2, "app.Create", ["a", "b"]]}], "y": 1}
    assert list(find_refs(encoded)) == [ref]
    assert with_refs_as_objects(encoded) == {"x": [ref], "y": 1}


def test_resolve_replaces_refs_by_the_values_at_their_paths() -> None:
    outputs = {2: {"a": {"b": [10, 20]}}, 5: {"uuid": "u-5"}}
    data = to_json(
        {
            "nested": OutputRef(2, "app.P", ("a", "b", 1)),
            "list": [OutputRef(5, "app.Q", ("uuid",)), "plain"],
            "whole": OutputRef(5, "app.Q"),
        },
        "input",
    )
    assert resolve(data, outputs.__getitem__, "input of app.C#7") == {
        "nested": 20,
        "list": ["u-5", "plain"],
        "whole": {"uuid": "u-5"},
    }


def test_a_missing_key_names_the_consumer_the_producer_and_the_key_path() -> None:
    data = to_json({"x": OutputRef(2, "app.Producer", ("a", "missing", "deeper"))}, "input")
    with pytest.raises(MissingOutputKey) as info:
        resolve(data, {2: {"a": {"b": 1}}}.__getitem__, "input of app.Consumer#4")
    message = str(info.value)
    assert "input of app.Consumer#4" in message
    assert "app.Producer#2 output['a']['missing']" in message
    assert "deeper" not in message
    assert isinstance(info.value, DynaflowError)


def test_a_path_through_a_non_container_is_a_missing_key() -> None:
    data = to_json({"x": OutputRef(2, "app.P", ("a", "b"))}, "input")
    with pytest.raises(MissingOutputKey, match=r"output\['a'\]\['b'\]"):
        resolve(data, {2: {"a": 5}}.__getitem__, "input of app.C#3")
