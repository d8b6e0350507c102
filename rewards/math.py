"""Math answer checking: ``math_accuracy`` and the pieces it is built from.

A completion's answer is the content of its last ``\\boxed{}`` (after any thinking); without one, the final
stated answer ("The answer is 12.", "#### 12", or the last number / math span). The gold is a number, a LaTeX
expression, or a full solution whose last ``\\boxed{}`` (or ``#### x``) holds the answer.

The two answer strings are compared in one of two ways, which give the same verdict wherever both apply:

- a fast path in this process: identical answer strings, and plain numbers (integers, decimals, ``a/b``,
  ``\\frac{a}{b}``) compared exactly with :class:`fractions.Fraction` — our synthetic data is all integers,
  as are most RL answers (see :func:`fast_verdict`);
- math-verify (``parse`` + ``verify``, sympy underneath) for everything else, run in a small pool of worker
  processes (:mod:`rewards.math_workers`) so that a hostile answer such as ``10^{10^{10}}`` is killed at the
  timeout instead of hanging the trainer, and so that it works off the main thread (math-verify's own timeout
  uses ``signal.alarm``, which only works on the main thread).
"""

from __future__ import annotations

import re
from fractions import Fraction
from functools import lru_cache
from typing import Any

from rewards import math_workers
from rewards.completion import answer_text, row_value

# ------------------------------------------------------------ extraction

_BOX_COMMAND = re.compile(r"\\(?:boxed|fbox)")
# Boxes listed together ("\boxed{1} and \boxed{2}") form one answer, as math-verify reads them.
_BOX_SEPARATOR = re.compile(r"\b(?:and|or)\b|,|;")


def _box_content(text: str, command_end: int) -> tuple[str, int] | None:
    """(content, end index) of the box whose command ends at ``command_end``; None if unclosed."""
    start = command_end
    while start < len(text) and text[start].isspace():
        start += 1
    if start >= len(text) or text[start] != "{":
        return None
    depth = 0
    for i in range(start, len(text)):
        if text[i] == "{":
            depth += 1
        elif text[i] == "}":
            depth -= 1
            if depth == 0:
                return text[start + 1 : i].strip(), i
    return None


def last_boxed(text: str) -> str | None:
    r"""Return the content of the last ``\boxed{...}`` (or ``\fbox{...}``) in ``text``, braces balanced.

    Boxes written as one list ("\boxed{1} and \boxed{2}", "\boxed{1}, \boxed{2}") are joined with commas,
    following math-verify's own reading of boxed answers. None when there is no closed box.

    >>> last_boxed(r"I got \boxed{3}. That was wrong. Redoing it gives \boxed{\frac{1}{2}}.")
    '\\frac{1}{2}'
    >>> last_boxed(r"The solutions are \boxed{1} and \boxed{2}.")
    '1,2'
    >>> last_boxed("no box") is None
    True
    """
    boxes = []
    for match in _BOX_COMMAND.finditer(text):
        box = _box_content(text, match.end())
        if box is not None:
            boxes.append((match.start(), box[0], box[1]))
    if not boxes:
        return None
    start, content, _ = boxes[-1]
    contents = [content]
    for earlier_start, earlier, earlier_end in reversed(boxes[:-1]):
        between = text[earlier_end + 1 : start]
        listed = len(between) < 10 or (
            earlier != contents[-1] and len(between) < 70 and _BOX_SEPARATOR.search(between) is not None
        )
        if not listed:
            break
        if earlier != contents[-1]:
            contents.append(earlier)
        start = earlier_start
    return ",".join(reversed(contents))


