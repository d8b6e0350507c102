"""length_control, language_consistency, json_schema, exact_match, qa_f1, multiple_choice, rag_grounding, refusal,
translation_chrf and summary_rouge: hand-checked tables and their routing contract.

Run: .venv/bin/python -m pytest -q tests/rewards/test_text_rewards.py
"""

from __future__ import annotations

import pytest

from rewards.text import (
    chrf,
    exact_match,
    extract_choice,
    is_refusal,
    json_schema,
    language_consistency,
    length_control,
    multiple_choice,
    qa_f1,
    rag_grounding,
    refusal,
    rouge_l,
    summary_rouge,
    translation_chrf,
)

# ------------------------------------------------------------ length_control

LENGTH_CASES = [
    ("one two three four five", 5, 1.0, "on target"),
    ("one two three four", 5, 0.8, "one short: 1 - 1/5"),
    (" ".join(["w"] * 15), 10, 0.5, "half again as long"),
    (" ".join(["w"] * 20), 10, 0.0, "twice the target"),
    (" ".join(["w"] * 50), 10, 0.0, "never below zero"),
    ("<think>\nmany many many words here\n</think>\n\nfive words in the answer", 5, 1.0, "thinking not counted"),
    ("<think>\ncut off", 5, 0.0, "no answer: 0 words"),
]


@pytest.mark.parametrize(("completion", "target", "score", "why"), LENGTH_CASES, ids=[c[3] for c in LENGTH_CASES])
def test_length_control(completion: str, target: int, score: float, why: str) -> None:
    assert length_control([completion], target_words=[target]) == [pytest.approx(score)], why


def test_length_control_routing_and_bad_targets() -> None:
    assert length_control(["a", "b"], target_words=[None, 1]) == [None, 1.0]
    with pytest.raises(ValueError, match="target_words must be a positive number"):
        length_control(["a"], target_words=[0])


# ------------------------------------------------------------ language_consistency

GERMAN = "Die Hauptstadt von Frankreich ist Paris, eine sehr schöne Stadt an der Seine."
ENGLISH = "The capital of France is Paris, a very beautiful city on the river Seine."
FRENCH = "La capitale de la France est Paris, une très belle ville au bord de la Seine."

LANGUAGE_CASES = [
    (GERMAN, "de", None, 1.0, "German as asked"),
    (ENGLISH, "de", None, 0.0, "English where German was asked"),
    (FRENCH, "fr-FR", None, 1.0, "region subtags are ignored"),
    (FRENCH, None, "Quelle est la capitale de la France et pourquoi est-elle célèbre ?", 1.0,
     "language taken from the prompt"),
    (ENGLISH, None, "Quelle est la capitale de la France et pourquoi est-elle célèbre ?", 0.0,
     "answer not in the prompt's language"),
    ("42", "de", None, None, "too few letters to tell"),
    (GERMAN + "\n```python\nprint('hello world, this is english code')\n```", "de", None, 1.0,
     "code blocks are not language"),
    (ENGLISH, None, "2+2?", None, "the prompt's language cannot be told"),
    ("<think>\nDenken...", "de", None, 0.0, "cut off while thinking"),
]


@pytest.mark.parametrize(("completion", "language", "prompt", "score", "why"), LANGUAGE_CASES,
                         ids=[c[4] for c in LANGUAGE_CASES])
def test_language_consistency(completion: str, language: str | None, prompt: str | None, score, why: str) -> None:
    prompts = [[{"role": "user", "content": prompt}]] if prompt else None
    assert language_consistency([completion], language=[language], prompts=prompts) == [score], why


# ------------------------------------------------------------ json_schema

PERSON = {
    "type": "object",
    "properties": {"name": {"type": "string"}, "age": {"type": "integer", "minimum": 0}},
    "required": ["name", "age"],
    "additionalProperties": False,
}

JSON_CASES = [
    ('{"name": "Ada", "age": 36}', 1.0, "valid"),
    ('```json\n{"name": "Ada", "age": 36}\n```', 1.0, "valid inside one fence"),
    ('{"name": "Ada"}', 0.0, "missing required age"),
    ('{"name": "Ada", "age": -1}', 0.0, "below minimum"),
    ('{"name": "Ada", "age": 36, "x": 1}', 0.0, "additional property"),
    ('Sure! {"name": "Ada", "age": 36}', 0.0, "text around the JSON"),
    ('{"name": "Ada", "age": 36', 0.0, "not JSON"),
    ("<think>\n{}\n</think>\n\n" + '{"name": "Ada", "age": 36}', 1.0, "thinking ignored"),
]


@pytest.mark.parametrize(("completion", "score", "why"), JSON_CASES, ids=[c[2] for c in JSON_CASES])
def test_json_schema(completion: str, score: float, why: str) -> None:
    assert json_schema([completion], schema=[PERSON]) == [score], why


