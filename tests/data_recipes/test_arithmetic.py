"""The synthetic long-CoT recipe: verified, deterministic, held-out split disjoint.
Run: pytest tests/data_recipes/test_arithmetic.py"""

from __future__ import annotations

import re

import pytest

from data_recipes import arithmetic, get_recipe
from data_recipes.arithmetic import DIFFICULTY, Problem, apply, build, is_eval, trace

CLAUSE = re.compile(r"^\d+(?: [-+×÷] \d+)+ = \d+$")
OPS = {"+": lambda a, b: a + b, "-": lambda a, b: a - b, "×": lambda a, b: a * b, "÷": lambda a, b: a // b}


def check_clause(clause: str) -> bool:
    """``a op b op c = r`` evaluated left to right (each trace clause uses one kind of operator)."""
    lhs, rhs = clause.split(" = ")
    tokens = lhs.split(" ")
    value = int(tokens[0])
    for op, num in zip(tokens[1::2], tokens[2::2]):
        value = OPS[op](value, int(num))
    return value == int(rhs)


def arithmetic_clauses(think: str) -> list[str]:
    clauses = [c.strip().rstrip(".") for line in think.splitlines() for c in line.split(", ")]
    return [c.split(": ")[-1] for c in clauses if CLAUSE.match(c.split(": ")[-1])]


def parse_signature(sig: str) -> Problem:
    parts = re.findall(r"([-+*/])(\d+)", sig)
    start = int(re.match(r"\d+", sig).group(0))
    return Problem(start, tuple((op, int(a)) for op, a in parts))


@pytest.mark.parametrize("difficulty", sorted(DIFFICULTY))
def test_every_row_is_verified_and_every_trace_line_is_correct_arithmetic(difficulty):
    ds = build(n=60, seed=1, difficulty=difficulty)
    lo, hi, *_ , cap = DIFFICULTY[difficulty]
    for row in ds:
        p = parse_signature(row["signature"])
        assert p.answer == row["answer"] and row["solution"] == f"\\boxed{{{row['answer']}}}"
        assert lo <= row["n_ops"] == len(p.ops) <= hi
        assert all(0 < v <= cap for v in p.values())
        think = row["messages"][1]["content"].split("</think>")[0]
        clauses = arithmetic_clauses(think)
        assert len(clauses) >= row["n_ops"]
        for clause in clauses:
            assert check_clause(clause), f"wrong arithmetic in trace: {clause}"
        assert f"\\boxed{{{row['answer']}}}" in row["messages"][1]["content"]


def test_traces_end_with_the_result_line():
    assert trace("+", 347, 289)[-1] == "347 + 289 = 636"
    assert trace("-", 636, 289) == ["9 < 6, borrow, 16 - 9 = 7".replace("9 < 6", "6 < 9"),
                                    "8 + 1 = 9, 3 < 9, borrow, 13 - 9 = 4", "2 + 1 = 3, 6 - 3 = 3",
                                    "636 - 289 = 347"]
    assert trace("*", 347, 8)[-1] == "347 × 8 = 2776"
    assert trace("/", 2776, 8) == ["27 ÷ 8 = 3, 3 × 8 = 24, 27 - 24 = 3", "37 ÷ 8 = 4, 4 × 8 = 32, 37 - 32 = 5",
                                   "56 ÷ 8 = 7, 7 × 8 = 56, 56 - 56 = 0", "2776 ÷ 8 = 347"]
    assert trace("*", 255, 31)[-1] == "255 × 31 = 7905"


def test_same_seed_gives_same_rows_and_other_seed_differs():
    a, b, c = build(n=20, seed=3), build(n=20, seed=3), build(n=20, seed=4)
    assert a["messages"] == b["messages"]
    assert a["signature"] != c["signature"]


def test_eval_split_never_overlaps_train():
    train = set(build(n=3000, seed=0, split="train")["signature"])
    held = build(n=200, seed=0, split="eval")["signature"]
    assert not train & set(held)
    assert all(is_eval(s, 0.05) for s in held) and not any(is_eval(s, 0.05) for s in train)


def test_bad_arguments_are_clear_errors():
    with pytest.raises(ValueError, match="difficulty"):
        build(n=5, difficulty=9)
    with pytest.raises(ValueError, match="split"):
        build(n=5, split="test")
    with pytest.raises(ValueError, match="positive"):
        build(n=0)


def test_recipe_lookup_by_name_and_dotted_path():
    assert get_recipe("arithmetic") is arithmetic.build
    assert get_recipe("data_recipes.arithmetic:build") is arithmetic.build
    with pytest.raises(ValueError, match="unknown data recipe 'nope'"):
        get_recipe("nope")
    with pytest.raises(ValueError, match="cannot import module"):
        get_recipe("no_such_pkg.mod:fn")
    with pytest.raises(ValueError, match="has no function"):
        get_recipe("data_recipes.arithmetic:missing")


def test_apply_division_must_be_exact():
    assert apply("/", 12, 4) == 3
    with pytest.raises(AssertionError):
        apply("/", 13, 4)


def test_avoid_excludes_the_problems_of_another_build():
    stage1 = set(build(n=500, seed=0, difficulty=1)["signature"])
    stage2 = build(n=500, seed=1, difficulty=1, avoid=[{"n": 500, "seed": 0, "difficulty": 1}])
    assert not stage1 & set(stage2["signature"])
    unguarded = build(n=500, seed=1, difficulty=1)
    assert stage1 & set(unguarded["signature"])  # without `avoid`, small spaces do collide


def test_a_thinking_budget_is_asked_for_in_the_question_and_given_to_the_reward():
    from rewards.format import thinking_budget

    ds = build(n=4, seed=0, difficulty=1, thinking_budget=96)
    assert set(ds["task"]) == {"arithmetic_budget"} and ds["thinking_budget"] == [96] * 4
    assert all(p[0]["content"].endswith(" Think for at most 96 tokens.") for p in ds["prompt"])
    assert build(n=4, seed=0, difficulty=1)["signature"] == ds["signature"]  # the same problems otherwise
    assert thinking_budget(["<think>\n" + "x" * 2000 + "\n</think>\n\n4"], thinking_budget=ds["thinking_budget"][:1]) \
        == [0.0]
    with pytest.raises(ValueError, match="thinking_budget must be a positive number of tokens"):
        build(n=1, thinking_budget=0)
