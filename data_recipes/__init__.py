"""Data recipes: ``build(**kwargs) -> datasets.Dataset`` functions, looked up by name or dotted path.

    from data_recipes import get_recipe
    ds = get_recipe("arithmetic")(n=100, seed=0, difficulty=2, split="eval")
    ds = get_recipe("my_pkg.recipes:chemistry")(n=100)     # a user's own recipe

Every chat recipe returns a ``messages`` column (user turn, assistant turn with ``<think>…</think>`` then the
answer) and, where a verifier exists, a ``solution`` column with the gold answer.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable

from data_recipes import arithmetic, code_tasks, instructions, loaders

RECIPES: dict[str, Callable] = {
    "arithmetic": arithmetic.build,  # synthetic long-CoT word problems (the nano default)
    "code_tasks": code_tasks.build,  # synthetic function-writing tasks with asserts, references verified in the sandbox
    "instructions": instructions.build,  # synthetic verifiable general-instruction tasks (stages 3 and 4)
    "local_file": loaders.local_file,  # jsonl / json / parquet on disk, with column mapping
    "hub_dataset": loaders.hub_dataset,  # a Hugging Face hub dataset, with column mapping
}


def get_recipe(name_or_path: str) -> Callable:
    """A built-in recipe by name, or ``package.module:function`` for your own."""
    if name_or_path in RECIPES:
        return RECIPES[name_or_path]
    if ":" not in name_or_path:
        raise ValueError(f"unknown data recipe {name_or_path!r}; built-ins: {sorted(RECIPES)} "
                         "(or give a dotted path package.module:function)")
    module_name, func_name = name_or_path.split(":", 1)
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        raise ValueError(f"data recipe {name_or_path!r}: cannot import module {module_name!r} ({e})") from None
    func = getattr(module, func_name, None)
    if not callable(func):
        raise ValueError(f"data recipe {name_or_path!r}: module {module_name!r} has no function {func_name!r}")
    return func