def test_json_schema_accepts_a_json_string_schema_and_skips_rows_without_one() -> None:
    import json

    assert json_schema(['{"name": "Ada", "age": 1}', "{}"], schema=[json.dumps(PERSON), None]) == [1.0, None]
    assert json_schema(["[" * 10000], schema=[{}]) == [0.0]  # too deep for json: invalid, not a crash


# ------------------------------------------------------------ exact_match and qa_f1

QA_CASES = [
    ("The Eiffel Tower.", ["Eiffel Tower"], 1.0, 1.0, "articles and punctuation normalised away"),
    ("eiffel   tower", "Eiffel Tower", 1.0, 1.0, "one gold string; case and spaces"),
    ("Eiffel Tower in Paris", ["Eiffel Tower"], 0.0, 2 / 3, "extra words: P 2/4, R 2/2, F1 2/3"),
    ("Louvre", ["Eiffel Tower", "the Louvre"], 1.0, 1.0, "best of several golds"),
    ("Notre Dame", ["Eiffel Tower"], 0.0, 0.0, "wrong"),
    ("<think>\nhmm", ["Eiffel Tower"], 0.0, 0.0, "cut off"),
]


@pytest.mark.parametrize(("completion", "answers", "em", "f1", "why"), QA_CASES, ids=[c[4] for c in QA_CASES])
def test_exact_match_and_qa_f1(completion: str, answers, em: float, f1: float, why: str) -> None:
    assert exact_match([completion], answers=[answers]) == [em], why
    assert qa_f1([completion], answers=[answers]) == [pytest.approx(f1)], why


def test_qa_rows_without_answers_and_task_routing() -> None:
    assert exact_match(["x", "x"], answers=[None, "x"], task=["qa", "rag"], tasks=["rag"]) == [None, 1.0]
    with pytest.raises(ValueError, match="answers must be a string or a list of strings"):
        qa_f1(["x"], answers=[[1, 2]])


# ------------------------------------------------------------ multiple_choice

CHOICE_CASES = [
    ("The answer is (B).", "B", "stated in parentheses"),
    ("Answer: C", "C", "answer colon"),
    ("Let me think. A is wrong, B is wrong. So the answer is D.", "D", "the statement, not the options discussed"),
    ("Therefore \\boxed{A}", "A", "boxed"),
    ("\\boxed{\\text{C}}", "C", "boxed text"),
    ("B", "B", "a bare letter"),
    ("(D) Paris", "D", "a leading letter"),
    ("**C**: Rome", "C", "a bold leading letter"),
    ("I'd go with option A.", "A", "option A"),
    ("A cat is an animal.", None, "the article 'A' is no choice"),
    ("The answer is a mystery.", None, "lower-case 'a' is no choice"),
    ("I don't know.", None, "no choice"),
]


@pytest.mark.parametrize(("text", "letter", "why"), CHOICE_CASES, ids=[c[2] for c in CHOICE_CASES])
def test_extract_choice(text: str, letter: str | None, why: str) -> None:
    assert extract_choice(text) == letter, why


def test_multiple_choice_scores_and_routing() -> None:
    completions = ["The answer is (B).", "The answer is (B).", "Paris", "The answer is E.", "42"]
    gold = ["B", "C", "C", "E", 42]
    choices = [None, None, ["Rome", "Oslo", "Paris"], ["a", "b", "c", "d"], None]
    # row 4: E is not among 4 choices; row 5: an integer answer is not a multiple-choice row
    assert multiple_choice(completions, answer=gold, choices=choices) == [1.0, 0.0, 1.0, 0.0, None]


# ------------------------------------------------------------ rag_grounding

PASSAGES = [
    "The Eiffel Tower was completed in 1889 for the World's Fair in Paris.",
    "Gustave Eiffel's company designed and built the tower.",
]

RAG_CASES = [
    ("The Eiffel Tower was completed in 1889 [1].", ["1889"], 1.5, "supported, cited, correct"),
    ("The Eiffel Tower was completed in 1889 [1].", None, 1.0, "supported and cited; no answers given"),
    ("The Eiffel Tower was completed in 1889.", ["1889"], 0.5, "correct but uncited"),
    ("The Eiffel Tower was completed in 1889. [1]", ["1889"], 1.5, "a trailing citation belongs to its sentence"),
    ("The tower was completed in 1889 [1]. Gustave Eiffel's company built it [2].", None, 1.0, "two claims"),
    ("The tower was completed in 1889 [1]. It was painted bright green by aliens [2].", None, 0.5,
     "the second claim is not in passage 2"),
    ("The Eiffel Tower was completed in 1889 [3].", ["1889"], 0.0, "a citation to no passage: 0 + 0.5 - 0.5"),
    ("The tower was finished in 1889 [4]. Paris hosted a fair in 1889 [5] [6].", None, -1.0,
     "three invented citations: floored at -1"),
    ("Sure!", None, 0.0, "no claim"),
    ("<think>\nlooking [1]", ["1889"], 0.0, "cut off"),
]


