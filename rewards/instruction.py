"""Instruction-following rewards: the fraction of a row's verifiable instructions that the answer follows.

A row carries ``instruction_id_list`` (IFEval ids, or the training-only ``train:*`` ids below) and ``kwargs``
(one dict per id, IFEval's data format; ``None`` values mean "not given"). The checks for Google IFEval's 25 ids
live in :mod:`rewards.ifeval_checks`; here are 15 more constraints, in the spirit of AllenAI's IFEvalG, for
training data that should not lean on IFEval's own (which we keep for evaluation), the conflict table used to
combine constraints safely, and the two rewards:

- ``instruction_following``: strict, the answer as it is;
- ``instruction_following_loose``: IFEval's loose score, an instruction counts as followed when the answer, or
  the answer without its first line, its last line or both, or any of those four with every ``*`` removed,
  follows it.

    >>> instruction_following(["<think>\\nok\\n</think>\\n\\nhello world"],
    ...     instruction_id_list=[["punctuation:no_comma", "change_case:english_capital"]], kwargs=[[{}, {}]])
    [0.5]
"""

from __future__ import annotations

import itertools
import re
import string
from collections.abc import Mapping, Sequence
from typing import Any

from rewards.completion import answer_text, row_value
from rewards.ifeval_checks import (
    IFEVAL_CHECKS,
    Check,
    InstructionArgs,
    compare,
    count_sentences,
    split_sentences,
)
from rewards.text import check_tasks, is_selected, json_column, last_user_text

# ------------------------------------------------------------ training-only constraints

# Stripped from both ends of a word: ASCII punctuation, typographic quotes and dashes.
_WORD_EDGES = string.punctuation + "“”‘’«»—–…"


def _words(text: str) -> list[str]:
    """Whitespace-separated words, lower-cased, with punctuation stripped from both ends; empty ones dropped."""
    words = (word.strip(_WORD_EDGES).lower() for word in text.split())
    return [word for word in words if word]


def _first_word(response: str, args: InstructionArgs) -> bool:
    words = _words(response)
    return bool(words) and words[0] == args.text("first_word").strip().lower()


def _last_word(response: str, args: InstructionArgs) -> bool:
    words = _words(response)
    return bool(words) and words[-1] == args.text("last_word").strip().lower()


def _copy_span(response: str, args: InstructionArgs) -> bool:
    # Copy characters [start, end) of `text` (default: the prompt) and nothing else.
    source = args.text("text") if args.has("text") else args.prompt
    if not source:
        raise ValueError(f"instruction {args.instruction_id!r}: needs 'text' or the row's prompt")
    start, end = args.number("start"), args.number("end")
    if not 0 <= start < end <= len(source):
        raise ValueError(f"instruction {args.instruction_id!r}: span [{start}, {end}) is outside the text")
    return response.strip() == source[start:end].strip()


def _letter_count(response: str, args: InstructionArgs) -> bool:
    letter = args.text("letter").lower()
    if len(letter) != 1:
        raise ValueError(f"instruction {args.instruction_id!r}: 'letter' must be one character, got {letter!r}")
    relation = args.relation("relation", ("less than", "at least", "exactly"))
    return compare(response.lower().count(letter), relation, args.number("count"))


def _palindrome(response: str, args: InstructionArgs) -> bool:
    min_length = args.number("min_length") if args.has("min_length") else 5
    letter_runs = re.findall(r"[^\W\d_]+", response.lower())
    return any(len(word) >= min_length and word == word[::-1] for word in letter_runs)


def _no_digits(response: str, args: InstructionArgs) -> bool:
    return not any(character.isdigit() for character in response)


def _no_period(response: str, args: InstructionArgs) -> bool:
    return "." not in response


def _word_count_exact(response: str, args: InstructionArgs) -> bool:
    keyword = args.text("keyword").strip()
    count = len(re.findall(r"\b" + re.escape(keyword) + r"\b", response, flags=re.IGNORECASE))
    return count == args.number("frequency")


def _exact_sentences(response: str, args: InstructionArgs) -> bool:
    return count_sentences(response) == args.number("num_sentences")


def _sentence_first_word(response: str, args: InstructionArgs) -> bool:
    wanted = args.text("first_word").strip().lower()
    sentences = [_words(sentence) for sentence in split_sentences(response)]
    return bool(sentences) and all(words and words[0] == wanted for words in sentences)


