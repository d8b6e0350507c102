"""math_accuracy: answer extraction, the exact fast path, math-verify in killable workers, public data.

Run: .venv/bin/python -m pytest -q tests/rewards/test_math_accuracy.py
"""

from __future__ import annotations

import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from rewards.math import fast_verdict, gold_answer, math_accuracy, math_verify_verdict, stated_answer
from rewards.math_workers import MathVerifyPool

WORKERS = 2  # the test machine has 2 cores and other work on it

# (completion, gold, expected score, why)
TABLE = [
    ("<think>\n3*186\n</think>\n\nThe answer is \\boxed{558}.", "\\boxed{558}", 1.0, "synthetic nano format"),
    ("<think>\n3*186\n</think>\n\nThe answer is \\boxed{557}.", "\\boxed{558}", 0.0, "wrong integer"),
    ("\\boxed{\\frac{1}{2}}", "0.5", 1.0, "fraction equals decimal"),
    ("\\boxed{\\dfrac{3}{6}}", "\\frac12", 1.0, "unreduced dfrac vs shorthand frac"),
    ("\\boxed{\\frac43}", "\\frac{4}{3}", 1.0, "shorthand fraction in the answer"),
    ("\\boxed{11\\sqrt2}", "11\\sqrt{2}", 1.0, "shorthand sqrt"),
    ("\\boxed{x^2+2x+1}", "(x+1)^2", 1.0, "symbolically equal polynomials"),
    ("\\boxed{x^2+1}", "(x+1)^2", 0.0, "different polynomial"),
    ("so $x = \\boxed{5}$", "5", 1.0, "boxed inside math"),
    ("\\boxed{x=5}", "5", 1.0, "assignment against bare value"),
    ("\\boxed{(1,2)}", "(1, 2)", 1.0, "tuple"),
    ("The solutions are \\boxed{1} and \\boxed{2}.", "\\{1,2\\}", 1.0, "listed boxes form one answer"),
    ("\\boxed{3} at first. Then I found a mistake in step two. Fixed: \\boxed{4}", "4", 1.0, "last box"),
    ("The answer is 42.", "42", 1.0, "stated answer without a box"),
    ("Janet makes 9 * 2 = 18 dollars.\n#### 18", "18", 1.0, "GSM8K #### style"),
    ("Final Answer: The final answer is $\\frac{1}{2}$. I hope it is correct.", "1/2", 1.0, "minerva style"),
    ("\\frac{10}{9}", "10/9", 1.0, "a bare expression is the answer"),
    ("It is 18 + 2 = 20 in total.", "20", 1.0, "last number as the final fallback"),
    ("AZYUK2A", "2", 0.0, "a digit inside a word is not an answer"),
    ("<think>\nthe answer is \\boxed{558}", "558", 0.0, "cut off while thinking"),
    ("", "5", 0.0, "empty completion"),
    ("I don't know.", "5", 0.0, "no answer at all"),
    ("\\boxed{50\\%}", "50", 1.0, "percent of the same number"),
    ("\\boxed{1,000}", "1000", 1.0, "thousands separator"),
    ("\\boxed{2.0000001}", "2", 0.0, "close but not equal (math-verify rounds floats only to 6 places)"),
    ("\\boxed{0.3333333}", "\\frac{1}{3}", 1.0, "decimal rounds to the fraction at 6 places"),
]


@pytest.mark.parametrize(("completion", "gold", "expected", "why"), TABLE, ids=[row[3] for row in TABLE])
def test_table(completion: str, gold: str, expected: float, why: str) -> None:
    assert math_accuracy([completion], solution=[gold], workers=WORKERS) == [expected], why


def test_conversational_completion_is_judged_like_a_string() -> None:
    conversational = [{"role": "assistant", "content": "<think>\nhm\n</think>\n\n\\boxed{7}"}]
    assert math_accuracy([conversational, "\\boxed{7}"], solution=["7", "7"]) == [1.0, 1.0]


