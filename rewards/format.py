"""Rewards on the shape of a completion rather than its correctness.

- ``think_format``: one well-formed think block at the start, then a non-empty answer.
- ``mode_compliance``: thinks when asked to (``/think`` or no flag), keeps an empty think block under
  ``/no_think`` — Qwen3's hybrid thinking modes.
- ``repetition_penalty``: ≤ 0, more negative the more n-grams repeat (open-r1 / DAPO style).
- ``soft_overlong``: DAPO's soft overlong punishment.
- ``thinking_budget``: the thinking stays within a budget of tokens (Qwen3's thinking budget).
"""

from __future__ import annotations

import math
import re
from typing import Any

from rewards.completion import THINK_CLOSE, THINK_OPEN, answer_text, assistant_texts, completion_text, row_value

# ------------------------------------------------------------ think_format

_WELL_FORMED = re.compile(r"\s*<think>(.*?)</think>(.*)", re.DOTALL)


def _think_block(text: str) -> tuple[str, str] | None:
    """Split ``text`` into (thinking, answer) when it is one leading, closed think block and an answer
    that contains no further think tags; None otherwise."""
    match = _WELL_FORMED.fullmatch(text)
    if match is None:
        return None
    thinking, answer = match.groups()
    if THINK_OPEN in thinking or THINK_OPEN in answer or THINK_CLOSE in answer:
        return None
    return thinking, answer


def think_format(completions: list[Any], *, require_think: bool = False, **columns: Any) -> list[float]:
    """1.0 for a well-formed completion, else 0.0.

    Well-formed: at most one think block; if there is one it opens the completion and is closed; after it
    comes a non-empty answer. An empty think block (``/no_think`` style) is well-formed. With
    ``require_think=True`` a completion without a think block is not (Qwen3's format always has one).

    >>> think_format(["<think>\\nadd\\n</think>\\n\\n4", "<think>\\nadd", "<think></think>", "4"])
    [1.0, 0.0, 0.0, 1.0]
    >>> think_format(["4"], require_think=True)
    [0.0]
    """
    def well_formed(text: str) -> bool:
        if THINK_OPEN not in text and THINK_CLOSE not in text:
            return bool(text.strip()) and not require_think
        block = _think_block(text)
        return block is not None and bool(block[1].strip())

    # A tool-use completion is well-formed when each of its assistant turns is.
    return [float(all(well_formed(text) for text in assistant_texts(completion) or [""]))
            for completion in completions]


# ------------------------------------------------------------ mode_compliance

# "/think" or "/no_think" as a word of its own: not part of a path ("a/think"), a longer word ("/thinking").
_MODE_FLAG = re.compile(r"(?<![\w/])/(no_think|think)(?![\w/])")
_CHATML_TURN = re.compile(r"<\|im_start\|>(\w+)\n(.*?)(?:<\|im_end\|>|$)", re.DOTALL)
_MODES = ("think", "no_think")


def prompt_mode(prompt: Any) -> str | None:
    """Return the mode the prompt asks for: the last ``/think`` or ``/no_think`` flag in a user or system
    message, or None when there is no flag.

    ``prompt`` is TRL's conversational list of messages or a string (a ChatML-rendered prompt is split into
    turns so that a flag quoted by the assistant does not count).

    >>> prompt_mode([{"role": "system", "content": "/think"}, {"role": "user", "content": "2+2? /no_think"}])
    'no_think'
    >>> prompt_mode("What is 2+2?") is None
    True
    """
    if isinstance(prompt, str):
        turns = _CHATML_TURN.findall(prompt)
        texts = [content for role, content in turns if role in ("user", "system")] if turns else [prompt]
    elif isinstance(prompt, (list, tuple)):
        texts = [
            message["content"]
            for message in prompt
            if isinstance(message, dict)
            and message.get("role") in ("user", "system")
            and isinstance(message.get("content"), str)
        ]
    else:
        return None
    mode = None
    for text in texts:
        flags = _MODE_FLAG.findall(text)
        if flags:
            mode = flags[-1]
    return mode