def _start_end_same_word(response: str, args: InstructionArgs) -> bool:
    words = _words(response)
    return len(words) >= 2 and words[0] == words[-1]


def _unique_words(response: str, args: InstructionArgs) -> bool:
    words = _words(response)
    return len(words) == len(set(words))


def _bracket_every_word(response: str, args: InstructionArgs) -> bool:
    tokens = response.split()
    return bool(tokens) and all(token.startswith("[") and token.endswith("]") for token in tokens)


def _no_adjacent_alphabet(response: str, args: InstructionArgs) -> bool:
    # No two neighbouring words whose first letters follow each other in the alphabet ("a big" breaks it).
    initials = [word[0] for word in _words(response)]
    return not any(
        first in string.ascii_lowercase and ord(second) - ord(first) == 1
        for first, second in itertools.pairwise(initials)
    )


def _keyword_position(response: str, args: InstructionArgs) -> bool:
    # The n-th word (1-based) of the m-th sentence (1-based) is the keyword.
    sentences = split_sentences(response)
    nth_sentence, nth_word = args.number("nth_sentence"), args.number("nth_word")
    if not 1 <= nth_sentence <= len(sentences):
        return False
    words = _words(sentences[nth_sentence - 1])
    return 1 <= nth_word <= len(words) and words[nth_word - 1] == args.text("keyword").strip().lower()


TRAINING_CHECKS: dict[str, Check] = {
    "train:first_word": _first_word,
    "train:last_word": _last_word,
    "train:copy_span": _copy_span,
    "train:letter_count": _letter_count,
    "train:palindrome": _palindrome,
    "train:no_digits": _no_digits,
    "train:no_period": _no_period,
    "train:word_count_exact": _word_count_exact,
    "train:exact_sentences": _exact_sentences,
    "train:sentence_first_word": _sentence_first_word,
    "train:start_end_same_word": _start_end_same_word,
    "train:unique_words": _unique_words,
    "train:bracket_every_word": _bracket_every_word,
    "train:no_adjacent_alphabet": _no_adjacent_alphabet,
    "train:keyword_position": _keyword_position,
}

INSTRUCTION_CHECKS: dict[str, Check] = {**IFEVAL_CHECKS, **TRAINING_CHECKS}

# ------------------------------------------------------------ conflicts

_ALL = frozenset(INSTRUCTION_CHECKS)

# Pairs that must not be asked for in one prompt: they contradict each other (lowercase vs capitals), one fixes
# what the other needs free (a JSON answer has no title, paragraphs or P.S.), or one makes the other nearly
# impossible to check (a repeated prompt already contains words, digits and commas). Listed one way here,
# made symmetric below. Every id also conflicts with itself: one instance of each per prompt.
_CONFLICTS: dict[str, frozenset[str]] = {
    "change_case:english_lowercase": frozenset({"change_case:english_capital", "change_case:capital_word_frequency"}),
    "change_case:english_capital": frozenset({"change_case:capital_word_frequency"}),
    # The answer is in another language, so English keywords, "Section", English end phrases and words and the
    # two English-only case rules cannot be met.
    "language:response_language": frozenset(
        {
            "change_case:english_capital",
            "change_case:english_lowercase",
            "keywords:existence",
            "keywords:frequency",
            "keywords:forbidden_words",
            "startend:end_checker",
            "detectable_format:multiple_sections",
            "length_constraints:nth_paragraph_first_word",
            "train:first_word",
            "train:last_word",
            "train:word_count_exact",
            "train:sentence_first_word",
            "train:keyword_position",
        }
    ),
    # A JSON answer leaves room only for what a JSON string can hold.
    "detectable_format:json_format": _ALL
    - {
        "keywords:existence",
        "keywords:forbidden_words",
        "keywords:frequency",
        "keywords:letter_frequency",
        "length_constraints:number_words",
        "train:letter_count",
        "train:no_digits",
        "train:word_count_exact",
    },
    # The answer is one of three fixed sentences.
    "detectable_format:constrained_response": _ALL,
    "train:copy_span": _ALL,
    "combination:two_responses": _ALL
    - {
        "keywords:existence",
        "keywords:forbidden_words",
        "language:response_language",
        "detectable_format:title",
        "punctuation:no_comma",
        "train:no_digits",
        "train:palindrome",
    },
    # The answer opens with the prompt, whose words, commas and digits are not the model's to choose.
    "combination:repeat_prompt": _ALL
    - {"keywords:existence", "detectable_format:title", "punctuation:no_comma", "train:palindrome"},
    "length_constraints:number_paragraphs": frozenset(
        {"length_constraints:nth_paragraph_first_word", "length_constraints:number_sentences"}
    ),
    "length_constraints:number_sentences": frozenset({"train:exact_sentences"}),
    "detectable_format:multiple_sections": frozenset(
        {"detectable_format:number_highlighted_sections", "train:no_digits", "train:unique_words"}
    ),
    "startend:quotation": frozenset({"detectable_format:title"}),
    "startend:end_checker": frozenset({"train:last_word", "train:start_end_same_word", "train:no_period"}),
    "detectable_content:postscript": frozenset({"train:no_period", "train:last_word"}),
    "keywords:letter_frequency": frozenset({"train:letter_count"}),
    "keywords:frequency": frozenset({"train:word_count_exact", "train:unique_words"}),
    "train:first_word": frozenset(
        {"train:sentence_first_word", "length_constraints:nth_paragraph_first_word", "train:keyword_position"}
    ),
    "train:sentence_first_word": frozenset(
        {"train:unique_words", "length_constraints:nth_paragraph_first_word", "train:keyword_position"}
    ),
    "train:unique_words": frozenset({"train:start_end_same_word", "train:word_count_exact"}),
    "train:bracket_every_word": _ALL
    - {
        "punctuation:no_comma",
        "length_constraints:number_words",
        "keywords:existence",
        "keywords:forbidden_words",
        "keywords:letter_frequency",
        "train:letter_count",
        "train:no_digits",
        "train:palindrome",
    },
}


