"""Stage-1 response and query filters: each drops its bad row and says why.
Run: pytest tests/data_recipes/test_filters.py"""

from __future__ import annotations

import pytest
from datasets import Dataset

from data_recipes.arithmetic import build
from data_recipes.filters import FilterSettings, apply_filters, minor_script_fraction, repeated_fraction, split_response


def row(question, response, solution="\\boxed{5}"):
    return {"messages": [{"role": "user", "content": question}, {"role": "assistant", "content": response}],
            "solution": solution}


GOOD = "<think>\n2 + 3 = 5\nSo the total is 5.\n</think>\n\nThe answer is \\boxed{5}."
BAD_ROWS = {
    "wrong_answer": row("q1 what is 2+3", GOOD.replace("\\boxed{5}", "\\boxed{6}")),
    "unverifiable": row("q2 what is 2+3", GOOD, solution=None),
    "repetition": row("q3 what is 2+3", "<think>\n" + "I add two and three to get five. " * 40
                      + "\n</think>\n\n\\boxed{5}"),
    "think_answer_disagree": row("q4 what is 2+3", "<think>\n2 + 3 = 5\nSo it is 7.\n</think>\n\n\\boxed{5}"),
    "script_mixing": row("q5 what is 2+3",
                         "<think>\nadd 二加三等于五 二加三等于五 then\n</think>\n\nThe answer is \\boxed{5}."),
    "eval_overlap": row("Tom has 2 apples and buys 3 more apples at the market today, how many apples now!", GOOD),
    "over_length": row("q7 what is 2+3 " + "long " * 50, GOOD),
}
EVAL_PROMPT = "Tom has 2 apples and buys 3 more apples at the market today, how many apples now?"


def test_each_filter_drops_exactly_its_bad_row_and_reports_it():
    rows = [row("good question", GOOD)] + list(BAD_ROWS.values())
    kept, report = apply_filters(Dataset.from_list(rows), FilterSettings(), eval_prompts=[EVAL_PROMPT],
                                 count_tokens=lambda m: len(m[0]["content"].split()), max_tokens=40)
    assert kept["messages"] == [rows[0]["messages"]]
    assert report["dropped"] == {name: 1 for name in FilterSettings().enabled}
    assert report["rows_in"] == 8 and report["rows_kept"] == 1
    assert report["dropped_examples"]["repetition"][0].startswith("q3")


def test_disabled_filters_keep_their_rows():
    rows = [row("good question", GOOD), BAD_ROWS["repetition"]]
    kept, report = apply_filters(Dataset.from_list(rows), FilterSettings(enabled=["wrong_answer"]))
    assert len(kept) == 2 and report["dropped"] == {"wrong_answer": 0}


def test_clean_synthetic_data_passes_every_filter():
    ds = build(n=300, seed=0)
    evals = build(n=100, seed=0, split="eval")
    prompts = [m[0]["content"] for m in evals["messages"]]
    kept, report = apply_filters(ds, FilterSettings(), eval_prompts=prompts)
    assert report["dropped"]["wrong_answer"] == 0
    assert report["dropped"]["repetition"] == 0
    assert report["dropped"]["think_answer_disagree"] == 0
    assert report["dropped"]["script_mixing"] == 0
    assert report["dropped"]["eval_overlap"] <= 3  # shared story boilerplate alone is not a near-duplicate


def test_equivalent_conclusion_and_answer_are_not_a_disagreement():
    r = row("q", "<think>\nhalf of it: 0.5\n</think>\n\n\\boxed{\\frac{1}{2}}", solution="\\boxed{0.5}")
    kept, report = apply_filters(Dataset.from_list([r]), FilterSettings(enabled=["think_answer_disagree"]))
    assert len(kept) == 1


@pytest.mark.parametrize("text, expected", [("a b c d e f", 0.0), ("x y " * 10, 17 / 19)])  # 19 bigrams, 2 distinct
def test_repeated_fraction(text, expected):
    assert repeated_fraction(text, 2) == pytest.approx(expected, abs=0.05)


def test_script_mixing_measure():
    assert minor_script_fraction("plain english text") == 0.0
    assert minor_script_fraction("english 中文") > 0.2


def test_split_response():
    assert split_response("<think>\nt\n</think>\n\nA") == ("t", "A")
    assert split_response("no think") == ("", "no think")
