"""What every reward judges: the text of a completion after its thinking.

TRL hands a reward either plain strings or conversational completions
(``[{"role": "assistant", "content": str}]``). Every reward in this package goes through
:func:`completion_text` and :func:`answer_text` so they all agree on what "the answer" is:

- only the text after the last ``</think>`` is judged;
- a completion that opened ``<think>`` but never closed it (cut off while thinking) has no answer;
- a completion without any think block is judged whole.
"""

from __future__ import annotations

from typing import Any

THINK_OPEN = "<think>"
THINK_CLOSE = "</think>"


def completion_text(completion: Any) -> str:
    """Return the raw text of one completion, string or conversational.

    For a conversational completion the assistant messages are joined, so a multi-message
    answer is judged as a whole. Anything else (None, a malformed message) gives "".

    >>> completion_text("hi")
    'hi'
    >>> completion_text([{"role": "assistant", "content": "hi"}])
    'hi'
    """
    if isinstance(completion, str):
        return completion
    if isinstance(completion, dict):
        completion = [completion]
    if isinstance(completion, (list, tuple)):
        parts = []
        for message in completion:
            if isinstance(message, dict) and message.get("role", "assistant") == "assistant":
                content = message.get("content")
                if isinstance(content, str):
                    parts.append(content)
        return "\n".join(parts)
    return ""


def answer_text(completion: Any) -> str | None:
    """Return the part of a completion that is judged, or None when it has no answer.

    >>> answer_text("<think>\\nhm\\n</think>\\n\\nThe answer is 4.")
    'The answer is 4.'
    >>> answer_text("<think> still thinking") is None
    True
    >>> answer_text("plain answer")
    'plain answer'
    """
    text = completion_text(completion)
    close = text.rfind(THINK_CLOSE)
    if close >= 0:
        return text[close + len(THINK_CLOSE) :].strip()
    if THINK_OPEN in text:
        return None
    return text.strip()


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