def _symmetric(table: Mapping[str, frozenset[str]]) -> dict[str, frozenset[str]]:
    pairs = {(a, b) for a, others in table.items() for b in others} | {(a, a) for a in _ALL}
    pairs |= {(b, a) for a, b in pairs}
    return {a: frozenset(b for first, b in pairs if first == a) for a in _ALL}


CONFLICTS: dict[str, frozenset[str]] = _symmetric(_CONFLICTS)


def conflicts(a: str, b: str) -> bool:
    """Whether instructions ``a`` and ``b`` must not be combined in one prompt (symmetric; an id conflicts with
    itself).

    >>> conflicts("change_case:english_capital", "change_case:english_lowercase")
    True
    >>> conflicts("punctuation:no_comma", "detectable_format:title")
    False
    """
    for name in (a, b):
        if name not in CONFLICTS:
            raise ValueError(f"unknown instruction {name!r}; known: {sorted(CONFLICTS)}")
    return b in CONFLICTS[a]


def compatible(ids: Sequence[str]) -> bool:
    """Whether all of ``ids`` can be asked for in one prompt: no id twice, no conflicting pair.

    >>> compatible(["punctuation:no_comma", "detectable_format:title", "train:no_digits"])
    True
    >>> compatible(["detectable_format:json_format", "detectable_format:title"])
    False
    """
    return not any(conflicts(a, b) for a, b in itertools.combinations(ids, 2))


# ------------------------------------------------------------ checking a response


def loose_variants(response: str) -> list[str]:
    """The eight texts IFEval's loose score tries: the response, without its first line, without its last line,
    without both, and each of those four with every ``*`` removed.

    >>> loose_variants("Sure!\\n**Hi**\\nBye")[:4]
    ['Sure!\\n**Hi**\\nBye', 'Sure!\\nHi\\nBye', '**Hi**\\nBye', 'Hi\\nBye']
    """
    lines = response.split("\n")
    without_first = "\n".join(lines[1:]).strip()
    without_last = "\n".join(lines[:-1]).strip()
    without_both = "\n".join(lines[1:-1]).strip()
    texts = [response, without_first, without_last, without_both]
    return [texts[0], texts[0].replace("*", "")] + [
        variant for text in texts[1:] for variant in (text, text.replace("*", ""))
    ]


