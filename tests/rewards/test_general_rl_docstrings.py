"""The examples in the stage-4 reward modules' docstrings run and give what they show.

Run: .venv/bin/python -m pytest -q tests/rewards/test_general_rl_docstrings.py
"""

from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = [
    "rewards.ifeval_checks",
    "rewards.instruction",
    "rewards.text",
    "rewards.tools",
    "rewards.model_based",
]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_hold(name: str) -> None:
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0, f"no examples found in {name}"
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples failed in {name}"