_ANSWER_HEAD = re.compile(r"(?:final\s+answer|answer)\s*(?:is\b|:|=)\s*:?", re.IGNORECASE)
_HASHES = re.compile(r"####\s*([^\n]+)")
_MATH_SPAN = re.compile(r"\$\$(.+?)\$\$|\$(.+?)\$|\\\[(.+?)\\\]|\\\((.+?)\\\)", re.DOTALL)
_NUMBER = re.compile(r"(?<![\w.])-?(?:\d[\d,]*(?:\.\d+)?|\.\d+)(?:/\d+)?(?!\w)")
# A word of prose: three letters that are not part of a LaTeX command.
_PROSE_WORD = re.compile(r"(?<![\\a-zA-Z])[a-zA-Z]{3,}")
_LATEX_COMMAND = re.compile(r"\\[a-zA-Z]+")


def _last_math_or_number(text: str) -> str | None:
    """The last math span or number in ``text``, whichever ends later."""
    spans = list(_MATH_SPAN.finditer(text))
    numbers = list(_NUMBER.finditer(text))
    last_span = spans[-1] if spans else None
    last_number = numbers[-1] if numbers else None
    if last_span is not None and (last_number is None or last_span.end() >= last_number.end()):
        return next(group for group in last_span.groups() if group is not None).strip() or None
    if last_number is not None:
        return last_number.group(0).rstrip(",")
    return None


def _is_prose(text: str) -> bool:
    without_math = _LATEX_COMMAND.sub(" ", _MATH_SPAN.sub(" ", text))
    return _PROSE_WORD.search(without_math) is not None


def _clean_stated(answer: str) -> str | None:
    """Reduce a stated answer to its expression: drop markdown bold, math delimiters, a closing full stop;
    a sentence ("The largest $n$ is 34.") gives its last math span or number."""
    answer = answer.strip().strip("*").strip().rstrip(".").strip()
    if _is_prose(answer):
        return _last_math_or_number(answer)
    for open_, close in (("$$", "$$"), ("$", "$"), ("\\(", "\\)"), ("\\[", "\\]")):
        if answer.startswith(open_) and answer.endswith(close) and len(answer) >= len(open_) + len(close):
            answer = answer[len(open_) : len(answer) - len(close)].strip()
            break
    answer = answer.rstrip(".").strip()
    # "\$18": keep the amount, as GSM8K graders do.
    return (answer[2:].strip() if answer.startswith("\\$") else answer) or None


def stated_answer(completion: Any) -> str | None:
    r"""Return the final stated answer of a completion (string or conversational): the last ``\boxed{}``
    (unless an "answer is ..." sentence follows it), else ``#### x``, else what follows the last "answer is" /
    "answer:", else the whole answer when it is an expression rather than prose, else the last math span or
    number. None when nothing looks like an answer.

    >>> stated_answer(r"<think>\n2+2\n</think>\n\nThe answer is \boxed{4}.")
    '4'
    >>> stated_answer("So she pays 18 dollars.\n#### 18")
    '18'
    >>> stated_answer("Final Answer: The final answer is $\\frac{1}{2}$. I hope it is correct.")
    '\\frac{1}{2}'
    >>> stated_answer("<think>never finished") is None
    True
    """
    answer = answer_text(completion)
    if not answer:
        return None
    heads = list(_ANSWER_HEAD.finditer(answer))
    stated = _clean_stated(answer[heads[-1].end() :].split("\n", 1)[0]) if heads else None
    boxes = list(_BOX_COMMAND.finditer(answer))
    # A box wins unless an "answer is ..." sentence comes after it (a box in the working, then the answer).
    if boxes and not (stated and heads[-1].start() > boxes[-1].start()):
        boxed = last_boxed(answer)
        if boxed is not None:
            return boxed or None
    hashes = _HASHES.findall(answer)
    if hashes:
        return _clean_stated(hashes[-1])
    if stated:
        return stated
    if not _is_prose(answer):
        return _clean_stated(answer)
    return _last_math_or_number(answer)


