"""Reward throughput: our math_accuracy and code_tests against the plain serial way of doing the same work.

Run alone on the machine (other load skews both sides):

    .venv/bin/python benchmarks/reward_throughput.py        # full: 2,000 math items, 300 programs
    .venv/bin/python benchmarks/reward_throughput.py --math500 100 --math-synthetic 100 --code-programs 40

Math: ``math_accuracy`` (exact fast path for plain numbers + math-verify in a warm pool of worker processes)
against calling math-verify ``parse`` + ``verify`` serially, item by item, on the same extracted answers —
so the verdicts must be identical, and the script fails if any differs. Items: MATH-500 reference solutions
against their gold, plus synthetic items in the nano format (``<think>…</think>`` then ``\\boxed{n}``), eight
completions per prompt as in GRPO, about half of them wrong.

A second math row, informational, times a hard slice alone: MATH-500 solutions against the next problem's
non-numeric gold, where neither the number fast path nor the identical-answer shortcut applies — the worker
pool's parallel speedup only. Both sides are warmed up first on other items.

Code: ``code_tests`` with its default parallelism against the same sandbox running the same programs one at
a time (1 worker). Programs: HumanEval canonical solutions, then MBPP reference code. Scores must match.

Goals on the 2-core CPU box: math ≥ 4×, code ≥ 1.7×. Needs ../shared/benchmarks (see its README).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import random
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from rewards.code import code_tests  # noqa: E402
from rewards.math import fast_verdict, gold_answer, math_accuracy, stated_answer  # noqa: E402
from rewards.math_workers import shared_pool  # noqa: E402

BENCHMARKS = REPO / ".." / "shared" / "benchmarks"


def read_jsonl(path: Path) -> list[dict]:
    with open(path) as lines:
        return [json.loads(line) for line in lines if line.strip()]


# ------------------------------------------------------------ math


def math_items(math500: int, synthetic: int, seed: int = 0) -> tuple[list[str], list[str]]:
    """(completions, golds): MATH-500 reference solutions vs boxed gold, then synthetic nano-style items."""
    rows = read_jsonl(BENCHMARKS / "math500" / "math500_test.jsonl")[:math500]
    completions = [row["solution"] for row in rows]
    golds = ["\\boxed{" + row["answer"] + "}" for row in rows]
    rng = random.Random(seed)
    while len(completions) < len(rows) + synthetic:
        a, b = rng.randint(2, 999), rng.randint(2, 99)
        answer = a * b
        for _ in range(8):  # one prompt, eight sampled completions
            given = answer if rng.random() < 0.5 else answer + rng.randint(-20, 20)
            completions.append(f"<think>\n{a} * {b} = {given}\n</think>\n\nThe answer is \\boxed{{{given}}}.")
            golds.append(f"\\boxed{{{answer}}}")
    return completions[: len(rows) + synthetic], golds[: len(rows) + synthetic]


def serial_math_verify(completions: list[str], golds: list[str]) -> list[float | None]:
    """The plain way: math-verify parse + verify, one item after another, with its own default timeouts."""
    from math_verify import ExprExtractionConfig, LatexExtractionConfig, parse, verify

    config = [LatexExtractionConfig(boxed_match_priority=0), ExprExtractionConfig()]
    scores: list[float | None] = []
    for completion, solution in zip(completions, golds, strict=True):
        gold, predicted = gold_answer(solution), stated_answer(completion)
        if gold is None:
            scores.append(None)
            continue
        if predicted is None:
            scores.append(0.0)
            continue
        parsed_gold = parse("\\boxed{" + gold + "}", config)
        if not parsed_gold:
            scores.append(None)
            continue
        scores.append(float(verify(parsed_gold, parse("\\boxed{" + predicted + "}", config))))
    return scores


def shifted_math_items(rows: list[dict], shift: int = 1) -> tuple[list[str], list[str]]:
    """Each solution against the gold ``shift`` problems on, keeping only pairs the fast path cannot decide
    (non-numeric, non-identical answers): work for the worker pool alone."""
    others = rows[shift:] + rows[:shift]
    pairs = [(a["solution"], "\\boxed{" + b["answer"] + "}") for a, b in zip(rows, others, strict=True)]
    pairs = [(c, g) for c, g in pairs if fast_verdict(gold_answer(g), stated_answer(c) or "") is None]
    return [c for c, _ in pairs], [g for _, g in pairs]


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU time of live processes, from /proc."""
    ticks = 0
    for pid in pids:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
        ticks += int(fields[11]) + int(fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")


def time_math(name: str, completions: list[str], golds: list[str], workers: int, goal: float | None) -> dict:
    pids = shared_pool(workers=workers).worker_pids()
    cpu_before, own_before = cpu_seconds(pids), time.process_time()
    start = time.perf_counter()
    ours = math_accuracy(completions, solution=golds, workers=workers)
    ours_s = time.perf_counter() - start
    ours_cpu = cpu_seconds(pids) - cpu_before + time.process_time() - own_before
    own_before = time.process_time()
    start = time.perf_counter()
    baseline = serial_math_verify(completions, golds)
    baseline_s = time.perf_counter() - start
    baseline_cpu = time.process_time() - own_before
    differing = [i for i, (a, b) in enumerate(zip(ours, baseline, strict=True)) if a != b]
    if differing:
        for i in differing[:10]:
            print(
                f"verdict differs on item {i}: ours {ours[i]}, math-verify {baseline[i]}: {golds[i][:60]!r}"
            )
        raise SystemExit(f"math: {len(differing)} verdicts differ from serial math-verify")
    return {
        "name": f"{name} ({len(completions)} items)",
        "ours_s": ours_s,
        "baseline_s": baseline_s,
        "note": f"CPU s {ours_cpu:.2f} vs {baseline_cpu:.2f}; accepted {ours.count(1.0)}/{len(ours)}; "
        "verdicts identical",
        "goal": goal,
    }


def bench_math(args: argparse.Namespace) -> list[dict]:
    start = time.perf_counter()
    shared_pool(workers=args.workers).judge([("1", "1")])  # start the pool: paid once per training run
    print(f"math-verify pool of {args.workers} started in {time.perf_counter() - start:.2f}s (once per run)")
    rows = read_jsonl(BENCHMARKS / "math500" / "math500_test.jsonl")[: args.math500]
    # The LaTeX parser (ANTLR's prediction cache) and sympy warm up over a process's first ~200 answers:
    # ~1 s of CPU, 13 -> 8 ms per answer here. Warm this process and the workers on the other half of MATH-500
    # and time the hard slice before the main set (whose parsing would warm this process further). Each worker
    # still warms up on its own; a training run pays that once.
    warm_completions, warm_golds = shifted_math_items(rows[len(rows) // 2 :])
    math_accuracy(warm_completions, solution=warm_golds, workers=args.workers)
    serial_math_verify(warm_completions, warm_golds)
    hard = time_math("hard slice only", *shifted_math_items(rows[: len(rows) // 2]), args.workers, None)
    completions, golds = math_items(args.math500, args.math_synthetic)
    return [time_math("math_accuracy", completions, golds, args.workers, 4.0), hard]


# ------------------------------------------------------------ code


def code_rows(programs: int) -> dict[str, list]:
    """Columns for ``code_tests``: HumanEval canonical solutions, then MBPP reference code."""
    humaneval = read_jsonl(BENCHMARKS / "humaneval" / "HumanEval.jsonl")[:programs]
    mbpp = read_jsonl(BENCHMARKS / "mbpp" / "mbpp.jsonl")[: max(0, programs - len(humaneval))]
    fence = "```python\n{}\n```"
    return {
        "completions": [fence.format(r["prompt"] + r["canonical_solution"]) for r in humaneval]
        + [fence.format(r["code"]) for r in mbpp],
        "test": [r["test"] for r in humaneval] + [None] * len(mbpp),
        "entry_point": [r["entry_point"] for r in humaneval] + [None] * len(mbpp),
        "test_list": [None] * len(humaneval) + [r["test_list"] for r in mbpp],
        "test_setup_code": [None] * len(humaneval) + [r["test_setup_code"] for r in mbpp],
    }


def bench_code(args: argparse.Namespace) -> dict:
    columns = code_rows(args.code_programs)
    start = time.perf_counter()
    ours = code_tests(**columns, workers=args.workers)
    ours_s = time.perf_counter() - start
    start = time.perf_counter()
    baseline = code_tests(**columns, workers=1)
    baseline_s = time.perf_counter() - start
    if ours != baseline:
        raise SystemExit("code: scores differ between parallel and serial runs")
    return {
        "name": f"code_tests ({len(ours)} programs)",
        "ours_s": ours_s,
        "baseline_s": baseline_s,
        "note": f"{args.workers} workers vs 1; all passed: {ours.count(1.0)}/{len(ours)}; scores identical",
        "goal": 1.7,
    }


# ------------------------------------------------------------ main


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--math500", type=int, default=500, help="MATH-500 items (max 500)")
    parser.add_argument("--math-synthetic", type=int, default=1500, help="synthetic nano-style items")
    parser.add_argument("--code-programs", type=int, default=300, help="HumanEval first, then MBPP")
    parser.add_argument("--workers", type=int, default=len(os.sched_getaffinity(0)), help="parallel workers")
    args = parser.parse_args()
    if not BENCHMARKS.is_dir():
        raise SystemExit(f"needs the public benchmark data at {BENCHMARKS.resolve()}")
    logging.getLogger("math_verify").setLevel(logging.ERROR)  # its one-off "timeout disabled" notices

    results = [*bench_math(args), bench_code(args)]
    print(f"\n{'reward':<34} {'ours (s)':>9} {'serial (s)':>11} {'speedup':>8} {'goal':>6}  notes")
    for row in results:
        ratio = row["baseline_s"] / row["ours_s"]
        goal = f"{row['goal']:>5.1f}x" if row["goal"] else "    -"
        mark = "" if not row["goal"] else ("ok; " if ratio >= row["goal"] else "BELOW; ")
        print(
            f"{row['name']:<34} {row['ours_s']:>9.2f} {row['baseline_s']:>11.2f} {ratio:>7.1f}x {goal}  "
            f"{mark}{row['note']}"
        )


if __name__ == "__main__":
    main()
