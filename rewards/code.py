"""``code_tests``: run the program in a completion against the row's tests, in the sandbox.

The program is the last fenced Python block of the answer (```` ```python ````, ```` ```py ````, or an
untagged fence), else the whole answer. A row carries its tests in one of three forms:

- ``test`` + ``entry_point`` (HumanEval): a script defining ``check(candidate)``; it counts as one test;
- ``test_list`` (MBPP): assert statements, each one test, after the optional ``test_setup_code``;
- ``io_tests``: ``[{"input": str, "output": str}, ...]``, the program reads stdin and must print the output
  (compared line by line, trailing whitespace ignored); each case is its own run.

The score is the fraction of tests passed. For the first two forms the program and its tests run in one
process: the program is executed first, then each test in turn; a test passes when it completes without
raising, and the harness reports it on a private copy of stdout with a per-run random token, so a program
that exits early (``sys.exit(0)``) or prints "passed" gets no credit. (A program that reads its own harness
file could forge the token; the sandbox keeps such a program harmless, not honest.)
"""

from __future__ import annotations

import re
import secrets
from typing import Any

from rewards.completion import answer_text, row_value
from rewards.sandbox import RunResult, SandboxLimits, run_programs

_FENCE = re.compile(r"```[ \t]*(?:python3?|py)?[ \t]*\n(.*?)```", re.DOTALL | re.IGNORECASE)


def extract_program(completion: Any) -> str | None:
    """Return the program in a completion: its last fenced Python block, else the whole answer.

    None when the completion has no answer (cut off while thinking).

    >>> extract_program("Here:\\n```python\\ndef f():\\n    return 1\\n```\\nDone.")
    'def f():\\n    return 1\\n'
    >>> extract_program("print(1)")
    'print(1)'
    """
    answer = answer_text(completion)
    if answer is None:
        return None
    blocks = _FENCE.findall(answer)
    return blocks[-1] if blocks else answer


def _harness(program: str, setup: str, tests: list[str], token: str) -> str:
    """A script that runs ``program``, then ``setup``, then each test, reporting passes with ``token``.

    They share one namespace whose ``__name__`` is not ``"__main__"`` (as in the HumanEval harness), so a
    program's ``if __name__ == "__main__":`` demo block, which often reads stdin, does not run.
    """
    return f"""\
import os
report = os.dup(1)  # taken before the program runs, which may redirect or close stdout
namespace = {{"__name__": "solution", "__builtins__": __builtins__}}
exec(compile({program!r}, "solution.py", "exec"), namespace)
exec(compile({setup!r}, "setup.py", "exec"), namespace)
for index, test in enumerate({tests!r}):
    try:
        exec(compile(test, "test.py", "exec"), namespace)
    except BaseException:  # any exception, SystemExit included, fails only this test
        continue
    os.write(report, ("\\n{token} pass %d\\n" % index).encode())
"""


def _passed_tests(result: RunResult, token: str, count: int) -> int:
    passed = set()
    for line in result.stdout.splitlines():
        if line.startswith(token + " pass "):
            index = line[len(token) + 6 :]
            if index.isdigit() and int(index) < count:
                passed.add(int(index))
    return len(passed)


def _normalize_output(text: str) -> list[str]:
    lines = [line.rstrip() for line in text.replace("\r\n", "\n").split("\n")]
    while lines and not lines[-1]:
        lines.pop()
    return lines


def _string_list(value: Any, column: str) -> list[str]:
    if not isinstance(value, (list, tuple)) or not all(isinstance(item, str) for item in value):
        raise ValueError(
            f"code_tests: column {column!r} must be a list of strings, got {type(value).__name__}"
        )
    return list(value)


def _row_jobs(program: str, row: dict[str, Any]) -> tuple[str, list[tuple[str, str | None]], Any]:
    """(kind, sandbox jobs, what is needed to score them) for one row's tests."""
    if row["test"] is not None and row["entry_point"] is not None:
        token = secrets.token_hex(16)
        tests = [f"{row['test']}\ncheck({row['entry_point']})\n"]
        return "script", [(_harness(program, "", tests, token), None)], (token, 1)
    if row["test_list"]:
        tests = _string_list(row["test_list"], "test_list")
        token = secrets.token_hex(16)
        setup = row["test_setup_code"] or ""
        return "script", [(_harness(program, setup, tests, token), None)], (token, len(tests))
    cases = row["io_tests"]
    if not isinstance(cases, (list, tuple)) or not all(
        isinstance(case, dict) and isinstance(case.get("input"), str) and isinstance(case.get("output"), str)
        for case in cases
    ):
        raise ValueError("code_tests: column 'io_tests' must be a list of {'input': str, 'output': str}")
    return "io", [(program, case["input"]) for case in cases], [case["output"] for case in cases]


def code_tests(
    completions: list[Any],
    test: list[Any] | None = None,
    entry_point: list[Any] | None = None,
    test_list: list[Any] | None = None,
    test_setup_code: list[Any] | None = None,
    io_tests: list[Any] | None = None,
    *,
    timeout: float = 10.0,
    workers: int | None = None,
    memory_mb: int = 512,
    max_processes: int = 8,
    **columns: Any,
) -> list[float | None]:
    """Fraction of the row's tests that the completion's program passes, run in the sandbox.

    None for a row without tests. ``timeout`` is the wall-clock limit per sandbox run (seconds), ``workers``
    how many programs run at once (default: the usable CPUs), ``memory_mb`` and ``max_processes`` the
    sandbox's memory and process limits (see :class:`rewards.sandbox.SandboxLimits`).

    >>> code_tests(["```python\\ndef add(a, b):\\n    return a + b\\n```"],
    ...            test_list=[["assert add(1, 2) == 3", "assert add(2, 2) == 5"]])
    [0.5]
    """
    limits = SandboxLimits(timeout=timeout, memory_mb=memory_mb, max_processes=max_processes)
    given = {
        "test": test,
        "entry_point": entry_point,
        "test_list": test_list,
        "test_setup_code": test_setup_code,
        "io_tests": io_tests,
    }
    scores: list[float | None] = [None] * len(completions)
    plans = []  # (row, kind, first job, number of jobs, scoring info)
    jobs: list[tuple[str, str | None]] = []
    for i, completion in enumerate(completions):
        row = {name: row_value(column, i) for name, column in given.items()}
        has_tests = (row["test"] is not None and row["entry_point"] is not None) or any(
            row[name] for name in ("test_list", "io_tests")
        )
        if not has_tests:
            continue
        program = extract_program(completion)
        if not program or not program.strip():
            scores[i] = 0.0
            continue
        kind, row_jobs, info = _row_jobs(program, row)
        plans.append((i, kind, len(jobs), len(row_jobs), info))
        jobs.extend(row_jobs)
    results = run_programs(jobs, limits, workers) if jobs else []
    for i, kind, start, count, info in plans:
        row_results = results[start : start + count]
        if kind == "script":
            token, total = info
            scores[i] = _passed_tests(row_results[0], token, total) / total
        else:
            passed = sum(
                result.ok and _normalize_output(result.stdout) == _normalize_output(expected)
                for result, expected in zip(row_results, info, strict=True)
            )
            scores[i] = passed / count
    return scores