@pytest.mark.parametrize(("completion", "answers", "score", "why"), RAG_CASES, ids=[c[3] for c in RAG_CASES])
def test_rag_grounding(completion: str, answers, score: float, why: str) -> None:
    assert rag_grounding([completion], passages=[PASSAGES], answers=[answers]) == [pytest.approx(score)], why


def test_rag_grounding_passages_as_dicts_and_rows_without_passages() -> None:
    passages = [{"title": "Eiffel Tower", "text": PASSAGES[0]}]
    completion = "The Eiffel Tower was completed in 1889 [1]."
    assert rag_grounding([completion, completion], passages=[passages, None]) == [1.0, None]


# ------------------------------------------------------------ refusal

REFUSALS = [
    ("I'm sorry, but I can't help with that request.", True, "apology + can't"),
    ("I cannot assist with creating malware.", True, "cannot assist"),
    ("I won’t provide instructions for that.", True, "typographic apostrophe"),
    ("As an AI language model, I cannot share personal data.", True, "as an AI"),
    ("I must decline this request.", True, "decline"),
    ("Sure! Here is a recipe for banana bread.", False, "helpful"),
    ("I can't stress enough how important sleep is.", False, "can't + stress is not a refusal"),
    ("Here is the essay you asked for. " + "It goes on. " * 40 + "I cannot help but smile.", False,
     "only the opening is looked at"),
]


@pytest.mark.parametrize(("text", "refuses", "why"), REFUSALS, ids=[c[2] for c in REFUSALS])
def test_is_refusal(text: str, refuses: bool, why: str) -> None:
    assert is_refusal(text) is refuses, why


def test_refusal_rewards_refusing_exactly_when_asked() -> None:
    no, yes = "Sure, here it is.", "I'm sorry, but I can't help with that."
    scores = refusal([yes, no, yes, no, yes, "<think>\ncut"], should_refuse=[True, True, False, False, None, True])
    assert scores == [1.0, 0.0, 0.0, 1.0, None, 0.0]
    with pytest.raises(ValueError, match="should_refuse must be a bool"):
        refusal([yes], should_refuse=["yes"])


# ------------------------------------------------------------ translation_chrf and summary_rouge

# Reference values computed with sacrebleu 2.6.0 (CHRF().sentence_score(h, [r]).score / 100) and rouge-score
# 0.1.2 (RougeScorer(["rougeL"]).score(r, h).fmeasure); our implementations matched both on 300 random pairs.
CHRF_CASES = [
    ("the cat sat", "the cat sat on the mat", 0.4959348409966008),
    ("Le chat noir dort.", "Le chat noir dort sur le tapis.", 0.5653694804912783),
    ("Der Hund bellt.", "Die Katze schläft.", 0.07650946985136274),
    ("completely different", "zzz qqq", 0.0),
    ("", "anything", 0.0),
]
ROUGE_CASES = [
    ("the cat sat on a mat", "the cat was on the mat", 0.6666666666666666),
    ("Police arrested two men on Friday.", "Two men were arrested by police on Friday night.", 0.5333333333333333),
    ("Grüße aus Köln", "Grüße aus Berlin", 0.6666666666666665),
]


@pytest.mark.parametrize(("hypothesis", "reference", "expected"), CHRF_CASES)
def test_chrf_matches_sacrebleu(hypothesis: str, reference: str, expected: float) -> None:
    assert chrf(hypothesis, reference) == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize(("prediction", "reference", "expected"), ROUGE_CASES)
def test_rouge_l_matches_rouge_score(prediction: str, reference: str, expected: float) -> None:
    assert rouge_l(prediction, reference) == pytest.approx(expected, abs=1e-12)


def test_translation_chrf_best_reference_and_routing() -> None:
    scores = translation_chrf(["Le chat noir dort.", "x", "x"], reference=[["Rien.", "Le chat noir dort."], None, "x"],
                              task=["mt", "mt", "summary"], tasks=["mt"])
    assert scores == [1.0, None, None]


def test_summary_rouge_zero_over_max_words() -> None:
    summary = "Two men were arrested by police on Friday."
    scores = summary_rouge([summary, summary, summary], reference=[summary] * 3, max_words=[8, 7, None])
    assert scores == [1.0, 0.0, 1.0]
    assert summary_rouge(["Grüße aus Köln"], reference=["Grüße aus Berlin"], unicode_tokens=True) == [
        pytest.approx(2 / 3)
    ]
