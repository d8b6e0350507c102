"""tool_call and tool_call_format: hand-checked tables, the shared JSON-schema validator, and BFCL v4
(simple_python, parallel) ground truths rendered as Qwen3 tool calls.

Run: .venv/bin/python -m pytest -q tests/rewards/test_tool_rewards.py
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from rewards.text import schema_errors
from rewards.tools import parse_tool_calls, tool_call, tool_call_format

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "parameters": {
            "type": "object",
            "properties": {
                "city": {"type": "string"},
                "days": {"type": "integer", "minimum": 1},
                "unit": {"type": "string", "enum": ["C", "F"]},
                "alerts": {"type": "boolean"},
            },
            "required": ["city"],
        },
    },
}
TIME = {"name": "get_time", "parameters": {"type": "object", "properties": {"zone": {"type": "string"}}}}
TOOLS = [WEATHER, TIME]


def call(name: str, **arguments: Any) -> str:
    return "<tool_call>\n" + json.dumps({"name": name, "arguments": arguments}) + "\n</tool_call>"


PARIS = {"name": "get_weather", "arguments": {"city": "Paris", "days": 2}}
UTC = {"name": "get_time", "arguments": {"zone": "UTC"}}

# (completion, expected calls, score, why)
TOOL_CALL_CASES = [
    (call("get_weather", city="Paris", days=2), [PARIS], 1.0, "the expected call"),
    ('<tool_call>\n{"name": "get_weather", "arguments": {"days": 2.0, "city": "Paris"}}\n</tool_call>', [PARIS], 1.0,
     "key order ignored, 2.0 == 2"),
    (call("get_weather", city="paris", days=2), [PARIS], 0.0, "strings are exact"),
    (call("get_weather", city="Paris", days="2"), [PARIS], 0.0, "'2' is not 2 (and fails the schema)"),
    (call("get_weather", city="Paris", days=3), [PARIS], 0.0, "wrong value"),
    (call("get_weather", days=2), [{"name": "get_weather", "arguments": {"days": 2}}], 0.0,
     "misses a required argument, even when the gold does too"),
    (call("get_weather", city="Paris", days=0), [{"name": "get_weather", "arguments": {"city": "Paris", "days": 0}}],
     0.0, "below the schema's minimum"),
    (call("get_weather", city="Paris", unit="K"), [{"name": "get_weather", "arguments": {"city": "Paris",
                                                                                        "unit": "K"}}], 0.0,
     "not in the enum"),
    (call("get_weather", city="Paris", alerts=1), [{"name": "get_weather", "arguments": {"city": "Paris",
                                                                                        "alerts": True}}], 0.0,
     "1 is not a boolean"),
    (call("get_weather", city="Paris", days=2, verbose=True), [PARIS], 0.0, "an undeclared argument"),
    (call("get_forecast", city="Paris"), [{"name": "get_forecast", "arguments": {"city": "Paris"}}], 0.0,
     "a tool that does not exist"),
    (call("get_time", zone="UTC") + "\n" + call("get_weather", city="Paris", days=2), [PARIS, UTC], 1.0,
     "parallel calls in another order"),
    (call("get_weather", city="Paris", days=2), [PARIS, UTC], 0.0, "one of two calls missing"),
    (call("get_weather", city="Paris", days=2) * 2, [PARIS], 0.0, "the same call twice is one too many"),
    ("<think>\nI should check Paris.\n</think>\n\nLet me look.\n" + call("get_weather", city="Paris", days=2), [PARIS],
     1.0, "thinking and a lead-in sentence are fine"),
    ("<think>\n" + call("get_weather", city="Paris", days=2) + "\n</think>\n\nIt is sunny.", [PARIS], 0.0,
     "a call inside the thinking is not made"),
    ("<think>\nstill thinking", [PARIS], 0.0, "cut off while thinking"),
    ('<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris",}}\n</tool_call>',
     [{"name": "get_weather", "arguments": {"city": "Paris"}}], 0.0, "invalid JSON"),
    ('<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}',
     [{"name": "get_weather", "arguments": {"city": "Paris"}}], 0.0, "unclosed tag"),
    ("I don't need a tool for that.", [], 1.0, "no call expected, none made"),
    (call("get_time", zone="UTC"), [], 0.0, "no call expected, one made"),
]


@pytest.mark.parametrize(("completion", "expected", "score", "why"), TOOL_CALL_CASES,
                         ids=[case[3] for case in TOOL_CALL_CASES])
def test_tool_call(completion: str, expected: list, score: float, why: str) -> None:
    assert tool_call([completion], tools=[TOOLS], ground_truth=[expected]) == [score], why


def test_json_encoded_columns_and_rows_without_tools() -> None:
    completion = call("get_weather", city="Paris", days=2)
    assert tool_call([completion], tools=[json.dumps(TOOLS)], ground_truth=[json.dumps([PARIS])]) == [1.0]
    assert tool_call([completion, completion], tools=[None, TOOLS], ground_truth=[[PARIS], None]) == [None, None]
    assert tool_call([completion], tools=[TOOLS], ground_truth=[[PARIS]], task=["chat"], tasks=["tools"]) == [None]
    with pytest.raises(ValueError, match="ground_truth must be a list"):
        tool_call([completion], tools=[TOOLS], ground_truth=["42"])
    with pytest.raises(ValueError, match="a tool schema has no name"):
        tool_call([completion], tools=[[{"parameters": {}}]], ground_truth=[[PARIS]])


FORMAT_CASES = [
    (call("get_time", zone="UTC"), None, 1.0, "one well-formed call"),
    (call("get_time") + "\n" + call("get_weather", city="Oslo"), None, 1.0, "two well-formed calls"),
    ('<tool_call>\n{"name": "get_time"}\n</tool_call>', None, 0.0, "no arguments"),
    ('<tool_call>\n{"name": "get_time", "arguments": "{}"}\n</tool_call>', None, 0.0, "arguments as a string"),
    ('<tool_call>\n{"name": "get_time", "arguments": {}, "id": 1}\n</tool_call>', None, 0.0, "an extra key"),
    ('<tool_call>\n["get_time"]\n</tool_call>', None, 0.0, "not an object"),
    (call("get_time") + "</tool_call>", None, 0.0, "a stray closing tag"),
    ("<tool_call>\n<tool_call>\n{}\n</tool_call>", None, 0.0, "nested opening tag"),
    ("The time is noon.", None, 0.0, "no call where one is due"),
    ("The time is noon.", [], 1.0, "no call, and none is due"),
    (call("get_time"), [], 0.0, "a call where none is due"),
]


@pytest.mark.parametrize(
    ("completion", "expected", "score", "why"), FORMAT_CASES, ids=[case[3] for case in FORMAT_CASES]
)
def test_tool_call_format(completion: str, expected: list | None, score: float, why: str) -> None:
    assert tool_call_format([completion], tools=[TOOLS], ground_truth=[expected]) == [score], why


def test_parse_tool_calls_never_raises_on_junk() -> None:
    for junk in ["<tool_call>", "</tool_call>", "<tool_call></tool_call>", "<tool_call>" + "[" * 5000 + "</tool_call>"]:
        assert parse_tool_calls(junk) is None
    assert parse_tool_calls("no calls at all") == []


# ------------------------------------------------------------ the JSON-schema validator

SCHEMA_CASES = [
    ({"type": "integer"}, 2.0, True, "2.0 is an integer (JSON Schema draft 6+)"),
    ({"type": "integer"}, True, False, "a boolean is not a number"),
    ({"type": "float"}, 3, True, "BFCL's float takes an int"),
    ({"type": ["string", "null"]}, None, True, "a type list"),
    ({"type": "string", "nullable": True}, None, True, "OpenAPI nullable"),
    ({"type": "string", "pattern": "^[A-Z]{3}$"}, "EUR", True, "pattern"),
    ({"type": "string", "pattern": "^[A-Z]{3}$"}, "euro", False, "pattern broken"),
    ({"type": "array", "items": {"type": "integer"}, "minItems": 2}, [1], False, "too few items"),
    ({"type": "tuple", "items": {"type": "string"}}, ["a", "b"], True, "BFCL's tuple is an array"),
    ({"type": "object", "additionalProperties": False, "properties": {"a": {}}}, {"a": 1, "b": 2}, False,
     "additional property"),
    ({"anyOf": [{"type": "string"}, {"type": "integer"}]}, 3, True, "anyOf"),
    ({"oneOf": [{"type": "number"}, {"type": "integer"}]}, 3, False, "3 matches both of oneOf"),
    ({"$defs": {"pos": {"type": "integer", "minimum": 1}}, "type": "array", "items": {"$ref": "#/$defs/pos"}},
     [1, 0], False, "$ref"),
    ({"enum": [1, "a", None]}, 1.0, True, "enum compares numbers by value"),
    ({"const": True}, 1, False, "const True is not 1"),
    ({"not": {"type": "string"}}, 5, True, "not"),
]


@pytest.mark.parametrize(("schema", "instance", "valid", "why"), SCHEMA_CASES, ids=[case[3] for case in SCHEMA_CASES])
def test_schema_errors(schema: dict, instance: Any, valid: bool, why: str) -> None:
    assert (not schema_errors(instance, schema)) is valid, why


def test_invalid_schemas_are_value_errors() -> None:
    with pytest.raises(ValueError, match="unknown type 'str'"):
        schema_errors("x", {"type": "str"})
    with pytest.raises(ValueError, match="only local \\$ref"):
        schema_errors("x", {"$ref": "http://example.com/schema.json"})


# ------------------------------------------------------------ BFCL v4


def _read_jsonl(path: Path) -> list[dict]:
    with open(path) as lines:
        return [json.loads(line) for line in lines if line.strip()]


def _first_acceptable(value: Any) -> Any:
    # BFCL nests lists of acceptable values inside dict arguments (and lists of such dicts).
    if isinstance(value, dict):
        return {key: _first_acceptable(values[0]) for key, values in value.items() if values[0] != ""}
    if isinstance(value, list):
        return [_first_acceptable(item) for item in value]
    return value


def bfcl_calls(ground_truth: list[dict], functions: list[dict]) -> list[dict]:
    """Expected calls from BFCL's possible answers: the first acceptable value of each argument; an argument
    whose acceptable values include "" (may be omitted) is left out unless the schema requires it
    (simple_python_200 lists "" for a required argument; simple_python_307 and parallel_152 list a wrongly typed
    value after "")."""
    required = {function["name"]: set(function["parameters"].get("required", [])) for function in functions}
    calls = []
    for entry in ground_truth:
        ((name, arguments),) = entry.items()
        built = {}
        for key, values in arguments.items():
            if "" in values and key not in required[name]:
                continue
            built[key] = _first_acceptable([value for value in values if value != ""][0])
        calls.append({"name": name, "arguments": built})
    return calls


def _render(calls: list[dict]) -> str:
    return "\n".join("<tool_call>\n" + json.dumps(made) + "\n</tool_call>" for made in calls)


def _corrupt(calls: list[dict], kind: int) -> list[dict]:
    corrupted = json.loads(json.dumps(calls))
    if kind == 0:
        corrupted[0]["name"] += "_v2"  # a tool that does not exist
    elif kind == 1 and len(corrupted) > 1:
        corrupted.pop()  # a parallel call left out
    else:
        key = sorted(corrupted[0]["arguments"])[0]
        value = corrupted[0]["arguments"][key]
        corrupted[0]["arguments"][key] = value + 1 if isinstance(value, (int, float)) else [value, value]
    return corrupted


@pytest.mark.parametrize("split", ["simple_python", "parallel"])
def test_bfcl_ground_truths_score_one_and_corruptions_zero(benchmarks: Path, split: str) -> None:
    folder = benchmarks / "bfcl" / "v4"
    questions = _read_jsonl(folder / f"BFCL_v4_{split}.json")
    answer_rows = _read_jsonl(folder / "possible_answer" / f"BFCL_v4_{split}.json")
    answers = {row["id"]: row["ground_truth"] for row in answer_rows}
    completions, corrupted, tools, expected = [], [], [], []
    for index, question in enumerate(questions):
        calls = bfcl_calls(answers[question["id"]], question["function"])
        completions.append(_render(list(reversed(calls))))  # the order of calls must not matter
        corrupted.append(_render(_corrupt(calls, index % 3)))
        tools.append(question["function"])
        expected.append(calls)
    scores = tool_call(completions, tools=tools, ground_truth=expected)
    assert scores.count(1.0) == len(questions) == {"simple_python": 400, "parallel": 200}[split]
    assert tool_call(corrupted, tools=tools, ground_truth=expected).count(0.0) == len(questions)
    assert tool_call_format(completions, tools=tools).count(1.0) == len(questions)


def test_tool_call_counts_the_calls_of_every_turn_of_a_tool_use_completion() -> None:
    tools = [[{"type": "function", "function": {"name": "add", "parameters": {
        "type": "object", "properties": {"a": {"type": "number"}, "b": {"type": "number"}}}}}]]
    call = {"type": "function", "function": {"name": "add", "arguments": {"a": 2, "b": 3}}}
    done = [{"role": "assistant", "content": "<think>\n\n</think>", "tool_calls": [call]},
            {"role": "tool", "content": "5"}, {"role": "assistant", "content": "<think>\n\n</think>\n\n5"}]
    again = done + [{"role": "assistant", "content": "<think>\n\n</think>", "tool_calls": [call]}]
    cut = done[:2] + [{"role": "assistant", "content": "<think>\nthe sum is"}]
    expected = [[{"name": "add", "arguments": {"a": 2, "b": 3}}]]
    assert tool_call([done, again, cut], tools=tools * 3, ground_truth=expected * 3) == [1.0, 0.0, 0.0]
    assert tool_call_format([done, cut], tools=tools * 2, ground_truth=expected * 2) == [1.0, 0.0]