def mode_compliance(
    completions: list[Any], prompts: list[Any] | None = None, mode: list[Any] | None = None, **columns: Any
) -> list[float]:
    """1.0 when the completion obeys its thinking mode, else 0.0.

    The mode comes from the ``mode`` column (``"think"`` / ``"no_think"``) when the row has one, else from the
    prompt's flags (:func:`prompt_mode`), else it is ``think``. ``no_think`` needs an empty think block
    (``<think>``, only whitespace, ``</think>``) followed by the answer; ``think`` needs a closed think block
    with some thinking in it.

    >>> no_think, think = "<think>\\n\\n</think>\\n\\n4", "<think>\\n2+2\\n</think>\\n\\n4"
    >>> mode_compliance([no_think, think], mode=["no_think", "no_think"])
    [1.0, 0.0]
    """
    scores = []
    for i, completion in enumerate(completions):
        wanted = row_value(mode, i)
        if wanted is None:
            wanted = prompt_mode(row_value(prompts, i)) or "think"
        if wanted not in _MODES:
            raise ValueError(f"mode_compliance: unknown mode {wanted!r} in row {i}; expected one of {_MODES}")
        blocks = [_think_block(text) for text in assistant_texts(completion) or [""]]  # each tool-use turn too
        if any(block is None for block in blocks):
            scores.append(0.0)
        elif wanted == "no_think":
            scores.append(float(not any(block[0].strip() for block in blocks)))
        else:
            scores.append(float(all(block[0].strip() for block in blocks)))
    return scores


def reply_mode(completion: Any) -> str | None:
    """The mode a reply chose: ``"no_think"`` when it opens with an empty, closed think block, ``"think"`` when it
    opens with a think block that has some thinking in it (closed or cut off), None when no think block opens it.
    Unlike :func:`mode_compliance` it does not ask for a well-formed reply: it is the obedience half alone.

    >>> [reply_mode(t) for t in ["<think>\\n\\n</think>\\n\\n4", "<think>\\n2+2 is", "4", "<think>\\n"]]
    ['no_think', 'think', None, None]
    """
    turns = assistant_texts(completion)  # a tool-use completion chose its mode in its first turn
    text = turns[0].lstrip() if turns else ""
    if not text.startswith(THINK_OPEN):
        return None
    body = text[len(THINK_OPEN):]
    if body.split(THINK_CLOSE, 1)[0].strip():
        return "think"
    return "no_think" if THINK_CLOSE in body else None


# ------------------------------------------------------------ repetition_penalty


def repetition_penalty(
    completions: list[Any],
    *,
    ngram_size: int = 3,
    max_penalty: float = -1.0,
    include_thinking: bool = False,
    **columns: Any,
) -> list[float]:
    """Penalise repeated word n-grams: ``max_penalty * (1 - distinct n-grams / all n-grams)``, in
    ``[max_penalty, 0]`` (the open-r1 formulation used with DAPO-style training).

    Words are the lower-cased whitespace-separated tokens. By default only the answer after the thinking is
    looked at, like every reward here (so a completion cut off while thinking gets 0); set
    ``include_thinking=True`` to also catch loops inside the thinking, where degenerate repetition usually is.

    >>> repetition_penalty(["a b c a b c a b c"], ngram_size=3)
    [-0.5714285714285714]
    >>> repetition_penalty(["all different words here"])
    [0.0]
    """
    if ngram_size < 1:
        raise ValueError(f"repetition_penalty: ngram_size must be >= 1, got {ngram_size}")
    if max_penalty > 0:
        raise ValueError(f"repetition_penalty: max_penalty must be <= 0, got {max_penalty}")
    scores = []
    for completion in completions:
        text = completion_text(completion) if include_thinking else answer_text(completion)
        words = (text or "").lower().split()
        if len(words) < ngram_size:
            scores.append(0.0)
            continue
        ngrams = list(zip(*(words[i:] for i in range(ngram_size)), strict=False))
        repeated_fraction = 1.0 - len(set(ngrams)) / len(ngrams)
        scores.append(repeated_fraction * max_penalty if repeated_fraction else 0.0)
    return scores


# ------------------------------------------------------------ soft_overlong


def completion_length(completion: Any, completion_ids: Any = None, chars_per_token: float = 4.0) -> int:
    """Length of a completion in tokens: ``len(completion_ids)`` when TRL gives them, else the number of
    characters divided by ``chars_per_token`` (rounded up) — a rough stand-in when no tokenizer is at hand.

    >>> completion_length("ignored", completion_ids=[1, 2, 3])
    3
    >>> completion_length("12345678")
    2
    """
    if isinstance(completion_ids, (list, tuple)):
        return len(completion_ids)
    return math.ceil(len(completion_text(completion)) / chars_per_token)