def check_instructions(
    response: str,
    instruction_ids: Sequence[str],
    kwargs_list: Sequence[Mapping[str, Any] | None] | None = None,
    prompt: str | None = None,
    loose: bool = False,
) -> list[bool]:
    """Follow/violate for each instruction, as IFEval's strict (or loose) evaluation decides it.

    >>> check_instructions("hello, world", ["punctuation:no_comma", "change_case:english_lowercase"], [{}, {}])
    [False, True]
    """
    if kwargs_list is None:
        kwargs_list = [{}] * len(instruction_ids)
    if len(kwargs_list) != len(instruction_ids):
        raise ValueError(f"{len(instruction_ids)} instruction ids but {len(kwargs_list)} kwargs entries")
    candidates = loose_variants(response) if loose else [response]
    candidates = [text for text in candidates if text.strip()]
    results = []
    for instruction_id, kwargs in zip(instruction_ids, kwargs_list):
        check = INSTRUCTION_CHECKS.get(instruction_id)
        if check is None:
            raise ValueError(f"unknown instruction {instruction_id!r}; known: {sorted(INSTRUCTION_CHECKS)}")
        args = InstructionArgs(instruction_id, kwargs, prompt)
        results.append(any(check(text, args) for text in candidates))
    return results


# ------------------------------------------------------------ the rewards

_MODE_SWITCH = re.compile(r"\s*/(?:no_)?think\s*$")


def _score_instructions(
    completions: list[Any],
    instruction_id_list: list[Any] | None,
    kwargs: list[Any] | None,
    prompts: list[Any] | None,
    prompt: list[Any] | None,
    task: list[Any] | None,
    tasks: Sequence[str] | None,
    loose: bool,
) -> list[float | None]:
    check_tasks(tasks)
    scores: list[float | None] = []
    for i, completion in enumerate(completions):
        ids = json_column(row_value(instruction_id_list, i), "instruction_id_list", i)
        if not ids or not is_selected(task, tasks, i):
            scores.append(None)
            continue
        row_kwargs = json_column(row_value(kwargs, i), "kwargs", i)
        row_prompt = row_value(prompt, i)
        if not isinstance(row_prompt, str):
            row_prompt = last_user_text(row_value(prompts, i))
        if row_prompt:  # a trailing /think or /no_think switch is not part of the request to repeat or copy
            row_prompt = _MODE_SWITCH.sub("", row_prompt)
        answer = answer_text(completion)
        if answer is None:
            scores.append(0.0)
            continue
        followed = check_instructions(answer, ids, row_kwargs, row_prompt, loose=loose)
        scores.append(sum(followed) / len(followed))
    return scores


def instruction_following(
    completions: list[Any],
    instruction_id_list: list[Any] | None = None,
    kwargs: list[Any] | None = None,
    prompts: list[Any] | None = None,
    prompt: list[Any] | None = None,
    task: list[Any] | None = None,
    *,
    tasks: Sequence[str] | None = None,
    **columns: Any,
) -> list[float | None]:
    """Fraction of the row's instructions that the answer follows, strictly (IFEval's instruction-level strict
    accuracy for one response). None for rows without ``instruction_id_list``.

    ``kwargs`` holds one dict per instruction; the prompt (the ``prompt`` column, else the last user message of
    ``prompts``) is used by ``combination:repeat_prompt`` without ``prompt_to_repeat`` and by ``train:copy_span``
    without ``text``. ``tasks``: when given, only rows whose ``task`` is listed are judged.

    >>> instruction_following(["no commas here", "a, b"], instruction_id_list=[["punctuation:no_comma"]] * 2,
    ...                       kwargs=[[{}]] * 2)
    [1.0, 0.0]
    """
    return _score_instructions(completions, instruction_id_list, kwargs, prompts, prompt, task, tasks, loose=False)


def instruction_following_loose(
    completions: list[Any],
    instruction_id_list: list[Any] | None = None,
    kwargs: list[Any] | None = None,
    prompts: list[Any] | None = None,
    prompt: list[Any] | None = None,
    task: list[Any] | None = None,
    *,
    tasks: Sequence[str] | None = None,
    **columns: Any,
) -> list[float | None]:
    """Like :func:`instruction_following`, with IFEval's loose variants (see :func:`loose_variants`): a leading
    "Sure, here it is:" line or markdown ``*`` do not cost the instruction.

    >>> instruction_following_loose(["Sure:\\nhello world"], instruction_id_list=[["change_case:english_lowercase"]],
    ...                             kwargs=[[{}]])
    [1.0]
    """
    return _score_instructions(completions, instruction_id_list, kwargs, prompts, prompt, task, tasks, loose=True)
