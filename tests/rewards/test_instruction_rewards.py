"""instruction_following(_loose): the training-only constraints, the conflict table, and the rewards' contract
(routing, thinking, JSON-encoded columns, bad data).

Run: .venv/bin/python -m pytest -q tests/rewards/test_instruction_rewards.py
"""

from __future__ import annotations

import itertools
import random
import string

import pytest

from rewards.instruction import (
    CONFLICTS,
    INSTRUCTION_CHECKS,
    TRAINING_CHECKS,
    check_instructions,
    compatible,
    conflicts,
    instruction_following,
    instruction_following_loose,
)

# (instruction id, response, kwargs, expected, why)
TRAINING_CASES = [
    ("train:first_word", "Indeed, it works.", {"first_word": "indeed"}, True, "punctuation and case ignored"),
    ("train:first_word", "It indeed works.", {"first_word": "indeed"}, False, "second word"),
    ("train:first_word", '"**Indeed**" said he', {"first_word": "Indeed"}, True, "quotes and markdown stripped"),
    ("train:last_word", "That is the end.", {"last_word": "end"}, True, "last word before the period"),
    ("train:last_word", "The end is near.", {"last_word": "end"}, False, "not last"),
    ("train:copy_span", "brown fox", {"text": "The quick brown fox jumps", "start": 10, "end": 19}, True,
     "exactly characters 10-19"),
    ("train:copy_span", "brown fox jumps", {"text": "The quick brown fox jumps", "start": 10, "end": 19}, False,
     "more than the span"),
    ("train:letter_count", "banana", {"letter": "a", "count": 3, "relation": "exactly"}, True, "three a"),
    ("train:letter_count", "Banana bread", {"letter": "b", "count": 3, "relation": "at least"}, False, "two b"),
    ("train:letter_count", "Abba", {"letter": "A", "count": 3, "relation": "less than"}, True, "two a < 3"),
    ("train:palindrome", "We saw a racecar today.", {}, True, "racecar, 7 letters"),
    ("train:palindrome", "Wow, a kayak!", {"min_length": 6}, False, "kayak has only 5"),
    ("train:palindrome", "Level up your game.", {}, True, "case-blind: level"),
    ("train:no_digits", "Twenty apples.", {}, True, "spelled out"),
    ("train:no_digits", "20 apples.", {}, False, "a digit"),
    ("train:no_period", "Hello! How are you?", {}, True, "no period"),
    ("train:no_period", "Hello. Bye!", {}, False, "a period"),
    ("train:word_count_exact", "The cat saw a cat. CAT!", {"keyword": "cat", "frequency": 3}, True, "three, any case"),
    ("train:word_count_exact", "The cat and the category.", {"keyword": "cat", "frequency": 2}, False,
     "whole words only: one"),
    ("train:exact_sentences", "One. Two! Three?", {"num_sentences": 3}, True, "three"),
    ("train:exact_sentences", "One. Two.", {"num_sentences": 3}, False, "two"),
    ("train:sentence_first_word", "Yes, it is. Yes! yes indeed.", {"first_word": "yes"}, True, "every sentence"),
    ("train:sentence_first_word", "Yes, it is. No, it is not.", {"first_word": "yes"}, False, "the second is No"),
    ("train:start_end_same_word", "Home is where the heart is, home.", {}, True, "home ... home"),
    ("train:start_end_same_word", "Home is far away.", {}, False, "home ... away"),
    ("train:start_end_same_word", "Home.", {}, False, "one word is not a start and an end"),
    ("train:unique_words", "Every word here differs.", {}, True, "no repeats"),
    ("train:unique_words", "The cat and the dog.", {}, False, "'the' twice, case-blind"),
    ("train:bracket_every_word", "[Hello] [world.]", {}, True, "each token bracketed"),
    ("train:bracket_every_word", "[Hello] world", {}, False, "one bare word"),
    ("train:no_adjacent_alphabet", "Zebras eat grass.", {}, True, "z-e, e-g: not consecutive"),
    ("train:no_adjacent_alphabet", "A big cat.", {}, False, "a then b"),
    ("train:keyword_position", "I came. Then I saw it.", {"keyword": "i", "nth_sentence": 2, "nth_word": 2}, True,
     "second word of the second sentence"),
    ("train:keyword_position", "I came. Then I saw it.", {"keyword": "saw", "nth_sentence": 2, "nth_word": 2},
     False, "saw is the third"),
    ("train:keyword_position", "Only one.", {"keyword": "one", "nth_sentence": 2, "nth_word": 1}, False,
     "no second sentence"),
]


@pytest.mark.parametrize(("instruction_id", "response", "kwargs", "expected", "why"), TRAINING_CASES,
                         ids=[f"{case[0]}-{case[4]}" for case in TRAINING_CASES])
def test_training_constraint(instruction_id: str, response: str, kwargs: dict, expected: bool, why: str) -> None:
    assert check_instructions(response, [instruction_id], [kwargs]) == [expected], why


def test_every_training_constraint_is_tested_both_ways() -> None:
    assert len(TRAINING_CHECKS) >= 10
    for instruction_id in TRAINING_CHECKS:
        assert {case[3] for case in TRAINING_CASES if case[0] == instruction_id} == {True, False}, instruction_id


