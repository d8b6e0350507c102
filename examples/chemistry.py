"""A custom stage-4 domain in one module: molar masses of small molecules, with its own data recipe and reward.

Nothing in ``rewards/`` or ``data_recipes/`` changes; the stage-4 config names both by dotted path
(``configs/stage4_general/chemistry-example.yaml``):

    data:
      - name: examples.chemistry:build            # the recipe: prompt + task + the reward's column
        kwargs: {n: 400, seed: 0}
    tasks:
      molar_mass: [{name: "examples.chemistry:molar_mass_reward", weight: 1.0, kwargs: {tolerance: 0.01}}]

    make stage4 CONFIG=configs/stage4_general/chemistry-example.yaml

A recipe returns a ``datasets.Dataset`` with ``prompt`` (chat messages), ``messages`` (prompt + a reference
reply, for SFT), ``task``, and whatever columns its reward reads. A reward has TRL's signature
``fn(completions, **columns) -> list[float | None]``: None for rows it cannot judge, never an exception.
"""

from __future__ import annotations

import random
import re
from typing import Any

from datasets import Dataset

from rewards.completion import answer_text, row_value

ATOMIC_MASS = {"H": 1.008, "C": 12.011, "N": 14.007, "O": 15.999, "Na": 22.990, "S": 32.06, "Cl": 35.45,
               "K": 39.098, "Ca": 40.078, "Mg": 24.305}
MOLECULES = ["H2O", "CO2", "NaCl", "CH4", "NH3", "O2", "N2", "H2SO4", "KCl", "CaCO3", "MgO", "C2H6", "HCl",
             "NaOH", "C6H12O6", "SO2", "CaO", "KOH", "H2O2", "C2H5OH"]
_ELEMENT = re.compile(r"([A-Z][a-z]?)(\d*)")
_NUMBER = re.compile(r"-?\d+(?:\.\d+)?")


def molar_mass(formula: str) -> float:
    """Sum of atomic masses, e.g. ``molar_mass("H2O") == 18.015``."""
    parts = _ELEMENT.findall(formula)
    if "".join(e + n for e, n in parts) != formula:
        raise ValueError(f"cannot read formula {formula!r}")
    return round(sum(ATOMIC_MASS[e] * int(n or 1) for e, n in parts), 3)


EVAL_MOLECULES = MOLECULES[-5:]  # held out: never asked in training


def build(n: int = 400, seed: int = 0, split: str = "train", think: bool = True) -> Dataset:
    """``n`` questions "What is the molar mass of X?" with a worked reference reply."""
    if n <= 0:
        raise ValueError(f"n must be a positive number of rows, got {n}")
    if split not in ("train", "eval"):
        raise ValueError(f"split must be 'train' or 'eval', got {split!r}")
    pool = EVAL_MOLECULES if split == "eval" else MOLECULES[:-5]
    rng = random.Random(f"chemistry/{split}/{seed}")
    rows = []
    for _ in range(n):
        formula = rng.choice(pool)
        mass = molar_mass(formula)
        work = " + ".join(f"{int(k or 1)} × {ATOMIC_MASS[e]}" for e, k in _ELEMENT.findall(formula))
        prompt = [{"role": "user", "content": f"What is the molar mass of {formula} in g/mol?"}]
        reasoning = f"\n{formula}: {work} = {mass}\n" if think else "\n\n"
        reply = f"<think>{reasoning}</think>\n\nThe molar mass of {formula} is {mass} g/mol."
        rows.append({"prompt": prompt, "messages": prompt + [{"role": "assistant", "content": reply}],
                     "task": "molar_mass", "formula": formula, "molar_mass": mass})
    return Dataset.from_list(rows)


def molar_mass_reward(completions: list[Any], molar_mass: list[Any] | None = None, tolerance: float = 0.01,
                      **columns: Any) -> list[float | None]:
    """1.0 when the last number in the answer is within ``tolerance`` (relative) of the gold molar mass,
    0.0 otherwise; None for rows without a ``molar_mass`` column."""
    scores: list[float | None] = []
    for i, completion in enumerate(completions):
        gold = row_value(molar_mass, i)
        if gold is None:
            scores.append(None)
            continue
        answer = answer_text(completion)
        numbers = _NUMBER.findall(answer or "")
        if not numbers:
            scores.append(0.0)
            continue
        scores.append(float(abs(float(numbers[-1]) - float(gold)) <= tolerance * abs(float(gold))))
    return scores