def gold_answer(solution: Any) -> str | None:
    r"""Return the gold answer string from a ``solution`` cell: a bare answer, or a solution ending in
    ``\boxed{}`` / ``#### x``. None for an empty or missing gold.

    >>> gold_answer(r"Add them: $2+2=\boxed{4}$.")
    '4'
    >>> gold_answer(558)
    '558'
    >>> gold_answer("$\\frac{1}{2}$")
    '\\frac{1}{2}'
    """
    if solution is None or isinstance(solution, bool):
        return None
    if isinstance(solution, (int, float, Fraction)):
        return str(solution)
    if not isinstance(solution, str):
        return None
    boxed = last_boxed(solution)
    if boxed is not None:
        return boxed or None
    hashes = _HASHES.findall(solution)
    if hashes:
        return _clean_stated(hashes[-1])
    solution = solution.strip()
    for open_, close in (("$$", "$$"), ("$", "$"), ("\\(", "\\)"), ("\\[", "\\]")):
        if (
            solution.startswith(open_)
            and solution.endswith(close)
            and len(solution) >= len(open_) + len(close)
        ):
            return solution[len(open_) : len(solution) - len(close)].strip() or None
    return solution or None


# ------------------------------------------------------------ fast path

# Plain numbers only; anything else (commas, units, percent, spaces, a trailing dot) goes to math-verify,
# whose rules for those are subtle (e.g. "12." is not a number to it).
_INTEGER = re.compile(r"-?\d+")
_DECIMAL = re.compile(r"-?\d+\.\d+")
_SLASH_FRACTION = re.compile(r"(-?\d+)/(\d+)")
_LATEX_FRACTION = re.compile(r"(-?)\\[dt]?frac\{(-?\d+)\}\{(\d+)\}")
# Sympy parses decimals into 15-significant-digit Floats; beyond that its rounding could differ from ours.
_MAX_DECIMAL_DIGITS = 15


def plain_number(text: str) -> tuple[Fraction, bool] | None:
    r"""Parse an integer, decimal, ``a/b`` or ``\frac{a}{b}`` exactly; return (value, is_decimal) or None.

    >>> plain_number(r"\frac{3}{4}")
    (Fraction(3, 4), False)
    >>> plain_number("2.50")
    (Fraction(5, 2), True)
    >>> plain_number("1,000") is None
    True
    """
    text = text.strip()
    if len(text) > 200:
        return None
    if _INTEGER.fullmatch(text):
        return Fraction(int(text)), False
    if _DECIMAL.fullmatch(text):
        if sum(ch.isdigit() for ch in text) > _MAX_DECIMAL_DIGITS:
            return None
        return Fraction(text), True
    match = _SLASH_FRACTION.fullmatch(text)
    if match:
        numerator, denominator = int(match.group(1)), int(match.group(2))
    else:
        match = _LATEX_FRACTION.fullmatch(text)
        if not match:
            return None
        numerator, denominator = int(match.group(2)), int(match.group(3))
        if match.group(1):
            numerator = -numerator
    if denominator == 0:
        return None
    return Fraction(numerator, denominator), False


def _parses_to_something(answer: str) -> bool:
    """True unless math-verify might find nothing at all in ``answer`` (then its verdict is None, not True):
    unbalanced braces, a stray ``$``, or no letter or digit outside LaTeX commands (``\\text{}``)."""
    depth = 0
    for ch in answer:
        depth += (ch == "{") - (ch == "}")
        if depth < 0:
            return False
    return (
        depth == 0
        and "$" not in answer
        and re.search(r"[A-Za-z0-9]", _LATEX_COMMAND.sub("", answer)) is not None
    )


