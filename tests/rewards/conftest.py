"""Fixtures for the reward tests: the public benchmark data in ../shared/benchmarks (read, never copied).

Run: .venv/bin/python -m pytest -q tests/rewards
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[2] / ".." / "shared" / "benchmarks"


def _read_jsonl(path: Path) -> list[dict]:
    with open(path) as lines:
        return [json.loads(line) for line in lines if line.strip()]


@pytest.fixture(scope="session")
def benchmarks() -> Path:
    """The shared benchmark folder; tests that need it skip when it is absent (e.g. a bare checkout)."""
    if not BENCHMARKS.is_dir():
        pytest.skip(
            f"public benchmark data not found at {BENCHMARKS.resolve()} (see shared/benchmarks/README.md)"
        )
    return BENCHMARKS.resolve()


@pytest.fixture(scope="session")
def math500(benchmarks: Path) -> list[dict]:
    return _read_jsonl(benchmarks / "math500" / "math500_test.jsonl")


@pytest.fixture(scope="session")
def gsm8k(benchmarks: Path) -> list[dict]:
    """GSM8K test rows: ``answer`` (solution ending in ``#### n``) joined with ``final_answer``."""
    rows = _read_jsonl(benchmarks / "gsm8k" / "test.jsonl")
    finals = _read_jsonl(benchmarks / "gsm8k" / "test_final_answers.jsonl")
    return [dict(row, final_answer=final["final_answer"]) for row, final in zip(rows, finals, strict=True)]


@pytest.fixture(scope="session")
def math_verify_pairs(benchmarks: Path) -> list[dict]:
    with open(benchmarks / "math_verify" / "math_verify_pairs.json") as pairs:
        return json.load(pairs)["pairs"]


@pytest.fixture(scope="session")
def humaneval(benchmarks: Path) -> list[dict]:
    return _read_jsonl(benchmarks / "humaneval" / "HumanEval.jsonl")


@pytest.fixture(scope="session")
def mbpp(benchmarks: Path) -> list[dict]:
    return _read_jsonl(benchmarks / "mbpp" / "mbpp.jsonl")
