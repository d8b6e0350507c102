"""Google IFEval's 25 checks: hand-checked tables (follow and violate for every id), the loose variants, and the
official GPT-4 numbers reproduced on the public IFEval data.

Run: .venv/bin/python -m pytest -q tests/rewards/test_ifeval_checks.py
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rewards.ifeval_checks import IFEVAL_CHECKS, check_ifeval, count_sentences, detect_language, word_tokenize
from rewards.instruction import check_instructions, loose_variants

AT_LEAST, LESS = "at least", "less than"
ENGLISH = "This is a plain English sentence about the weather and the garden today."
GERMAN = "Das ist ein schöner Tag, und wir gehen heute in den Park spazieren."
DOCTOR = "Dr. Smith came. He sat. He left."
SECOND_HOWEVER = {"num_paragraphs": 2, "nth_paragraph": 2, "first_word": "however"}
TWO_SECTIONS = {"section_spliter": "Section", "num_sections": 2}
TWO_CAPITALS = {"capital_frequency": 2, "capital_relation": AT_LEAST}
FEWER_THAN_TWO_CAPITALS = {"capital_frequency": 2, "capital_relation": LESS}

# (instruction id, response, kwargs, expected, why)
CASES = [
    ("keywords:existence", "My cat and my dog.", {"keywords": ["cat", "dog"]}, True, "both keywords present"),
    ("keywords:existence", "My cat sleeps.", {"keywords": ["cat", "dog"]}, False, "dog missing"),
    ("keywords:existence", "CATALOG of DOGS", {"keywords": ["cat", "dog"]}, True, "case-blind substring, officially"),
    ("keywords:frequency", "Data, data, DATA.", {"keyword": "data", "frequency": 3, "relation": AT_LEAST}, True,
     "three occurrences, any case"),
    ("keywords:frequency", "data and data", {"keyword": "data", "frequency": 3, "relation": AT_LEAST}, False,
     "only two"),
    ("keywords:frequency", "databases and data", {"keyword": "data", "frequency": 2, "relation": LESS}, False,
     "substrings count: two is not less than two"),
    ("keywords:frequency", "data once", {"keyword": "data", "frequency": 2, "relation": LESS}, True, "1 < 2"),
    ("keywords:forbidden_words", "A good day.", {"forbidden_words": ["bad", "ugly"]}, True, "none used"),
    ("keywords:forbidden_words", "That is BAD.", {"forbidden_words": ["bad", "ugly"]}, False, "used, any case"),
    ("keywords:forbidden_words", "The badge is fine.", {"forbidden_words": ["bad"]}, True, "whole words only"),
    ("keywords:letter_frequency", "Zebras buzz.", {"letter": "z", "let_frequency": 2, "let_relation": AT_LEAST},
     True, "three z, capital included"),
    ("keywords:letter_frequency", "Zero.", {"letter": "z", "let_frequency": 2, "let_relation": AT_LEAST}, False,
     "one z"),
    ("keywords:letter_frequency", "#a #b", {"letter": "#", "let_frequency": 3, "let_relation": LESS}, True,
     "a non-letter is counted as given (official: random letter)"),
    ("keywords:letter_frequency", "#a #b #c", {"letter": "#", "let_frequency": 3, "let_relation": LESS}, False,
     "three # is not less than three"),
    ("language:response_language", GERMAN, {"language": "de"}, True, "German"),
    ("language:response_language", ENGLISH, {"language": "de"}, False, "English, not German"),
    ("language:response_language", "12345 !!! ???", {"language": "de"}, False,
     "undetectable text does not follow (official: followed)"),
    ("length_constraints:number_sentences", "One. Two.", {"num_sentences": 3, "relation": LESS}, True, "2 < 3"),
    ("length_constraints:number_sentences", DOCTOR, {"num_sentences": 3, "relation": LESS}, False,
     "Punkt keeps 'Dr.' inside: 3 sentences"),
    ("length_constraints:number_sentences", DOCTOR, {"num_sentences": 3, "relation": AT_LEAST}, True, "3 >= 3"),
    ("length_constraints:number_paragraphs", "First.\n***\nSecond.", {"num_paragraphs": 2}, True, "two"),
    ("length_constraints:number_paragraphs", "A.\n***\nB.\n***\nC.", {"num_paragraphs": 2}, False, "three"),
    ("length_constraints:number_paragraphs", "A.\n***\n***\nB.", {"num_paragraphs": 2}, False,
     "an empty paragraph in the middle"),
    ("length_constraints:number_paragraphs", "***\nA.\n***\nB.\n***", {"num_paragraphs": 2}, True,
     "empty ends do not count"),
    ("length_constraints:number_words", "one two three four five", {"num_words": 5, "relation": AT_LEAST}, True,
     "five words"),
    ("length_constraints:number_words", "one two three four", {"num_words": 5, "relation": AT_LEAST}, False, "four"),
    ("length_constraints:number_words", "don't go", {"num_words": 3, "relation": LESS}, False,
     "\\w+ runs: don, t, go = 3"),
    ("length_constraints:nth_paragraph_first_word", "Intro text.\n\nHowever, this.", SECOND_HOWEVER, True,
     "punctuation after the word dropped"),
    ("length_constraints:nth_paragraph_first_word", "Intro text.\n\nBut this.", SECOND_HOWEVER, False,
     "wrong first word"),
    ("length_constraints:nth_paragraph_first_word", "Intro.\n\nHowever this.\n\nThird.", SECOND_HOWEVER, False,
     "three paragraphs"),
    ("length_constraints:nth_paragraph_first_word", 'Intro.\n\n"However," she said.', SECOND_HOWEVER, True,
     "leading quote stripped"),
    ("detectable_content:number_placeholders", "Dear [name], at [address].", {"num_placeholders": 2}, True, "two"),
    ("detectable_content:number_placeholders", "Dear [name].", {"num_placeholders": 2}, False, "one"),
    ("detectable_content:number_placeholders", "[a][b][c]", {"num_placeholders": 2}, True, "at least"),
    ("detectable_content:postscript", "Hello.\n\nP.S. See you.", {"postscript_marker": "P.S."}, True, "P.S. line"),
    ("detectable_content:postscript", "Hello. See you.", {"postscript_marker": "P.S."}, False, "no P.S."),
    ("detectable_content:postscript", "Hi.\nP.P.S. Bring snacks.", {"postscript_marker": "P.P.S"}, True, "P.P.S"),
    ("detectable_content:postscript", "Hi.\nPS bring snacks", {"postscript_marker": "P.S."}, False, "dots needed"),
    ("detectable_format:number_bullet_lists", "* one\n* two", {"num_bullets": 2}, True, "two star bullets"),
    ("detectable_format:number_bullet_lists", "- one\n- two\n- three", {"num_bullets": 2}, False, "exactly, not 3"),
    ("detectable_format:number_bullet_lists", "* one\n**bold** line\n- two", {"num_bullets": 2}, True,
     "a **bold** line is no bullet; - counts"),
    ("detectable_format:constrained_response", "My answer is yes.", {}, True, "an allowed option"),
    ("detectable_format:constrained_response", "Yes.", {}, False, "not the exact phrase"),
    ("detectable_format:constrained_response", "Well... My answer is maybe. It depends.", {}, True,
     "contained is enough"),
    ("detectable_format:number_highlighted_sections", "*one* and *two*", {"num_highlights": 2}, True, "two"),
    ("detectable_format:number_highlighted_sections", "*one* only", {"num_highlights": 2}, False, "one"),
    ("detectable_format:number_highlighted_sections", "**bold**", {"num_highlights": 2}, False,
     "**bold** counts once"),
    ("detectable_format:number_highlighted_sections", "* *", {"num_highlights": 1}, False, "empty highlight"),
    ("detectable_format:multiple_sections", "Section 1\nIntro\nSection 2\nBody", TWO_SECTIONS, True,
     "two sections"),
    ("detectable_format:multiple_sections", "Section 1\nIntro", TWO_SECTIONS, False, "one section"),
    ("detectable_format:multiple_sections", "SECTION 1 a SECTION 2 b", TWO_SECTIONS, False,
     "the splitter is case-sensitive"),
    ("detectable_format:json_format", '{"a": 1}', {}, True, "plain JSON"),
    ("detectable_format:json_format", '```json\n{"a": 1}\n```', {}, True, "fenced JSON"),
    ("detectable_format:json_format", 'Here: {"a": 1}', {}, False, "text around it"),
    ("detectable_format:title", "<<My Title>>\nText", {}, True, "a title"),
    ("detectable_format:title", "No title here", {}, False, "none"),
    ("detectable_format:title", "<<   >>\nText", {}, False, "an empty title"),
    ("combination:two_responses", "Answer one.\n******\nAnswer two.", {}, True, "two different"),
    ("combination:two_responses", "Same.\n******\nSame.", {}, False, "identical"),
    ("combination:two_responses", "One.\n******\n******\nTwo.", {}, False, "an empty response between"),
    ("combination:repeat_prompt", "Write a haiku. Leaves fall.", {"prompt_to_repeat": "Write a haiku."}, True,
     "starts with the prompt"),
    ("combination:repeat_prompt", "Sure! Write a haiku.", {"prompt_to_repeat": "Write a haiku."}, False,
     "something before it"),
    ("combination:repeat_prompt", "write a HAIKU. ok", {"prompt_to_repeat": "Write a haiku."}, True, "any case"),
    ("startend:end_checker", "Done. Any other questions?", {"end_phrase": "Any other questions?"}, True, "ends so"),
    ("startend:end_checker", "Any other questions? Bye.", {"end_phrase": "Any other questions?"}, False,
     "words after it"),
    ("startend:end_checker", '"Done. any other questions?"', {"end_phrase": "Any other questions?"}, True,
     "outer quotes and case ignored"),
    ("startend:quotation", '"Hello world"', {}, True, "wrapped"),
    ("startend:quotation", 'Hello "world"', {}, False, "not at the start"),
    ("startend:quotation", '"', {}, False, "a lone quote"),
    ("change_case:capital_word_frequency", "The NASA and FBI teams.", TWO_CAPITALS, True, "NASA, FBI"),
    ("change_case:capital_word_frequency", "Only NASA here.", TWO_CAPITALS, False, "one"),
    ("change_case:capital_word_frequency", "I think so.", FEWER_THAN_TWO_CAPITALS, True, "'I' is one capital word"),
    ("change_case:capital_word_frequency", "DON'T.", FEWER_THAN_TWO_CAPITALS, False,
     "Treebank splits DON'T into DO + N'T"),
    ("change_case:english_capital", ENGLISH.upper(), {}, True, "English in capitals"),
    ("change_case:english_capital", ENGLISH, {}, False, "not all capitals"),
    ("change_case:english_capital", GERMAN.upper(), {}, False, "capitals, but German"),
    ("change_case:english_lowercase", ENGLISH.lower(), {}, True, "English in lower case"),
    ("change_case:english_lowercase", ENGLISH, {}, False, "a capital T"),
    ("change_case:english_lowercase", GERMAN.lower(), {}, False, "lower case, but German"),
    ("punctuation:no_comma", "No commas here.", {}, True, "none"),
    ("punctuation:no_comma", "One, two.", {}, False, "a comma"),
    ("punctuation:no_comma", "全角逗号，不算", {}, True, "only the ASCII comma counts"),
]


@pytest.mark.parametrize(
    ("instruction_id", "response", "kwargs", "expected", "why"), CASES, ids=[f"{case[0]}-{case[4]}" for case in CASES]
)
def test_ifeval_check(instruction_id: str, response: str, kwargs: dict, expected: bool, why: str) -> None:
    assert check_ifeval(instruction_id, response, kwargs) is expected, why


def test_every_ifeval_id_has_three_cases_with_both_outcomes() -> None:
    for instruction_id in IFEVAL_CHECKS:
        outcomes = [case[3] for case in CASES if case[0] == instruction_id]
        assert len(outcomes) >= 3 and set(outcomes) == {True, False}, instruction_id
    assert len(IFEVAL_CHECKS) == 25


def test_empty_response_follows_nothing() -> None:
    assert check_ifeval("punctuation:no_comma", "  \n", {}) is False


def test_missing_argument_and_unknown_id_are_one_line_value_errors() -> None:
    with pytest.raises(ValueError, match="missing argument 'num_words'"):
        check_ifeval("length_constraints:number_words", "a b", {"num_words": None, "relation": AT_LEAST})
    with pytest.raises(ValueError, match="'relation' must be one of"):
        check_ifeval("length_constraints:number_words", "a b", {"num_words": 2, "relation": "at most"})
    with pytest.raises(ValueError, match="unknown IFEval instruction 'keywords:nope'"):
        check_ifeval("keywords:nope", "a", {})


def test_text_tools_match_nltk_and_langdetect() -> None:
    assert count_sentences("Mr. Brown met Ms. Green at 3 p.m. today. They talked.") == 2
    tokens = ["They", "'ll", "pay", "$", "3.50", ",", "wo", "n't", "they", "?"]  # nltk.word_tokenize's answer
    assert word_tokenize("They'll pay $3.50, won't they?") == tokens
    assert detect_language("Le chat dort sur le canapé pendant que nous mangeons.") == "fr"
    assert detect_language("") is None


def test_loose_forgives_a_leading_line_and_markdown_stars() -> None:
    response = "Sure, here it is:\n" + ENGLISH.lower()
    strict = check_instructions(response, ["change_case:english_lowercase"], [{}])
    loose = check_instructions(response, ["change_case:english_lowercase"], [{}], loose=True)
    assert (strict, loose) == ([False], [True])
    quoted = 'Here you go:\n"**Hi** there"'
    assert check_instructions(quoted, ["startend:quotation"], [{}], loose=True) == [True]
    assert check_instructions(quoted, ["startend:quotation"], [{}]) == [False]
    assert len(loose_variants("a\nb\nc")) == 8


# ------------------------------------------------------------ the official numbers on GPT-4's responses


def _read_jsonl(path: Path) -> list[dict]:
    with open(path) as lines:
        return [json.loads(line) for line in lines if line.strip()]


def test_gpt4_responses_reproduce_the_official_checker(benchmarks: Path) -> None:
    """The official checker's numbers (shared/benchmarks/README.md): strict 417/541 prompts and 698/834
    instructions, loose 431/541 and 714/834. We get exactly these. The two rows where the official code draws a
    random letter for ``letter_frequency`` (key 1122 asks for 4 '#', key 1129 for 6 '!') we count the character
    asked for; GPT-4's answers have 4 '#' and 10 '!', so both are followed, as in the official run the README
    reports (the paper's 416/697 and 429/712 had one of them fail on its random letter)."""
    folder = benchmarks / "ifeval"
    inputs = _read_jsonl(folder / "input_data_gpt4_20231107_145030.jsonl")
    responses = {
        row["prompt"]: row["response"] for row in _read_jsonl(folder / "input_response_data_gpt4_20231107_145030.jsonl")
    }
    totals = {}
    for loose in (False, True):
        prompts_followed = instructions_followed = instructions = 0
        by_key = {}
        for row in inputs:
            followed = check_instructions(
                responses[row["prompt"]], row["instruction_id_list"], row["kwargs"], row["prompt"], loose=loose
            )
            by_key[row["key"]] = followed
            prompts_followed += all(followed)
            instructions_followed += sum(followed)
            instructions += len(followed)
        totals[loose] = (prompts_followed, len(inputs), instructions_followed, instructions)
        assert by_key[1122] == [True, True] and by_key[1129] == [True, True]
    assert totals[False] == (417, 541, 698, 834)
    assert totals[True] == (431, 541, 714, 834)
