"""think_format, mode_compliance, repetition_penalty, soft_overlong, and the shared answer parsing.

Run: .venv/bin/python -m pytest -q tests/rewards/test_format_rewards.py
"""

from __future__ import annotations

import pytest

from rewards.completion import answer_text, completion_text, row_value, turn_answers
from rewards.format import (
    mode_compliance,
    prompt_mode,
    repetition_penalty,
    reply_mode,
    soft_overlong,
    think_format,
    thinking_budget,
)

# ------------------------------------------------------------ answer parsing


def test_only_the_text_after_the_last_think_close_is_the_answer() -> None:
    assert answer_text("<think>\na\n</think>\nb</think>\n\nfinal") == "final"
    assert answer_text("<think>\na\n</think>\n\n  42  ") == "42"


def test_unclosed_think_has_no_answer_and_no_think_block_is_judged_whole() -> None:
    assert answer_text("<think>\nstill going") is None
    assert answer_text("just 42") == "just 42"


def test_conversational_completion_text_joins_assistant_messages() -> None:
    assert (
        completion_text([{"role": "assistant", "content": "a"}, {"role": "assistant", "content": "b"}])
        == "a\nb"
    )
    assert completion_text([{"role": "assistant", "content": None}]) == ""
    assert completion_text(None) == ""


# A multi-turn tool-use completion as TRL's tool loop hands it over: the call parsed out of the first turn, the
# tool's response, the reply after it.
CALL = {"type": "function", "function": {"name": "multiply", "arguments": {"a": 6, "b": 7}}}


def tool_use(first_think: str = "", second: str = "<think>\n\n</think>\n\n42") -> list[dict]:
    return [{"role": "assistant", "content": f"<think>\n{first_think}\n</think>", "tool_calls": [CALL]},
            {"role": "tool", "content": "42"}, {"role": "assistant", "content": second}]


def test_a_tool_use_completion_is_its_turns_with_the_calls_written_back_and_its_answer_is_the_last_reply() -> None:
    completion = tool_use("I multiply.")
    assert completion_text(completion) == (
        '<think>\nI multiply.\n</think>\n<tool_call>\n{"name": "multiply", "arguments": {"a": 6, "b": 7}}\n'
        "</tool_call>\n<think>\n\n</think>\n\n42")  # the tool's response is not the model's text
    assert answer_text(completion) == "42"
    assert turn_answers(completion) == ['<tool_call>\n{"name": "multiply", "arguments": {"a": 6, "b": 7}}\n'
                                        "</tool_call>", "42"]
    assert answer_text(tool_use(second="<think>\nthe tool said")) is None  # cut off after the tool answered
    assert answer_text(tool_use(second="42 it is")) == "42 it is"  # a last turn without a think block: whole


def test_format_and_mode_rewards_judge_every_turn_of_a_tool_use_completion() -> None:
    no_think, thinking = tool_use(), tool_use("I multiply.", "<think>\nIt said 42.\n</think>\n\n42")
    assert think_format([no_think, thinking, tool_use(second="<think>\nthe tool said")]) == [1.0, 1.0, 0.0]
    assert mode_compliance([no_think, thinking], mode=["no_think", "no_think"]) == [1.0, 0.0]
    assert mode_compliance([no_think, thinking, tool_use("I multiply.")], mode=["think"] * 3) == [0.0, 1.0, 0.0]
    assert [reply_mode(c) for c in (no_think, thinking)] == ["no_think", "think"]  # chosen in the first turn
    assert thinking_budget([thinking], budget=100) == [1.0]


def test_row_value_is_none_for_missing_columns_and_rows() -> None:
    assert row_value(["think", None], 1) is None
    assert row_value(["think"], 5) is None
    assert row_value(None, 0) is None
    assert row_value(["think", "no_think"], 1) == "no_think"


# ------------------------------------------------------------ think_format

