"""The offline tool set (data_recipes/toolbox.py) and the tool-use rows built on it: the schema a row's reward
checks is the one the model is shown, and a dialog's tool responses are what the tools return.
Run: pytest tests/data_recipes/test_toolbox.py"""

from __future__ import annotations

import json

import pytest

from data_recipes import toolbox
from data_recipes.instructions import build


@pytest.mark.parametrize("toolset, name, arguments, result", [
    ("calculator", "add", {"a": 2, "b": 3.5}, "5.5"),
    ("calculator", "subtract", {"a": 2, "b": 5}, "-3"),
    ("calculator", "multiply", {"a": 12, "b": 4}, "48"),
    ("calculator", "divide", {"a": 1, "b": 3}, "0.333333"),
    ("units", "convert_units", {"value": 100, "from_unit": "celsius", "to_unit": "fahrenheit"}, "212"),
    ("units", "convert_units", {"value": 2.5, "from_unit": "hours", "to_unit": "minutes"}, "150"),
    ("lookup", "get_capital", {"country": "Kenya"}, "Nairobi"),
    ("lookup", "get_population", {"country": "Norway"}, "6 million"),
])
def test_tools_compute_their_results(toolset, name, arguments, result):
    assert toolbox.call_tool(toolset, name, arguments) == result


def test_lookups_are_a_fixed_table_the_same_every_time():
    assert toolbox.get_weather(city="Oslo", unit="celsius") == toolbox.get_weather(city="Oslo", unit="celsius")
    celsius = int(toolbox.get_weather(city="Oslo", unit="celsius").split()[0])
    fahrenheit = float(toolbox.get_weather(city="Oslo", unit="fahrenheit").split()[0])
    assert fahrenheit == pytest.approx(celsius * 9 / 5 + 32)
    assert toolbox.get_time(city="Lima") == "23:25"  # pinned: a changed table changes every dataset built on it


@pytest.mark.parametrize("toolset, name, arguments, error", [
    ("calculator", "divide", {"a": 1, "b": 0}, "b must not be zero"),
    ("calculator", "add", {"a": "2", "b": 3}, "a must be a number"),
    ("calculator", "add", {"a": True, "b": 3}, "a must be a number"),
    ("calculator", "multiply", {"a": 1e300, "b": 2}, "a must be a finite number"),
    ("calculator", "add", {"a": 1}, "missing 1 required positional argument"),
    ("calculator", "power", {"a": 1}, "Tool power not found."),
    ("units", "convert_units", {"value": 1, "from_unit": "meters", "to_unit": "grams"}, "cannot convert length"),
    ("units", "convert_units", {"value": 1, "from_unit": "parsecs", "to_unit": "meters"}, "from_unit must be one of"),
    ("lookup", "get_capital", {"country": "Atlantis"}, "country must be one of"),
    ("lookup", "get_weather", {"city": "Oslo", "unit": "kelvin"}, "unit must be one of"),
    ("lookup", "get_capital", ["Kenya"], "arguments must be an object"),
])
def test_a_bad_call_gets_an_error_the_model_can_read(toolset, name, arguments, error):
    response = toolbox.call_tool(toolset, name, arguments)
    assert response.startswith("{'error': ") and error in response


def test_a_rows_tools_column_is_the_schema_the_model_is_shown():
    ds = build(n=40, seed=0, tasks=["tool_calc", "tool_units", "tool_lookup", "tool_answer_calc",
                                    "tool_answer_lookup"])
    for row in ds:
        assert json.loads(row["tools"]) == toolbox.tool_schemas(row["environment"])
        names = {schema["function"]["name"] for schema in json.loads(row["tools"])}
        assert all(call["name"] in names for call in json.loads(row["ground_truth"]))


def test_a_dialogs_tool_responses_are_what_the_tools_return():
    ds = build(n=40, seed=1, tasks=["tool_calc", "tool_units", "tool_answer_lookup"])
    for row in ds:
        calls = json.loads(row["ground_truth"])
        responses = [m["content"] for m in row["messages"] if m["role"] == "tool"]
        assert responses == [toolbox.call_tool(row["environment"], c["name"], c["arguments"]) for c in calls]
        assert row["messages"][-1]["content"].endswith(" and ".join(responses))
        assert row["answers"] == [" and ".join(responses)]


def test_a_request_that_needs_no_tool_is_answered_directly():
    rows = [r for r in build(n=60, seed=0, tasks=["tool_lookup"]) if r["ground_truth"] == "[]"]
    assert rows and all(len(r["messages"]) == 2 and "<tool_call>" not in r["messages"][1]["content"] for r in rows)
