"""What every reward judges: the text of a completion after its thinking.

TRL hands a reward either plain strings or conversational completions
(``[{"role": "assistant", "content": str}]``). Every reward in this package goes through
:func:`completion_text` and :func:`answer_text` so they all agree on what "the answer" is:

- only the text after the last ``</think>`` is judged;
- a completion that opened ``<think>`` but never closed it (cut off while thinking) has no answer;
- a completion without any think block is judged whole.

A multi-turn tool-use completion (TRL's tool loop, stage 4) is a list of messages: the assistant's turns, each
with the ``tool_calls`` TRL parsed out of it, and the tools' responses between them. Each assistant turn is its
text with those calls rendered back as Qwen3's ``<tool_call>`` blocks (:func:`assistant_texts`); the answer is
the judged part of the last turn, the reply the model gave once the tools had answered.
"""

from __future__ import annotations

import json
from typing import Any

THINK_OPEN = "<think>"
THINK_CLOSE = "</think>"


def assistant_texts(completion: Any) -> list[str]:
    """The text of each assistant turn of a completion (a string completion is one turn); tool responses are
    not the model's text and are left out. Anything else (None, a malformed message) gives no turns.

    >>> assistant_texts([{"role": "assistant", "content": "<think>\\nx\\n</think>",
    ...                   "tool_calls": [{"type": "function", "function": {"name": "f", "arguments": {"a": 1}}}]},
    ...                  {"role": "tool", "content": "2"}, {"role": "assistant", "content": "It is 2."}])
    ['<think>\\nx\\n</think>\\n<tool_call>\\n{"name": "f", "arguments": {"a": 1}}\\n</tool_call>', 'It is 2.']
    """
    if isinstance(completion, str):
        return [completion]
    if isinstance(completion, dict):
        completion = [completion]
    if not isinstance(completion, (list, tuple)):
        return []
    turns = []
    for message in completion:
        if not isinstance(message, dict) or message.get("role", "assistant") != "assistant":
            continue
        content = message.get("content")
        text = content if isinstance(content, str) else ""
        calls = [render_tool_call(call) for call in message.get("tool_calls") or []]
        turns.append("\n".join(([text] if text else []) + calls))
    return turns


def render_tool_call(call: Any) -> str:
    """A tool call (``{"name", "arguments"}``, or TRL's parsed ``{"type", "function": {...}}``) in the text form
    the model writes and the chat template renders."""
    function = call.get("function", call) if isinstance(call, dict) else {}
    name = function.get("name") if isinstance(function, dict) else None
    arguments = function.get("arguments") if isinstance(function, dict) else None
    arguments = arguments if isinstance(arguments, str) else json.dumps(arguments)
    return f'<tool_call>\n{{"name": "{name}", "arguments": {arguments}}}\n</tool_call>'


def completion_text(completion: Any) -> str:
    """Return the raw text of one completion, string or conversational: its assistant turns joined, so a
    multi-message answer is judged as a whole.

    >>> completion_text("hi")
    'hi'
    >>> completion_text([{"role": "assistant", "content": "hi"}])
    'hi'
    """
    return "\n".join(assistant_texts(completion))


def _judged(text: str) -> str | None:
    close = text.rfind(THINK_CLOSE)
    if close >= 0:
        return text[close + len(THINK_CLOSE) :].strip()
    if THINK_OPEN in text:
        return None
    return text.strip()


def answer_text(completion: Any) -> str | None:
    """Return the part of a completion that is judged (of its last assistant turn), or None when it has no
    answer.

    >>> answer_text("<think>\\nhm\\n</think>\\n\\nThe answer is 4.")
    'The answer is 4.'
    >>> answer_text("<think> still thinking") is None
    True
    >>> answer_text("plain answer")
    'plain answer'
    """
    turns = assistant_texts(completion)
    return _judged(turns[-1]) if turns else ""


def turn_answers(completion: Any) -> list[str | None]:
    """The judged part of every assistant turn (None for a turn cut off while thinking): where a tool-use
    completion made its calls.

    >>> turn_answers("<think>\\nx\\n</think>\\n\\n<tool_call>...</tool_call>")
    ['<tool_call>...</tool_call>']
    """
    return [_judged(text) for text in assistant_texts(completion)] or [""]


def row_value(column: Any, index: int) -> Any:
    """Return row ``index`` of a column as TRL passes it (a list, one value per completion), or None when
    the column (None: the dataset has no such column) or the row is missing.

    >>> row_value(["1", "2"], 1)
    '2'
    >>> row_value(None, 0) is None
    True
    """
    if column is None:
        return None
    # Lists from TRL, but any indexable column works (e.g. datasets' lazy ``ds["solution"]``).
    if isinstance(column, (str, bytes, dict)) or not (hasattr(column, "__len__") and hasattr(column, "__getitem__")):
        # A scalar (one value for every row) — unusual for TRL but harmless to accept.
        return column
    return column[index] if index < len(column) else None
