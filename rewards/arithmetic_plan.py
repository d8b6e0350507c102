"""A process reward for the nano arithmetic task: are the trace's steps the problem's operations, in order?

Measured in session 10: 100 of the 107 held-out errors of the nano stage-1 model are plan errors — a ``Step k:``
line with the wrong operation or operand, or stopping too early or too late — and only 7 are digit errors. An
outcome reward says only "wrong somewhere"; this one says how far the plan went right.
"""

from __future__ import annotations

import re
from typing import Any

from rewards.completion import assistant_texts

SIGNATURE_OP = re.compile(r"([+\-*/])(\d+)")
STEP_LINE = re.compile(r"^Step (\d+): (\d+) ([+\-×÷]) (\d+)\.$")
# data_recipes.arithmetic.SYMBOL, written out: rewards/ is a leaf package (no datasets import to score a reply);
# the gold-trace test fails if the two ever differ.
TO_SYMBOL = {"+": "+", "-": "-", "*": "×", "/": "÷"}


def plan_of(signature: str) -> list[tuple[str, int]] | None:
    """The operations of a problem signature (``start`` then ``op operand`` …), in the trace's symbols."""
    start = re.match(r"\d+", signature)
    if not start:
        return None
    ops = SIGNATURE_OP.findall(signature[start.end():])
    return [(TO_SYMBOL[op], int(a)) for op, a in ops] or None


def arithmetic_plan(completions: list[Any], signature: list[str] | None = None, **_: Any) -> list[float | None]:
    """(steps right from the first, + 1 for stopping right after the last) / (steps + 1); None without a
    signature. The running value on each step line is not compared: a digit error is math_accuracy's."""
    if signature is None:
        return [None] * len(completions)
    scores: list[float | None] = []
    for completion, sig in zip(completions, signature):
        plan = plan_of(sig) if isinstance(sig, str) else None
        if plan is None:
            scores.append(None)
            continue
        text = "\n".join(assistant_texts(completion))
        think = text.split("</think>")[0]
        steps = [m for m in (STEP_LINE.match(line.strip()) for line in think.splitlines()) if m]
        right = 0
        for k, (op, a) in enumerate(plan):
            if k >= len(steps) or (steps[k].group(3), int(steps[k].group(4))) != (op, a):
                break
            right += 1
        stopped = right == len(plan) and len(steps) == len(plan) and "</think>" in text
        scores.append((right + stopped) / (len(plan) + 1))
    return scores