def test_rows_without_a_gold_are_none() -> None:
    scores = math_accuracy(
        ["\\boxed{1}", "\\boxed{1}", "\\boxed{1}", "\\boxed{1}"], solution=["1", None, "", "  "]
    )
    assert scores == [1.0, None, None, None]
    assert math_accuracy(["\\boxed{1}"]) == [None]  # no solution column at all


def test_ignores_trl_extras() -> None:
    scores = math_accuracy(
        ["\\boxed{1}"],
        prompts=["p"],
        completion_ids=[[1, 2]],
        solution=["1"],
        trainer_state=None,
        log_metric=print,
    )
    assert scores == [1.0]


def test_gold_and_stated_answer_extraction() -> None:
    assert gold_answer("We add. $2+2=\\boxed{4}$.") == "4"
    assert gold_answer("Adding gives 4.\n#### 4") == "4"
    assert gold_answer(558) == "558"
    assert gold_answer("$\\frac{1}{2}$") == "\\frac{1}{2}"
    assert stated_answer("<think>\nx\n</think>\n\nThe answer is \\boxed{558}.") == "558"
    assert stated_answer("The answer is $\\$18$.") == "18"
    assert stated_answer("<think>\n\\boxed{3}\n</think>\n\nNo box here, I give up.") is None


# ------------------------------------------------------------ fast path


def _number_pairs(rng: random.Random) -> list[tuple[str, str]]:
    """Plain-number pairs of every shape the fast path accepts, equal and unequal, near and far."""
    pairs = []
    for _ in range(120):
        a = rng.randint(-1000, 10**6)
        pairs += [(str(a), str(a)), (str(a), str(a + rng.choice([1, -1, 7, 1000]))), (str(a), f"{a}.0")]
        pairs += [(str(a), f"{a}.000001"), (str(a), f"{a}.0000001"), (f"{a}.5", f"{2 * a + 1}/2")]
        numerator, denominator = rng.randint(-50, 50), rng.randint(1, 12)
        pairs += [
            (f"\\frac{{{numerator}}}{{{denominator}}}", f"{numerator / denominator:.6f}"),
            (f"\\frac{{{numerator}}}{{{denominator}}}", f"{numerator / denominator:.7f}"),
            (f"{numerator}/{denominator}", f"\\dfrac{{{2 * numerator}}}{{{2 * denominator}}}"),
            (f"{numerator / denominator:.3f}", f"{numerator / denominator:.4f}"),
            (f"{numerator}.25", f"{numerator}.250"),
        ]
    pairs += [
        ("0", "-0"),
        ("0.5", ".5"),
        ("007", "7"),
        ("3", "3/1"),
        ("1", "0.9999999"),
        ("0.5", "0.50000001"),
    ]
    pairs += [
        ("12345678901234567890", "12345678901234567890"),
        ("12345678901234567890", "12345678901234567891"),
    ]
    return pairs


def test_fast_path_never_changes_a_verdict_on_numbers() -> None:
    decided = 0
    for gold, predicted in _number_pairs(random.Random(0)):
        verdict = fast_verdict(gold, predicted)
        if verdict is not None:
            decided += 1
            assert verdict == math_verify_verdict(gold, predicted), (gold, predicted)
    assert decided > 900  # the fast path really takes most of these


def test_fast_path_agrees_with_math_verify_on_math500_and_gsm8k(
    math500: list[dict], gsm8k: list[dict]
) -> None:
    rng = random.Random(1)
    golds = [gold_answer("\\boxed{" + row["answer"] + "}") for row in math500]
    golds += [gold_answer(row["answer"]) for row in gsm8k[:400]]
    predictions = [stated_answer(row["solution"]) for row in math500] + [
        row["final_answer"] for row in gsm8k[:400]
    ]
    pairs = list(zip(golds, predictions, strict=True))
    pairs += [(gold, rng.choice(predictions)) for gold in golds]  # shuffled: mostly different numbers
    decided = 0
    for gold, predicted in pairs:
        verdict = fast_verdict(gold, predicted)
        if verdict is not None:
            decided += 1
            assert verdict == math_verify_verdict(gold, predicted), (gold, predicted)
    assert decided > 1000


