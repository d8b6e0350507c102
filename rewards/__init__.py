"""Verifiable rewards with TRL's reward signature, and the one lookup that finds them.

Every reward is a plain function ``fn(completions, **columns) -> list[float | None]``: one score per
completion, ``None`` for a row it cannot judge (not its task, no gold). Completions are strings or TRL's
conversational ``[{"role": "assistant", "content": str}]``; only the text after the last ``</think>`` is
judged (see :mod:`rewards.completion`). Rewards never raise on completion text.

    from rewards import get_reward
    accuracy = get_reward("math_accuracy", timeout=2.0)
    accuracy(["<think>\\n...\\n</think>\\n\\n\\boxed{4}"], solution=["4"])   # -> [1.0]
    custom = get_reward("my_pkg.rewards:exact_match")                      # a user's own function

This package is a leaf: it never imports trl or torch.
"""

from __future__ import annotations

import functools
import importlib
import inspect
from collections.abc import Callable
from typing import Any

from rewards.code import code_tests
from rewards.format import mode_compliance, repetition_penalty, soft_overlong, think_format, thinking_budget
from rewards.instruction import instruction_following, instruction_following_loose
from rewards.math import math_accuracy
from rewards.model_based import llm_judge, reward_model
from rewards.text import (
    exact_match,
    json_schema,
    language_consistency,
    length_control,
    multiple_choice,
    qa_f1,
    rag_grounding,
    refusal,
    summary_rouge,
    translation_chrf,
)
from rewards.tools import tool_call, tool_call_format

RewardFunction = Callable[..., list]

REWARDS: dict[str, RewardFunction] = {
    "math_accuracy": math_accuracy,
    "think_format": think_format,
    "mode_compliance": mode_compliance,
    "thinking_budget": thinking_budget,
    "repetition_penalty": repetition_penalty,
    "soft_overlong": soft_overlong,
    "code_tests": code_tests,
    # stage 4, general RL
    "instruction_following": instruction_following,
    "instruction_following_loose": instruction_following_loose,
    "tool_call": tool_call,
    "tool_call_format": tool_call_format,
    "length_control": length_control,
    "language_consistency": language_consistency,
    "json_schema": json_schema,
    "exact_match": exact_match,
    "qa_f1": qa_f1,
    "multiple_choice": multiple_choice,
    "rag_grounding": rag_grounding,
    "refusal": refusal,
    "translation_chrf": translation_chrf,
    "summary_rouge": summary_rouge,
    "reward_model": reward_model,
    "llm_judge": llm_judge,
}


def get_reward(name_or_path: str, **kwargs: Any) -> RewardFunction:
    """Return the reward called ``name_or_path`` with ``kwargs`` bound, ready to hand to TRL.

    ``name_or_path`` is a key of :data:`REWARDS` or a dotted path ``package.module:function``. The returned
    callable keeps the function's ``__name__`` (TRL logs ``rewards/<name>``). A keyword that the function does
    not declare is an error, so a typo in a config fails here rather than being taken for a dataset column.

    >>> get_reward("math_accuracy", timeout=2.0).__name__
    'math_accuracy'
    >>> get_reward("soft_overlong", max_length=64, buffer=16)(["short"])
    [0.0]
    """
    if not isinstance(name_or_path, str):
        raise ValueError(f"reward must be given by name or 'module:function' path, got {name_or_path!r}")
    if name_or_path in REWARDS:
        function = REWARDS[name_or_path]
    elif ":" in name_or_path:
        function = _import_reward(name_or_path)
    else:
        raise ValueError(f"unknown reward {name_or_path!r}; built-ins: {sorted(REWARDS)}")
    if not kwargs:
        return function
    _check_keywords(name_or_path, function, kwargs)
    bound = functools.partial(function, **kwargs)
    functools.update_wrapper(bound, function)
    return bound


def _import_reward(path: str) -> RewardFunction:
    module_name, _, function_name = path.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as error:
        raise ValueError(
            f"cannot import reward module {module_name!r} for {path!r} ({error}); "
            f"built-ins: {sorted(REWARDS)}"
        ) from error
    function = getattr(module, function_name, None)
    if function is None:
        raise ValueError(
            f"reward module {module_name!r} has no function {function_name!r}; built-ins: {sorted(REWARDS)}"
        )
    if not callable(function):
        raise ValueError(f"reward {path!r} is not callable (it is a {type(function).__name__})")
    return function


def _check_keywords(name: str, function: RewardFunction, kwargs: dict[str, Any]) -> None:
    parameters = inspect.signature(function).parameters
    named = [p.name for p in parameters.values() if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)]
    unknown = sorted(set(kwargs) - set(named) - {"completions"})
    if unknown:
        raise ValueError(f"reward {name!r} has no parameter {unknown[0]!r}; its parameters: {named}")
    if "completions" in kwargs:
        raise ValueError(f"reward {name!r}: 'completions' cannot be bound, TRL passes it")
