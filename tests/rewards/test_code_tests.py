"""code_tests: program extraction, the three test formats, partial credit, reward hacks, canonical code.

Run: .venv/bin/python -m pytest -q -m "not slow" tests/rewards/test_code_tests.py   (HumanEval, MBPP subset)
     .venv/bin/python -m pytest -q -m slow tests/rewards/test_code_tests.py         (all of MBPP, ~40 s)
"""

from __future__ import annotations

import pytest

from rewards.code import code_tests, extract_program

WORKERS = 2
# shared/benchmarks/README.md calls these two references broken; they pass once test_setup_code (which builds
# the trees their asserts use) runs first, so their asserts fail only in a harness that skips the setup code.
MBPP_NEEDING_SETUP_CODE = {367, 927}

ADD_TESTS = [
    "assert add(1, 2) == 3",
    "assert add(-1, 1) == 0",
    "assert add(2, 2) == 4",
    "assert add(0, 5) == 5",
]


def fenced(code: str) -> str:
    return f"<think>\nLet me write it.\n</think>\n\nHere it is:\n```python\n{code}\n```\nDone."


def test_extracts_the_last_python_block_else_the_whole_answer() -> None:
    two_blocks = "```python\nx = 1\n```\nbetter:\n```py\nx = 2\n```\n```text\nnot code\n```"
    assert extract_program(two_blocks) == "x = 2\n"
    assert extract_program("```\ny = 3\n```") == "y = 3\n"
    assert extract_program("<think>\n```python\nx = 1\n```\n</think>\n\nprint(2)") == "print(2)"
    assert extract_program("<think>\n```python\nx = 1\n```") is None


def test_mbpp_style_scores_the_fraction_of_asserts_passed() -> None:
    right = fenced("def add(a, b):\n    return a + b")
    half = fenced("def add(a, b):\n    return a + b if a > 1 else 0")  # right only for (-1, 1) and (2, 2)
    broken = fenced("def add(a, b) return a + b")
    scores = code_tests([right, half, broken], test_list=[ADD_TESTS] * 3, workers=WORKERS)
    assert scores == [1.0, 0.5, 0.0]


def test_mbpp_setup_code_runs_before_the_asserts() -> None:
    scores = code_tests(
        ["def scaled(x):\n    return x * FACTOR"],
        test_list=[["assert scaled(2) == 6"]],
        test_setup_code=["FACTOR = 3"],
        workers=WORKERS,
    )
    assert scores == [1.0]


def test_humaneval_style_test_script_counts_as_one_test() -> None:
    test = "def check(candidate):\n    assert candidate(2) == 4\n    assert candidate(3) == 9\n"
    right, wrong = fenced("def square(x):\n    return x * x"), fenced("def square(x):\n    return x + x")
    assert code_tests([right, wrong], test=[test] * 2, entry_point=["square"] * 2, workers=WORKERS) == [
        1.0,
        0.0,
    ]


def test_io_tests_compare_stdout_per_case() -> None:
    cases = [
        {"input": "1 2\n", "output": "3\n"},
        {"input": "5 5\n", "output": "10"},
        {"input": "0 0", "output": "0"},
    ]
    right = fenced("a, b = map(int, input().split())\nprint(a + b)   ")
    wrong_on_zero = fenced("a, b = map(int, input().split())\nprint(a + b or 'zero')")
    crashes = fenced("raise SystemExit(3)")
    scores = code_tests([right, wrong_on_zero, crashes], io_tests=[cases] * 3, workers=WORKERS)
    assert scores == [1.0, pytest.approx(2 / 3), 0.0]


def test_rows_without_tests_are_none_and_unfinished_thinking_scores_zero() -> None:
    scores = code_tests(
        ["print(1)", "<think>\nstill writing", "print(1)"],
        test_list=[None, ["assert True"], []],
        workers=WORKERS,
    )
    assert scores == [None, 0.0, None]
    assert code_tests(["print(1)"]) == [None]


