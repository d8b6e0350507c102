"""get_reward (built-in names, dotted paths, bound kwargs) and the contract every entry of REWARDS keeps.

Run: .venv/bin/python -m pytest -q tests/rewards/test_reward_lookup.py
"""

from __future__ import annotations

import ast
import random
import string
import sys
from pathlib import Path

import pytest

from rewards import REWARDS, get_reward

# A row with every column any built-in reads, so that each one has something to judge.
COLUMNS = {
    "solution": ["4"],
    "mode": ["think"],
    "test_list": [["assert f() == 1"]],
}


def test_builtin_names_resolve_to_the_functions() -> None:
    for name, function in REWARDS.items():
        assert get_reward(name) is function
        assert function.__name__ == name


def test_bound_kwargs_keep_the_name_for_trl_logging() -> None:
    reward = get_reward("soft_overlong", max_length=8, buffer=4)
    assert reward.__name__ == "soft_overlong"
    assert reward(["x" * 24]) == [-0.5]  # 24 characters -> 6 estimated tokens


def test_dotted_path_loads_a_users_function(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    package = tmp_path / "my_rewards_pkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "scoring.py").write_text(
        "def exact_match(completions, answer, *, case_sensitive=True, **kwargs):\n"
        "    norm = (lambda s: s) if case_sensitive else str.lower\n"
        "    return [float(norm(c) == norm(a)) for c, a in zip(completions, answer)]\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    reward = get_reward("my_rewards_pkg.scoring:exact_match", case_sensitive=False)
    assert reward.__name__ == "exact_match"
    assert reward(["Paris", "Rome"], answer=["paris", "Oslo"], prompts=["q", "q"]) == [1.0, 0.0]
    sys.modules.pop("my_rewards_pkg.scoring", None)
    sys.modules.pop("my_rewards_pkg", None)


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("foo", "unknown reward 'foo'; built-ins: ['code_tests', "),
        ("no_such_module_xyz:f", "cannot import reward module 'no_such_module_xyz'"),
        ("rewards.math:no_such_function", "reward module 'rewards.math' has no function 'no_such_function'"),
        ("rewards.math:_BOX_COMMAND", "is not callable"),
    ],
)
def test_bad_names_are_one_line_value_errors(name: str, message: str) -> None:
    with pytest.raises(ValueError) as error:
        get_reward(name)
    assert message in str(error.value)
    assert "\n" not in str(error.value)


def test_unknown_keyword_is_an_error_not_a_silent_column() -> None:
    with pytest.raises(ValueError, match="reward 'math_accuracy' has no parameter 'timout'"):
        get_reward("math_accuracy", timout=3)


@pytest.mark.parametrize("name", sorted(REWARDS))
def test_every_reward_returns_one_float_or_none_per_completion(name: str) -> None:
    reward = get_reward(name)
    completions = ["<think>\nx\n</think>\n\n4", [{"role": "assistant", "content": "4"}], "<think>\ncut"]
    columns = {key: values * len(completions) for key, values in COLUMNS.items()}
    scores = reward(
        completions, prompts=["2+2?"] * 3, completion_ids=[[1, 2]] * 3, trainer_state=None, **columns
    )
    assert len(scores) == len(completions)
    assert all(score is None or isinstance(score, float) for score in scores)


@pytest.mark.parametrize("name", sorted(REWARDS))
def test_every_reward_survives_arbitrary_text(name: str) -> None:
    rng = random.Random(name)
    alphabet = string.printable + "\\{}$^_<>/ü∑∫🙂\x00"
    texts = [
        "",
        "<think>",
        "</think>",
        "<think></think>",
        "\\boxed{",
        "```python\n",
        "}" * 50,
        "\\boxed{}" * 3,
    ]
    texts += ["".join(rng.choice(alphabet) for _ in range(rng.randint(1, 300))) for _ in range(12)]
    columns = {key: values * len(texts) for key, values in COLUMNS.items()}
    scores = get_reward(name)(texts, **columns)
    assert len(scores) == len(texts)


def test_rewards_package_never_imports_trl_or_torch() -> None:
    for path in Path(__file__).resolve().parents[2].joinpath("rewards").glob("*.py"):
        tree = ast.parse(path.read_text())
        imported = {
            alias.name.split(".")[0]
            for node in ast.walk(tree)
            if isinstance(node, ast.Import)
            for alias in node.names
        }
        imported |= {
            node.module.split(".")[0]
            for node in ast.walk(tree)
            if isinstance(node, ast.ImportFrom) and node.module
        }
        assert not imported & {"trl", "torch", "transformers"}, path.name