def soft_overlong(
    completions: list[Any],
    completion_ids: list[Any] | None = None,
    *,
    max_length: int = 4096,
    buffer: int = 512,
    chars_per_token: float = 4.0,
    **columns: Any,
) -> list[float]:
    """DAPO's soft overlong punishment (Yu et al. 2025, eq. 13), with ``L_max = max_length`` and
    ``L_cache = buffer``::

        0                                    if length <= max_length - buffer
        (max_length - buffer - length)/buffer if max_length - buffer < length <= max_length
        -1                                   if length > max_length

    Unlike the other rewards it measures the whole completion, thinking included, because it is about
    generation length: a completion cut off while thinking is exactly what it should punish. Length is in
    tokens from ``completion_ids`` when TRL passes them, else estimated (see :func:`completion_length`).

    >>> soft_overlong(["x"] * 3, completion_ids=[[0] * 8, [0] * 14, [0] * 20], max_length=16, buffer=8)
    [0.0, -0.75, -1.0]
    """
    if not 0 < buffer <= max_length:
        raise ValueError(
            f"soft_overlong: need 0 < buffer <= max_length, got buffer={buffer}, max_length={max_length}"
        )
    if chars_per_token <= 0:
        raise ValueError(f"soft_overlong: chars_per_token must be positive, got {chars_per_token}")
    scores = []
    for i, completion in enumerate(completions):
        ids = row_value(completion_ids, i)
        length = completion_length(completion, ids, chars_per_token)
        expected = max_length - buffer
        if length <= expected:
            scores.append(0.0)
        elif length <= max_length:
            scores.append((expected - length) / buffer)
        else:
            scores.append(-1.0)
    return scores


# ------------------------------------------------------------ thinking_budget


def thinking_budget(
    completions: list[Any],
    completion_ids: list[Any] | None = None,
    *,
    budget: int | None = None,
    thinking_budget: list[Any] | None = None,
    chars_per_token: float = 4.0,
    **columns: Any,
) -> list[float | None]:
    """Thinking-budget compliance: 1.0 when the thinking fits in the budget (tokens), falling linearly to 0.0
    at twice the budget; 0.0 for a malformed think block (a reply cut off while thinking blew its budget); a
    reply with no think block at all did not think, so it is within any budget. The budget is the row's
    ``thinking_budget`` column, else the ``budget`` keyword; a row with neither gets None (not this reward's row).

    Thinking length in tokens: the completion's token count (``completion_ids``, from TRL) times the thinking's
    share of its characters — the reward has no tokenizer — else characters / ``chars_per_token``.

    >>> thinking_budget(["<think>\\n" + "a" * 40 + "\\n</think>\\n\\n4", "<think>\\n\\n</think>\\n\\n4"], budget=10)
    [1.0, 1.0]
    >>> thinking_budget(["<think>\\n" + "a" * 60 + "\\n</think>\\n\\n4", "<think>\\n" + "a" * 100], budget=10)
    [0.5, 0.0]
    >>> thinking_budget(["<think>\\nab\\n</think>\\n\\n4"], thinking_budget=[None])
    [None]
    """
    if budget is not None and budget <= 0:
        raise ValueError(f"thinking_budget: budget must be positive, got {budget}")
    if chars_per_token <= 0:
        raise ValueError(f"thinking_budget: chars_per_token must be positive, got {chars_per_token}")
    scores: list[float | None] = []
    for i, completion in enumerate(completions):
        limit = row_value(thinking_budget, i)
        limit = budget if limit is None else limit
        if limit is None:
            scores.append(None)
            continue
        try:
            limit = int(limit)
        except (TypeError, ValueError):
            scores.append(None)  # an unreadable budget cannot be judged
            continue
        if limit <= 0:
            scores.append(None)
            continue
        turns = assistant_texts(completion) or [""]
        text = "\n".join(turns)  # completion_text
        blocks = [("", turn) if THINK_OPEN not in turn and THINK_CLOSE not in turn else _think_block(turn)
                  for turn in turns]
        if any(block is None for block in blocks):
            scores.append(0.0)
            continue
        thinking = "".join(block[0].strip() for block in blocks)  # a tool-use completion thinks in every turn
        ids = row_value(completion_ids, i)
        if isinstance(ids, (list, tuple)) and text:
            used = len(ids) * len(thinking) / len(text)
        else:
            used = len(thinking) / chars_per_token
        scores.append(round(max(0.0, min(1.0, 2.0 - used / limit)), 4))
    return scores