THINK_FORMAT = [
    ("<think>\nadd them\n</think>\n\n4", 1.0, "one closed block then an answer"),
    ("  <think>\n\n</think>\n\n4", 1.0, "empty block (no_think) is well-formed"),
    ("4", 1.0, "no block at all"),
    ("<think>\nadd them", 0.0, "cut off while thinking"),
    ("<think>\nadd\n</think>\n\n", 0.0, "empty answer"),
    ("<think>a</think><think>b</think>4", 0.0, "two blocks"),
    ("Sure! <think>a</think>4", 0.0, "block not at the start"),
    ("<think>a</think>4</think>", 0.0, "stray close tag in the answer"),
    ("4 </think>", 0.0, "close tag without an open tag"),
    ("", 0.0, "empty completion"),
]


@pytest.mark.parametrize(
    ("completion", "expected", "why"), THINK_FORMAT, ids=[row[2] for row in THINK_FORMAT]
)
def test_think_format(completion: str, expected: float, why: str) -> None:
    assert think_format([completion]) == [expected], why


# ------------------------------------------------------------ mode_compliance

THINKING = "<think>\nsome reasoning\n</think>\n\n4"
EMPTY_THINK = "<think>\n\n</think>\n\n4"


def test_no_think_response_keeps_empty_think_block() -> None:
    assert mode_compliance([EMPTY_THINK, THINKING, "4"], mode=["no_think"] * 3) == [1.0, 0.0, 0.0]


def test_think_mode_needs_real_thinking() -> None:
    assert mode_compliance([THINKING, EMPTY_THINK, "<think>\ncut off"], mode=["think"] * 3) == [1.0, 0.0, 0.0]


@pytest.mark.parametrize(
    ("reply", "mode"),
    [
        (EMPTY_THINK, "no_think"),
        ("  <think></think>4", "no_think"),
        (THINKING, "think"),
        ("<think>\nthinking that was cut off at the token limit", "think"),  # chose to think, ill-formed
        ("<think>\n\n<think>\nnested", "think"),  # not an empty block
        ("<think>\n\n", None),  # nothing chosen yet
        ("4", None),
        ("The answer <think>\n\n</think> 4", None),  # a block must open the reply
    ],
)
def test_reply_mode_is_the_mode_chosen_well_formed_or_not(reply: str, mode: str | None) -> None:
    assert reply_mode(reply) == mode
    if mode == "think" and "</think>" not in reply:
        assert mode_compliance([reply], mode=[mode]) == [0.0]  # the strict reward still wants a closed block


def test_mode_comes_from_the_last_flag_in_user_and_system_messages() -> None:
    prompt = [
        {"role": "system", "content": "Be brief. /no_think"},
        {"role": "user", "content": "What is 2+2? /think"},
        {"role": "assistant", "content": "quoting /no_think here does not count"},
    ]
    assert prompt_mode(prompt) == "think"
    assert prompt_mode([{"role": "user", "content": "/think first, then /no_think"}]) == "no_think"
    assert prompt_mode("What is 2+2? /no_think") == "no_think"
    assert prompt_mode("see http://x.org/think or /thinking") is None
    rendered = "<|im_start|>user\n2+2? /no_think<|im_end|>\n<|im_start|>assistant\n/think<|im_end|>\n"
    assert prompt_mode(rendered) == "no_think"


def test_mode_column_wins_and_prompt_flags_fill_in() -> None:
    prompts = ["2+2? /no_think", "2+2? /no_think", "2+2?"]
    scores = mode_compliance(
        [EMPTY_THINK, EMPTY_THINK, THINKING], prompts=prompts, mode=["think", None, None]
    )
    assert scores == [0.0, 1.0, 1.0]


def test_unknown_mode_value_is_an_error_naming_it() -> None:
    with pytest.raises(ValueError, match="unknown mode 'auto'"):
        mode_compliance([THINKING], mode=["auto"])


# ------------------------------------------------------------ repetition_penalty


def test_repetition_penalty_grows_with_repeated_ngrams() -> None:
    distinct = "the quick brown fox jumps over the lazy dog"
    some = "one two three one two three four five six"
    looping = " ".join(["again and again"] * 30)
    scores = repetition_penalty([distinct, some, looping])
    assert scores[0] == 0.0
    assert scores[1] == pytest.approx(-1 / 7)  # 7 trigrams, "one two three" twice: 6 distinct
    assert scores[2] == pytest.approx(-(1 - 3 / 88))  # 88 trigrams, 3 distinct
    assert scores[2] < scores[1] < scores[0]


