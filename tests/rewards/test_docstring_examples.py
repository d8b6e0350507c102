"""The examples in the rewards package's docstrings run and give what they show.

Run: .venv/bin/python -m pytest -q tests/rewards/test_docstring_examples.py
"""

from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = [
    "rewards",
    "rewards.completion",
    "rewards.math",
    "rewards.math_workers",
    "rewards.format",
    "rewards.code",
    "rewards.sandbox",
    "rewards.ifeval_checks",
    "rewards.instruction",
    "rewards.text",
    "rewards.tools",
    "rewards.model_based",
]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_hold(name: str) -> None:
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples failed in {name}"
