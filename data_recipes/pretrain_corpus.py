"""The synthetic pretraining corpus for the nano base model: arithmetic, not word problems.

A base model should arrive at post-training knowing its numbers, as a real pretrained LLM does. This corpus
teaches the pieces — one-digit facts, single operations worked digit by digit in the same notation the
stage-1 traces use, comparisons and counting, and one-sentence stories with their single operation — but
never a multi-step word problem, a question/answer pair in chat format, or a ``\\boxed{}`` answer: chaining
steps, the chat format and the answer format are what stage 1 must teach.

    >>> docs = documents(seed=0)
    >>> isinstance(next(docs), str)
    True
"""

from __future__ import annotations

import random
from collections.abc import Iterator

from data_recipes.arithmetic import ITEMS, NAMES, OPENINGS, STORY, SYMBOL, apply, trace

KINDS = ("worked", "story", "facts", "numbers")
WEIGHTS = (0.45, 0.3, 0.15, 0.1)


def documents(seed: int = 0, max_digits: int = 4) -> Iterator[str]:
    """An endless, deterministic stream of short documents."""
    rng = random.Random(f"pretrain/{seed}")
    while True:
        kind = rng.choices(KINDS, WEIGHTS)[0]
        if kind == "worked":
            a, op, b = _operation(rng, max_digits)
            yield "\n".join([f"Compute {a} {SYMBOL[op]} {b}."] + trace(op, a, b))
        elif kind == "story":
            yield _story(rng, max_digits)
        elif kind == "facts":
            yield _facts(rng)
        else:
            yield _numbers(rng, max_digits)


def _number(rng: random.Random, max_digits: int) -> int:
    return rng.randint(1, 10 ** rng.randint(1, max_digits) - 1)


def _operation(rng: random.Random, max_digits: int) -> tuple[int, str, int]:
    """A random exact operation with operands of up to ``max_digits`` digits (multipliers up to 2 digits)."""
    op = rng.choice("+-*/")
    if op == "+":
        return _number(rng, max_digits), op, _number(rng, max_digits)
    if op == "-":
        a, b = sorted((_number(rng, max_digits), _number(rng, max_digits)), reverse=True)
        return a, op, b
    if op == "*":
        return _number(rng, max_digits - 1), op, _number(rng, 2)
    b = rng.randint(2, 99 if rng.random() < 0.3 else 9)
    return b * _number(rng, max_digits - 1), op, b


def _story(rng: random.Random, max_digits: int) -> str:
    a, op, b = _operation(rng, max_digits)
    name, items = rng.choice(NAMES), rng.choice(ITEMS)
    lines = [
        rng.choice(OPENINGS).format(name=name, n=a, items=items),
        rng.choice(STORY[op]).format(name=name, a=b, items=items),
        f"That is {a} {SYMBOL[op]} {b}.",
        *trace(op, a, b),
        f"Now {name} has {apply(op, a, b)} {items}.",
    ]
    return "\n".join(lines)


def _facts(rng: random.Random) -> str:
    facts = []
    for _ in range(rng.randint(4, 12)):
        op = rng.choice("+-*/")
        x, y = rng.randint(0, 9), rng.randint(1, 9)
        if op == "+":
            facts.append(f"{x} + {y} = {x + y}")
        elif op == "-":
            facts.append(f"{x + y} - {y} = {x}")
        elif op == "*":
            facts.append(f"{x} × {y} = {x * y}")
        else:
            n = x * y + rng.randint(0, y - 1)  # division with the quotient digit, as long division needs
            q = n // y
            facts.append(f"{n} ÷ {y} = {q}, {q} × {y} = {q * y}, {n} - {q * y} = {n - q * y}")
    return "\n".join(facts)


def _numbers(rng: random.Random, max_digits: int) -> str:
    n = _number(rng, max_digits)
    m = _number(rng, max_digits)
    choice = rng.randrange(4)
    if choice == 0:
        return ", ".join(str(n + i) for i in range(rng.randint(3, 8)))
    if choice == 1:
        rel = "<" if n < m else (">" if n > m else "=")
        return f"{n} {rel} {m}"
    if choice == 2:
        return f"The digits of {n} from the right are " + ", ".join(str(n)[::-1]) + "."
    return f"{n} + 1 = {n + 1}\n{n} - 1 = {n - 1}" if n > 1 else f"{n} + 1 = {n + 1}"
