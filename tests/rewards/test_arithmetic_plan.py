"""The arithmetic plan reward (a process reward: the trace's Step lines against the problem's operations) and
the error classifier behind benchmarks/arithmetic_errors.py."""

from __future__ import annotations

import pytest

from data_recipes.arithmetic import build, error_kind
from rewards import get_reward

ROWS = build(n=6, seed=3, difficulty=2)
GOLD = [messages[-1]["content"] for messages in ROWS["messages"]]
SIGNATURES = list(ROWS["signature"])


def plan_reward(completions, signatures):
    return get_reward("rewards.arithmetic_plan:arithmetic_plan")(completions, signature=signatures)


def step_lines(trace: str) -> list[str]:
    return [line for line in trace.split("\n") if line.startswith("Step ")]


def test_the_gold_traces_get_full_plan_credit() -> None:
    assert plan_reward(GOLD, SIGNATURES) == [1.0] * len(GOLD)


def test_a_wrong_operand_in_the_second_step_keeps_only_the_first_steps_credit() -> None:
    trace, signature = GOLD[0], SIGNATURES[0]
    second = step_lines(trace)[1]
    operand = second.rstrip(".").split(" ")[-1]
    wrong = trace.replace(second, second[: -len(operand) - 1] + str(int(operand) + 1) + ".")
    n_ops = len(step_lines(trace))
    assert plan_reward([wrong], [signature]) == [1 / (n_ops + 1)]
    assert error_kind(wrong, trace) == "wrong_step"


def test_stopping_early_or_late_loses_the_stop_credit() -> None:
    trace, signature = GOLD[1], SIGNATURES[1]
    n_ops = len(step_lines(trace))
    last = trace.index(step_lines(trace)[-1])
    early = trace[:last] + "So Tom has 1 eggs.\n</think>\n\nTom has 1 eggs now. The answer is \\boxed{1}."
    assert plan_reward([early], [signature]) == [(n_ops - 1) / (n_ops + 1)]
    assert error_kind(early, trace) == "early_stop"
    so = trace.index("So ")
    late = trace[:so] + f"Step {n_ops + 1}: 5 + 5.\n" + trace[so:]
    assert plan_reward([late], [signature]) == [n_ops / (n_ops + 1)]
    assert error_kind(late, trace) == "late_stop"


def test_a_digit_error_is_not_a_plan_error() -> None:
    trace, signature = GOLD[2], SIGNATURES[2]
    lines = trace.split("\n")
    k = next(i for i, line in enumerate(lines) if i > 2 and " = " in line and not line.startswith(("Step", "So")))
    lines[k] = lines[k][:-1] + str((int(lines[k][-1]) + 1) % 10)
    wrong = "\n".join(lines)
    assert plan_reward([wrong], [signature]) == [1.0]
    assert error_kind(wrong, trace) == "digit"


@pytest.mark.parametrize("completion", ["", "<think>", "Step 1: x", None, [{"role": "assistant", "content": "4"}]])
def test_unreadable_replies_score_zero_and_rows_without_a_signature_none(completion) -> None:
    assert plan_reward([completion], [SIGNATURES[0]]) == [0.0]
    assert plan_reward([completion], [None]) == [None]
    assert get_reward("rewards.arithmetic_plan:arithmetic_plan")([completion]) == [None]
