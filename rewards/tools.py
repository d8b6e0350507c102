"""Tool-call rewards for Qwen3's tool interface.

Qwen3 calls tools by writing, after any thinking, one or more blocks::

    <tool_call>
    {"name": "get_weather", "arguments": {"city": "Paris"}}
    </tool_call>

- ``tool_call``: 1.0 when every call is well-formed, names a tool of the row's ``tools``, has arguments that
  validate against that tool's parameter schema, and the calls are the expected ones (``ground_truth``) as a
  multiset: order ignored, numbers by value (2 == 2.0), strings exact. Else 0.0.
- ``tool_call_format``: 1.0 when the answer uses the interface cleanly: balanced tags, each block a JSON object
  with a string ``name`` and an object ``arguments``; at least one call, unless ``ground_truth`` says none is due.

Both return None for rows without ``tools``. Schemas are checked with :func:`rewards.text.schema_errors` (no
``jsonschema`` dependency), plus one rule of BFCL's: an argument the tool does not declare is an error unless the
schema sets ``additionalProperties``.

    >>> tools = [{"type": "function", "function": {"name": "add", "parameters": {"type": "object",
    ...           "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}}, "required": ["a", "b"]}}}]
    >>> call = '<tool_call>\\n{"name": "add", "arguments": {"b": 3, "a": 2}}\\n</tool_call>'
    >>> tool_call([call], tools=[tools], ground_truth=[[{"name": "add", "arguments": {"a": 2, "b": 3.0}}]])
    [1.0]
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Sequence
from typing import Any

from rewards.completion import row_value, turn_answers
from rewards.text import check_tasks, is_selected, json_column, schema_errors

TOOL_CALL_OPEN = "<tool_call>"
TOOL_CALL_CLOSE = "</tool_call>"
_TOOL_CALL = re.compile(r"<tool_call>(.*?)</tool_call>", re.DOTALL)


def parse_tool_calls(text: str) -> list[dict[str, Any]] | None:
    """The calls in ``text`` as ``[{"name": str, "arguments": dict}]``, or None when any block is malformed
    (unbalanced tags, not JSON, not an object, no string ``name``, ``arguments`` not an object).

    >>> parse_tool_calls('Let me check.\\n<tool_call>\\n{"name": "f", "arguments": {}}\\n</tool_call>')
    [{'name': 'f', 'arguments': {}}]
    >>> parse_tool_calls('<tool_call>\\n{"name": "f", "arguments": {}}') is None
    True
    """
    blocks = _TOOL_CALL.findall(text)
    outside = _TOOL_CALL.sub("", text)
    if TOOL_CALL_OPEN in outside or TOOL_CALL_CLOSE in outside:
        return None
    calls = []
    for block in blocks:
        if TOOL_CALL_OPEN in block:  # nested opening tag
            return None
        try:
            call = json.loads(block)
        except (ValueError, RecursionError):
            return None
        if not isinstance(call, dict) or not isinstance(call.get("name"), str):
            return None
        if not isinstance(call.get("arguments"), dict) or set(call) - {"name", "arguments"}:
            return None
        calls.append(call)
    return calls


def tool_parameters(tools: Any, index: int = 0) -> dict[str, Any]:
    """``{tool name: parameter schema}`` from a row's ``tools``: OpenAI/Qwen style
    ``{"type": "function", "function": {...}}`` or bare ``{"name", "parameters"}``, a list or its JSON string.

    >>> tool_parameters('[{"name": "ping", "parameters": {"type": "object", "properties": {}}}]')
    {'ping': {'type': 'object', 'properties': {}}}
    """
    tools = json_column(tools, "tools", index)
    if isinstance(tools, dict):
        tools = [tools]
    if not isinstance(tools, list):
        raise ValueError(f"row {index}: tools must be a list of tool schemas, got {type(tools).__name__}")
    parameters = {}
    for tool in tools:
        function = tool.get("function", tool) if isinstance(tool, dict) else None
        if not isinstance(function, dict) or not isinstance(function.get("name"), str):
            raise ValueError(f"row {index}: a tool schema has no name: {tool!r}")
        parameters[function["name"]] = function.get("parameters") or {"type": "object", "properties": {}}
    return parameters


def call_errors(call: dict[str, Any], parameters: dict[str, Any]) -> list[str]:
    """Why a parsed call is invalid for the tools (unknown name, schema errors, undeclared arguments).

    >>> call_errors({"name": "f", "arguments": {"x": 1, "y": 2}},
    ...             {"f": {"type": "object", "properties": {"x": {"type": "integer"}}}})
    ["$: unexpected argument 'y'"]
    """
    schema = parameters.get(call["name"])
    if schema is None:
        return [f"unknown tool {call['name']!r}"]
    errors = schema_errors(call["arguments"], schema)
    if "additionalProperties" not in schema:
        declared = schema.get("properties", {})
        errors += [f"$: unexpected argument {key!r}" for key in call["arguments"] if key not in declared]
    return errors


def _canonical(value: Any) -> Any:
    """A hashable form in which JSON-equal values are equal: 2 and 2.0 meet, True and 1 do not."""
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return (type(value).__name__, value)
    if isinstance(value, (int, float)):
        return ("number", int(value) if isinstance(value, float) and value.is_integer() else value)
    if isinstance(value, (list, tuple)):
        return ("array", tuple(_canonical(item) for item in value))
    if isinstance(value, dict):
        return ("object", tuple(sorted((str(key), _canonical(item)) for key, item in value.items())))
    return ("other", repr(value))


def _expected_calls(value: Any, index: int) -> list[dict[str, Any]] | None:
    value = json_column(value, "ground_truth", index)
    if value is None:
        return None
    if isinstance(value, dict):
        value = [value]
    if not isinstance(value, list) or not all(
        isinstance(call, dict) and isinstance(call.get("name"), str) for call in value
    ):
        raise ValueError(f"row {index}: ground_truth must be a list of {{'name', 'arguments'}} calls, got {value!r}")
    return [{"name": call["name"], "arguments": call.get("arguments") or {}} for call in value]


def _calls_made(completion: Any) -> list[dict[str, Any]] | None:
    """Every call the completion made, over all its turns (a tool-use rollout calls, reads the response, and
    may call again); None when a turn was cut off while thinking or holds a malformed block."""
    calls = []
    for answer in turn_answers(completion):
        parsed = parse_tool_calls(answer) if answer is not None else None
        if parsed is None:
            return None
        calls += parsed
    return calls


def tool_call(
    completions: list[Any],
    tools: list[Any] | None = None,
    ground_truth: list[Any] | None = None,
    task: list[Any] | None = None,
    *,
    tasks: Sequence[str] | None = None,
    **columns: Any,
) -> list[float | None]:
    """1.0 when the answer makes exactly the expected tool calls, validly; else 0.0. None without ``tools`` or
    ``ground_truth``. An empty ``ground_truth`` expects no call at all (e.g. an irrelevant-tools row).

    >>> tools = [[{"name": "f", "parameters": {"type": "object", "properties": {"x": {"enum": ["a", "b"]}}}}]]
    >>> tool_call(['<tool_call>\\n{"name": "f", "arguments": {"x": "c"}}\\n</tool_call>', "No call needed."],
    ...           tools=tools * 2, ground_truth=[[{"name": "f", "arguments": {"x": "c"}}], []])
    [0.0, 1.0]
    """
    check_tasks(tasks)
    scores: list[float | None] = []
    for i, completion in enumerate(completions):
        row_tools, expected = row_value(tools, i), _expected_calls(row_value(ground_truth, i), i)
        if row_tools is None or expected is None or not is_selected(task, tasks, i):
            scores.append(None)
            continue
        parameters = tool_parameters(row_tools, i)
        calls = _calls_made(completion)
        if calls is None or any(call_errors(call, parameters) for call in calls):
            scores.append(0.0)
            continue
        made = Counter(_canonical(call) for call in calls)
        scores.append(float(made == Counter(_canonical(call) for call in expected)))
    return scores


def tool_call_format(
    completions: list[Any],
    tools: list[Any] | None = None,
    ground_truth: list[Any] | None = None,
    task: list[Any] | None = None,
    *,
    tasks: Sequence[str] | None = None,
    **columns: Any,
) -> list[float | None]:
    """1.0 when every ``<tool_call>`` block is well-formed (:func:`parse_tool_calls`) and there is at least one,
    or none when the row's ``ground_truth`` is an empty list. None for rows without ``tools``.

    >>> tool_call_format(['<tool_call>\\n{"name": "f", "arguments": {}}\\n</tool_call>',
    ...                   '<tool_call>\\n{"name": "f"}\\n</tool_call>', "plain text"], tools=[[]] * 3)
    [1.0, 0.0, 0.0]
    """
    check_tasks(tasks)
    scores: list[float | None] = []
    for i, completion in enumerate(completions):
        if row_value(tools, i) is None or not is_selected(task, tasks, i):
            scores.append(None)
            continue
        expected = _expected_calls(row_value(ground_truth, i), i)
        calls = _calls_made(completion)
        wants_none = expected is not None and not expected
        scores.append(float(calls is not None and (bool(calls) != wants_none)))
    return scores
