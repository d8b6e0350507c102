"""Synthetic code tasks: references pass their tests in the sandbox; wrong code does not.
Run: pytest tests/data_recipes/test_code_tasks.py"""

from __future__ import annotations

from data_recipes import get_recipe
from data_recipes.code_tasks import build
from rewards import get_reward


def test_every_kept_task_passes_its_own_tests_and_a_wrong_answer_fails():
    ds = build(n=12, seed=0)
    assert len(ds) == 12 and set(ds["task"]) == {"code"}
    score = get_reward("code_tests")
    refs = [m[1]["content"] for m in ds["messages"]]
    assert score(refs, test_list=list(ds["test_list"])) == [1.0] * 12
    wrong = ["```python\ndef nothing():\n    return None\n```"] * 12
    assert score(wrong, test_list=list(ds["test_list"])) == [0.0] * 12


def test_same_seed_same_tasks_and_lookup_by_name():
    assert build(n=5, seed=3, verify=False)["test_list"] == build(n=5, seed=3, verify=False)["test_list"]
    assert get_recipe("code_tasks") is build