def test_copy_span_defaults_to_the_prompt_and_rejects_a_bad_span() -> None:
    assert check_instructions("quick", ["train:copy_span"], [{"start": 4, "end": 9}], prompt="The quick fox") == [True]
    with pytest.raises(ValueError, match="outside the text"):
        check_instructions("x", ["train:copy_span"], [{"start": 4, "end": 99}], prompt="The quick fox")


# ------------------------------------------------------------ conflicts

CONFLICT_CASES = [
    ("change_case:english_lowercase", "change_case:english_capital", True, "lower vs upper"),
    ("change_case:english_capital", "change_case:english_lowercase", True, "symmetric"),
    ("change_case:capital_word_frequency", "change_case:english_lowercase", True, "capital words in lower case"),
    ("detectable_format:json_format", "detectable_format:title", True, "JSON has no title line"),
    ("detectable_format:json_format", "keywords:existence", False, "a keyword fits in a JSON string"),
    ("language:response_language", "change_case:english_capital", True, "another language vs English"),
    ("language:response_language", "punctuation:no_comma", False, "independent"),
    ("detectable_format:constrained_response", "punctuation:no_comma", True, "fixed answer text"),
    ("length_constraints:number_paragraphs", "length_constraints:nth_paragraph_first_word", True,
     "two paragraph counts"),
    ("startend:end_checker", "train:last_word", True, "both fix the last word"),
    ("detectable_content:postscript", "train:no_period", True, "P.S. has periods"),
    ("punctuation:no_comma", "detectable_format:title", False, "independent"),
    ("train:no_digits", "detectable_format:multiple_sections", True, "'Section 1' has a digit"),
    ("keywords:existence", "keywords:existence", True, "one instance of each id per prompt"),
]


@pytest.mark.parametrize(("a", "b", "expected", "why"), CONFLICT_CASES, ids=[case[3] for case in CONFLICT_CASES])
def test_conflicts(a: str, b: str, expected: bool, why: str) -> None:
    assert conflicts(a, b) is expected, why


def test_conflict_table_is_symmetric_and_covers_every_id() -> None:
    assert set(CONFLICTS) == set(INSTRUCTION_CHECKS)
    for a, b in itertools.product(CONFLICTS, repeat=2):
        assert conflicts(a, b) == conflicts(b, a), (a, b)
    with pytest.raises(ValueError, match="unknown instruction 'nope'"):
        conflicts("nope", "punctuation:no_comma")


def test_compatible_sets_can_be_drawn_for_prompt_generation() -> None:
    rng = random.Random(0)
    ids = sorted(INSTRUCTION_CHECKS)
    drawn = []
    for _ in range(200):
        chosen: list[str] = []
        for candidate in rng.sample(ids, len(ids)):
            if len(chosen) < 3 and compatible(chosen + [candidate]):
                chosen.append(candidate)
        drawn.append(chosen)
    assert all(compatible(chosen) for chosen in drawn)
    # Greedy drawing fills most prompts; one that starts with an everything-excluding id stays alone.
    assert sum(len(chosen) == 3 for chosen in drawn) > 150
    alone = [chosen for chosen in drawn if "detectable_format:constrained_response" in chosen]
    assert alone and all(len(chosen) == 1 for chosen in alone)
    assert not compatible(["punctuation:no_comma", "punctuation:no_comma"])
    assert not compatible(["detectable_format:title", "startend:quotation", "punctuation:no_comma"])


# ------------------------------------------------------------ the rewards

IDS = [["punctuation:no_comma", "length_constraints:number_words"]]
KWARGS = [[{}, {"num_words": 3, "relation": "at least"}]]


def test_score_is_the_fraction_of_instructions_followed() -> None:
    completions = ["one two three", "one, two, three", "one, two", "<think>\nx\n</think>\n\nfour words right here"]
    assert instruction_following(completions, instruction_id_list=IDS * 4, kwargs=KWARGS * 4) == [1.0, 0.5, 0.0, 1.0]


def test_only_the_answer_after_thinking_is_judged() -> None:
    thinking = "<think>\na, b, c\n</think>\n\none two three"
    cut_off = "<think>\nstill going, and going"
    assert instruction_following([thinking, cut_off], instruction_id_list=IDS * 2, kwargs=KWARGS * 2) == [1.0, 0.0]


def test_rows_without_instructions_are_not_this_rewards() -> None:
    scores = instruction_following(
        ["a", "b", "c"], instruction_id_list=[None, [], IDS[0]], kwargs=[None, None, KWARGS[0]], task=["x", "x", "y"]
    )
    assert scores == [None, None, 0.5]  # "c" has no comma but is short of 3 words
    assert instruction_following(["one two three"], instruction_id_list=IDS, kwargs=KWARGS, task=["x"],
                                 tasks=["ifeval"]) == [None]