def test_repetition_penalty_kwargs_and_thinking() -> None:
    looping_thought = "<think>\n" + "wait " * 50 + "\n</think>\n\nThe answer is 4."
    assert repetition_penalty([looping_thought]) == [0.0]  # only the answer is judged by default
    assert repetition_penalty([looping_thought], include_thinking=True, max_penalty=-0.5)[0] == pytest.approx(
        -0.5 * (1 - 7 / 54)  # 56 words with the tags; of 54 trigrams, 48 are "wait wait wait": 7 distinct
    )
    assert repetition_penalty(["a a"], ngram_size=3) == [0.0]  # shorter than one n-gram
    with pytest.raises(ValueError, match="max_penalty"):
        repetition_penalty(["x"], max_penalty=0.5)


# ------------------------------------------------------------ soft_overlong


def test_soft_overlong_follows_dapo_piecewise_penalty() -> None:
    ids = [[0] * n for n in (100, 768, 896, 1024, 1025)]
    assert soft_overlong(["x"] * 5, completion_ids=ids, max_length=1024, buffer=256) == [
        0.0,
        0.0,
        -0.5,
        -1.0,
        -1.0,
    ]


def test_soft_overlong_falls_back_to_characters_per_token_and_counts_thinking() -> None:
    text = "<think>\n" + "x" * 391 + "\n</think>\n\n" + "y" * 90  # 500 characters -> 125 "tokens"
    assert len(text) == 500
    assert soft_overlong([text], max_length=150, buffer=50) == [-0.5]
    assert soft_overlong([text], max_length=150, buffer=50, chars_per_token=5.0) == [0.0]
    with pytest.raises(ValueError, match="buffer"):
        soft_overlong(["x"], max_length=10, buffer=20)


# ------------------------------------------------------------ thinking_budget

BUDGET_CASES = [  # (completion, budget column, completion_ids, expected)
    ("<think>\n" + "a" * 40 + "\n</think>\n\n4", 10, None, 1.0),  # 10 tokens (40 chars / 4): at the budget
    ("<think>\n" + "a" * 60 + "\n</think>\n\n4", 10, None, 0.5),  # 15 tokens: halfway to twice the budget
    ("<think>\n" + "a" * 80 + "\n</think>\n\n4", 10, None, 0.0),  # twice the budget
    ("<think>\n" + "a" * 400 + "\n</think>\n\n4", 10, None, 0.0),  # far over: never negative
    ("<think>\n\n</think>\n\n4", 10, None, 1.0),  # /no_think: no thinking
    ("4", 10, None, 1.0),  # no think block: no thinking
    ("<think>\n" + "a" * 8, 10, None, 0.0),  # cut off while thinking
    ("<think>\nab\n</think>\n\n4", None, None, None),  # no budget: not this reward's row
    ("<think>\nab\n</think>\n\n4", "many", None, None),  # unreadable budget
    # with token ids: 40 ids × the thinking's 16 of 43 characters = 14.9 tokens
    ("<think>\n" + "a" * 16 + "\n</think>\n" + "b" * 9, 5, [0] * 40, 0.0),
    ("<think>\n" + "a" * 16 + "\n</think>\n" + "b" * 9, 15, [0] * 40, 1.0),
]


@pytest.mark.parametrize("completion,budget,ids,expected", BUDGET_CASES)
def test_thinking_budget_table(completion, budget, ids, expected):
    from rewards import get_reward

    score = get_reward("thinking_budget")([completion], thinking_budget=[budget],
                                          completion_ids=[ids] if ids else None)
    assert score == [expected]


def test_thinking_budget_keyword_is_the_default_and_a_column_overrides_it():
    from rewards import get_reward

    reward = get_reward("thinking_budget", budget=10)
    long_thinking = "<think>\n" + "a" * 60 + "\n</think>\n\n4"
    assert reward([long_thinking, long_thinking], thinking_budget=[None, 40]) == [0.5, 1.0]
    with pytest.raises(ValueError, match="budget must be positive"):
        get_reward("thinking_budget", budget=0)(["x"])