@pytest.mark.parametrize(
    ("name", "program"),
    [
        ("exits before the tests run", "import sys\nsys.exit(0)"),
        ("exits hard before the tests run", "import os\nos._exit(0)"),
        ("prints what a pass might look like", "print('pass 0')\nprint('PASSED')\nprint('ok')"),
        ("closes stdout", "import os, sys\nos.close(1)\nsys.stdout = open(os.devnull, 'w')"),
        ("redefines assert-free check", "def check(candidate):\n    pass"),
    ],
)
def test_reward_hacks_get_no_credit(name: str, program: str) -> None:
    test = "def check(candidate):\n    assert candidate(2) == 4\n"
    scores = code_tests([fenced(program)], test=[test], entry_point=["square"], workers=WORKERS)
    scores += code_tests([fenced(program)], test_list=[["assert square(2) == 4"]], workers=WORKERS)
    assert scores == [0.0, 0.0], name


def test_a_program_that_hangs_on_one_assert_keeps_credit_for_earlier_ones() -> None:
    program = fenced("def add(a, b):\n    while a == 0:\n        pass\n    return a + b")
    assert code_tests([program], test_list=[ADD_TESTS], timeout=2.0, workers=WORKERS) == [0.75]


# ------------------------------------------------------------ public data


def _humaneval_scores(rows: list[dict]) -> list[float | None]:
    completions = [fenced(row["prompt"] + row["canonical_solution"]) for row in rows]
    return code_tests(
        completions,
        test=[r["test"] for r in rows],
        entry_point=[r["entry_point"] for r in rows],
        workers=WORKERS,
    )


def _mbpp_scores(rows: list[dict]) -> list[float | None]:
    return code_tests(
        [fenced(row["code"]) for row in rows],
        test_list=[row["test_list"] for row in rows],
        test_setup_code=[row["test_setup_code"] for row in rows],
        workers=WORKERS,
    )


def test_humaneval_canonical_solutions_all_pass(humaneval: list[dict]) -> None:
    assert _humaneval_scores(humaneval) == [1.0] * 164


def test_humaneval_prompt_without_body_fails(humaneval: list[dict]) -> None:
    rows = humaneval[:6]
    completions = [fenced(row["prompt"] + "    pass\n") for row in rows]
    scores = code_tests(
        completions,
        test=[r["test"] for r in rows],
        entry_point=[r["entry_point"] for r in rows],
        workers=WORKERS,
    )
    assert scores == [0.0] * 6


def test_mbpp_canonical_code_passes_subset(mbpp: list[dict]) -> None:
    rows = mbpp[::25]
    assert _mbpp_scores(rows) == [1.0] * len(rows)


def test_mbpp_tasks_367_and_927_pass_only_with_their_setup_code(mbpp: list[dict]) -> None:
    rows = [row for row in mbpp if row["task_id"] in MBPP_NEEDING_SETUP_CODE]
    assert _mbpp_scores(rows) == [1.0, 1.0]
    without_setup = code_tests([row["code"] for row in rows], test_list=[row["test_list"] for row in rows])
    assert without_setup == [0.0, 0.0]


@pytest.mark.slow
def test_mbpp_canonical_code_all_passes(mbpp: list[dict]) -> None:
    scores = _mbpp_scores(mbpp)
    assert [row["task_id"] for row, score in zip(mbpp, scores, strict=True) if score != 1.0] == []


def test_mbpp_code_against_another_tasks_asserts_fails(mbpp: list[dict]) -> None:
    rows = mbpp[10:20]
    shifted = rows[1:] + rows[:1]
    scores = code_tests(
        [fenced(row["code"]) for row in rows],
        test_list=[row["test_list"] for row in shifted],
        workers=WORKERS,
    )
    assert scores == [0.0] * len(rows)


def test_an_empty_test_list_falls_through_to_io_tests() -> None:
    program = "print(input()[::-1])"
    assert code_tests([program], test_list=[[]], io_tests=[[{"input": "abc", "output": "cba"}]]) == [1.0]
