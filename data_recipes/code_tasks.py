"""Synthetic small coding tasks with tests, each verified by running its reference solution in the sandbox.

Stage 2's code query-verifier pairs for the embedded default: "write a function that …" with MBPP-style
``test_list`` asserts that the ``code_tests`` reward runs. Expected values come from the reference solution
itself, executed in the same sandbox the reward uses; a row whose reference does not pass is dropped (so the
data cannot carry a wrong test).

    >>> ds = build(n=4, seed=0)
    >>> ds[0]["test_list"][0].startswith("assert ")
    True
"""

from __future__ import annotations

import random

from datasets import Dataset

# name, description with {k}, reference body with {k}, argument generator (rng, k) -> arguments
TEMPLATES = [
    ("add_k", "returns a new list with {k} added to every element of the list `xs`",
     "def add_k(xs):\n    return [x + {k} for x in xs]",
     lambda r, k: [[r.randint(-20, 20) for _ in range(r.randint(0, 5))]]),
    ("count_multiples", "returns how many numbers in the list `xs` are divisible by {k}",
     "def count_multiples(xs):\n    return sum(1 for x in xs if x % {k} == 0)",
     lambda r, k: [[r.randint(0, 50) for _ in range(r.randint(0, 6))]]),
    ("clip", "returns `x` limited to the range from -{k} to {k} inclusive",
     "def clip(x):\n    return max(-{k}, min({k}, x))",
     lambda r, k: [r.randint(-30, 30)]),
    ("sum_below", "returns the sum of all multiples of {k} that are smaller than `n` (n >= 0)",
     "def sum_below(n):\n    return sum(i for i in range(0, n, {k}))",
     lambda r, k: [r.randint(0, 60)]),
    ("repeat_word", "returns the string `w` repeated {k} times, separated by single spaces",
     "def repeat_word(w):\n    return ' '.join([w] * {k})",
     lambda r, k: [r.choice(["cat", "sun", "a", "tree", "go"])]),
    ("kth_largest", "returns the {k}-th largest number of the list `xs` (it has at least {k} numbers)",
     "def kth_largest(xs):\n    return sorted(xs, reverse=True)[{k} - 1]",
     lambda r, k: [[r.randint(0, 99) for _ in range(r.randint(k, k + 3))]]),
]


def _expected(reference: str, name: str, args_list: list[list]) -> list:
    """Expected outputs by running the reference locally on trusted, generated inputs (our own code)."""
    scope: dict = {}
    exec(reference, scope)  # noqa: S102 — our own template code, not model output
    return [scope[name](*args) for args in args_list]


def build(n: int = 200, seed: int = 0, tests_per_task: int = 4, verify: bool = True) -> Dataset:
    """``n`` tasks with columns ``prompt``, ``messages`` (reference answer), ``test_list``, ``task``."""
    if n <= 0:
        raise ValueError(f"n must be a positive number of tasks, got {n}")
    rng = random.Random(f"code_tasks/{seed}")
    rows, seen = [], set()
    while len(rows) < n:
        name, desc, body, gen = rng.choice(TEMPLATES)
        k = rng.randint(2, 9)
        if (name, k) in seen and len(seen) < len(TEMPLATES) * 8:
            continue
        seen.add((name, k))
        reference = body.format(k=k)
        args_list = [gen(rng, k) for _ in range(tests_per_task)]
        tests = [f"assert {name}({', '.join(map(repr, a))}) == {out!r}"
                 for a, out in zip(args_list, _expected(reference, name, args_list))]
        question = f"Write a Python function `{name}` that {desc.format(k=k)}."
        answer = (f"<think>\nThe function needs one expression; check it on an example.\n</think>\n\n"
                  f"```python\n{reference}\n```")
        rows.append({"prompt": [{"role": "user", "content": question}],
                     "messages": [{"role": "user", "content": question}, {"role": "assistant", "content": answer}],
                     "test_list": tests, "task": "code"})
    ds = Dataset.from_list(rows)
    if verify:
        from rewards import get_reward

        scores = get_reward("code_tests", timeout=10.0)([r["messages"][1]["content"] for r in rows],
                                                       test_list=ds["test_list"])
        ds = ds.select([i for i, s in enumerate(scores) if s == 1.0])
    return ds