DEGENERATE = ["}", "{", "$", "\\text{}", "\\boxed{}", "\\frac{}{}", "a}b{", "\\", ",", "=", "%", "()", "[]"]
EDGE = [
    "1/0",
    "\\frac{0}{0}",
    "nan",
    "zoo",
    "\\infty",
    "0^0",
    "\\sqrt{-1}",
    "\\emptyset",
    "x=",
    "1e999",
    "(A)",
]


def test_identical_answers_shortcut_never_changes_a_verdict(
    math500: list[dict], math_verify_pairs: list
) -> None:
    answers = {row["answer"] for row in math500[::3]}
    answers |= {stated_answer(pair["prediction"]) for pair in math_verify_pairs[::3]} - {None}
    answers |= set(DEGENERATE + EDGE)
    shortcut = 0
    for answer in sorted(answers):
        verdict = fast_verdict(answer, answer)
        if verdict is not None:
            shortcut += 1
            assert verdict == math_verify_verdict(answer, answer), answer
    assert all(fast_verdict(answer, answer) is None for answer in DEGENERATE)
    assert shortcut > 150


def test_synthetic_integer_answers_never_reach_math_verify(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_pool(**kwargs):
        raise AssertionError("plain integers must be judged by the fast path")

    monkeypatch.setattr("rewards.math_workers.shared_pool", no_pool)  # looked up at call time
    completions = [f"<think>\n{n} * 1 = {n}\n</think>\n\nThe answer is \\boxed{{{n}}}." for n in range(2000)]
    golds = [f"\\boxed{{{n if n % 3 else n + 1}}}" for n in range(2000)]
    start = time.perf_counter()
    scores = math_accuracy(completions, solution=golds)
    elapsed = time.perf_counter() - start
    assert scores == [1.0 if n % 3 else 0.0 for n in range(2000)]
    assert elapsed < 2.0  # ~0.1 s when idle; generous for a loaded 2-core machine


# ------------------------------------------------------------ public data


def test_math500_reference_solutions_match_their_gold(math500: list[dict]) -> None:
    solutions = [row["solution"] for row in math500]
    boxed_gold = math_accuracy(solutions, solution=["\\boxed{" + row["answer"] + "}" for row in math500])
    bare_gold = math_accuracy(solutions, solution=[row["answer"] for row in math500])
    # TRL's accuracy_reward on math-verify 0.9.0 accepts 492/500 (boxed gold) and 392/500 (bare gold).
    assert sum(score == 1.0 for score in boxed_gold) == 500
    assert sum(score == 1.0 for score in bare_gold) == 500


def test_math500_shuffled_pairs_are_accepted_only_when_the_answers_are_equal(math500: list[dict]) -> None:
    shifted = math500[1:] + math500[:1]
    scores = math_accuracy(
        [row["solution"] for row in shifted], solution=[row["solution"] for row in math500]
    )
    accepted = [i for i, score in enumerate(scores) if score == 1.0]
    assert len(accepted) <= 5
    for i in accepted:  # e.g. "5" and "x=5", or two problems that share the answer 7
        assert math_verify_verdict(math500[i]["answer"], shifted[i]["answer"]) is True


def test_gsm8k_reference_solutions_match_their_final_answer(gsm8k: list[dict]) -> None:
    scores = math_accuracy([row["answer"] for row in gsm8k], solution=[row["final_answer"] for row in gsm8k])
    assert scores.count(1.0) == len(gsm8k) == 1319
    shifted = gsm8k[1:] + gsm8k[:1]
    wrong = math_accuracy([row["answer"] for row in shifted], solution=[row["final_answer"] for row in gsm8k])
    same_answer = sum(a["final_answer"] == b["final_answer"] for a, b in zip(gsm8k, shifted, strict=True))
    assert wrong.count(1.0) == same_answer


# Cases of math-verify's own suite (LaTeX extraction, default precision) where we knowingly differ, and why.
KNOWN_DIFFERENCES = {
    "tests/test_all.py::test_latex_notation[5] (line 132)": "we accept '$ \\n 9 \\n $' spread over lines",
    "tests/test_all.py::test_latex_notation[6] (line 133)": "same, with \\( \\)",
    "tests/test_all.py::test_latex_notation[9] (line 138)": "an escaped \\$ inside math ends our math span",
    "tests/test_all.py::test_latex_notation_math[3] (line 200)": "3,000-char ramble; answer mid-text",
    "tests/test_all.py::test_latex_notation_math[4] (line 205)": "truncated essay without a final answer",
    "tests/test_all.py::test_math_extraction_edge_cases[5] (line 651)": "unbalanced '\\boxed{12 $ and $13 }'",
}


def test_agrees_with_math_verify_own_latex_cases(math_verify_pairs: list[dict]) -> None:
    cases = [
        pair
        for pair in math_verify_pairs
        if pair["harness"] == "compare_strings"
        and "latex" in pair["match_types"]
        and pair["strict"]
        and pair["precision"] == 6
        and not pair["allow_set_relation_comp"]
        and pair["source"] not in KNOWN_DIFFERENCES
    ]
    scores = math_accuracy([pair["prediction"] for pair in cases], solution=[pair["gold"] for pair in cases])
    disagreements = [
        (pair["gold"], pair["prediction"][:80])
        for pair, score in zip(cases, scores, strict=True)
        if (score == 1.0) != pair["expected"]
    ]
    assert len(cases) > 150
    assert disagreements == []


# ------------------------------------------------------------ timeouts, threads

ADVERSARIAL = [
    "\\boxed{10^{10^{10}}}",
    "\\boxed{9^{9^{9^{9}}}}",
    "\\boxed{(10^{10^{8}})!}",
    "\\boxed{" + "+".join(f"x_{{{i}}}^{{{i}}}" for i in range(3000)) + "}",
    "\\boxed{" + "\\frac{1}{" * 300 + "2" + "}" * 300 + "}",
    "\\boxed{" + "\\sqrt{" * 400 + "2" + "}" * 400 + "}",
    "\\boxed{" + "(" * 5000 + "1" + ")" * 5000 + "}",
    "\\boxed{" + "9" * 200_000 + "}",
]


def test_adversarial_answers_end_within_the_timeout_and_score_zero() -> None:
    timeout = 1.5
    start = time.perf_counter()
    scores = math_accuracy(
        ADVERSARIAL, solution=["x^2 + 1"] * len(ADVERSARIAL), timeout=timeout, workers=WORKERS
    )
    elapsed = time.perf_counter() - start
    assert scores == [0.0] * len(ADVERSARIAL)
    # Each answer is bounded by the timeout; two workers share them. Generous slack for restarting killed workers
    # on a busy machine: what this guards against is an answer that never ends (10^{10^{10}} would run for ever).
    assert elapsed < len(ADVERSARIAL) * timeout / WORKERS + 60


def test_pool_replaces_a_killed_worker_and_keeps_judging() -> None:
    pool = MathVerifyPool(workers=1, timeout=1.0)
    try:
        assert pool.judge([("5", "10^{10^{10}}"), ("x+1", "1+x"), ("\\frac{1}{2}", "0.5")]) == [
            False,
            True,
            True,
        ]
        assert pool.judge([("2x", "x+x")]) == [True]
    finally:
        pool.close()


def test_works_off_the_main_thread() -> None:
    completions = ["\\boxed{x+x}", "\\boxed{10^{10^{10}}}", "\\boxed{3}"]
    results: list = []
    thread = threading.Thread(
        target=lambda: results.append(math_accuracy(completions, solution=["2x", "1", "3"], timeout=1.5))
    )
    thread.start()
    thread.join(timeout=60)
    assert results == [[1.0, 0.0, 1.0]]
    with ThreadPoolExecutor(max_workers=2) as pool:  # two trainer threads scoring at once
        outcomes = list(pool.map(lambda gold: math_accuracy(["\\boxed{y^2}"], solution=[gold]), ["y*y", "y"]))
    assert outcomes == [[1.0], [0.0]]