def test_hf_style_kwargs_with_none_values_and_json_strings() -> None:
    # The datasets library unifies every kwargs dict to all keys, filling the missing ones with None.
    hf_kwargs = [[{"num_words": None, "relation": None, "keywords": None}, {"num_words": 3, "relation": "at least",
                                                                           "keywords": None}]]
    assert instruction_following(["one two three"], instruction_id_list=IDS, kwargs=hf_kwargs) == [1.0]
    encoded = instruction_following(
        ["one two three"], instruction_id_list=['["punctuation:no_comma"]'], kwargs=["[{}]"]
    )
    assert encoded == [1.0]


def test_repeat_prompt_falls_back_to_the_last_user_message() -> None:
    prompts = [[{"role": "system", "content": "Be nice."}, {"role": "user", "content": "Name a colour."}]]
    ids, kwargs = [["combination:repeat_prompt"]], [[{}]]
    assert instruction_following(["Name a colour. Blue."], instruction_id_list=ids, kwargs=kwargs, prompts=prompts) == [
        1.0
    ]
    assert instruction_following(["Blue."], instruction_id_list=ids, kwargs=kwargs, prompt=["Name a colour."]) == [0.0]
    flagged = [[{"role": "user", "content": "Name a colour. /no_think"}]]
    assert instruction_following(["Name a colour. Red."], instruction_id_list=ids, kwargs=kwargs, prompts=flagged) == [
        1.0
    ]  # Qwen3's mode switch is not part of the request


def test_loose_reward_forgives_an_intro_line() -> None:
    completion = "Here is my answer:\nno commas, none"
    ids, kwargs = [["punctuation:no_comma"]], [[{}]]
    assert instruction_following([completion], instruction_id_list=ids, kwargs=kwargs) == [0.0]
    assert instruction_following_loose(["Here it is, friend:\nno commas at all"], instruction_id_list=ids,
                                       kwargs=kwargs) == [1.0]


def test_bad_rows_are_one_line_value_errors() -> None:
    with pytest.raises(ValueError, match="2 instruction ids but 1 kwargs entries"):
        instruction_following(["x"], instruction_id_list=IDS, kwargs=[[{}]])
    with pytest.raises(ValueError, match="unknown instruction 'made:up'"):
        instruction_following(["x"], instruction_id_list=[["made:up"]], kwargs=[[{}]])
    with pytest.raises(ValueError, match="tasks must be a list"):
        instruction_following(["x"], instruction_id_list=IDS, kwargs=KWARGS, tasks="ifeval")


# Valid arguments for every id, to throw arbitrary text at every check.
SAMPLE_KWARGS = {
    "keywords:existence": {"keywords": ["a"]},
    "keywords:frequency": {"keyword": "a", "frequency": 2, "relation": "at least"},
    "keywords:forbidden_words": {"forbidden_words": ["x"]},
    "keywords:letter_frequency": {"letter": "e", "let_frequency": 2, "let_relation": "less than"},
    "language:response_language": {"language": "en"},
    "length_constraints:number_sentences": {"num_sentences": 2, "relation": "at least"},
    "length_constraints:number_paragraphs": {"num_paragraphs": 2},
    "length_constraints:number_words": {"num_words": 5, "relation": "less than"},
    "length_constraints:nth_paragraph_first_word": {"num_paragraphs": 2, "nth_paragraph": 1, "first_word": "a"},
    "detectable_content:number_placeholders": {"num_placeholders": 1},
    "detectable_content:postscript": {"postscript_marker": "P.S."},
    "detectable_format:number_bullet_lists": {"num_bullets": 2},
    "detectable_format:number_highlighted_sections": {"num_highlights": 1},
    "detectable_format:multiple_sections": {"section_spliter": "Section", "num_sections": 2},
    "combination:repeat_prompt": {"prompt_to_repeat": "Say hi"},
    "startend:end_checker": {"end_phrase": "Bye."},
    "change_case:capital_word_frequency": {"capital_frequency": 2, "capital_relation": "at least"},
    "train:first_word": {"first_word": "a"},
    "train:last_word": {"last_word": "a"},
    "train:copy_span": {"text": "abcdef", "start": 1, "end": 3},
    "train:letter_count": {"letter": "a", "count": 2, "relation": "exactly"},
    "train:word_count_exact": {"keyword": "a", "frequency": 1},
    "train:exact_sentences": {"num_sentences": 2},
    "train:sentence_first_word": {"first_word": "a"},
    "train:keyword_position": {"keyword": "a", "nth_sentence": 1, "nth_word": 1},
}


def test_every_check_survives_arbitrary_text() -> None:
    rng = random.Random(1)
    alphabet = string.printable + "*#\"'<>[]{}üß∑🙂\u200b"
    texts = ["", "\n\n", "***", "******", "<<>>", "```json", '"', "P.S.", "Section 1"]
    texts += ["".join(rng.choice(alphabet) for _ in range(rng.randint(1, 200))) for _ in range(25)]
    ids = sorted(INSTRUCTION_CHECKS)
    kwargs = [SAMPLE_KWARGS.get(instruction_id, {}) for instruction_id in ids]
    for text in texts:
        for loose in (False, True):
            assert len(check_instructions(text, ids, kwargs, prompt="Say hi", loose=loose)) == len(ids)