def fast_verdict(gold: str, predicted: str) -> bool | None:
    """Decide without sympy where that is certain to give math-verify's verdict, else None.

    Identical answer strings are equal (math-verify's parse returns the expression and its string, and
    ``verify`` compares the strings too), unless the string is degenerate (see ``_parses_to_something``).
    Two plain numbers are compared exactly, except when a decimal is within 1e-5 of the other number:
    math-verify rounds decimals to 6 places, so a near miss goes to it.

    >>> fast_verdict("558", "558")
    True
    >>> fast_verdict("558", "557")
    False
    >>> fast_verdict("0.5", r"\\frac{1}{2}")
    True
    >>> fast_verdict(r"\\frac{\\sqrt{3}}{2}", r"\\frac{\\sqrt{3}}{2}")
    True
    >>> fast_verdict("x+1", "1+x") is None
    True
    """
    if gold == predicted and _parses_to_something(gold):
        return True
    gold_number = plain_number(gold)
    predicted_number = plain_number(predicted)
    if gold_number is None or predicted_number is None:
        return None
    (gold_value, gold_decimal), (predicted_value, predicted_decimal) = gold_number, predicted_number
    if gold_value == predicted_value:
        return True
    if not (gold_decimal or predicted_decimal):
        return False  # two exact rationals: sympy compares them exactly too
    if abs(gold_value - predicted_value) > Fraction(1, 10**5):
        return False  # far apart even after rounding both to 6 decimals
    return None


# ------------------------------------------------------------ math-verify


def _extraction_config():
    from math_verify import ExprExtractionConfig, LatexExtractionConfig

    return [LatexExtractionConfig(boxed_match_priority=0), ExprExtractionConfig()]


@lru_cache(maxsize=4096)
def _parse_boxed(answer: str) -> tuple:
    from math_verify import parse

    # Timeouts are enforced by killing the worker process (rewards.math_workers); math-verify's own
    # signal.alarm timeout would fail off the main thread.
    return tuple(parse("\\boxed{" + answer + "}", _extraction_config(), parsing_timeout=None))


def math_verify_verdict(gold: str, predicted: str) -> bool | None:
    r"""Judge ``predicted`` against ``gold`` (both answer strings, not whole solutions) with math-verify.

    Returns None when the gold cannot be parsed at all. Has no timeout of its own: call it through
    :class:`rewards.math_workers.MathVerifyPool` on untrusted input.

    >>> math_verify_verdict(r"\frac{1}{2}", "0.5")
    True
    """
    parsed_gold = _parse_boxed(gold)
    if not parsed_gold:
        return None
    parsed_predicted = _parse_boxed(predicted)
    if not parsed_predicted:
        return False
    from math_verify import verify

    return bool(verify(list(parsed_gold), list(parsed_predicted), timeout_seconds=None))


# ------------------------------------------------------------ the reward


def math_accuracy(
    completions: list[Any],
    solution: list[Any] | None = None,
    *,
    timeout: float = 5.0,
    workers: int | None = None,
    **columns: Any,
) -> list[float | None]:
    r"""1.0 when a completion's answer is mathematically equal to its gold ``solution``, else 0.0.

    None for a row without a gold (missing column or cell) or whose gold has no answer. ``timeout`` is the
    per-answer limit in seconds for math-verify; ``workers`` the size of its process pool (default: up to 4,
    at most the number of CPUs).

    >>> math_accuracy([r"<think>\n...\n</think>\n\nThe answer is \boxed{558}."], solution=[r"\boxed{558}"])
    [1.0]
    >>> math_accuracy(["The answer is 3."], solution=["4"])
    [0.0]
    """
    golds = [gold_answer(row_value(solution, i)) for i in range(len(completions))]
    scores: list[float | None] = [None] * len(completions)
    slow: list[tuple[int, str, str]] = []
    for i, (completion, gold) in enumerate(zip(completions, golds, strict=True)):
        if gold is None:
            continue
        predicted = stated_answer(completion)
        if predicted is None:
            scores[i] = 0.0
            continue
        verdict = fast_verdict(gold, predicted)
        if verdict is not None:
            scores[i] = float(verdict)
        else:
            slow.append((i, gold, predicted))
    if slow:
        # GRPO samples several completions per prompt, and many reach the same answer: judge each pair once.
        unique = list(dict.fromkeys((gold, predicted) for _, gold, predicted in slow))
        verdicts = dict(
            zip(unique, math_workers.shared_pool(workers=workers, timeout=timeout).judge(unique), strict=True)
        )
        for i, gold, predicted in slow:
            verdict = verdicts[(gold, predicted)]
            scores[i] = None if verdict is None else float(verdict)
    return scores
